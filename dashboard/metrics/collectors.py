"""The metrics, read from the database at each scrape through a handful of aggregate queries, so
they are the same whichever web process is scraped:
- batches and their requests: GROUP BY over the store (StoredBatch);
- each account's poll lag and failures: AccountState, for every configured account;
- upstream calls and their latency: UpstreamCallStats, which every process adds to (call_counter.py);
- open alarms by rule;
- tokens by account, provider, model and kind, and their estimated cost (dashboard/spend): the spend
  rollup's days added up, with the few batches it does not hold (spend/selectors.py: stored_tokens),
  priced at the current price table: issue 21's batch_tokens_total and batch_cost_usd_total,
  under the prefix of every metric here;
- the background work: tasks by queue and status, how long the oldest ready one has waited (no worker
  running shows here first), and the pollers alive by their heartbeats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from .call_counter import BUCKET_BOUNDS, BUCKET_FIELDS

PREFIX = "batch_dashboard_"
OUTCOMES = ("processing", "succeeded", "errored", "canceled", "expired")


def _name(name: str) -> str:
    return PREFIX + name


class StoreCollector:
    """Every metric, read from the database at each scrape (a few GROUP BY queries)."""

    def collect(self) -> Iterator[Metric]:
        yield from batch_metrics()
        yield from poll_metrics()
        yield from upstream_metrics()
        yield from alarm_metrics()
        yield from spend_metrics()
        yield from background_metrics()

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
    once the Alarm model exists (dashboard/alarms/models.py)."""
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


def spend_metrics() -> Iterator[Metric]:
    from ..spend.prices import KINDS
    from ..spend.selectors import stored_tokens
    from ..spend.table import current_table

    tokens = CounterMetricFamily(
        _name("batch_tokens"),
        "Tokens of the stored batches by account, provider, model and kind (input: fresh input; cache_read, "
        "cache_write; output: not reasoning; reasoning). Kinds are disjoint; model is empty when not reported.",
        labels=["account", "provider", "model", "kind"],
    )
    cost = CounterMetricFamily(
        _name("batch_cost_usd"),
        "Estimated cost in US dollars of the stored batches' tokens at the price table's prices, batch discount "
        "included, by account, provider and model; a model without a price has no sample, and tokens of a kind "
        "without a price are not counted.",
        labels=["account", "provider", "model"],
    )
    table = current_table()
    for (account, provider, model), counts in sorted(
        stored_tokens().items(), key=lambda item: (item[0][0], item[0][2])
    ):
        labels = [account, provider, model]
        for kind in KINDS:
            tokens.add_metric([*labels, kind], counts[kind])
        estimate = table.cost(counts, model, provider) if model else None
        if estimate is not None:
            cost.add_metric(labels, float(estimate.total))
    yield tokens
    yield cost


def background_metrics() -> Iterator[Metric]:
    from django.db.models import Min, Q
    from django_tasks_db.models import DBTaskResult, get_date_max

    from .. import background, leases
    from ..batches.poller import live_pollers

    tasks = GaugeMetricFamily(
        _name("background_tasks"),
        "Background tasks stored, by queue and status (READY, RUNNING, SUCCESSFUL, FAILED; finished ones are kept "
        "TASK_RESULTS_KEEP_DAYS days).",
        labels=["queue", "status"],
    )
    counts = {(queue, status): 0 for queue in background.QUEUES for status in background.Status.values}
    stored = DBTaskResult.objects.filter(queue_name__in=background.QUEUES).order_by()
    for row in stored.values("queue_name", "status").annotate(count=Count("pk")):
        counts[row["queue_name"], row["status"]] = row["count"]
    for (queue, status), count in sorted(counts.items()):
        tasks.add_metric([queue, status], count)
    yield tasks

    waited = GaugeMetricFamily(
        _name("background_oldest_ready_seconds"),
        "Seconds the oldest task ready to run has waited for a worker, by queue (0 when none waits): a figure "
        "that keeps rising means no worker runs (manage.py work), or too few.",
        labels=["queue"],
    )
    now = timezone.now()
    ready = stored.ready()
    since = dict.fromkeys(background.QUEUES, now)
    # A task enqueued without a delay has run_after at its maximum and waits since it was enqueued;
    # one made ready again (background.run_again) waits since its run_after.
    undelayed = Q(run_after=get_date_max())
    for row in ready.values("queue_name").annotate(
        enqueued=Min("enqueued_at", filter=undelayed), again=Min("run_after", filter=~undelayed)
    ):
        for moment in (row["enqueued"], row["again"]):
            if moment is not None:
                since[row["queue_name"]] = min(since[row["queue_name"]], moment)
    for queue in background.QUEUES:
        waited.add_metric([queue], max(0.0, (now - since[queue]).total_seconds()))
    yield waited

    pollers = GaugeMetricFamily(
        _name("pollers_live"),
        "Pollers alive (manage.py poll processes): a heartbeat within the heartbeat window and, on PostgreSQL, "
        "their session lock still held.",
    )
    pollers.add_metric([], len(live_pollers(now=leases.database_now())))
    yield pollers


registry = CollectorRegistry(auto_describe=False)
registry.register(StoreCollector())


def exposition() -> bytes:
    return generate_latest(registry)
