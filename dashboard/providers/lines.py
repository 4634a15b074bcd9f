"""The one shape of a result line, which each provider module's `parse_result_line` returns."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from .usage import Kinds

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
    # The tokens billed for it, by disjoint kind (a plain tuple in KINDS order, or a Usage); None: not
    # reported, or a usage block not to be trusted.
    usage: Kinds | None = None


EMPTY: dict = {}  # what a missing or odd object reads as (never written to)


def dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


MAX_TEXT = 10_000

# The fast decoder (results.parse_line) reads an integer beyond 64 bits as a float. Every float (or
# object or list, which may hold one) that a field reads is counted here; parse_line reads a line
# again with the exact decoder when the count moved while its fields were read. One count for every
# thread: another thread's float only costs this one an exact read it did not need.
approximate_reads = [0]


def as_text(value: Any) -> str:
    """A field shown as text: a string as it is, a number as JSON writes it, an object or list as
    JSON (never Python's repr of it), nothing as ""; capped, as one field must not fill a page."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if value is None:
        return ""
    if isinstance(value, float | dict | list):
        approximate_reads[0] += 1
    try:
        return json.dumps(value, ensure_ascii=False)[:MAX_TEXT]
    except (TypeError, ValueError, RecursionError):  # RecursionError: nested deeper than json writes
        return ""


def token_count(value: Any) -> int | None:
    """A token count, or None: anything else upstream sends there must not reach a page or a CSV cell."""
    if value.__class__ is int:
        return value
    if isinstance(value, float):
        approximate_reads[0] += 1
    return value if isinstance(value, int) and not isinstance(value, bool) else None
