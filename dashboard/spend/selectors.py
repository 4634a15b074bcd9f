"""Reads of spend: a batch's tokens priced (the detail page). Cost is computed here from the stored tokens
and the current price table, never stored, so an override file applies to the past too."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

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
