"""Evaluating the alarm rules (rules.py) against the store: what the poller calls after each cycle.

`evaluate(now)` reads what the rules need in a few queries (not one per batch), then in one
transaction opens an alarm for each (rule, subject) newly found, moves `last_seen_at` on for those
still found, and resolves those no longer found; it returns what opened and what resolved, and
hands them to `alarms_changed`, the one place notifications hook in. The poller calls it after
each cycle, one poller at a time: the one holding the evaluator's lease (`claim_evaluator`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import ModuleType

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.lookups import GreaterThan
from django.utils import timezone

from .. import leases, providers
from ..accounts import configured_secrets
from ..batches.models import AccountState, StoredBatch
from ..batches.run_times import ended_run_times, failed_statuses
from ..redaction import redact
from .models import EVALUATOR_PK, Alarm, AlarmEvaluator, AlarmThreshold
from .rules import (
    ALL_ACCOUNTS,
    AccountFacts,
    AccountRunTimes,
    BatchFacts,
    Budget,
    Key,
    Limits,
    Rule,
    Snapshot,
    SpendFacts,
    account_limits,
    conditions,
    default_limits,
)

logger = logging.getLogger(__name__)

# A batch ends within a day or so of its creation: those created longer ago than this before the
# ended-badly window began cannot have ended in it (keeps that query on the created_at index).
ENDED_WITHIN = timedelta(days=3)
DETAIL_LIMIT = 2000


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
    "counts_known",
    "created_at",
    "expires_at",
    "ended_at",
    "last_changed_at",
    "last_fetched_at",
    "seen_running",
)


def configured_account_keys() -> list[str]:
    from ..accounts import configured_accounts

    return [account.key for account in configured_accounts()]


def load_snapshot(now: datetime, account_keys: Iterable[str]) -> Snapshot:
    """What the rules read at `now` for these accounts: their health, their running batches, those
    that ended within the ended-badly window, and (for providers that report outcomes only at the
    end) how long their ended batches took (batches/run_times.py). One query each, plus one per account with running
    batches of such a provider (its run times), and two for the spend when a budget is set (thresholds)."""
    keys = sorted(set(account_keys))
    defaults = default_limits()
    thresholds = list(AlarmThreshold.objects.filter(account__in=[*keys, ALL_ACCOUNTS]))
    budget_rules = {*BUDGET_RULES, *NEAR_RULES}
    limits = account_limits(defaults, [row for row in thresholds if row.rule not in budget_rules])

    def limits_for(account: str) -> Limits:
        return limits.get(account, defaults)

    accounts = []
    first_success: dict[str, datetime | None] = {}
    for row in AccountState.objects.filter(account__in=keys).values(
        "account", "consecutive_failures", "last_success_at", "last_error_at", "last_error", "first_success_at"
    ):
        first_success[row["account"]] = row.pop("first_success_at")
        accounts.append(AccountFacts(**row))
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
        in_view = ended_in_view(
            seen_running=row.pop("seen_running"),
            created_at=row["created_at"],
            first_success_at=first_success.get(row["account"]),
        )
        batches.append(BatchFacts(**row, final_only=kind.final_only, failed_status=is_failure, ended_in_view=in_view))

    wanting = {
        b.account
        for b in batches
        if (b.final_only or not b.counts_known) and not b.is_ended and limits_for(b.account).on(Rule.STUCK)
    }
    failed_anywhere = set().union(*(kind.failed for kind in known.values()))
    run_times = {
        account: AccountRunTimes(ended_run_times(account=account, failed=failed_anywhere))
        for account in sorted(wanting)
    }
    budgets = budgets_of([row for row in thresholds if row.rule in budget_rules])
    return Snapshot(
        batches=batches,
        accounts=accounts,
        run_times=run_times,
        limits=limits,
        defaults=defaults,
        budgets=budgets,
        spend=load_spend(now, keys, budgets),
    )


BUDGET_RULES = {Rule.BUDGET_DAY_OVER: "day", Rule.BUDGET_MONTH_OVER: "month"}
NEAR_RULES = {Rule.BUDGET_DAY_NEAR: "day", Rule.BUDGET_MONTH_NEAR: "month"}


def budgets_of(thresholds: Iterable[AlarmThreshold]) -> list[Budget]:
    """The budgets these threshold rows set: each `*_over` row with a value (US dollars), switched on; each
    warns at its `*_near` row's share, else ALARM_BUDGET_NEAR_PERCENT (none when that row is switched off)."""
    rows = [
        {"account": row.account, "rule": row.rule, "enabled": row.enabled, "value": row.value} for row in thresholds
    ]
    over = {(row["account"], BUDGET_RULES[row["rule"]]): row for row in rows if row["rule"] in BUDGET_RULES}
    near = {(row["account"], NEAR_RULES[row["rule"]]): row for row in rows if row["rule"] in NEAR_RULES}
    budgets = []
    for (account, period), row in sorted(over.items()):
        if not row["enabled"] or row["value"] is None:
            continue
        warn = near.get((account, period))
        if warn is not None and not warn["enabled"]:
            near_percent = None
        elif warn is not None and warn["value"] is not None:
            near_percent = float(warn["value"])
        else:
            near_percent = float(settings.ALARM_BUDGET_NEAR_PERCENT)
        budgets.append(
            Budget(account=account, period=period, usd=Decimal(str(row["value"])), near_percent=near_percent)
        )
    return budgets


def load_spend(now: datetime, account_keys: Sequence[str], budgets: Sequence[Budget]) -> dict[str, SpendFacts]:
    """What the accounts with a budget spent today and this month (UTC), and all of them together when
    that has a budget; no query at all when there is no budget (spend/selectors.py: two otherwise)."""
    if not budgets:
        return {}
    from ..spend.selectors import spend_report

    everyone = any(budget.account == ALL_ACCOUNTS for budget in budgets)
    keys = list(account_keys) if everyone else sorted({budget.account for budget in budgets} & set(account_keys))
    today = now.astimezone(UTC).date()
    report = spend_report(account_keys=keys, start=today.replace(day=1), end=today, today=today)
    sums: dict[str, list] = {}
    for group in report.groups:
        unpriced = group.unpriced_tokens
        for subject in (group.account, ALL_ACCOUNTS):
            item = sums.setdefault(subject, [Decimal(0), Decimal(0), 0, 0])
            item[1] += group.cost
            item[3] += unpriced
            if group.day == today:
                item[0] += group.cost
                item[2] += unpriced
    return {
        subject: SpendFacts(
            account=subject,
            day=today,
            today=spent_today,
            month=month,
            unpriced_today=unpriced_today,
            unpriced_month=unpriced_month,
        )
        for subject, (spent_today, month, unpriced_today, unpriced_month) in sums.items()
    }


def ended_in_view(*, seen_running: bool, created_at: datetime, first_success_at: datetime | None) -> bool:
    """Whether a batch's end happened while the dashboard watched its account: it saw the batch
    running, or the batch was created after the account's first successful poll (created and ended
    between two polls). Otherwise it is history the first poll or the backfill filled in; until an
    account's first poll succeeds, only what was seen running."""
    return seen_running or (first_success_at is not None and created_at >= first_success_at)


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

    The notification outbox writes its rows here (notifications/outbox.py, write_outbox): in the same
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
    AlarmEvaluator.objects.get_or_create(pk=EVALUATOR_PK)
    with transaction.atomic():
        list(AlarmEvaluator.objects.select_for_update().filter(pk=EVALUATOR_PK).values_list("pk"))
        held = conditions(load_snapshot(now, keys), now)
        result = _apply(held, now)
        if result.opened or result.resolved:
            alarms_changed(result.opened, result.resolved)
        result.seconds = time.perf_counter() - started
        AlarmEvaluator.objects.filter(pk=EVALUATOR_PK).update(
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


# --- one evaluator at a time: its lease ------------------------------------------------------------------


EVALUATOR_LEASE = leases.LeaseFields(owner="lease_owner", until="lease_until")


def claim_evaluator(owner: str, *, now: datetime, seconds: float) -> bool:
    """Take (or renew) the evaluator's lease: True if `owner` holds it now. Held until `seconds`
    after `now`, so a killed poller's turn passes to another once it expires."""
    AlarmEvaluator.objects.get_or_create(pk=EVALUATOR_PK)
    evaluator = AlarmEvaluator.objects.filter(pk=EVALUATOR_PK)
    until = now + timedelta(seconds=seconds)
    return bool(leases.take(evaluator, fields=EVALUATOR_LEASE, owner=owner, now=now, until=until))


def release_evaluator(owner: str) -> None:
    leases.release(AlarmEvaluator.objects.filter(pk=EVALUATOR_PK), fields=EVALUATOR_LEASE, owner=owner)


def evaluation_failed(error: BaseException) -> None:
    """Note on the evaluator's row why the last evaluation failed (the poller logs it too)."""
    message = redact(f"{type(error).__name__}: {error}", configured_secrets())[:DETAIL_LIMIT]
    AlarmEvaluator.objects.filter(pk=EVALUATOR_PK).update(last_error=message)
