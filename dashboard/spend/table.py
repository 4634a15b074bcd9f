"""The price table this process uses: the shipped one with settings.PRICES_FILE's entries, read once.

A malformed override file is an error at start (a system check, `spend.E001`), never a silent zero.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.core import checks

from .prices import Estimate, PriceFileError, PriceTable, load_table


@functools.cache
def _table(override_path: str) -> PriceTable:
    return load_table(override_path or None)


def current_table() -> PriceTable:
    return _table(settings.PRICES_FILE)


def cost(tokens_by_kind: dict[str, int], model: str, provider: str) -> Estimate | None:
    """What these tokens cost as a batch at the current prices; None when the model's price is unknown."""
    return current_table().cost(tokens_by_kind, model, provider)


@checks.register()
def check_price_table(**kwargs: object) -> list[checks.CheckMessage]:
    try:
        _table(settings.PRICES_FILE)
    except PriceFileError as error:
        return [
            checks.Error(
                f"The price table cannot be read: {error}",
                hint="Fix the file PRICES_FILE names (in the format of dashboard/spend/prices.json) or unset it.",
                id="spend.E001",
            )
        ]
    return []
