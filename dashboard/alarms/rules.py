"""The alarm rules: conditions worth an operator's attention, looked for in the store after each poll
cycle (evaluation.py).

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
  with requests expired, or with more than ALARM_ENDED_BADLY_PERCENT of those that ran errored
  (judged once ALARM_ERROR_RATE_MIN_OUTCOMES ran, or all of a smaller batch: 1 error among the 5
  requests that ran before a cancel is no sign, 5 of a 5-request batch is);
  it holds for ALARM_ENDED_BADLY_HOURS after the end, then resolves by itself. Only about what
  happened while the dashboard watched: a batch that had already ended when the dashboard first saw
  it, and was created before the dashboard first read its account, is history the poller filled
  in (its outcome shows in the header's figures and on its row), never an alarm;
- **account failing**: an account's polls failing, with no success, for ALARM_ACCOUNT_FAILING_MINUTES
  (at once for an account whose polls have never succeeded).
- **budgets** (daily and monthly; dashboard/spend): an account's estimated spend, or every account's
  together (account `*`), reaching a share of its budget (ALARM_BUDGET_NEAR_PERCENT, "nearly spent")
  and the whole of it ("spent"). Spend is what the spend page counts: batches that ended that UTC day
  (that month), plus those still running where their tokens are known, at the price table's prices;
  tokens without a price are said, never counted as zero. A budget is a threshold row (`*_over`,
  value in US dollars): no row, no budget. A daily alarm resolves when the UTC day turns.

A rule's condition is judged as of the batch's last successful read (`last_fetched_at`): while an
account's polls fail, its batches' alarms stay as they were, and the account's own alarm says why.
Batches marked gone (404 upstream) and accounts no longer configured have no alarms.

Thresholds: the settings are every account's defaults; an `AlarmThreshold` row (edited in the
admin) gives one account its own value for one rule, or switches the rule off for it. A table
rather than a JSON setting: operators change it without a deploy, every poller reads the new
values at its next evaluation (no restart), and the admin validates what is typed.

Each rule is a pure function of what the store holds (a `Snapshot`), the thresholds and `now`: no
database here (evaluation.py reads the snapshot and writes the alarms).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

from ..batches.run_times import RunTime, of_similar_size, percentile, similar_size_range
from ..durations import in_words
from .models import AlarmRule, AlarmThreshold

Rule = AlarmRule
PERCENTILE = 95  # a batch whose counts come only at the end is stuck past this share of its peers
# Under this, a duration said to the minute is too coarse for a threshold the alarm fires at to the second.
TO_THE_SECOND_UNDER = 600


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
    counts_known: bool = True  # False: its provider did not report counts, so none can be judged
    final_only: bool = False  # its provider reports outcomes only once the batch has ended
    failed_status: bool = False  # its status is one its provider calls a failure
    # False for history: a batch that had ended before the dashboard saw it running and was created
    # before the dashboard first read its account (evaluation.py, `ended_in_view`).
    ended_in_view: bool = True

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


class AccountRunTimes(list[RunTime]):
    """An account's ended batches' run times (batches/run_times.py), newest first, remembering what
    `usual_duration` found for each size: one evaluation asks it for every running batch of the
    account, and most are of a few sizes."""

    def __init__(self, run_times: Iterable[RunTime] = ()) -> None:
        super().__init__(run_times)
        self.usual: dict[tuple[int, int], tuple[float, str] | None] = {}


@dataclass(frozen=True)
class Snapshot:
    batches: Sequence[BatchFacts] = ()
    accounts: Sequence[AccountFacts] = ()
    run_times: Mapping[str, Sequence[RunTime]] = field(default_factory=dict)
    limits: Mapping[str, Limits] = field(default_factory=dict)
    defaults: Limits | None = None
    budgets: Sequence[Budget] = ()
    spend: Mapping[str, SpendFacts] = field(default_factory=dict)  # by account key, and ALL_ACCOUNTS

    def limits_for(self, account: str) -> Limits:
        return self.limits.get(account) or self.defaults or default_limits()


# --- words ----------------------------------------------------------------------------------


def when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def number(value: float) -> str:
    return f"{value:g}"


# --- the rules: a batch or an account, its thresholds and `now` in; what holds (or None) out -------


def usual_duration(total: int, run_times: Sequence[RunTime], min_history: int) -> tuple[float, str] | None:
    """How long the account's ended batches take (the 95th percentile, in seconds) and of which
    batches, in words: those of a similar size if there are `min_history` of them, else all of
    them if there are that many; None with fewer."""
    if isinstance(run_times, AccountRunTimes):
        key = (total, min_history)
        if key not in run_times.usual:
            run_times.usual[key] = _usual_duration(total, run_times, min_history)
        return run_times.usual[key]
    return _usual_duration(total, run_times, min_history)


def _usual_duration(total: int, run_times: Sequence[RunTime], min_history: int) -> tuple[float, str] | None:
    needed = max(1, min_history)
    similar = of_similar_size(total, run_times)
    if len(similar) >= needed:
        low, high = similar_size_range(total)
        return percentile(similar, PERCENTILE), f"its last {len(similar)} ended batches of {low:,} to {high:,} requests"
    if len(run_times) >= needed:
        return percentile((seconds for _, seconds in run_times), PERCENTILE), f"its last {len(run_times)} ended batches"
    return None


def stuck(batch: BatchFacts, limits: Limits, run_times: Sequence[RunTime], now: datetime) -> str | None:
    """Not ended, and no change in status or counts for `stuck_minutes`; for a provider that reports
    outcomes only at the end, running past the 95th percentile of the account's ended batches when
    it has enough of them. Judged as of the batch's last read."""
    if batch.is_ended:
        return None
    as_of = min(now, batch.last_fetched_at)
    if batch.final_only or not batch.counts_known:  # no counts that move to judge it by: its run time
        usual = usual_duration(batch.total, run_times, limits.stuck_min_history)
        if usual is not None:
            seconds, which = usual
            if (as_of - batch.created_at).total_seconds() > seconds:
                took = in_words(seconds, to_the_second=seconds < TO_THE_SECOND_UNDER)
                return f"Running since {when(batch.created_at)}: longer than 95% of {which} took ({took})."
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
    the requests that ran errored (of at least `error_rate_min_outcomes`, or of all its requests);
    for `ended_badly_hours` after the end."""
    if not batch.is_ended or not batch.ended_in_view:
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
    enough_ran = ran > 0 and ran >= min(limits.error_rate_min_outcomes, batch.total)
    if enough_ran and batch.errored * 100 > limits.ended_badly_percent * ran:
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


ALL_ACCOUNTS = "*"  # a budget of every account together
CENT = Decimal("0.01")


@dataclass(frozen=True)
class SpendFacts:
    """What an account (or ALL_ACCOUNTS) spent on `day` (UTC) and in its month up to it, estimated."""

    account: str
    day: date
    today: Decimal = Decimal(0)
    month: Decimal = Decimal(0)
    unpriced_today: int = 0  # tokens without a price: not in `today`
    unpriced_month: int = 0


@dataclass(frozen=True)
class Budget:
    account: str  # an account's key, or ALL_ACCOUNTS
    period: str  # "day" or "month"
    usd: Decimal
    near_percent: float | None  # the share that warns; None: no "nearly spent" alarm

    @property
    def rules(self) -> tuple[Rule, Rule]:
        """(nearly spent, spent) of this budget's period."""
        if self.period == "day":
            return Rule.BUDGET_DAY_NEAR, Rule.BUDGET_DAY_OVER
        return Rule.BUDGET_MONTH_NEAR, Rule.BUDGET_MONTH_OVER


def dollars(amount: Decimal) -> str:
    return f"${amount.quantize(CENT, rounding=ROUND_HALF_UP):,}"


def budget_alarms(budget: Budget, spend: SpendFacts) -> list[tuple[Rule, str]]:
    """The budget's alarms that hold: "nearly spent" from its share on, "spent" from the whole on (both
    while over); nothing while nothing is spent (a budget of $0 forbids any spend)."""
    daily = budget.period == "day"
    spent = spend.today if daily else spend.month
    unpriced = spend.unpriced_today if daily else spend.unpriced_month
    if spent <= 0:
        return []
    near, over = budget.rules
    found = []
    if budget.near_percent is not None and spent * 100 >= budget.usd * Decimal(str(budget.near_percent)):
        found.append(near)
    if spent >= budget.usd:
        found.append(over)
    if not found:
        return []
    who = "All accounts together" if budget.account == ALL_ACCOUNTS else "The account"
    when_spent = f"on {spend.day:%Y-%m-%d} (UTC)" if daily else f"in {spend.day:%B %Y} up to {spend.day:%Y-%m-%d} (UTC)"
    share = f"{spent * 100 / budget.usd:.0f}%" if budget.usd else "over a budget of $0"
    text = (
        f"{who} spent an estimated {dollars(spent)} of {'their' if budget.account == ALL_ACCOUNTS else 'its'} "
        f"{dollars(budget.usd)} {'daily' if daily else 'monthly'} budget {when_spent}: {share}"
    )
    if budget.near_percent is not None and over not in found:
        text += f" (warns from {number(budget.near_percent)}%)"
    text += ". Batches that ended then and those still running, at the price table's prices"
    text += f"; {unpriced:,} tokens without a price are not counted." if unpriced else "."
    return [(rule, text) for rule in found]


Key = tuple[str, str, int | None]  # (rule, account, stored batch pk or None for the account)


def conditions(snapshot: Snapshot, now: datetime) -> dict[Key, str]:
    """Every (rule, subject) whose condition holds at `now`, with its detail."""
    held: dict[Key, str] = {}
    for batch in snapshot.batches:
        limits = snapshot.limits_for(batch.account)
        run_times = snapshot.run_times.get(batch.account, ())
        found = (
            (Rule.STUCK, stuck(batch, limits, run_times, now)),
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
    for budget in snapshot.budgets:
        spend = snapshot.spend.get(budget.account) or SpendFacts(account=budget.account, day=now.astimezone(UTC).date())
        for rule, detail in budget_alarms(budget, spend):
            held[rule.value, budget.account, None] = detail
    return held
