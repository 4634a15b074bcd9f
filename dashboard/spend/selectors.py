"""Reads of spend: a batch's tokens priced (the detail page). Cost is computed here from the stored tokens
and the current price table, never stored, so an override file applies to the past too."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from dashboard.batches.models import BatchTokens, StoredBatch

from .models import SpendDay
from .prices import KINDS, Estimate
from .table import current_table


@dataclass(frozen=True)
class ModelSpend:
    model: str  # "" when the provider did not say
    tokens: dict[str, int]
    requests: int
    estimate: Estimate | None  # None: no price for this model

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())

    @property
    def unpriced_kinds(self) -> tuple[str, ...]:
        return self.estimate.unpriced if self.estimate else ()


@dataclass(frozen=True)
class BatchSpend:
    models: tuple[ModelSpend, ...]
    tokens_source: str  # StoredBatch.TokensSource
    tokens_note: str

    @property
    def priced(self) -> tuple[ModelSpend, ...]:
        return tuple(item for item in self.models if item.estimate is not None)

    @property
    def unknown_models(self) -> tuple[ModelSpend, ...]:
        """Models with tokens but no price: their tokens are shown, their cost is not guessed."""
        return tuple(item for item in self.models if item.estimate is None and item.total_tokens)

    @property
    def total(self) -> Decimal:
        return sum((item.estimate.total for item in self.priced if item.estimate), Decimal(0))

    @property
    def as_of(self) -> dt.date | None:
        """The oldest date of the prices used."""
        dates = [item.estimate.entry.as_of for item in self.priced if item.estimate]
        return min(dates) if dates else None

    @property
    def negotiated(self) -> bool:
        """Some price came from the override file (PRICES_FILE)."""
        return any(item.estimate.entry.overridden for item in self.priced if item.estimate)

    @property
    def complete(self) -> bool:
        """Every token has a price, and the tokens themselves are not said to be partial."""
        return (
            bool(self.priced)
            and not self.unknown_models
            and not any(item.unpriced_kinds for item in self.priced)
            and not self.tokens_note
        )


def batch_spend(*, stored_batch_pk: int, provider: str) -> BatchSpend:
    """A stored batch's tokens per model, each priced at the current table (two queries)."""
    stored = StoredBatch.objects.filter(pk=stored_batch_pk).values("tokens_source", "tokens_note").first() or {}
    rows = BatchTokens.objects.filter(batch_id=stored_batch_pk).order_by("model").values("model", "requests", *KINDS)
    table = current_table()
    models = []
    for row in rows:
        tokens = {kind: row[kind] for kind in KINDS}
        models.append(
            ModelSpend(
                model=row["model"],
                tokens=tokens,
                requests=row["requests"],
                estimate=table.cost(tokens, row["model"], provider) if row["model"] else None,
            )
        )
    return BatchSpend(
        models=tuple(models),
        tokens_source=stored.get("tokens_source", ""),
        tokens_note=stored.get("tokens_note", ""),
    )


# The spend page: tokens added up by (account, model, day) in the rollup, priced per group here.


@dataclass(frozen=True)
class SpendGroup:
    account: str
    provider: str
    model: str
    day: dt.date  # the UTC day the batches ended; today for batches still running (an estimate)
    tokens: dict[str, int]
    batches: int
    running: bool  # batches not ended yet, counted today
    estimate: Estimate | None

    @property
    def cost(self) -> Decimal:
        return self.estimate.total if self.estimate else Decimal(0)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())

    @property
    def priced_fully(self) -> bool:
        return self.estimate is not None and self.estimate.complete

    @property
    def unpriced_tokens(self) -> int:
        """Tokens not in `cost`: all of a model without a price, or those of the kinds its entry does not price."""
        if self.estimate is None:
            return self.total_tokens
        return sum(self.tokens[kind] for kind in self.estimate.unpriced)


@dataclass(frozen=True)
class Total:
    key: str  # an account key, a model, or an ISO day
    cost: Decimal
    tokens: int
    unpriced_tokens: int  # tokens of models (or kinds) without a price: not in `cost`


@dataclass(frozen=True)
class SpendReport:
    start: dt.date
    end: dt.date
    groups: tuple[SpendGroup, ...]

    def _totals(self, key) -> list[Total]:
        sums: dict[str, list] = {}
        for group in self.groups:
            item = sums.setdefault(key(group), [Decimal(0), 0, 0])
            item[0] += group.cost
            item[1] += group.total_tokens
            item[2] += group.unpriced_tokens
        return [
            Total(key=name, cost=cost, tokens=tokens, unpriced_tokens=unpriced)
            for name, (cost, tokens, unpriced) in sums.items()
        ]

    def by_account(self) -> list[Total]:
        return sorted(self._totals(lambda group: group.account), key=lambda total: (-total.cost, total.key))

    def by_model(self) -> list[Total]:
        return sorted(self._totals(lambda group: group.model), key=lambda total: (-total.cost, total.key))

    def by_day(self) -> list[Total]:
        """Every day of the range, oldest first, days without spend included (zero)."""
        found = {total.key: total for total in self._totals(lambda group: group.day.isoformat())}
        days = [self.start + dt.timedelta(days=offset) for offset in range((self.end - self.start).days + 1)]
        return [
            found.get(day.isoformat(), Total(key=day.isoformat(), cost=Decimal(0), tokens=0, unpriced_tokens=0))
            for day in days
        ]

    @property
    def total(self) -> Decimal:
        return sum((group.cost for group in self.groups), Decimal(0))

    @property
    def unpriced_tokens(self) -> int:
        return sum(total.unpriced_tokens for total in self.by_account())

    @property
    def unknown_models(self) -> list[str]:
        return sorted({group.model for group in self.groups if group.estimate is None})


def _group(row: dict, *, day: dt.date, running: bool, table) -> SpendGroup:
    tokens = {kind: int(row[kind] or 0) for kind in KINDS}
    return SpendGroup(
        account=row["account"],
        provider=row["provider"],
        model=row["model"],
        day=day,
        tokens=tokens,
        batches=row["batches"],
        running=running,
        estimate=table.cost(tokens, row["model"], row["provider"]) if row["model"] else None,
    )


# Not ended: processing >= 0 always holds, and lets SQLite's planner read their partial index
# (stored_batch_running_counts) rather than every row of each account (bench/spend.py).
RUNNING = {"is_ended": False, "processing__gte": 0}


def _tokens_of(*batches) -> dict[tuple[str, str, str], dict]:
    """The tokens of these few batches (StoredBatch queries, each read by a partial index) by account,
    provider and model, with how many batches: their batches, then their rows by batch, so that no
    planner reads every row of BatchTokens to join them."""
    found = {
        pk: (account, provider)
        for query in batches
        for pk, account, provider in query.values_list("pk", "account", "provider")
    }
    totals: dict[tuple[str, str, str], dict] = {}
    if not found:
        return totals
    for row in BatchTokens.objects.filter(batch_id__in=list(found)).values("batch_id", "model", *KINDS):
        item = totals.setdefault((*found[row["batch_id"]], row["model"]), {**dict.fromkeys(KINDS, 0), "batches": 0})
        for kind in KINDS:
            item[kind] += row[kind]
        item["batches"] += 1  # one row per batch and model
    return totals


def spend_report(*, account_keys: list[str], start: dt.date, end: dt.date, today: dt.date) -> SpendReport:
    """Spend of these accounts from `start` to `end` (UTC days, both included): the batches that ended on
    each day, read from the rollup (SpendDay: a few rows a day, whatever the store holds), and those still
    running counted today, read from the store's few running rows. Two queries; cost computed per group."""
    table = current_table()
    ended = SpendDay.objects.filter(account__in=account_keys, day__gte=start, day__lte=end, batches__gt=0)
    groups = [
        _group(row, day=row["day"], running=False, table=table)
        for row in ended.values("account", "provider", "model", "day", *KINDS, "batches")
    ]
    if start <= today <= end:
        running = StoredBatch.objects.filter(account__in=account_keys, gone_at__isnull=True, **RUNNING)
        groups += [
            _group(
                {**row, "account": account, "provider": provider, "model": model}, day=today, running=True, table=table
            )
            for (account, provider, model), row in _tokens_of(running).items()
        ]
    groups.sort(key=lambda group: (group.day, group.account, group.model, group.running))
    return SpendReport(start=start, end=end, groups=tuple(groups))


@dataclass(frozen=True)
class SpentToday:
    """The list header's "spent today": per account key and in total, batches ended today (UTC) and running."""

    by_account: dict[str, Total]
    total: Total


def spent_today(*, account_keys: list[str], today: dt.date) -> SpentToday:
    report = spend_report(account_keys=account_keys, start=today, end=today, today=today)
    by_account = {total.key: total for total in report.by_account()}
    return SpentToday(
        by_account=by_account,
        total=Total(
            key="",
            cost=report.total,
            tokens=sum(total.tokens for total in by_account.values()),
            unpriced_tokens=report.unpriced_tokens,
        ),
    )


def stored_tokens() -> dict[tuple[str, str, str], dict[str, int]]:
    """Every stored batch's tokens, by (account, provider, model) and kind (/metrics): the rollup's days
    added up, and the batches it does not hold read through their partial indexes: those not ended yet
    and those ended without an end time (gone while running). Four queries, none reading every stored row."""
    totals: dict[tuple[str, str, str], dict[str, int]] = {}
    rollup = SpendDay.objects.filter(batches__gt=0).values("account", "provider", "model").order_by()
    running = StoredBatch.objects.filter(**RUNNING)
    undated = StoredBatch.objects.filter(is_ended=True, ended_at__isnull=True)
    rows = [
        *(
            ((row["account"], row["provider"], row["model"]), row)
            for row in rollup.annotate(**{kind: Sum(kind) for kind in KINDS})
        ),
        *_tokens_of(running, undated).items(),
    ]
    for key, row in rows:
        item = totals.setdefault(key, dict.fromkeys(KINDS, 0))
        for kind in KINDS:
            item[kind] += int(row[kind] or 0)
    return totals
