"""Alarms: conditions worth an operator's attention, looked for in the store after each poll cycle.

The rules (each a pure function of what the store holds and `now`, so tests give any instant):

- **stuck**: a batch not ended with no change in status or counts for ALARM_STUCK_MINUTES. For a
  provider that reports outcomes only once a batch has ended (`Batch.counts_are_final_only`), its
  counts never move while it runs: instead, running longer than 95% of the account's ended batches
  took (those of a similar size when there are ALARM_STUCK_MIN_HISTORY of them, else all of them),
  and the fixed minutes while the account has fewer ended batches than that;
- **expiring**: requests still unfinished and less than ALARM_EXPIRING_HOURS before `expires_at`;
- **error rate**: a running batch where more than ALARM_ERROR_RATE_PERCENT of the requests that ran
  (succeeded + errored) errored, once at least ALARM_ERROR_RATE_MIN_OUTCOMES of them ran;
- **ended badly**: a batch that ended in a status its provider calls a failure (failed, expired),
  with requests expired, or with more than ALARM_ENDED_BADLY_PERCENT of those that ran errored;
  it holds for ALARM_ENDED_BADLY_HOURS after the end, then resolves by itself;
- **account failing**: an account's polls failing, with no success, for ALARM_ACCOUNT_FAILING_MINUTES
  (at once for an account whose polls have never succeeded).

A rule's condition is judged as of the batch's last successful read (`last_fetched_at`): while an
account's polls fail, its batches' alarms stay as they were, and the account's own alarm says why.
Batches marked gone (404 upstream) and accounts no longer configured have no alarms.

Thresholds: the settings are every account's defaults; an `AlarmThreshold` row (edited in the
admin) gives one account its own value for one rule, or switches the rule off for it. A table
rather than a JSON setting: operators change it without a deploy, every poller reads the new
values at its next evaluation (no restart), and the admin validates what is typed.

`evaluate(now)` reads what the rules need in a few queries (not one per batch), then in one
transaction opens an alarm for each (rule, subject) newly found, moves `last_seen_at` on for those
still found, and resolves those no longer found; it returns what opened and what resolved, and
hands them to `alarms_changed`, the one place notifications will hook in. The poller calls it after
each cycle, one poller at a time: the one holding the evaluator's lease (`claim_evaluator`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.db.models.lookups import GreaterThan
from django.utils import timezone

from .. import providers
from ..accounts import configured_secrets
from ..models import AccountState, Alarm, AlarmEvaluator, AlarmRule, AlarmThreshold, StoredBatch
from ..redaction import redact

logger = logging.getLogger(__name__)

Rule = AlarmRule
EVALUATOR = 1  # the primary key of the evaluator's single row
HISTORY = 200  # the newest ended batches of an account whose durations the stuck rule reads
SIMILAR_SIZE = 2.0  # "a similar size": at most this factor bigger or smaller
PERCENTILE = 95
# Status words that mean a batch failed, for a provider module that does not say (ENDED_BADLY).
FAILURE_WORDS = frozenset({"failed", "expired"})
# A batch ends within a day or so of its creation: those created longer ago than this before the
# ended-badly window began cannot have ended in it (keeps that query on the created_at index).
ENDED_WITHIN = timedelta(days=3)
DETAIL_LIMIT = 2000
NOTE_LIMIT = 2000


# --- thresholds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The thresholds of every rule for one account."""

    stuck_minutes: float
    stuck_min_history: int
    expiring_hours: float
    error_rate_percent: float
    error_rate_min_outcomes: int
    ended_badly_percent: float
    ended_badly_hours: float
    account_failing_minutes: float
    disabled: frozenset[str] = frozenset()

    def on(self, rule: str) -> bool:
        return rule not in self.disabled


def default_limits() -> Limits:
    """Every account's thresholds, from the ALARM_* settings."""
    return Limits(
        stuck_minutes=float(settings.ALARM_STUCK_MINUTES),
        stuck_min_history=int(settings.ALARM_STUCK_MIN_HISTORY),
        expiring_hours=float(settings.ALARM_EXPIRING_HOURS),
        error_rate_percent=float(settings.ALARM_ERROR_RATE_PERCENT),
        error_rate_min_outcomes=int(settings.ALARM_ERROR_RATE_MIN_OUTCOMES),
        ended_badly_percent=float(settings.ALARM_ENDED_BADLY_PERCENT),
        ended_badly_hours=float(settings.ALARM_ENDED_BADLY_HOURS),
        account_failing_minutes=float(settings.ALARM_ACCOUNT_FAILING_MINUTES),
    )


# Which Limits field an override's `value` replaces, per rule.
VALUE_OF = {
    Rule.STUCK: "stuck_minutes",
    Rule.EXPIRING: "expiring_hours",
    Rule.ERROR_RATE: "error_rate_percent",
    Rule.ENDED_BADLY: "ended_badly_percent",
    Rule.ACCOUNT_FAILING: "account_failing_minutes",
}


def account_limits(defaults: Limits, overrides: Iterable[AlarmThreshold]) -> dict[str, Limits]:
    """The thresholds of each account that has overrides: the defaults, with its own in place."""
    changes: dict[str, dict] = defaultdict(dict)
    disabled: dict[str, set[str]] = defaultdict(set)
    for override in overrides:
        mine = changes[override.account]
        if not override.enabled:
            disabled[override.account].add(override.rule)
        if override.value is not None and override.rule in VALUE_OF:
            mine[VALUE_OF[override.rule]] = float(override.value)
        if override.min_outcomes is not None and override.rule == Rule.ERROR_RATE:
            mine["error_rate_min_outcomes"] = int(override.min_outcomes)
    return {
        account: Limits(
            **{**defaults.__dict__, **mine, "disabled": defaults.disabled | frozenset(disabled[account])},
        )
        for account, mine in changes.items()
    }


# --- what the rules read ----------------------------------------------------------------------


@dataclass(frozen=True)
class BatchFacts:
    """A stored batch as the rules read it."""

    pk: int
    account: str
    batch_id: str
    status: str
    is_ended: bool
    total: int
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int
    created_at: datetime
    expires_at: datetime | None
    ended_at: datetime | None
    last_changed_at: datetime
    last_fetched_at: datetime
    final_only: bool = False  # its provider reports outcomes only once the batch has ended
    failed_status: bool = False  # its status is one its provider calls a failure

    @property
    def ran(self) -> int:
        """Requests that ran and came back: succeeded or errored (not canceled, not expired)."""
        return self.succeeded + self.errored


@dataclass(frozen=True)
class AccountFacts:
    account: str
    consecutive_failures: int = 0
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error: str = ""


class History(list[tuple[int, float]]):
    """An account's ended batches for the stuck rule: (request total, seconds from creation to end),
    newest first. It remembers what `usual_duration` found for each size: one evaluation asks it for
    every running batch of the account, and most are of a few sizes."""

    def __init__(self, batches: Iterable[tuple[int, float]] = ()) -> None:
        super().__init__(batches)
        self.usual: dict[tuple[int, int], tuple[float, str] | None] = {}


@dataclass(frozen=True)
class Snapshot:
    batches: Sequence[BatchFacts] = ()
    accounts: Sequence[AccountFacts] = ()
    histories: Mapping[str, Sequence[tuple[int, float]]] = field(default_factory=dict)
    limits: Mapping[str, Limits] = field(default_factory=dict)
    defaults: Limits | None = None

    def limits_for(self, account: str) -> Limits:
        return self.limits.get(account) or self.defaults or default_limits()


# --- words ----------------------------------------------------------------------------------


def when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min" + (f" {seconds:02d} s" if seconds and minutes < 10 else "")
    return f"{seconds} s"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def number(value: float) -> str:
    return f"{value:g}"


# --- the rules: a batch or an account, its thresholds and `now` in; what holds (or None) out -------


def percentile(values: Iterable[float], rank: int = PERCENTILE) -> float:
    """The nearest-rank percentile: the smallest value at least `rank`% of the values are at most."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


def usual_duration(total: int, history: Sequence[tuple[int, float]], min_history: int) -> tuple[float, str] | None:
    """How long the account's ended batches take (the 95th percentile, in seconds) and of which
    batches, in words: those of a similar size if there are `min_history` of them, else all of
    them if there are that many; None with fewer."""
    if isinstance(history, History):
        key = (total, min_history)
        if key not in history.usual:
            history.usual[key] = _usual_duration(total, history, min_history)
        return history.usual[key]
    return _usual_duration(total, history, min_history)


def _usual_duration(total: int, history: Sequence[tuple[int, float]], min_history: int) -> tuple[float, str] | None:
    needed = max(1, min_history)
    similar = [seconds for size, seconds in history if total / SIMILAR_SIZE <= size <= total * SIMILAR_SIZE]
    if len(similar) >= needed:
        low, high = math.ceil(total / SIMILAR_SIZE), math.floor(total * SIMILAR_SIZE)
        return percentile(similar), f"its last {len(similar)} ended batches of {low:,} to {high:,} requests"
    if len(history) >= needed:
        return percentile(seconds for _, seconds in history), f"its last {len(history)} ended batches"
    return None


def stuck(batch: BatchFacts, limits: Limits, history: Sequence[tuple[int, float]], now: datetime) -> str | None:
    """Not ended, and no change in status or counts for `stuck_minutes`; for a provider that reports
    outcomes only at the end, running past the 95th percentile of the account's ended batches when
    it has enough of them. Judged as of the batch's last read."""
    if batch.is_ended:
        return None
    as_of = min(now, batch.last_fetched_at)
    if batch.final_only:
        usual = usual_duration(batch.total, history, limits.stuck_min_history)
        if usual is not None:
            seconds, which = usual
            if (as_of - batch.created_at).total_seconds() > seconds:
                return f"Running since {when(batch.created_at)}: longer than 95% of {which} took ({duration(seconds)})."
            return None
    if as_of - batch.last_changed_at >= timedelta(minutes=limits.stuck_minutes):
        return (
            f"No change in status or counts since {when(batch.last_changed_at)} "
            f"(alarm after {number(limits.stuck_minutes)} min without one)."
        )
    return None


def expiring(batch: BatchFacts, limits: Limits, now: datetime) -> str | None:
    """Requests unfinished and less than `expiring_hours` before the batch expires."""
    if batch.is_ended or batch.expires_at is None:
        return None
    unfinished = batch.processing > 0 or batch.total == 0  # no counts yet: none has finished
    if not unfinished or batch.expires_at - now >= timedelta(hours=limits.expiring_hours):
        return None
    if batch.expires_at <= now:
        return f"Its window ended at {when(batch.expires_at)} with requests unfinished; its end is not seen yet."
    return (
        f"Requests unfinished and it expires at {when(batch.expires_at)} "
        f"(alarm from {number(limits.expiring_hours)} h before)."
    )


def error_rate(batch: BatchFacts, limits: Limits, now: datetime) -> str | None:
    """A running batch where more than `error_rate_percent` of the requests that ran errored, once
    at least `error_rate_min_outcomes` ran."""
    ran = batch.ran
    if batch.is_ended or ran == 0 or ran < limits.error_rate_min_outcomes:
        return None
    if batch.errored * 100 <= limits.error_rate_percent * ran:
        return None
    return (
        f"{batch.errored:,} of the {ran:,} requests with an outcome errored ({percent(batch.errored, ran)}; "
        f"alarm above {number(limits.error_rate_percent)}% once {limits.error_rate_min_outcomes:,} have one)."
    )


def ended_badly(batch: BatchFacts, limits: Limits, now: datetime) -> str | None:
    """Ended in a failure status, with requests expired, or with more than `ended_badly_percent` of
    the requests that ran errored; for `ended_badly_hours` after the end."""
    if not batch.is_ended:
        return None
    ended_at = batch.ended_at or batch.last_changed_at
    if now - ended_at >= timedelta(hours=limits.ended_badly_hours):
        return None
    reasons = []
    if batch.failed_status:
        reasons.append(f"it ended {batch.status}")
    if batch.expired:
        reasons.append(f"{batch.expired:,} of {batch.total:,} requests expired before they ran")
    ran = batch.ran
    if ran and batch.errored * 100 > limits.ended_badly_percent * ran:
        reasons.append(
            f"{batch.errored:,} of the {ran:,} requests with an outcome errored ({percent(batch.errored, ran)}; "
            f"alarm above {number(limits.ended_badly_percent)}%)"
        )
    if not reasons:
        return None
    text = "; ".join(reasons)
    return f"{text[0].upper()}{text[1:]} (ended {when(ended_at)})."


def account_failing(account: AccountFacts, limits: Limits, now: datetime) -> str | None:
    """Polls failing, none succeeding, for `account_failing_minutes` (at once if none ever has)."""
    if account.consecutive_failures <= 0:
        return None
    last = f" The last error: {account.last_error}" if account.last_error else ""
    if account.last_success_at is None:
        return f"Polls fail and none has succeeded yet.{last}"
    if now - account.last_success_at < timedelta(minutes=limits.account_failing_minutes):
        return None
    return f"Polls have failed since the last success at {when(account.last_success_at)}.{last}"


Key = tuple[str, str, int | None]  # (rule, account, stored batch pk or None for the account)


def conditions(snapshot: Snapshot, now: datetime) -> dict[Key, str]:
    """Every (rule, subject) whose condition holds at `now`, with its detail."""
    held: dict[Key, str] = {}
    for batch in snapshot.batches:
        limits = snapshot.limits_for(batch.account)
        history = snapshot.histories.get(batch.account, ())
        found = (
            (Rule.STUCK, stuck(batch, limits, history, now)),
            (Rule.EXPIRING, expiring(batch, limits, now)),
            (Rule.ERROR_RATE, error_rate(batch, limits, now)),
            (Rule.ENDED_BADLY, ended_badly(batch, limits, now)),
        )
        for rule, detail in found:
            if detail and limits.on(rule):
                held[rule.value, batch.account, batch.pk] = detail
    for account in snapshot.accounts:
        limits = snapshot.limits_for(account.account)
        if limits.on(Rule.ACCOUNT_FAILING) and (detail := account_failing(account, limits, now)):
            held[Rule.ACCOUNT_FAILING.value, account.account, None] = detail
    return held


# --- the provider boundary: what the rules ask of a provider module --------------------------


@dataclass(frozen=True)
class Traits:
    final_only: bool  # outcomes reported only once a batch has ended
    failed: frozenset[str]  # ended statuses that mean a failure


_final_only: dict[int, bool] = {}


def traits(provider: str) -> Traits:
    """What the rules need to know of `provider`: from its module's COUNTS_ARE_FINAL_ONLY and
    ENDED_BADLY when it defines them; otherwise from a stored batch of it read back by its own
    parser (`Batch.counts_are_final_only`), and its ENDED statuses named failed or expired."""
    module = providers.PROVIDERS.get(provider)
    if module is None:
        return Traits(final_only=False, failed=frozenset())
    return Traits(final_only=_counts_are_final_only(provider, module), failed=failed_statuses(module))


def failed_statuses(module: ModuleType) -> frozenset[str]:
    declared = getattr(module, "ENDED_BADLY", None)
    return frozenset(declared) if declared is not None else frozenset(module.ENDED) & FAILURE_WORDS


def _counts_are_final_only(provider: str, module: ModuleType) -> bool:
    declared = getattr(module, "COUNTS_ARE_FINAL_ONLY", None)
    if declared is not None:
        return bool(declared)
    if id(module) in _final_only:
        return _final_only[id(module)]
    sample = StoredBatch.objects.filter(provider=provider).values_list("account", "raw").first()
    if sample is None:
        return False
    try:
        answer = bool(module.parse_batch(sample[1], account=sample[0]).counts_are_final_only)
    except Exception:  # an unreadable stored answer: ask again next time
        logger.warning("alarms: a stored %s batch could not be read back", provider)
        return False
    _final_only[id(module)] = answer
    return answer


# --- reading the snapshot: a few queries, whatever the number of batches --------------------------

BATCH_FIELDS = (
    "pk",
    "account",
    "provider",
    "batch_id",
    "status",
    "is_ended",
    "total",
    "processing",
    "succeeded",
    "errored",
    "canceled",
    "expired",
    "created_at",
    "expires_at",
    "ended_at",
    "last_changed_at",
    "last_fetched_at",
)


def configured_account_keys() -> list[str]:
    from ..accounts import configured_accounts

    return [account.key for account in configured_accounts()]


def load_snapshot(now: datetime, account_keys: Iterable[str]) -> Snapshot:
    """What the rules read at `now` for these accounts: their health, their running batches, those
    that ended within the ended-badly window, and (for providers that report outcomes only at the
    end) how long their ended batches took. One query each, plus one per account with running
    batches of such a provider (its history)."""
    keys = sorted(set(account_keys))
    defaults = default_limits()
    limits = account_limits(defaults, AlarmThreshold.objects.filter(account__in=keys))

    def limits_for(account: str) -> Limits:
        return limits.get(account, defaults)

    accounts = [
        AccountFacts(**row)
        for row in AccountState.objects.filter(account__in=keys).values(
            "account", "consecutive_failures", "last_success_at", "last_error_at", "last_error"
        )
    ]
    live = StoredBatch.objects.filter(account__in=keys, gone_at__isnull=True)
    rows = list(live.filter(is_ended=False).values(*BATCH_FIELDS))
    # Ended batches: only those the ended-badly rule may find (a superset, judged by the rule):
    # ended within the longest window, in a failure status, with requests expired, or with more
    # errored than the lowest threshold allows (in thousandths of a percent, rounded down).
    every = [defaults, *limits.values()]
    since = now - timedelta(hours=max(mine.ended_badly_hours for mine in every))
    least = math.floor(min(mine.ended_badly_percent for mine in every) * 1000)
    failed = set().union(*(failed_statuses(module) for module in providers.PROVIDERS.values()))
    too_many_errors = GreaterThan(F("errored") * 100_000, (F("succeeded") + F("errored")) * least)
    rows += live.filter(
        Q(ended_at__gte=since) | Q(ended_at__isnull=True, last_changed_at__gte=since),
        Q(status__in=failed) | Q(expired__gt=0) | Q(too_many_errors, errored__gt=0),
        is_ended=True,
        created_at__gte=since - ENDED_WITHIN,
    ).values(*BATCH_FIELDS)

    known: dict[str, Traits] = {}
    batches = []
    for row in rows:
        provider = row.pop("provider")
        if provider not in known:
            known[provider] = traits(provider)
        kind = known[provider]
        is_failure = row["is_ended"] and row["status"] in kind.failed
        batches.append(BatchFacts(**row, final_only=kind.final_only, failed_status=is_failure))

    wanting = {b.account for b in batches if b.final_only and not b.is_ended and limits_for(b.account).on(Rule.STUCK)}
    histories = {account: _history(account, known) for account in sorted(wanting)}
    return Snapshot(batches=batches, accounts=accounts, histories=histories, limits=limits, defaults=defaults)


def _history(account: str, known: Mapping[str, Traits]) -> History:
    """How long the account's newest ended batches took: those that ended of themselves (not
    canceled, none expired, not failed, not gone), newest first."""
    failed = set().union(*(kind.failed for kind in known.values()))
    rows = (
        StoredBatch.objects.filter(
            account=account,
            is_ended=True,
            gone_at__isnull=True,
            ended_at__isnull=False,
            cancel_initiated_at__isnull=True,
            expired=0,
        )
        .exclude(status__in=failed)
        .order_by("-created_at")
        .values_list("total", "created_at", "ended_at")[:HISTORY]
    )
    return History((total, (ended_at - created_at).total_seconds()) for total, created_at, ended_at in rows)


# --- evaluating: open, keep, resolve ------------------------------------------------------------


@dataclass
class Evaluation:
    opened: list[Alarm] = field(default_factory=list)
    resolved: list[Alarm] = field(default_factory=list)
    still_open: int = 0  # alarms that were open and still are
    seconds: float = 0.0


def alarms_changed(opened: Sequence[Alarm], resolved: Sequence[Alarm]) -> None:
    """THE place alarm changes leave the evaluation: called once per evaluation that opened or
    resolved any, inside its transaction, after the alarms are written.

    The notification outbox writes its rows here (notifications.write_outbox): in the same
    transaction, a notification is recorded if and only if its alarm change is. Nothing is sent from
    here (no I/O in the transaction): the pollers send the outbox after their cycles.
    """
    from ..notifications import outbox

    for alarm in opened:
        logger.info("alarm opened: %s", alarm)
    for alarm in resolved:
        logger.info("alarm resolved: %s", alarm)
    outbox.write_outbox(opened, resolved)


def evaluate(now: datetime | None = None, *, accounts: Iterable[str] | None = None) -> Evaluation:
    """Look for every rule's condition at `now` in the configured accounts (or these account keys):
    open an alarm for each one newly found, keep those still found (their `last_seen_at` and detail
    brought up to date), resolve those no longer found. One transaction, holding the evaluator's row
    locked, so evaluations never overlap even past a lease."""
    now = now or timezone.now()
    keys = configured_account_keys() if accounts is None else list(accounts)
    started = time.perf_counter()
    AlarmEvaluator.objects.get_or_create(pk=EVALUATOR)
    with transaction.atomic():
        list(AlarmEvaluator.objects.select_for_update().filter(pk=EVALUATOR).values_list("pk"))
        held = conditions(load_snapshot(now, keys), now)
        result = _apply(held, now)
        if result.opened or result.resolved:
            alarms_changed(result.opened, result.resolved)
        result.seconds = time.perf_counter() - started
        AlarmEvaluator.objects.filter(pk=EVALUATOR).update(
            last_evaluated_at=now, last_seconds=result.seconds, last_error=""
        )
    return result


def _apply(held: dict[Key, str], now: datetime) -> Evaluation:
    secrets: list[str] | None = None

    def worded(detail: str) -> str:
        nonlocal secrets
        secrets = configured_secrets() if secrets is None else secrets
        return redact(detail, secrets)[:DETAIL_LIMIT]

    open_now = {
        (rule, account, batch): (pk, detail)
        for pk, rule, account, batch, detail in Alarm.objects.filter(resolved_at=None).values_list(
            "pk", "rule", "account", "batch_id", "detail"
        )
    }
    result = Evaluation()
    gone = [pk for key, (pk, _) in open_now.items() if key not in held]
    if gone:
        result.resolved = list(Alarm.objects.filter(pk__in=gone))
        Alarm.objects.filter(pk__in=gone).update(resolved_at=now)
        for alarm in result.resolved:
            alarm.resolved_at = now
    kept = {key: found for key, found in open_now.items() if key in held}
    if kept:
        Alarm.objects.filter(resolved_at=None).exclude(pk__in=gone).update(last_seen_at=now)
        reworded = []
        for key, (pk, stored) in kept.items():
            # Redacting costs: only a detail that reads differently from the stored one is redacted.
            if held[key] != stored and (detail := worded(held[key])) != stored:
                reworded.append(Alarm(pk=pk, detail=detail))
        Alarm.objects.bulk_update(reworded, ["detail"], batch_size=500)
        result.still_open = len(kept)
    new = [
        Alarm(rule=key[0], account=key[1], batch_id=key[2], opened_at=now, last_seen_at=now, detail=worded(held[key]))
        for key in sorted(held.keys() - open_now.keys(), key=lambda key: (key[1], key[0], key[2] or 0))
    ]
    if new:
        result.opened = Alarm.objects.bulk_create(new, batch_size=500)
    return result


# --- one evaluator at a time ------------------------------------------------------------------


def claim_evaluator(owner: str, *, now: datetime, seconds: float) -> bool:
    """Take (or renew) the evaluator's lease: True if `owner` holds it now. A conditional UPDATE of
    the single row (atomic on PostgreSQL and SQLite alike): held until `seconds` after `now`, so a
    killed poller's turn passes to another once it expires."""
    AlarmEvaluator.objects.get_or_create(pk=EVALUATOR)
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner)
    until = now + timedelta(seconds=seconds)
    return bool(AlarmEvaluator.objects.filter(free, pk=EVALUATOR).update(lease_owner=owner, lease_until=until))


def release_evaluator(owner: str) -> None:
    AlarmEvaluator.objects.filter(pk=EVALUATOR, lease_owner=owner).update(lease_owner="", lease_until=None)


def evaluation_failed(error: BaseException) -> None:
    """Note on the evaluator's row why the last evaluation failed (the poller logs it too)."""
    message = redact(f"{type(error).__name__}: {error}", configured_secrets())[:DETAIL_LIMIT]
    AlarmEvaluator.objects.filter(pk=EVALUATOR).update(last_error=message)


# --- acknowledging ----------------------------------------------------------------------------


class AcknowledgeRefused(Exception):
    """An acknowledgement that changed nothing; its message says why, in an operator's words."""


def acknowledge(alarm: Alarm, user, note: str = "", *, now: datetime | None = None) -> Alarm:
    """`user` has seen `alarm`: who, when and their note (redacted) are kept; it stays open until
    its condition no longer holds. The first acknowledgement stands: an alarm already acknowledged,
    or one that has resolved, is left as it is and AcknowledgeRefused says so (one conditional
    UPDATE, so of two people acknowledging at once exactly one is recorded)."""
    now = now or timezone.now()
    note = redact(note.strip(), configured_secrets())[:NOTE_LIMIT]
    recorded = Alarm.objects.filter(pk=alarm.pk, acknowledged_at=None, resolved_at=None).update(
        acknowledged_by=user, acknowledged_at=now, acknowledge_note=note
    )
    if not recorded:
        alarm.refresh_from_db()
        if alarm.acknowledged_at is not None:
            who = alarm.acknowledged_by.get_username() if alarm.acknowledged_by else "a deleted user"
            raise AcknowledgeRefused(
                f"Already acknowledged by {who} at {alarm.acknowledged_at:%Y-%m-%d %H:%M} UTC: "
                "that acknowledgement stands."
            )
        raise AcknowledgeRefused(
            f"This alarm resolved at {alarm.resolved_at:%Y-%m-%d %H:%M} UTC: there is nothing left to acknowledge."
        )
    alarm.acknowledged_by, alarm.acknowledged_at, alarm.acknowledge_note = user, now, note
    return alarm


# --- reading alarms (for the pages) -----------------------------------------------------------


def _with_subject(alarms: QuerySet[Alarm]) -> QuerySet[Alarm]:
    return alarms.select_related("batch", "acknowledged_by").defer("batch__raw", "batch__search_text")


def open_alarms() -> QuerySet[Alarm]:
    """Every open alarm, newest first, with its batch (if any) and who acknowledged it."""
    return _with_subject(Alarm.objects.filter(resolved_at=None)).order_by("-opened_at", "-id")


def open_alarms_for_account(account: str) -> QuerySet[Alarm]:
    """The open alarms of one account: its own and its batches'."""
    return open_alarms().filter(account=account)


def open_alarms_for_batch(account: str, batch_id: str) -> QuerySet[Alarm]:
    """The open alarms of one batch (the upstream id, as in the URLs)."""
    return open_alarms().filter(account=account, batch__batch_id=batch_id)


def open_alarms_by_batch(batch_pks: Iterable[int]) -> dict[int, list[Alarm]]:
    """For a page of stored batches (their primary keys): each one's open alarms, in one query."""
    found: dict[int, list[Alarm]] = defaultdict(list)
    for alarm in Alarm.objects.filter(resolved_at=None, batch_id__in=list(batch_pks)).order_by("-opened_at", "-id"):
        found[alarm.batch_id].append(alarm)
    return dict(found)


@dataclass(frozen=True)
class OpenCounts:
    open: int
    unacknowledged: int


def open_alarm_counts() -> OpenCounts:
    """For the header's badge: open alarms, and how many of them nobody has acknowledged. One query."""
    counts = Alarm.objects.filter(resolved_at=None).aggregate(
        open=Count("pk"), unacknowledged=Count("pk", filter=Q(acknowledged_at=None))
    )
    return OpenCounts(open=counts["open"], unacknowledged=counts["unacknowledged"])


def recent_alarms(*, since: datetime) -> QuerySet[Alarm]:
    """Open alarms and those resolved since `since`, newest first (the alarms page's history)."""
    return _with_subject(Alarm.objects.filter(Q(resolved_at=None) | Q(resolved_at__gte=since))).order_by(
        "-opened_at", "-id"
    )


def evaluator() -> AlarmEvaluator | None:
    """When alarms were last evaluated, by whom, and whether that failed (None: never)."""
    return AlarmEvaluator.objects.filter(pk=EVALUATOR).first()
