"""Result lines of every provider in one shape, read as a stream so no batch is held in memory."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson

from .. import providers
from ..providers.lines import RESULT_TYPES, ResultLine, approximate_reads  # the providers make result lines
from ..providers.usage import KINDS, Usage

ORDER = {kind: position for position, kind in enumerate((*RESULT_TYPES, "invalid"))}


# A JSON escape of a UTF-16 surrogate (\ud800-\udfff). Legal JSON, but a lone one decodes to a
# string no page or file can encode: such lines have their text made safe before use.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _safe(value: Any) -> Any:
    """`value` with every lone surrogate in its strings replaced by U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, dict):
        return {_safe(key): _safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_safe(item) for item in value]
    return value


def _invalid(number: int, raw: str, source: str, message: str) -> ResultLine:
    return ResultLine(number, "", "invalid", source, error_type="invalid_json", error_message=message, raw=raw)


def parse_line(provider: str, number: int, line: bytes, source: str = "") -> ResultLine:
    """One result line. orjson reads it (several times faster than json); whatever orjson refuses
    (a lone surrogate, NaN, invalid UTF-8, nesting past 1,024 levels...) or may have rounded (an
    integer beyond 64 bits, which it reads as a float) is read again by `parse_line_exactly`."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return parse_line_exactly(provider, number, line, source)
    if data.__class__ is not dict:
        return _invalid(
            number,
            line.decode("utf-8", errors="replace"),
            source,
            "This line is not a JSON object.",
        )
    seen = approximate_reads[0]
    parsed = providers.module(provider).parse_result_line(number, data, line.decode("utf-8", errors="replace"), source)
    if approximate_reads[0] != seen:
        return parse_line_exactly(provider, number, line, source)
    return parsed


def parse_line_exactly(provider: str, number: int, line: bytes, source: str = "") -> ResultLine:
    """One result line read by Python's json, lone surrogates made safe: any line, at a quarter of the speed."""
    raw = line.decode("utf-8", errors="replace")
    try:
        data = json.loads(raw)
        if _SURROGATE_ESCAPE.search(raw):
            data = _safe(data)
    except RecursionError:  # nesting deeper than the decoder allows
        return _invalid(number, raw, source, "This line is not valid JSON we can read: it nests too deeply.")
    except ValueError as error:
        where = getattr(error, "pos", None)
        at = f" (unreadable from character {where + 1})" if isinstance(where, int) else ""
        return _invalid(number, raw, source, f"This line is not valid JSON{at}.")
    if not isinstance(data, dict):
        return _invalid(number, raw, source, "This line is not a JSON object.")
    return providers.module(provider).parse_result_line(number, data, raw, source)


def parse_stream(provider: str, lines: Iterable[tuple[str, bytes]]) -> Iterator[ResultLine]:
    """(source, line) pairs in, ResultLines out, one at a time."""
    for number, (source, line) in enumerate(lines, start=1):
        yield parse_line(provider, number, line, source)


def matches(line: ResultLine, *, kind: str = "", source: str = "", custom_id: str = "") -> bool:
    if kind and line.type != kind:
        return False
    if source and line.source != source:
        return False
    if custom_id and custom_id.lower() not in line.custom_id.lower():
        return False
    return True


@dataclass(frozen=True)
class ResultPage:
    lines: list[ResultLine]
    offset: int
    has_more: bool


def page_of(lines: Iterable[ResultLine], *, offset: int, size: int, **filters: str) -> ResultPage:
    """Skip `offset` matching lines and keep `size`; reading stops as soon as the page is full."""
    selected = (line for line in lines if matches(line, **filters))
    window = list(islice(selected, offset, offset + size + 1))
    return ResultPage(lines=window[:size], offset=offset, has_more=len(window) > size)


@dataclass(frozen=True)
class ModelTokens:
    """The tokens of the lines of one model (as the lines name it; "" when they name none), and how
    many lines' usage they add up."""

    model: str
    usage: Usage
    requests: int


@dataclass(frozen=True)
class ErrorSummary:
    by_type: list[tuple[str, int]]  # (result type, count), in RESULT_TYPES order
    errors: list[tuple[str, str, int]]  # (error type, message, count), most frequent first
    total: int
    # Counted in the same pass, stored apart (BatchTokens), so not part of what a stored summary
    # (ResultsSummary.summary) reads back: not compared.
    tokens: list[ModelTokens] = field(default_factory=list, compare=False)  # most tokens first
    # Lines that were billed, or may have been, whose usage is unknown: succeeded (or unreadable)
    # lines without a usage block we trust. Their tokens are in no sum above.
    usage_unknown: int = field(default=0, compare=False)


# Lines that bill tokens: a line of another type (errored, canceled, expired) without usage bills none.
_BILLED = frozenset(("succeeded", "invalid"))
MAX_MODEL = 200  # characters of a model name kept (BatchTokens.model)
HELD_LINES = 256  # lines whose usage summarize holds before adding it up (few: what is held stays in cache)


MESSAGE_SHOWN = 300  # characters of an error message a summary keeps
_MESSAGE_READ = 600  # ... of which this many are read when the message is cleaned first (a key cut at 300 included)


def summarize(lines: Iterable[ResultLine], *, top: int = 20, clean: Callable[[str], str] | None = None) -> ErrorSummary:
    """Counts by result type and by (error type, message); memory grows with distinct errors only.

    `clean` (redaction, for a summary that is stored) is applied to each distinct error type and
    message before messages are cut to MESSAGE_SHOWN characters; errors that read the same after it
    are counted as one."""
    # Not a Counter: as Counter defines __delitem__, its item assignment goes through a Python-level
    # slot (~900 machine instructions a line under callgrind, against ~250 for a dict's).
    by_type: dict[str, int] = {}
    errors: Counter = Counter()
    total = 0
    kept = MESSAGE_SHOWN if clean is None else _MESSAGE_READ
    # The usage of the current model's lines is held as a flat list of counts (a batch is mostly of one
    # model), added up by column into that model's sums when a line names another model and after
    # HELD_LINES lines (counted by `total`, which the error summary keeps anyway): one list extension
    # per line, the additions done in C. Memory grows with distinct models only.
    sums: dict[str, list[int]] = {}
    model: str | None = None
    held: list[int] = []
    flush_at = 0
    unknown = 0
    for line in lines:
        total += 1
        kind = line.type
        by_type[kind] = by_type.get(kind, 0) + 1
        if kind == "errored" or kind == "invalid":
            errors[(line.error_type, line.error_message[:kept])] += 1
        usage = line.usage
        if usage is None:
            if kind in _BILLED:
                unknown += 1
            continue
        if line.model != model or total >= flush_at:
            _add(sums, model, held)
            model, held, flush_at = line.model, [], total + HELD_LINES
        held.extend(usage)
    _add(sums, model, held)
    if clean is not None:
        cleaned: Counter = Counter()
        for (error_type, message), count in errors.items():  # first seen first, as before: ties keep that order
            cleaned[(clean(error_type), clean(message)[:MESSAGE_SHOWN])] += count
        errors = cleaned
    return ErrorSummary(
        by_type=sorted(by_type.items(), key=lambda item: ORDER.get(item[0], len(ORDER))),
        errors=[(kind, message, count) for (kind, message), count in errors.most_common(top)],
        total=total,
        tokens=_by_model(sums, clean),
        usage_unknown=unknown,
    )


def _add(sums: dict[str, list[int]], model: str | None, held: list[int]) -> None:
    """Adds the usage `held` (the five counts of each line, one line after another) to `model`'s sums
    (the five kinds and the number of lines)."""
    if not held:
        return
    kept = sums.setdefault(model, [0, 0, 0, 0, 0, 0])
    width = len(KINDS)
    for position in range(width):
        kept[position] += sum(held[position::width])
    kept[width] += len(held) // width


def _by_model(sums: dict[str, list[int]], clean: Callable[[str], str] | None) -> list[ModelTokens]:
    """Per model as stored: names cut to MAX_MODEL characters (and cleaned, for a stored summary);
    lines whose model names differ only beyond that are one model."""
    merged: dict[str, list[int]] = {}
    for model, counts in sums.items():
        name = (clean(model) if clean is not None else model).strip()[:MAX_MODEL]
        kept = merged.setdefault(name, [0, 0, 0, 0, 0, 0])
        for position, value in enumerate(counts):
            kept[position] += value
    tallies = [ModelTokens(model, Usage(*counts[:5]), counts[5]) for model, counts in merged.items()]
    return sorted(tallies, key=lambda tally: (-tally.usage.total, tally.model))


CSV_COLUMNS = (
    "line",
    "custom_id",
    "type",
    "source",
    "model",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "error_type",
    "error_message",
    # The tokens billed, by disjoint kind (they add up to the billed total; input_tokens and
    # output_tokens above are the provider's own counts, which may include cached and reasoning
    # tokens); empty when the line's usage is unknown.
    "billed_input_tokens",
    "billed_cache_read_tokens",
    "billed_cache_write_tokens",
    "billed_output_tokens",
    "billed_reasoning_tokens",
)
_NO_USAGE = ("", "", "", "", "")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """Upstream text must not become a spreadsheet formula when the CSV is opened."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_row(line: ResultLine) -> list[str]:
    """The CSV cells of `line`, every upstream text passed through `safe_cell` (written out here: it
    runs for every line of an export)."""
    number, custom_id, kind, source, model, stop_reason, input_tokens, output_tokens, error_type, message, _, usage = (
        line
    )
    return [
        str(number),
        "'" + custom_id if custom_id.startswith(FORMULA_STARTS) else custom_id,
        kind,
        source,
        "'" + model if model.startswith(FORMULA_STARTS) else model,
        "'" + stop_reason if stop_reason.startswith(FORMULA_STARTS) else stop_reason,
        "" if input_tokens is None else str(input_tokens),
        "" if output_tokens is None else str(output_tokens),
        "'" + error_type if error_type.startswith(FORMULA_STARTS) else error_type,
        "'" + message if message.startswith(FORMULA_STARTS) else message,
        *(_NO_USAGE if usage is None else map(str, usage)),
    ]
