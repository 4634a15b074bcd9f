"""/metrics in the Prometheus text format: the same numbers whichever web process is scraped.

Everything comes from the database at scrape time, through a handful of aggregate queries:
- batches and their requests: GROUP BY over the store (StoredBatch);
- each account's poll lag and failures: AccountState, for every configured account;
- upstream calls and their latency: UpstreamCallStats, which every process (web and pollers) adds
  to. Each counts its own calls in memory (`record_upstream_call`, called by the providers' `send()`
  and `stream()`) and a thread of its own adds them to the table at most every METRICS_FLUSH_SECONDS,
  and once more at exit, with F() expressions, so processes flushing at once add up;
- open alarms by rule, when the Alarm model exists.

Off unless METRICS_TOKEN or METRICS_ALLOWED_IPS is set: then /metrics answers 404 and nothing is counted.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import Count, F, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from ..models import UPSTREAM_LATENCY_BUCKETS
from ..web.client_address import parse_address, parse_networks

logger = logging.getLogger(__name__)

PREFIX = "batch_dashboard_"
# The text format every Prometheus reads (our names need none of version 1.0.0's escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OUTCOMES = ("processing", "succeeded", "errored", "canceled", "expired")
FAILURE_LOG_SECONDS = 60.0  # a flush that keeps failing is logged at most this often
IDLE_CLOSE_SECONDS = 30.0  # the flush thread closes its database connection after this long without calls
BUCKET_FIELDS = tuple(UPSTREAM_LATENCY_BUCKETS)  # the model's le_* columns, in order of their bounds
BUCKET_BOUNDS = tuple(UPSTREAM_LATENCY_BUCKETS.values())


def enabled() -> bool:
    return bool(getattr(settings, "METRICS_TOKEN", "") or getattr(settings, "METRICS_ALLOWED_IPS", ()))


# --- Counting upstream calls in this process, and adding them to the database --------------------


@dataclass
class Tally:
    """One account's calls with one result, counted since the last flush."""

    calls: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKET_BOUNDS))  # cumulative, per bound

    def add(self, seconds: float) -> None:
        self.calls += 1
        self.seconds += seconds
        for index, bound in enumerate(BUCKET_BOUNDS):
            if seconds <= bound:
                self.buckets[index] += 1

    def merge(self, other: Tally) -> None:
        self.calls += other.calls
        self.seconds += other.seconds
        self.buckets = [mine + theirs for mine, theirs in zip(self.buckets, other.buckets, strict=True)]


class UpstreamCallCounter:
    """This process's upstream calls, counted in memory and added to UpstreamCallStats.

    `record` is what the calls pay: a lock and a few additions. A daemon thread, started with the
    first call, flushes at most every `interval` seconds while there is something to flush; an
    atexit hook flushes what is left. A failed flush (database away) keeps its counts for the next.
    """

    def __init__(self, interval: float | None = None, *, background: bool = True):
        self._interval = interval
        self._background = background  # False: flushed only when asked (tests)
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child counts its own calls only

    def _reset(self) -> None:
        self._lock = threading.Lock()  # guards _pending
        self._flushing = threading.Lock()  # one flush at a time in this process
        self._pending: dict[tuple[str, str], Tally] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self._failure_logged_at = -math.inf

    @property
    def interval(self) -> float:
        return float(self._interval if self._interval is not None else settings.METRICS_FLUSH_SECONDS)

    def record(self, account: str, result: str, seconds: float) -> None:
        with self._lock:
            tally = self._pending.get((account, result))
            if tally is None:
                tally = self._pending[(account, result)] = Tally()
            tally.add(max(0.0, seconds))
            if self._thread is None and self._background:
                self._start()
        self._wake.set()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            if not self._wake.wait(timeout=IDLE_CLOSE_SECONDS):
                connection.close()  # this thread's: no database connection held while there is nothing to write
                self._wake.wait()
            self._wake.clear()
            try:
                close_old_connections()  # this thread's connection, kept between flushes within its max age
                self.flush()
            except Exception:  # flush() logs its own failures; this thread must go on whatever happens
                logger.exception("metrics: the flush thread hit an error")
            time.sleep(self.interval)

    def pending(self) -> dict[tuple[str, str], Tally]:
        with self._lock:
            return {key: Tally(t.calls, t.seconds, list(t.buckets)) for key, t in self._pending.items()}

    def discard(self) -> None:
        """Forget what has not been flushed (tests)."""
        with self._flushing, self._lock:
            self._pending = {}

    def flush(self) -> int:
        """Add what was counted since the last flush to the database; the number of rows written.

        Never raises: on failure the counts go back to pending, and the failure is logged."""
        with self._flushing:
            with self._lock:
                taken, self._pending = self._pending, {}
            if not taken:
                return 0
            try:
                write_upstream_calls(taken)
            except Exception as error:
                with self._lock:
                    for key, tally in taken.items():
                        self._pending.setdefault(key, Tally()).merge(tally)
                self._failed(error)
                return 0
            if self._failing_since is not None:
                logger.info("metrics: upstream call counts are written again")
                self._failing_since = None
            return len(taken)

    def _failed(self, error: Exception) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failure_logged_at >= FAILURE_LOG_SECONDS:
            self._failure_logged_at = now
            logger.warning(
                "metrics: upstream call counts could not be written (%s: %s); kept in memory, tried again later",
                type(error).__name__,
                error,
            )


def write_upstream_calls(taken: dict[tuple[str, str], Tally]) -> None:
    """Add `taken` to UpstreamCallStats in one transaction: an UPDATE of F() sums per row, or the
    row's INSERT; an INSERT that loses a race with another process's becomes the UPDATE."""
    from ..models import UpstreamCallStats

    now = timezone.now()
    with transaction.atomic():
        for (account, result), tally in sorted(taken.items()):
            rows = UpstreamCallStats.objects.filter(account=account, result=result)
            sums = {
                "calls": F("calls") + tally.calls,
                "seconds_sum": F("seconds_sum") + tally.seconds,
                **{name: F(name) + count for name, count in zip(BUCKET_FIELDS, tally.buckets, strict=True) if count},
                "updated_at": now,
            }
            if rows.update(**sums):
                continue
            try:
                with transaction.atomic():
                    UpstreamCallStats.objects.create(
                        account=account,
                        result=result,
                        calls=tally.calls,
                        seconds_sum=tally.seconds,
                        updated_at=now,
                        **dict(zip(BUCKET_FIELDS, tally.buckets, strict=True)),
                    )
            except IntegrityError:
                rows.update(**sums)


upstream_calls = UpstreamCallCounter()


def record_upstream_call(account: str, result: str, seconds: float) -> None:
    """One upstream call (dashboard/providers/base.py); counted only while metrics are on."""
    if enabled():
        upstream_calls.record(account, result, seconds)


# --- The scrape: aggregates read from the database ----------------------------------------------


def _name(name: str) -> str:
    return PREFIX + name


class StoreCollector:
    """Every metric, read from the database at each scrape (a few GROUP BY queries)."""

    def collect(self) -> Iterator[Metric]:
        yield from batch_metrics()
        yield from poll_metrics()
        yield from upstream_metrics()
        yield from alarm_metrics()

    def describe(self) -> Iterable[Metric]:
        return []  # no describe at registration: that would query the database at import


def batch_metrics() -> Iterator[Metric]:
    from ..models import StoredBatch

    batches = GaugeMetricFamily(
        _name("batches"),
        "Stored batches by account, provider and the provider's status word (ended ones included).",
        labels=["account", "provider", "status"],
    )
    requests = GaugeMetricFamily(
        _name("requests"),
        "Requests in the stored batches by account and outcome "
        "(Anthropic reports outcomes only once a batch has ended: until then all are processing).",
        labels=["account", "outcome"],
    )
    rows = (
        StoredBatch.objects.order_by()
        .values("account", "provider", "status")
        .annotate(batches=Count("id"), **{outcome: Sum(outcome) for outcome in OUTCOMES})
    )
    per_account: dict[str, dict[str, int]] = {}
    for row in sorted(rows, key=lambda row: (row["account"], row["status"])):
        batches.add_metric([row["account"], row["provider"], row["status"]], row["batches"])
        sums = per_account.setdefault(row["account"], dict.fromkeys(OUTCOMES, 0))
        for outcome in OUTCOMES:
            sums[outcome] += row[outcome] or 0
    for account, sums in per_account.items():
        for outcome in OUTCOMES:
            requests.add_metric([account, outcome], sums[outcome])
    yield batches
    yield requests


def _account_keys() -> list[str]:
    from ..accounts import configured_accounts

    try:
        return [account.key for account in configured_accounts()]
    except ImproperlyConfigured:
        return []


def poll_metrics() -> Iterator[Metric]:
    """Per configured account: an account never polled successfully has a lag of +Inf, so an alert
    on the lag also fires when no poller runs at all."""
    from ..models import AccountState

    lag = GaugeMetricFamily(
        _name("poll_lag_seconds"),
        "Seconds since the account was last polled successfully (+Inf: never): how stale its stored batches may be.",
        labels=["account"],
    )
    last_success = GaugeMetricFamily(
        _name("poll_last_success_timestamp_seconds"),
        "When the account was last polled successfully (Unix time).",
        labels=["account"],
    )
    failures = GaugeMetricFamily(
        _name("poll_consecutive_failures"),
        "Polls of the account that failed in a row since its last success.",
        labels=["account"],
    )
    keys = _account_keys()
    states = {state.account: state for state in AccountState.objects.filter(account__in=keys)}
    now = timezone.now()
    for key in keys:
        state = states.get(key)
        success = state.last_success_at if state else None
        lag.add_metric([key], max(0.0, (now - success).total_seconds()) if success else math.inf)
        if success:
            last_success.add_metric([key], success.timestamp())
        failures.add_metric([key], state.consecutive_failures if state else 0)
    yield lag
    yield last_success
    yield failures


def upstream_metrics() -> Iterator[Metric]:
    from ..models import UpstreamCallStats

    calls = CounterMetricFamily(
        _name("upstream_calls"),
        "Calls to the providers' APIs by every web and poller process, by account and result "
        "(ok, 4xx, 429, 5xx, timeout, transport_error, bad_response).",
        labels=["account", "result"],
    )
    latency = HistogramMetricFamily(
        _name("upstream_call_duration_seconds"),
        "How long the providers' APIs took to answer, by account and result "
        "(JSON calls: to the last byte; result downloads: to the headers).",
        labels=["account", "result"],
    )
    for row in UpstreamCallStats.objects.order_by("account", "result"):
        labels = [row.account, row.result]
        calls.add_metric(labels, row.calls)
        buckets = [
            (_bound(bound), getattr(row, name)) for name, bound in zip(BUCKET_FIELDS, BUCKET_BOUNDS, strict=True)
        ]
        latency.add_metric(labels, [*buckets, ("+Inf", row.calls)], sum_value=row.seconds_sum)
    yield calls
    yield latency


def _bound(bound: float) -> str:
    return floatToGoString(bound)  # as prometheus_client writes `le` itself: "0.025", "1.0", "+Inf"


def _alarm_model():
    from django.apps import apps

    try:
        return apps.get_model("dashboard", "Alarm")
    except LookupError:
        return None


def alarm_metrics() -> Iterator[Metric]:
    """Open alarms (not resolved; acknowledged or not) by rule, every rule listed (0 when none is open),
    once the Alarm model exists (dashboard/alarms.py)."""
    model = _alarm_model()
    if model is None:
        return
    alarms = GaugeMetricFamily(_name("open_alarms"), "Alarms open now (acknowledged or not), by rule.", labels=["rule"])
    counts = dict.fromkeys((rule for rule, _ in model._meta.get_field("rule").choices or ()), 0)
    open_alarms = model.objects.filter(resolved_at__isnull=True).order_by().values("rule").annotate(count=Count("id"))
    counts.update({row["rule"]: row["count"] for row in open_alarms})
    for rule, count in sorted(counts.items()):
        alarms.add_metric([rule], count)
    yield alarms


registry = CollectorRegistry(auto_describe=False)
registry.register(StoreCollector())


def exposition() -> bytes:
    return generate_latest(registry)


# --- Who may read it -----------------------------------------------------------------------------


def address_allowed(remote_addr: str) -> bool:
    address = parse_address(remote_addr)
    networks = parse_networks(tuple(settings.METRICS_ALLOWED_IPS), setting="METRICS_ALLOWED_IPS")
    return address is not None and any(address in network for network in networks)


def token_matches(request: HttpRequest) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.METRICS_TOKEN
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and secrets.compare_digest(token.strip().encode(), expected.encode())
    )


def refusal(request: HttpRequest) -> HttpResponse | None:
    """Why this request may not read the metrics (403: address; 401: token), or None if it may.

    A signed-in staff user may; a scraper needs what is configured: the token, an allowed address,
    or both when both are set."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return None
    if settings.METRICS_ALLOWED_IPS and not address_allowed(request.META.get("REMOTE_ADDR", "")):
        return HttpResponse("Not from this address.\n", status=403, content_type="text/plain; charset=utf-8")
    if settings.METRICS_TOKEN and not token_matches(request):
        response = HttpResponse(
            "A bearer token is needed: Authorization: Bearer <METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return None


@login_not_required  # scrapers authenticate with the token or their address (refusal)
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not enabled():
        raise Http404("Metrics are off: set METRICS_TOKEN or METRICS_ALLOWED_IPS.")
    refused = refusal(request)
    if refused is not None:
        refused["Cache-Control"] = "no-store"
        return refused
    response = HttpResponse(exposition(), content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response
