"""The one shape of a result line, which each provider module's `parse_result_line` returns."""

from __future__ import annotations

import json
import threading
from typing import Any, NamedTuple

RESULT_TYPES = ("succeeded", "errored", "canceled", "expired")


class ResultLine(NamedTuple):
    """Immutable, and a tuple: made 100,000 times for a whole batch, it must cost little to build."""

    number: int  # 1-based position in the stream
    custom_id: str
    type: str  # succeeded | errored | canceled | expired | invalid
    source: str = ""  # the result source the line came from, for providers whose lines name it (OpenAI's files)
    model: str = ""
    stop_reason: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    error_type: str = ""
    error_message: str = ""
    raw: str = ""


EMPTY: dict = {}  # what a missing or odd object reads as (never written to)


def dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


MAX_TEXT = 10_000

# The fast decoder (results.parse_line) reads an integer beyond 64 bits as a float. A float (or
# anything that may hold one) reaching a field is counted here, per thread; parse_line then reads
# that line again with the exact decoder, so a field never shows a rounded number.
_approximate = threading.local()


def approximate_values() -> int:
    """How many floats (or objects and lists, which may hold some) fields of this thread have read."""
    return getattr(_approximate, "count", 0)


def _noted_approximate() -> None:
    _approximate.count = getattr(_approximate, "count", 0) + 1


def as_text(value: Any) -> str:
    """A field shown as text: a string as it is, a number as JSON writes it, an object or list as
    JSON (never Python's repr of it), nothing as ""; capped, as one field must not fill a page."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if value is None:
        return ""
    if isinstance(value, float | dict | list):
        _noted_approximate()
    try:
        return json.dumps(value, ensure_ascii=False)[:MAX_TEXT]
    except (TypeError, ValueError, RecursionError):  # RecursionError: nested deeper than json writes
        return ""


def token_count(value: Any) -> int | None:
    """A token count, or None: anything else upstream sends there must not reach a page or a CSV cell."""
    if value.__class__ is int:
        return value
    if isinstance(value, float):
        _noted_approximate()
    return value if isinstance(value, int) and not isinstance(value, bool) else None
