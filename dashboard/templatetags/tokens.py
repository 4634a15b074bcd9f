"""Template filters of a batch's tokens (the detail page's Tokens section)."""

from __future__ import annotations

from collections.abc import Iterable

from django import template

from dashboard.providers.usage import KINDS

register = template.Library()


@register.filter
def tokens_by_kind(models: Iterable) -> dict[str, int]:
    """Each kind's tokens over every model of the batch (items with a `tokens` dict by kind), and "total"."""
    totals = dict.fromkeys(KINDS, 0)
    for item in models:
        for kind in KINDS:
            totals[kind] += item.tokens.get(kind, 0)
    totals["total"] = sum(totals[kind] for kind in KINDS)
    return totals
