"""Reads of spend: a batch's tokens priced (the detail page). Cost is computed here from the stored tokens
and the current price table, never stored, so an override file applies to the past too."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, DateField, Func, Sum

from dashboard.batches.models import BatchTokens, StoredBatch

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


# The spend page: tokens summed in SQL by (account, model, day), priced per group here.


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


class UtcDay(Func):
    """The UTC day of a timestamp, by the database's own date function: Django's TruncDate calls a Python
    function per row on SQLite, which made a month's report several times slower (bench/spend.py)."""

    output_field = DateField()
    template = "CAST(%(expressions)s AS DATE)"

    def as_sqlite(self, compiler, connection, **extra_context):
        # SQLite keeps Django's timestamps as UTC text, "YYYY-MM-DD HH:MM:SS[.ffffff]".
        return super().as_sql(compiler, connection, template="DATE(%(expressions)s)", **extra_context)

    def as_postgresql(self, compiler, connection, **extra_context):
        template = "((%(expressions)s) AT TIME ZONE 'UTC')::date"
        return super().as_sql(compiler, connection, template=template, **extra_context)


_SUMS = {**{kind: Sum(kind) for kind in KINDS}, "batches": Count("batch", distinct=True)}


def _grouped(rows, *, day_of: tuple[str, ...]) -> list[dict]:
    return list(rows.values("batch__account", "batch__provider", "model", *day_of).annotate(**_SUMS))


def spend_report(*, account_keys: list[str], start: dt.date, end: dt.date, today: dt.date) -> SpendReport:
    """Spend of these accounts from `start` to `end` (UTC days, both included): the batches that ended on
    each day, and those still running counted today. Two aggregate queries; cost computed per group."""
    mine = BatchTokens.objects.filter(batch__account__in=account_keys)
    first = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    after = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    ended = mine.filter(batch__is_ended=True, batch__ended_at__gte=first, batch__ended_at__lt=after).annotate(
        day=UtcDay("batch__ended_at")
    )
    rows = [(row, row["day"], False) for row in _grouped(ended, day_of=("day",))]
    if start <= today <= end:
        # processing >= 0 always holds: it lets SQLite's planner read the running batches' partial index
        # (stored_batch_running_counts) rather than every row of each account (bench/spend.py).
        running = mine.filter(batch__is_ended=False, batch__processing__gte=0, batch__gone_at__isnull=True)
        rows += [(row, today, True) for row in _grouped(running, day_of=())]
    table = current_table()
    groups = []
    for row, day, is_running in rows:
        tokens = {kind: int(row[kind] or 0) for kind in KINDS}
        provider = row["batch__provider"]
        groups.append(
            SpendGroup(
                account=row["batch__account"],
                provider=provider,
                model=row["model"],
                day=day,
                tokens=tokens,
                batches=row["batches"],
                running=is_running,
                estimate=table.cost(tokens, row["model"], provider) if row["model"] else None,
            )
        )
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
