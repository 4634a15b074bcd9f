"""What counting tokens adds to the results pass of a 100,000-line batch (issue 21: under 10%).

    .venv/bin/python bench/tokens.py
    .venv/bin/python bench/tokens.py --lines 20 --rounds 1 --slice-lines 10   # small (tests/bench: that it runs)

The results pass is what services.error_summary runs over a batch's results file, less the network
and the store: the file's lines split out of its 64 KiB chunks (transport.jsonl_lines), each parsed
(results.parse_stream, the provider's parse_result_line) and counted (results.summarize): the goal
row. A second row times parse and summary alone, on lines already split: the share tokens take there.
*With tokens* is that pass as it is: each line's usage block read into the five disjoint kinds
(dashboard/providers/usage.py) and added up per model in the same loop. *Without* is the pass as it
is with its tokens taken out, in the same process: the provider's parse_result_line and summarize's
loop as they were at commit cf0367e, before tokens (copies below), with what got cheaper since for
reasons of its own brought in too (summarize counts result types in a plain dict, not a Counter;
Gemini's parser reads no error fields on a response line), so that those savings are not credited to
the tokens. Part of what reading usage costs is paid back by reading each count once (the line's own
input/output figures come from the checked usage, not a second lookup). Under callgrind
(instructions, not time: 20,000 of these lines parsed and summarized, PYTHONHASHSEED=0, three passes less
one) the tokens' own share is +8.1% for Gemini (35,915 -> 38,829 a line), +6.5% for OpenAI, +5.1% for
Azure and +4.9% for Anthropic.

The lines are the simulator's own (realistic usage: cache reads and writes for Anthropic, cached and
reasoning tokens for OpenAI and Gemini, 10% errored lines for Anthropic, Azure and Gemini), made in
memory: no database, no HTTP. Every provider whose results the dashboard reads has its row; Amazon
Bedrock's has none, as its records are in S3, which the dashboard does not read (its tokens are
unknown, said so on the page). Both passes run in the same process, in CPU time, alternated slice
by slice (`measure`), the fastest of ROUNDS kept for each slice; the load average is printed.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import repeat
from pathlib import Path

import httpx

from dashboard.providers import anthropic
from dashboard.providers.lines import EMPTY, RESULT_TYPES, ResultLine, as_text, token_count
from dashboard.providers.transport import jsonl_lines

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOTAL = 100_000
ROUNDS = 12
SLICE_LINES = 10_000
TARGET = 1.10


def configure() -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "SQLITE_PATH": str(Path(tempfile.mkdtemp(prefix="bench-tokens-")) / "unused.sqlite3"),
            "SIMULATOR_ENABLED": "1",
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-" + "x" * 50,
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()


def anthropic_lines(total: int) -> list[bytes]:
    """A `total`-request Anthropic batch's results as the simulator writes them (10% errored)."""
    from datetime import UTC, datetime

    from dashboard.simulator.anthropic_api import line_json, result_body_of
    from dashboard.simulator.progression import Outcome, Plan

    plan = Plan(
        total=total,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        seed=7,
        processing_seconds=1,
        cancel_grace_seconds=1,
        error_percent=10,
    )
    lines = []
    for index in range(total):
        rank = plan.rank_of(index)
        body = result_body_of(
            plan.fate(rank),
            model="claude-sonnet-4-5",
            message_id=f"msg_01{index:022d}",
            text=f"Simulated answer #{index}.",
            stop_reason="end_turn",
            input_tokens=plan.input_tokens(rank),
            output_tokens=plan.output_tokens(rank),
            cache_read=plan.cache_read_tokens(rank),
            cache_write=plan.cache_write_tokens(rank),
            error=("overloaded_error", "Overloaded"),
            request_id=f"req_011C{index:020d}",
        )
        assert plan.fate(rank) is not Outcome.EXPIRED
        lines.append(line_json(f"req-{index:06d}", body).encode())
    return lines


def openai_lines(total: int, model: str = "o4-mini", error_percent: int = 0) -> list[bytes]:
    """`total` lines of an OpenAI (or Azure OpenAI) batch's output and error files, as the simulator
    writes them: a chat completion per succeeded request, an HTTP 400 line per errored one."""
    import json
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from dashboard.simulator.openai_api import FAILED_RESPONSE, response_body
    from dashboard.simulator.progression import Outcome, Plan

    plan = Plan(
        total=total,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        seed=7,
        processing_seconds=1,
        cancel_grace_seconds=1,
        error_percent=error_percent,
    )
    batch = SimpleNamespace(
        public_id="batch_bench", endpoint="/v1/chat/completions", model=model, created_at=plan.created_at
    )
    lines = []
    for index in range(total):
        rank = plan.rank_of(index)
        if plan.fate(rank) is Outcome.SUCCEEDED:
            response = {
                "status_code": 200,
                "request_id": f"req_{index}",
                "body": response_body(batch, plan, index, rank, model),
            }
        else:
            response = {"status_code": 400, "request_id": f"req_{index}", "body": {"error": FAILED_RESPONSE}}
        line = {"id": f"batch_req_{index}", "custom_id": f"req-{index:06d}", "response": response, "error": None}
        lines.append(json.dumps(line, separators=(",", ":")).encode())
    return lines


def azure_lines(total: int) -> list[bytes]:
    """An Azure OpenAI batch of a model that does not reason (cached tokens only), 10% errored."""
    return openai_lines(total, model="gpt-4.1-mini", error_percent=10)


def gemini_lines(total: int) -> list[bytes]:
    """`total` lines of a Gemini batch's responses file of a thinking model, as the simulator writes them."""
    import json
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from dashboard.simulator.gemini_api import failed_response, generate_content_response
    from dashboard.simulator.progression import Outcome, Plan

    plan = Plan(
        total=total,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        seed=7,
        processing_seconds=1,
        cancel_grace_seconds=1,
        error_percent=10,
    )
    batch = SimpleNamespace(public_id="bench", model="models/gemini-2.5-flash", created_at=plan.created_at)
    lines = []
    for index in range(total):
        rank = plan.rank_of(index)
        if plan.fate(rank) is Outcome.ERRORED:
            line = {"key": f"req-{index:06d}", "error": failed_response(rank)}
        else:
            line = {"key": f"req-{index:06d}", "response": generate_content_response(batch, plan, index, rank)}
        lines.append(json.dumps(line, separators=(",", ":")).encode())
    return lines


# --- the pass before tokens: copies of the code as it was (commit cf0367e) ------------------------------


def anthropic_line_before(number: int, data: dict, raw: str, source: str = "") -> ResultLine:
    """dashboard/providers/anthropic.py's parse_result_line before tokens (a copy, at cf0367e)."""
    result = data.get("result")
    if not isinstance(result, dict):
        result = EMPTY
    kind = result.get("type")
    message = result.get("message")
    if not isinstance(message, dict):
        message = EMPTY
    usage = message.get("usage")
    if not isinstance(usage, dict):
        usage = EMPTY
    error = result.get("error")  # {"type": "error", "error": {"type": ..., "message": ...}}
    error = error.get("error") if isinstance(error, dict) else None
    if not isinstance(error, dict):
        error = EMPTY
    if kind.__class__ is str and kind in RESULT_TYPES:
        error_type, error_message = as_text(error.get("type")), as_text(error.get("message"))
    else:
        kind = "invalid"
        error_type, error_message = anthropic._unreadable_result(data.get("result"))
    return ResultLine(
        number,
        as_text(data.get("custom_id")),
        kind,
        "",
        as_text(message.get("model")),
        as_text(message.get("stop_reason")),
        token_count(usage.get("input_tokens")),
        token_count(usage.get("output_tokens")),
        error_type,
        error_message,
        raw,
    )


def openai_line_before(number: int, data: dict, raw: str, source: str = "") -> ResultLine:
    """dashboard/providers/openai.py's parse_result_line before tokens (a copy, at cf0367e)."""
    response = data.get("response")
    if not isinstance(response, dict):
        response = EMPTY
    body = response.get("body")
    if not isinstance(body, dict):
        body = EMPTY
    status_code = response.get("status_code")
    line_error = data.get("error")
    body_error = body.get("error")
    if not isinstance(body_error, dict):
        body_error = None
    usage = body.get("usage")
    if not isinstance(usage, dict):
        usage = EMPTY
    choices = body.get("choices")
    first_choice = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first_choice, dict):
        first_choice = EMPTY
    if isinstance(line_error, dict):
        kind = "expired" if line_error.get("code") == "batch_expired" else "errored"
        error = line_error
    elif status_code == 200 and body_error is None:
        kind, error = "succeeded", EMPTY
    elif body_error is not None:
        kind, error = "errored", body_error
    elif isinstance(status_code, int) and not isinstance(status_code, bool):
        message = f"The request was answered HTTP {status_code}, without an error message."
        kind, error = "errored", {"code": f"http_{status_code}", "message": message}
    else:
        message = "This line has neither a response status nor an error."
        kind, error = "errored", {"code": "no_status", "message": message}
    return ResultLine(
        number,
        as_text(data.get("custom_id")),
        kind,
        source,
        as_text(body.get("model")),
        as_text(first_choice.get("finish_reason")),
        token_count(usage.get("prompt_tokens", usage.get("input_tokens"))),
        token_count(usage.get("completion_tokens", usage.get("output_tokens"))),
        as_text(error.get("type") or error.get("code")),
        as_text(error.get("message")),
        raw,
    )


def gemini_line_before(number: int, data: dict, raw: str, source: str = "") -> ResultLine:
    """dashboard/providers/gemini.py's parse_result_line before tokens (a copy, at cf0367e)."""
    key = data.get("key")
    if key is None:
        metadata = data.get("metadata")
        key = metadata.get("key") if isinstance(metadata, dict) else None
    response = data.get("response")
    error = data.get("error")
    if isinstance(error, dict):
        kind = "errored"
        response = EMPTY
    elif isinstance(response, dict):
        kind, error = "succeeded", EMPTY
    else:
        kind, response = "invalid", EMPTY
        error = {"status": "no_response", "message": "This line has neither a response nor an error."}
    usage = response.get("usageMetadata")
    if not isinstance(usage, dict):
        usage = EMPTY
    candidates = response.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    if not isinstance(first, dict):
        first = EMPTY
    feedback = response.get("promptFeedback")
    stop_reason = first.get("finishReason") or (feedback.get("blockReason") if isinstance(feedback, dict) else None)
    if error is EMPTY:  # as gemini.py's now: a response line reads no error fields (not the tokens' doing)
        error_type = error_message = ""
    else:
        error_type, error_message = as_text(error.get("status") or error.get("code")), as_text(error.get("message"))
    return ResultLine(
        number,
        as_text(key),
        kind,
        source,
        as_text(response.get("modelVersion")),
        as_text(stop_reason),
        token_count(usage.get("promptTokenCount")),
        token_count(usage.get("candidatesTokenCount")),
        error_type,
        error_message,
        raw,
    )


def errors_only(lines: Iterable) -> tuple:
    """results.summarize's loop as it was before tokens (a copy): types and errors."""
    by_type: dict[str, int] = {}  # a plain dict, as summarize's now (what a Counter cost is not the tokens')
    errors: Counter = Counter()
    total = 0
    for line in lines:
        total += 1
        kind = line.type
        by_type[kind] = by_type.get(kind, 0) + 1
        if kind == "errored" or kind == "invalid":
            errors[(line.error_type, line.error_message[:300])] += 1
    return by_type, errors, total


def timed(run: Callable[[int], object], number: int) -> float:
    """This process's CPU time for `run(number)` (the machine is shared: wall-clock time would count
    the others' work too; the pass is single-threaded and does no I/O, so its CPU time is its cost)."""
    started = time.process_time()
    run(number)
    return time.process_time() - started


class Chunks(httpx.SyncByteStream):
    """A results file as upstream sends it: 64 KiB chunks."""

    def __init__(self, body: bytes):
        self.body = body

    def __iter__(self):
        for start in range(0, len(self.body), 64 * 1024):
            yield self.body[start : start + 64 * 1024]


def measure(
    provider: str, before, lines: list[bytes], *, from_file: bool, rounds: int, slice_lines: int
) -> tuple[float, float]:
    """CPU seconds of the pass without tokens (the code before them) and with them (as it is), over
    the whole batch: each `slice_lines`-line slice of it timed `rounds` times, the two passes alternated
    slice by slice, and the fastest of each kept. A slice takes some 50 ms: a whole pass (half a
    second) was seldom spared by this shared machine's bursts, and the best of 7 whole passes read
    anywhere from 1.07 to 1.30 for the same code on one afternoon.
    `from_file`: the lines are split out of the file's chunks first (jsonl_lines), as
    services.iter_results reads them; otherwise they are given, parse and summary alone."""
    from dashboard import providers
    from dashboard.batches.results import parse_stream, summarize

    module = providers.module(provider)
    slices = [lines[start : start + slice_lines] for start in range(0, len(lines), slice_lines)]
    bodies = [b"\n".join(part) + b"\n" for part in slices]
    now = module.parse_result_line

    def sourced(number: int):
        if from_file:
            return zip(repeat(""), jsonl_lines(httpx.Response(200, stream=Chunks(bodies[number]))))
        return zip(repeat(""), slices[number])

    def with_tokens(number: int) -> None:
        summary = summarize(parse_stream(provider, sourced(number)))
        assert summary.total == len(slices[number]) and summary.tokens and not summary.usage_unknown, "not counted"

    def without_tokens(number: int) -> None:
        module.parse_result_line = before
        try:
            assert errors_only(parse_stream(provider, sourced(number)))[2] == len(slices[number])
        finally:
            module.parse_result_line = now

    with_best = [float("inf")] * len(slices)
    without_best = [float("inf")] * len(slices)
    for _ in range(rounds):
        gc.collect()
        for number in range(len(slices)):
            without_best[number] = min(without_best[number], timed(without_tokens, number))
            with_best[number] = min(with_best[number], timed(with_tokens, number))
    return sum(without_best), sum(with_best)


ROWS = (  # label, provider, its parser before tokens, its lines
    ("Anthropic, cache reads and writes", "anthropic", anthropic_line_before, anthropic_lines),
    ("OpenAI o4-mini, cached + reasoning", "openai", openai_line_before, openai_lines),
    ("Azure OpenAI gpt-4.1-mini, cached", "azure-openai", openai_line_before, azure_lines),
    ("Gemini 2.5 Flash, cached + thoughts", "gemini", gemini_line_before, gemini_lines),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=TOTAL, help="the batch's result lines, per provider")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="each slice timed this many times")
    parser.add_argument("--slice-lines", type=int, default=SLICE_LINES, help="lines a slice")
    options = parser.parse_args()
    configure()
    from dashboard.providers import bedrock

    print(f"bench/tokens.py: the results pass of a {options.lines:,}-line batch, with and without counting tokens")
    print(
        f"load average {' '.join(f'{value:.1f}' for value in os.getloadavg())}; "
        f"slices of {options.slice_lines:,} lines, fastest of {options.rounds} each, alternated"
    )
    print()
    header = f"{'batch: pass (CPU s)':<70}{'without':>9}{'with':>8}{'ratio':>8}{'target':>9}  met"
    print(header)
    print("-" * len(header))
    failed = False
    for label, provider, before, make in ROWS:
        lines = make(options.lines)
        for from_file, kind in ((True, "file split, parsed, summarized"), (False, "parsed, summarized")):
            without, with_tokens = measure(
                provider, before, lines, from_file=from_file, rounds=options.rounds, slice_lines=options.slice_lines
            )
            ratio = with_tokens / without
            goal = from_file  # the pass as services.error_summary runs it; the other row shows the share
            failed |= goal and ratio >= TARGET
            print(
                f"{label + ': ' + kind:<70}{without:>9.3f}{with_tokens:>8.3f}{ratio:>8.3f}"
                f"{('< ' + f'{TARGET:.2f}') if goal else '':>9}  {('yes' if ratio < TARGET else 'NO') if goal else ''}",
                flush=True,
            )
    print(
        f"{bedrock.LABEL}: not measured, its tokens are unavailable: a job's records are in S3, which this "
        "dashboard does not read (the page says its tokens are unknown)."
    )
    print(f"load average {' '.join(f'{value:.1f}' for value in os.getloadavg())} at the end")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
