"""dashboard/batches/results.py with hand-written result lines of both providers: no network, no database."""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.batches import results
from dashboard.batches.results import (
    CSV_COLUMNS,
    ErrorSummary,
    ResultLine,
    csv_row,
    matches,
    page_of,
    parse_line,
    parse_stream,
    safe_cell,
    summarize,
)
from dashboard.providers.usage import Usage
from dashboard.redaction import redact


def dumps(data) -> bytes:
    return json.dumps(data).encode()


# --- Anthropic lines -----------------------------------------------------------------------

ANTHROPIC_SUCCEEDED = {
    "custom_id": "eval-001",
    "result": {
        "type": "succeeded",
        "message": {
            "id": "msg_01abc",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "Hello"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 17, "output_tokens": 42, "cache_read_input_tokens": 0},
        },
    },
}
ANTHROPIC_ERRORED = {
    "custom_id": "eval-002",
    "result": {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "messages.0.content: text content blocks must be non-empty",
            },
            "request_id": "req_011CabcDEF",
        },
    },
}


def test_anthropic_succeeded_line():
    raw = dumps(ANTHROPIC_SUCCEEDED)
    line = parse_line("anthropic", 7, raw)
    assert line == ResultLine(
        number=7,
        custom_id="eval-001",
        type="succeeded",
        source="",
        model="claude-sonnet-4-5",
        stop_reason="end_turn",
        input_tokens=17,
        output_tokens=42,
        error_type="",
        error_message="",
        raw=raw.decode(),
        usage=Usage(input=17, output=42),
    )


def test_anthropic_errored_line_reads_the_nested_error_not_the_envelope():
    line = parse_line("anthropic", 2, dumps(ANTHROPIC_ERRORED))
    assert line.type == "errored"
    assert line.custom_id == "eval-002"
    # The envelope's own type is "error"; what matters is the inner error's type.
    assert line.error_type == "invalid_request_error"
    assert line.error_message == "messages.0.content: text content blocks must be non-empty"
    assert line.model == "" and line.stop_reason == ""
    assert line.input_tokens is None and line.output_tokens is None and line.usage is None


@pytest.mark.parametrize("kind", ["canceled", "expired"])
def test_anthropic_canceled_and_expired_lines(kind):
    raw = dumps({"custom_id": f"x-{kind}", "result": {"type": kind}})
    line = parse_line("anthropic", 3, raw)
    assert line == ResultLine(number=3, custom_id=f"x-{kind}", type=kind, raw=raw.decode())


@pytest.mark.parametrize(
    "data",
    [
        {"custom_id": "a", "result": {"type": "exploded"}},
        {"custom_id": "a", "result": "succeeded"},
        {"custom_id": "a"},
    ],
)
def test_anthropic_line_with_an_unknown_or_missing_result_is_invalid(data):
    line = parse_line("anthropic", 1, dumps(data))
    assert line.type == "invalid"
    assert line.custom_id == "a"


def test_anthropic_errored_line_with_a_malformed_error_does_not_raise():
    data = {"custom_id": "a", "result": {"type": "errored", "error": {"type": "error", "error": "boom"}}}
    line = parse_line("anthropic", 1, dumps(data))
    assert line.type == "errored"
    assert line.error_type == "" and line.error_message == ""


def test_anthropic_line_ignores_the_source_it_is_given_only_for_openai():
    # iter_results passes "" for Anthropic; parse_line keeps the Anthropic shape either way.
    assert parse_line("anthropic", 1, dumps(ANTHROPIC_SUCCEEDED)).source == ""


# --- OpenAI lines --------------------------------------------------------------------------

OPENAI_OUTPUT = {
    "id": "batch_req_1",
    "custom_id": "req-1",
    "error": None,
    "response": {
        "status_code": 200,
        "request_id": "req_abc",
        "body": {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
        },
    },
}
OPENAI_FAILED = {
    "id": "batch_req_2",
    "custom_id": "req-2",
    "error": None,
    "response": {
        "status_code": 400,
        "request_id": "req_def",
        "body": {
            "error": {
                "message": "Invalid 'messages': empty array.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "empty_array",
            }
        },
    },
}
OPENAI_EXPIRED = {
    "id": "batch_req_3",
    "custom_id": "req-3",
    "response": None,
    "error": {
        "code": "batch_expired",
        "message": "This request could not be executed before the completion window expired.",
    },
}


def test_openai_output_line():
    raw = dumps(OPENAI_OUTPUT)
    line = parse_line("openai", 1, raw, "output")
    assert line == ResultLine(
        number=1,
        custom_id="req-1",
        type="succeeded",
        source="output",
        model="gpt-4o-mini-2024-07-18",
        stop_reason="length",
        input_tokens=11,
        output_tokens=5,
        raw=raw.decode(),
        usage=Usage(input=11, output=5),
    )


def test_openai_error_file_line_with_status_400_reads_body_error():
    line = parse_line("openai", 5, dumps(OPENAI_FAILED), "error")
    assert line.type == "errored"
    assert line.source == "error"
    assert line.custom_id == "req-2"
    assert line.error_type == "invalid_request_error"
    assert line.error_message == "Invalid 'messages': empty array."
    assert line.input_tokens is None and line.output_tokens is None


def test_openai_error_file_line_without_a_type_falls_back_to_the_code():
    data = json.loads(json.dumps(OPENAI_FAILED))
    del data["response"]["body"]["error"]["type"]
    assert parse_line("openai", 1, dumps(data), "error").error_type == "empty_array"


def test_openai_batch_expired_line_with_null_response_is_expired():
    line = parse_line("openai", 9, dumps(OPENAI_EXPIRED), "error")
    assert line.type == "expired"
    assert line.source == "error"
    assert line.custom_id == "req-3"
    assert line.error_type == "batch_expired"
    assert line.error_message.startswith("This request could not be executed")


def test_openai_line_level_error_other_than_expiry_is_errored():
    data = {"custom_id": "req-4", "response": None, "error": {"code": "server_error", "message": "oops"}}
    line = parse_line("openai", 1, dumps(data), "error")
    assert (line.type, line.error_type, line.error_message) == ("errored", "server_error", "oops")


def test_openai_200_whose_body_carries_an_error_is_errored():
    data = {"custom_id": "r", "response": {"status_code": 200, "body": {"error": {"code": "x", "message": "m"}}}}
    line = parse_line("openai", 1, dumps(data), "output")
    assert (line.type, line.error_type, line.error_message) == ("errored", "x", "m")


def test_openai_non_200_without_a_body_error_names_the_status():
    data = {"custom_id": "r", "response": {"status_code": 500, "body": "Internal Server Error"}}
    line = parse_line("openai", 1, dumps(data), "error")
    assert line.type == "errored"
    assert line.error_type == "http_500"


def test_openai_embeddings_usage_without_completion_tokens():
    data = {
        "custom_id": "e",
        "response": {
            "status_code": 200,
            "body": {
                "object": "list",
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": 8, "total_tokens": 8},
            },
        },
    }
    line = parse_line("openai", 1, dumps(data), "output")
    assert (line.type, line.model, line.input_tokens, line.output_tokens, line.stop_reason) == (
        "succeeded",
        "text-embedding-3-small",
        8,
        None,
        "",
    )


# --- lines that are not JSON objects -------------------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
@pytest.mark.parametrize(
    "raw, message",
    [
        (b"this is not json", "not valid JSON"),
        (b'{"custom_id": "cut-off", "result": {"type": "succ', "not valid JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'"just a string"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"42", "not a JSON object"),
        (b"\xff\xfe garbage \x80", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),  # nesting deeper than the decoder's recursion limit
        (b'{"a":' * 100_000, "not valid JSON"),
    ],
)
def test_lines_that_are_not_json_objects_are_invalid_and_keep_the_raw_text(provider, raw, message):
    line = parse_line(provider, 4, raw, "error" if provider == "openai" else "")
    assert line.type == "invalid"
    assert line.number == 4
    assert line.custom_id == ""
    assert line.error_type == "invalid_json"
    assert message in line.error_message
    assert line.raw == raw.decode("utf-8", errors="replace")
    assert line.raw  # never dropped, even when it was not UTF-8


def test_parse_stream_numbers_lines_from_one_and_keeps_sources():
    pairs = [("output", dumps(OPENAI_OUTPUT)), ("error", b"not json"), ("error", dumps(OPENAI_EXPIRED))]
    lines = list(parse_stream("openai", pairs))
    assert [(line.number, line.source, line.type) for line in lines] == [
        (1, "output", "succeeded"),
        (2, "error", "invalid"),
        (3, "error", "expired"),
    ]


def test_parse_stream_is_lazy():
    def source():
        yield ("", dumps(ANTHROPIC_SUCCEEDED))
        raise AssertionError("read past the first line")

    stream = parse_stream("anthropic", source())
    assert next(stream).custom_id == "eval-001"


# --- filters and pages ---------------------------------------------------------------------


def line(
    number: int,
    kind: str = "succeeded",
    *,
    custom_id: str | None = None,
    source: str = "",
    error_type: str = "",
    error_message: str = "",
) -> ResultLine:
    return ResultLine(
        number=number,
        custom_id=f"req-{number}" if custom_id is None else custom_id,
        type=kind,
        source=source,
        error_type=error_type,
        error_message=error_message,
    )


MIXED = [
    line(1),
    line(2, "errored", source="error"),
    line(3, custom_id="Alpha-Beta"),
    line(4, "expired", source="error"),
    line(5, "errored", custom_id="alpha-x", source="error"),
    line(6, "canceled"),
    line(7, "invalid"),
    line(8, source="output"),
    line(9, "errored", custom_id="ALPHA", source="error"),
    line(10),
]


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({}, list(range(1, 11))),
        ({"kind": "errored"}, [2, 5, 9]),
        ({"kind": "invalid"}, [7]),
        ({"source": "error"}, [2, 4, 5, 9]),
        ({"source": "output"}, [8]),
        ({"custom_id": "alpha"}, [3, 5, 9]),
        ({"custom_id": "ALPHA"}, [3, 5, 9]),
        ({"custom_id": "a-B"}, [3]),
        ({"kind": "errored", "custom_id": "alpha"}, [5, 9]),
        ({"kind": "errored", "source": "output"}, []),
    ],
)
def test_matches_and_page_of_filters(filters, expected):
    assert [item.number for item in MIXED if matches(item, **filters)] == expected
    page = page_of(iter(MIXED), offset=0, size=50, **filters)
    assert [item.number for item in page.lines] == expected
    assert page.has_more is False
    assert page.offset == 0


@pytest.mark.parametrize(
    "offset, size, expected, has_more",
    [
        (0, 3, [1, 2, 3], True),
        (3, 3, [4, 5, 6], True),
        (6, 3, [7, 8, 9], True),
        (7, 3, [8, 9, 10], False),
        (9, 3, [10], False),
        (10, 3, [], False),
        (50, 3, [], False),
        (0, 10, list(range(1, 11)), False),
        (0, 9, list(range(1, 10)), True),
    ],
)
def test_page_of_offsets(offset, size, expected, has_more):
    page = page_of(iter(MIXED), offset=offset, size=size)
    assert [item.number for item in page.lines] == expected
    assert page.has_more is has_more
    assert page.offset == offset


def test_page_of_offset_counts_matching_lines_only():
    page = page_of(iter(MIXED), offset=1, size=1, kind="errored")
    assert [item.number for item in page.lines] == [5]
    assert page.has_more is True
    page = page_of(iter(MIXED), offset=2, size=1, kind="errored")
    assert [item.number for item in page.lines] == [9]
    assert page.has_more is False


def counted(lines, reads: list[int]):
    for item in lines:
        reads[0] += 1
        yield item


def test_page_of_stops_reading_an_infinite_stream_once_the_page_is_full():
    reads = [0]
    endless = counted((line(n) for n in itertools.count(1)), reads)
    page = page_of(endless, offset=0, size=50)
    assert [item.number for item in page.lines] == list(range(1, 51))
    assert page.has_more is True
    assert reads[0] == 51  # the page plus one line to know there is more


def test_page_of_with_an_offset_on_an_infinite_stream_reads_offset_plus_page_plus_one():
    reads = [0]
    endless = counted((line(n) for n in itertools.count(1)), reads)
    page = page_of(endless, offset=100, size=50)
    assert [item.number for item in page.lines] == list(range(101, 151))
    assert page.has_more is True
    assert reads[0] == 151


def test_page_of_with_a_filter_on_an_infinite_stream_returns():
    # Every seventh line is errored; the matching ones are counted for the offset and the page.
    reads = [0]
    endless = counted(
        (line(n, "errored" if n % 7 == 0 else "succeeded", custom_id=f"id-{n}") for n in itertools.count(1)), reads
    )
    page = page_of(endless, offset=10, size=5, kind="errored")
    assert [item.number for item in page.lines] == [77, 84, 91, 98, 105]
    assert page.has_more is True
    assert reads[0] == 112  # up to the sixteenth errored line, and not one further


def test_page_of_on_infinite_parsed_stream_through_parse_stream():
    raw = dumps(ANTHROPIC_SUCCEEDED)
    endless = parse_stream("anthropic", (("", raw) for _ in itertools.count()))
    page = page_of(endless, offset=0, size=50, custom_id="EVAL")
    assert len(page.lines) == 50 and page.has_more
    assert [item.number for item in page.lines] == list(range(1, 51))


# --- summary ---------------------------------------------------------------------------------


def test_summarize_counts_by_type_in_result_order_and_errors_most_frequent_first():
    lines = [
        line(1),
        line(2),
        line(3, "errored", error_type="api_error", error_message="Internal server error"),
        line(4, "errored", error_type="overloaded_error", error_message="Overloaded"),
        line(5, "errored", error_type="overloaded_error", error_message="Overloaded"),
        line(6, "errored", error_type="overloaded_error", error_message="Overloaded"),
        line(7, "errored", error_type="api_error", error_message="Internal server error"),
        line(8, "errored", error_type="api_error", error_message="Something else"),
        line(9, "expired"),
        line(10, "canceled"),
        line(11, "invalid", error_type="invalid_json", error_message="Line is not valid JSON: x"),
        line(12, "expired", error_type="batch_expired", error_message="window"),  # not an error row
    ]
    summary = summarize(iter(lines))
    assert isinstance(summary, ErrorSummary)
    assert summary.total == 12
    assert summary.by_type == [("succeeded", 2), ("errored", 6), ("canceled", 1), ("expired", 2), ("invalid", 1)]
    assert summary.errors == [
        ("overloaded_error", "Overloaded", 3),
        ("api_error", "Internal server error", 2),
        ("api_error", "Something else", 1),
        ("invalid_json", "Line is not valid JSON: x", 1),
    ]
    assert sum(count for _, count in summary.by_type) == summary.total


def test_summarize_keeps_only_the_top_errors_and_trims_long_messages():
    lines = [line(n, "errored", error_type=f"kind{n % 5}", error_message=f"m{n % 5}") for n in range(1, 101)]
    lines += [line(101, "errored", error_type="long", error_message="x" * 1000)] * 30
    summary = summarize(iter(lines), top=3)
    assert len(summary.errors) == 3
    assert summary.errors[0] == ("long", "x" * 300, 30)
    assert all(count == 20 for _, _, count in summary.errors[1:])
    assert summary.by_type == [("errored", 130)]


def test_summarize_of_nothing():
    assert summarize(iter([])) == ErrorSummary(by_type=[], errors=[], total=0)


def test_summarize_of_parsed_lines_of_both_providers():
    anthropic = summarize(
        parse_stream(
            "anthropic",
            [
                ("", dumps(ANTHROPIC_SUCCEEDED)),
                ("", dumps(ANTHROPIC_ERRORED)),
                ("", dumps(ANTHROPIC_ERRORED)),
                ("", b"garbage"),
            ],
        )
    )
    assert anthropic.by_type == [("succeeded", 1), ("errored", 2), ("invalid", 1)]
    assert anthropic.errors[0] == (
        "invalid_request_error",
        "messages.0.content: text content blocks must be non-empty",
        2,
    )
    openai = summarize(
        parse_stream(
            "openai",
            [
                ("output", dumps(OPENAI_OUTPUT)),
                ("error", dumps(OPENAI_FAILED)),
                ("error", dumps(OPENAI_EXPIRED)),
            ],
        )
    )
    assert openai.by_type == [("succeeded", 1), ("errored", 1), ("expired", 1)]
    assert openai.errors == [("invalid_request_error", "Invalid 'messages': empty array.", 1)]


def test_summarize_cleans_each_distinct_error_before_cutting_and_counts_what_reads_the_same_as_one():
    secret = "sk-ant-api03-" + "k" * 40
    lines = [
        line(1, "errored", error_type="authentication_error", error_message=f"bad key {secret}"),
        line(2, "errored", error_type="authentication_error", error_message=f"bad key {secret.upper()}"),
        line(3, "errored", error_type=secret, error_message="x" * 290 + secret),  # cut at 300 inside the key
        line(4, "errored", error_type="api_error", error_message="plain"),
        line(5, "errored", error_type="api_error", error_message="plain"),
    ]
    summary = summarize(iter(lines), clean=lambda text: redact(text, [secret]))
    assert summary.errors == [
        ("authentication_error", "bad key [redacted]", 2),
        ("api_error", "plain", 2),
        ("[redacted]", "x" * 290 + "[redacted]", 1),
    ]
    assert not any(secret[:8] in kind + message for kind, message, _ in summary.errors)
    assert ("authentication_error", f"bad key {secret}", 1) in summarize(iter(lines)).errors  # no clean: as read


# --- CSV -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", '=HYPERLINK("http://x","y")', "\tx", "\rx"])
def test_safe_cell_neutralizes_formula_starts(value):
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["", "plain", "req-1", "a=b", "1+1", "x@y", " =1"])
def test_safe_cell_leaves_other_text_alone(value):
    assert safe_cell(value) == value


def test_csv_row_columns_and_values():
    row = csv_row(parse_line("openai", 3, dumps(OPENAI_OUTPUT), "output"))
    assert len(row) == len(CSV_COLUMNS)
    assert dict(zip(CSV_COLUMNS, row, strict=True)) == {
        "line": "3",
        "custom_id": "req-1",
        "type": "succeeded",
        "source": "output",
        "model": "gpt-4o-mini-2024-07-18",
        "stop_reason": "length",
        "input_tokens": "11",
        "output_tokens": "5",
        "error_type": "",
        "error_message": "",
        "billed_input_tokens": "11",
        "billed_cache_read_tokens": "0",
        "billed_cache_write_tokens": "0",
        "billed_output_tokens": "5",
        "billed_reasoning_tokens": "0",
    }


def test_csv_row_has_the_provider_s_counts_and_the_disjoint_billed_kinds():
    data = copy.deepcopy(OPENAI_OUTPUT)
    data["response"]["body"]["usage"] = {
        "prompt_tokens": 1000,
        "completion_tokens": 300,
        "total_tokens": 1300,
        "prompt_tokens_details": {"cached_tokens": 768},
        "completion_tokens_details": {"reasoning_tokens": 256},
    }
    row = dict(zip(CSV_COLUMNS, csv_row(parse_line("openai", 1, dumps(data), "output")), strict=True))
    assert (row["input_tokens"], row["output_tokens"]) == ("1000", "300")
    billed = [row[f"billed_{kind}_tokens"] for kind in ("input", "cache_read", "cache_write", "output", "reasoning")]
    assert billed == ["232", "768", "0", "44", "256"]
    assert sum(map(int, billed)) == 1300


def test_csv_row_of_an_errored_line_has_empty_token_cells():
    row = dict(zip(CSV_COLUMNS, csv_row(parse_line("anthropic", 2, dumps(ANTHROPIC_ERRORED))), strict=True))
    assert row["input_tokens"] == "" and row["output_tokens"] == ""
    assert all(row[name] == "" for name in CSV_COLUMNS if name.startswith("billed_"))
    assert row["error_type"] == "invalid_request_error"


def test_csv_row_neutralizes_every_upstream_text_cell():
    hostile = {
        "custom_id": "=cmd|' /C calc'!A0",
        "result": {
            "type": "errored",
            "error": {"type": "error", "error": {"type": "+evil", "message": "@SUM(1+1)*cmd|' /C calc'!A0"}},
        },
    }
    row = dict(zip(CSV_COLUMNS, csv_row(parse_line("anthropic", 1, dumps(hostile))), strict=True))
    assert row["custom_id"] == "'=cmd|' /C calc'!A0"
    assert row["error_type"] == "'+evil"
    assert row["error_message"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    succeeded = json.loads(json.dumps(ANTHROPIC_SUCCEEDED))
    succeeded["result"]["message"]["model"] = "-2+3"
    succeeded["result"]["message"]["stop_reason"] = "=1"
    row = dict(zip(CSV_COLUMNS, csv_row(parse_line("anthropic", 1, dumps(succeeded))), strict=True))
    assert row["model"] == "'-2+3" and row["stop_reason"] == "'=1"
    # Once written and read back as CSV, no cell starts with a formula character.
    buffer = io.StringIO()
    csv.writer(buffer).writerow(csv_row(parse_line("anthropic", 1, dumps(hostile))))
    cells = next(csv.reader(io.StringIO(buffer.getvalue())))
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)


def test_parse_line_is_looked_up_as_a_module_global_by_parse_stream(monkeypatch):
    # The large results test counts parsed lines by wrapping results.parse_line; keep that possible.
    calls = []
    original = results.parse_line

    def counting(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(results, "parse_line", counting)
    page = page_of(
        parse_stream("anthropic", (("", dumps(ANTHROPIC_SUCCEEDED)) for _ in itertools.count())), offset=0, size=2
    )
    assert len(page.lines) == 2
    assert calls == [1, 2, 3]


@pytest.mark.parametrize(
    "provider, data, source",
    [
        (
            "anthropic",
            {
                "custom_id": "a",
                "result": {
                    "type": "succeeded",
                    "message": {
                        "model": "m",
                        "usage": {"input_tokens": '=HYPERLINK("http://evil","x")', "output_tokens": "+1"},
                    },
                },
            },
            "",
        ),
        (
            "openai",
            {
                "custom_id": "a",
                "response": {
                    "status_code": 200,
                    "body": {"model": "m", "usage": {"prompt_tokens": "@SUM(A1)", "completion_tokens": "-2"}},
                },
            },
            "output",
        ),
    ],
)
def test_token_counts_that_are_not_integers_never_reach_a_csv_cell(provider, data, source):
    line = parse_line(provider, 1, dumps(data), source)
    assert line.type == "succeeded"
    assert line.input_tokens is None and line.output_tokens is None
    row = dict(zip(CSV_COLUMNS, csv_row(line), strict=True))
    assert row["input_tokens"] == "" and row["output_tokens"] == ""
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row.values())


@pytest.mark.parametrize(
    "value, expected",
    [(0, 0), (123, 123), (True, None), (1.5, None), ("12", None), (None, None), ([1], None), ({"n": 1}, None)],
)
def test_token_counts_are_integers_or_none(value, expected):
    data = {"custom_id": "a", "result": {"type": "succeeded", "message": {"usage": {"input_tokens": value}}}}
    assert parse_line("anthropic", 1, dumps(data)).input_tokens == expected
    data = {"custom_id": "a", "response": {"status_code": 200, "body": {"usage": {"completion_tokens": value}}}}
    assert parse_line("openai", 1, dumps(data), "output").output_tokens == expected


# --- the fast decoder (orjson) and the exact one behind it -----------------------------------


def simulated_line(index: int) -> bytes:
    """A line as the simulator writes it (tests/batches/test_results_large.py reads 100,000 of them)."""
    if index % 12 == 5:
        result = ANTHROPIC_ERRORED["result"]
    elif index % 50 == 9:
        result = {"type": "expired"}
    else:
        result = json.loads(json.dumps(ANTHROPIC_SUCCEEDED["result"]))
        result["message"]["content"][0]["text"] = f"Simulated answer #{index}."
    return json.dumps({"custom_id": f"r{index:06d}", "result": result}, separators=(",", ":")).encode()


def test_a_plain_line_is_read_by_orjson_not_by_json(monkeypatch):
    def refused(*args, **kwargs):
        raise AssertionError("json.loads read a line orjson reads")

    monkeypatch.setattr(results.json, "loads", refused)
    assert parse_line("anthropic", 1, dumps(ANTHROPIC_SUCCEEDED)).input_tokens == 17
    assert parse_line("openai", 1, dumps(OPENAI_FAILED), "error").error_type == "invalid_request_error"


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"custom_id": "bad \ud800 text", "result": {"type": "canceled"}}',  # a lone surrogate: orjson refuses it
        rb'{"custom_id": "a", "result": {"type": "succeeded", "message": {"usage": {"input_tokens": NaN}}}}',
        b'{"custom_id": "caf\xe9", "result": {"type": "canceled"}}',  # not UTF-8
        rb'{"custom_id": 123456789012345678901234567890, "result": {"type": "expired"}}',  # past 64 bits
        rb'{"custom_id": [1, 18446744073709551616, {"n": -9223372036854775809}], "result": {"type": "expired"}}',
        rb'{"custom_id": "a", "result": {"type": "succeeded", "message": {"usage": {"input_tokens": 2361183241434822606848}}}}',  # noqa: E501
        rb'{"custom_id": "a", "result": {"type": "succeeded", "message": {"usage": {"output_tokens": 1e400}}}}',
        rb'{"custom_id": "\ud83d\ude00 paired", "result": {"type": "canceled"}}',
    ],
)
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_what_orjson_refuses_or_rounds_is_read_exactly_by_json(provider, raw):
    source = "output" if provider == "openai" else ""
    assert parse_line(provider, 3, raw, source) == results.parse_line_exactly(provider, 3, raw, source)


def test_integers_past_64_bits_are_shown_as_written_not_rounded():
    line = parse_line("anthropic", 1, rb'{"custom_id": 123456789012345678901234567890, "result": {"type": "expired"}}')
    assert line.custom_id == "123456789012345678901234567890"
    data = {"custom_id": "a", "result": {"type": "succeeded", "message": {"usage": {"input_tokens": 2**70}}}}
    assert parse_line("anthropic", 1, dumps(data)).input_tokens == 2**70


def test_a_lone_surrogate_is_made_safe_on_the_fallback():
    line = parse_line("anthropic", 1, rb'{"custom_id": "bad \ud800 text", "result": {"type": "canceled"}}')
    assert (line.custom_id, line.type) == ("bad \ufffd text", "canceled")
    line.custom_id.encode("utf-8")  # writable to a page or a file


def test_a_field_nested_deeper_than_json_writes_is_empty_not_an_error():
    # orjson reads 1,000 levels (json.loads may not); shown as JSON text it would need json.dumps to
    # recurse as deep: the field is empty instead of the parse raising.
    nested = b"[" * 1000 + b"]" * 1000
    line = parse_line("anthropic", 1, b'{"custom_id": ' + nested + b', "result": {"type": "expired"}}')
    assert line.type in ("expired", "invalid")
    assert line.custom_id == ""


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=()), max_size=8),  # lone surrogates too
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_fields = st.sampled_from(
    [
        "custom_id",
        "result",
        "type",
        "message",
        "usage",
        "input_tokens",
        "output_tokens",
        "error",
        "model",
        "stop_reason",
        "response",
        "body",
        "status_code",
        "choices",
        "finish_reason",
        "prompt_tokens",
        "code",
    ]
)


_objects = st.recursive(
    _json_values,
    lambda inner: st.dictionaries(_fields, inner, max_size=4) | st.lists(inner, max_size=2),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(_fields, _objects, max_size=5), ascii_only=st.booleans())
def test_any_line_reads_the_same_as_with_the_exact_decoder(data, ascii_only):
    raw = json.dumps(data, ensure_ascii=ascii_only).encode("utf-8", errors="surrogatepass")
    for provider, source in (("anthropic", ""), ("openai", "error")):
        assert parse_line(provider, 1, raw, source) == results.parse_line_exactly(provider, 1, raw, source)
