"""Template filters of spend: dollars as people read them."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template

from dashboard.spend.prices import KIND_LABELS

register = template.Library()

CENT = Decimal("0.01")


@register.filter
def usd(amount: Decimal | None) -> str:
    """`$1,234.57`, to the cent (half up); a cost above zero but under half a cent reads `under $0.01`."""
    if amount is None:
        return "—"
    if Decimal(0) < amount < CENT / 2:
        return "under $0.01"
    return f"${amount.quantize(CENT, rounding=ROUND_HALF_UP):,}"


@register.filter
def token_kinds(kinds: tuple[str, ...]) -> str:
    """("cache_read", "cache_write") → "cache reads and cache writes"."""
    labels = [KIND_LABELS.get(kind, kind) for kind in kinds]
    return " and ".join([", ".join(labels[:-1]), labels[-1]]) if len(labels) > 1 else "".join(labels)


@register.filter
def thousands(number: int) -> str:
    """12345678 → "12,345,678"."""
    return f"{number:,}"


@register.filter
def spent_by(spent, account_key: str):
    """The `Total` of `account_key` in a SpentToday (the list header's per-account line); None when it spent nothing."""
    return spent.by_account.get(account_key) if spent else None
