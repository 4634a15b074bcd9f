"""The one shape of a result line, which each provider module's `parse_result_line` returns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

RESULT_TYPES = ("succeeded", "errored", "canceled", "expired")


@dataclass(frozen=True)
class ResultLine:
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


def dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


MAX_TEXT = 10_000


def as_text(value: Any) -> str:
    """A field shown as text: a string as it is, a number as JSON writes it, an object or list as
    JSON (never Python's repr of it), nothing as ""; capped, as one field must not fill a page."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False)[:MAX_TEXT]
    except (TypeError, ValueError):
        return ""


def token_count(value: Any) -> int | None:
    """A token count, or None: anything else upstream sends there must not reach a page or a CSV cell."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
