"""A bad request to the simulator is the caller's error: a 400 in the provider's own envelope, never a 500.

Anthropic answers `{"type": "error", "error": {"type", "message"}, "request_id"}` with a request-id
header; OpenAI `{"error": {"message", "type", "param", "code"}}` with x-request-id. First each case
once seen as a 500 (deep nesting, lone surrogates, broken multipart bodies, unknown x-sim-fault, a
custom_id with a final newline, and on PostgreSQL a NUL or a long string where text is stored), then
properties: whatever bytes or JSON come in, no answer is a 5xx and every 4xx carries its provider's
envelope. (Run it on PostgreSQL too: DATABASE_URL=postgres://... pytest tests/simulator/test_simulator_bad_requests.py)
"""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dashboard.simulator import wire
from dashboard.simulator.openai_api import input_problems
from tests.conftest import ANTHROPIC_KEYS, OPENAI_KEYS

ANTHROPIC = {"HTTP_X_API_KEY": ANTHROPIC_KEYS["ops"], "HTTP_ANTHROPIC_VERSION": "2023-06-01"}
OPENAI = {"HTTP_AUTHORIZATION": f"Bearer {OPENAI_KEYS['ops']}"}
A_BATCHES = "/simulator/anthropic/v1/messages/batches"
O_BATCHES = "/simulator/openai/v1/batches"
O_FILES = "/simulator/openai/v1/files"
DEEP = 100_000
LINE = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}


def request_item(custom_id: str = "a", **params) -> dict:
    return {
        "custom_id": custom_id,
        "params": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], **params},
    }


def send(client: Client, path: str, body: bytes, content_type: str = "application/json", method: str = "POST", **extra):
    """Bytes as they are: the test client's post() would re-encode them for a charset in the content type."""
    headers = ANTHROPIC if path.startswith("/simulator/anthropic") else OPENAI
    return client.generic(method, path, data=body, content_type=content_type, **headers, **extra)


def anthropic_error(response, status: int = 400, kind: str = "invalid_request_error") -> str:
    """The message of an Anthropic error answer, once its status and envelope are checked."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == kind
    assert body["request_id"] == response["request-id"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


def openai_error(response, status: int = 400, kind: str = "invalid_request_error") -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["type"] == kind
    assert response["x-request-id"].startswith("req_")
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


def error_of(response) -> str:
    return anthropic_error(response) if "request-id" in response else openai_error(response)


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def multipart(*parts: tuple[str, bytes, str | None], boundary: str = "b0undary") -> bytes:
    """A multipart/form-data body of (name, content, filename) parts."""
    chunks = []
    for name, content, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


def uploaded(client: Client, content: bytes) -> str:
    body = multipart(("purpose", b"batch", None), ("file", content, "in.jsonl"))
    response = send(client, O_FILES, body, "multipart/form-data; boundary=b0undary")
    assert response.status_code == 200, response.content
    return response.json()["id"]


def openai_create(input_file_id: object = "file-x", **fields) -> dict:
    return {"input_file_id": input_file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **fields}


# --- deep nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"requests": ' + b"[" * DEEP,
        b'{"requests": ' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"requests": [{"custom_id": "a", "params": ' + b'{"a": ' * DEEP,
        b'{"other": ' + b"[" * DEEP + b"]" * DEEP + b', "requests": []}',
        b'{"requests": [' + dumps(request_item()) + b"], " + b'"x": ' + b"[" * DEEP,
    ],
    ids=["requests", "requests-closed", "params", "other-key", "after-requests"],
)
def test_deep_nesting_in_the_create_body_is_a_400(client, demo_accounts, body):
    message = anthropic_error(send(client, A_BATCHES, body))
    assert message == f"The request body nests arrays and objects deeper than {wire.MAX_JSON_DEPTH} levels."


def test_a_deep_array_for_a_body_is_not_an_object(client, demo_accounts):
    assert anthropic_error(send(client, A_BATCHES, b"[" * DEEP)) == "The request body must be a JSON object."
    assert openai_error(send(client, O_BATCHES, b"[" * DEEP)) == "The request body must be a JSON object."


def nested(depth: int) -> object:
    value: object = "deep"
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_up_to_the_limit_is_fine(client, demo_accounts):
    # The body, its requests list, a request, its params: four levels before "extra".
    within = {"requests": [request_item(extra=nested(wire.MAX_JSON_DEPTH - 4))]}
    assert send(client, A_BATCHES, dumps(within)).status_code == 200
    beyond = {"requests": [request_item(extra=nested(wire.MAX_JSON_DEPTH - 3))]}
    assert "deeper than" in anthropic_error(send(client, A_BATCHES, dumps(beyond)))


@pytest.mark.parametrize(
    "body",
    [
        b'{"metadata": ' + b"[" * DEEP,
        b'{"metadata": ' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"}",
        b'{"input_file_id": "x", "endpoint": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    ],
)
def test_deep_nesting_in_a_small_json_body_is_a_400(client, demo_accounts, body):
    assert "deeper than" in openai_error(send(client, O_BATCHES, body))


def test_a_deeply_nested_input_line_is_an_invalid_line_not_a_crash():
    content = dumps(LINE) + b"\n" + b"[" * DEEP + b"\n"
    _, problems = input_problems(content, "/v1/chat/completions")
    assert [(p["code"], p["line"]) for p in problems] == [("invalid_json_line", 2)]


# --- lone surrogates ---------------------------------------------------------------------------

LONE = [
    rb"\ud800",
    rb"\udbff",
    rb"\udc00",
    rb"\uDFFF",
    rb"x\ud800y",
    rb"\ud800\u0041",
    rb"\ud800\ud800",
    rb"\udc00\ud800",
]


@pytest.mark.parametrize("escape", LONE)
@pytest.mark.parametrize("where", ["custom_id", "model", "content", "key", "top-key"])
def test_a_lone_surrogate_anywhere_in_the_create_body_is_a_400(client, demo_accounts, escape, where):
    request = b'{"custom_id": "a", "params": {"model": "m", "max_tokens": 5, "messages": []}}'
    template = {
        "custom_id": b'{"requests": [{"custom_id": "@", "params": {"model": "m", "max_tokens": 5, "messages": []}}]}',
        "model": b'{"requests": [{"custom_id": "a", "params": {"model": "@", "max_tokens": 5, "messages": []}}]}',
        "content": b'{"requests": [{"custom_id": "a", "params": {"model": "m", "max_tokens": 5, '
        b'"messages": [{"role": "user", "content": "@"}]}}]}',
        "key": b'{"requests": [{"custom_id": "a", "params": {"model": "m", "max_tokens": 5, "messages": [], "@": 1}}]}',
        "top-key": b'{"@": 1, "requests": [' + request + b"]}",
    }[where]
    message = anthropic_error(send(client, A_BATCHES, template.replace(b"@", escape)))
    assert message.startswith("The request body is not valid JSON: \\u") and "lone surrogate" in message


@pytest.mark.parametrize(
    "text",
    [rb"\ud83d\ude00", rb"\uD83D\uDE00", rb"\\ud800", rb"\\\\\ud83d\ude00", rb"\\\\ud800", rb"\u00e9\u2028"],
    ids=["pair", "pair-upper", "escaped-backslash", "backslashes-then-pair", "two-escaped-backslashes", "bmp"],
)
def test_pairs_and_escaped_backslashes_are_not_lone_surrogates(client, demo_accounts, text):
    body = b'{"requests": [{"custom_id": "a", "params": {"model": "m", "max_tokens": 5, "messages": [], "t": "@"}}]}'
    assert send(client, A_BATCHES, body.replace(b"@", text)).status_code == 200


def test_surrogates_encoded_as_raw_bytes_are_not_utf8(client, demo_accounts):
    body = dumps({"requests": [request_item("a")]}).replace(b'"m"', b'"\xed\xa0\x80"')
    assert anthropic_error(send(client, A_BATCHES, body)) == "The request body is not valid JSON: it is not UTF-8 text."
    body = dumps(openai_create()).replace(b'"24h"', b'"\xed\xb0\x80"')
    assert openai_error(send(client, O_BATCHES, body)) == "The request body is not valid JSON: it is not UTF-8 text."


@pytest.mark.parametrize(
    "body",
    [
        dumps(openai_create()).replace(b'"file-x"', rb'"\ud800"'),
        dumps(openai_create(metadata={"k": "v"})).replace(b'"v"', rb'"\udc00"'),
        dumps(openai_create(metadata={"k": "v"})).replace(b'"k"', rb'"\ud800"'),
        dumps(openai_create(note="x")).replace(b'"x"', rb'"\ud800\u0041"'),
    ],
    ids=["input_file_id", "metadata-value", "metadata-key", "unknown-field"],
)
def test_a_lone_surrogate_in_the_openai_create_body_is_a_400(client, demo_accounts, body):
    assert "lone surrogate" in openai_error(send(client, O_BATCHES, body))


def test_a_lone_surrogate_in_an_input_line_fails_that_line(client, demo_accounts):
    """The upload is only bytes (and they are UTF-8): the line is refused when the batch is validated."""
    good = dumps(LINE)
    content = good + b"\n" + good.replace(b'"a"', rb'"\ud800"') + b"\n" + good.replace(b'"m"', rb'"x\udfff"') + b"\n"
    _, problems = input_problems(content, "/v1/chat/completions")
    assert [(p["code"], p["line"]) for p in problems] == [("invalid_json_line", 2), ("invalid_json_line", 3)]
    response = send(client, O_BATCHES, dumps(openai_create(uploaded(client, content))))
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("literal", [b"NaN", b"-Infinity", b"1e999", b"-1E400"])
def test_non_finite_numbers_in_an_input_line_fail_that_line(literal):
    content = dumps({**LINE, "body": {"model": "m", "temperature": 0}}).replace(b"0}", literal + b"}")
    _, problems = input_problems(content, "/v1/chat/completions")
    assert [p["code"] for p in problems] == ["invalid_json_line"]


def chunked_verdict(text: bytes, cuts: list[int]) -> str | None:
    check = wire.SurrogateCheck()
    start = 0
    try:
        for cut in sorted(cuts):
            check.feed(text[start:cut])
            start = cut
        check.feed(text[start:], final=True)
    except wire.LoneSurrogate as lone:
        return str(lone)
    return None


def has_lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return re.search("[\ud800-\udfff]", value) is not None
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(map(has_lone_surrogate, value))
    return False


surrogate_heavy_text = st.text(
    st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\\", "u", "d", "8", "a", '"', "\U0001f600", "é"]),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(surrogate_heavy_text, min_size=1, max_size=4), st.lists(st.integers(0, 400), max_size=6))
@example(["\ud800"], [1, 2, 3, 4, 5])
@example(["\\\ud800"], [3])
def test_the_surrogate_check_agrees_with_the_decoder_however_the_text_is_cut(strings, cuts):
    """Fed in chunks cut anywhere, the check finds a lone surrogate exactly when the decoded text has one."""
    text = json.dumps(strings).encode()  # ensure_ascii: every non-ASCII character is an escape
    assert (chunked_verdict(text, [min(cut, len(text)) for cut in cuts]) is not None) == has_lone_surrogate(
        json.loads(text)
    )


# --- multipart bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", multipart(("purpose", b"batch", None))),
        ("multipart/form-data; boundary=", multipart(("purpose", b"batch", None))),
        ("multipart/form-data; boundary=" + "b" * 250, b"--" + b"b" * 250 + b"\r\n"),
        ("multipart/form-data; boundary=\u00e9", b"--x\r\n"),
    ],
    ids=["no-boundary", "empty-boundary", "too-long-boundary", "non-ascii-boundary"],
)
def test_a_multipart_body_without_a_usable_boundary_is_a_400(client, demo_accounts, content_type, body):
    message = openai_error(send(client, O_FILES, body, content_type))
    assert message.startswith("The multipart/form-data body could not be parsed: Invalid ")


def test_a_form_field_over_djangos_memory_limit_is_a_400(client, demo_accounts, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = multipart(("purpose", b"b" * 2000, None), ("file", b"{}\n", "in.jsonl"))
    message = openai_error(send(client, O_FILES, body, "multipart/form-data; boundary=b0undary"))
    assert message == "A form field other than a file is larger than 1000 bytes."


def test_too_many_form_fields_or_files_is_a_400(client, demo_accounts, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    fields = multipart(*[(f"f{i}", b"x", None) for i in range(5)])
    assert openai_error(send(client, O_FILES, fields, "multipart/form-data; boundary=b0undary")) == (
        "The form has more than 3 fields."
    )
    files = multipart(*[("file", b"{}\n", f"{i}.jsonl") for i in range(3)])
    assert openai_error(send(client, O_FILES, files, "multipart/form-data; boundary=b0undary")) == (
        "The form has more than 2 files."
    )
    urlencoded = b"&".join(b"f%d=x" % i for i in range(5))
    assert "more than 3 fields" in openai_error(send(client, O_FILES, urlencoded, "application/x-www-form-urlencoded"))


@pytest.mark.parametrize(
    "body",
    [b"garbage", b"--b0undary\r\n", b"--b0undary\r\nContent-Disposition: form-data\r\n\r\nx", b"--b0undary--"],
)
def test_a_malformed_multipart_body_is_a_400(client, demo_accounts, body):
    openai_error(send(client, O_FILES, body, "multipart/form-data; boundary=b0undary"))


# --- x-sim-fault -------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["bogus", "404", "500 ", "hang-forever", "none"])
def test_an_unknown_fault_is_the_callers_400_listing_the_known_ones(client, demo_accounts, fault):
    expected = f"x-sim-fault: unknown fault {fault.strip().lower()!r}; the known faults are "
    expected += "'429', '500', '529', 'hang', 'non-json'."
    if fault.strip() == "500":
        assert client.get(A_BATCHES, HTTP_X_SIM_FAULT=fault, **ANTHROPIC).status_code == 500  # known, padded
        return
    assert anthropic_error(client.get(A_BATCHES, HTTP_X_SIM_FAULT=fault, **ANTHROPIC)) == expected
    assert openai_error(client.get(O_BATCHES, HTTP_X_SIM_FAULT=fault, **OPENAI)) == expected
    assert anthropic_error(send(client, A_BATCHES, dumps({"requests": [request_item()]}), HTTP_X_SIM_FAULT=fault))


def test_an_empty_fault_header_leaves_the_accounts_fault(client, demo_accounts):
    assert client.get(A_BATCHES, HTTP_X_SIM_FAULT="  ", **ANTHROPIC).status_code == 200


# --- custom_id ---------------------------------------------------------------------------------


@pytest.mark.parametrize("custom_id", ["a\n", "a\r\n", "\na", "a\u0000", "a" * 65, "", "a b", "é"])
def test_a_custom_id_must_match_the_pattern_whole(client, demo_accounts, custom_id):
    message = anthropic_error(send(client, A_BATCHES, dumps({"requests": [request_item(custom_id)]})))
    assert message == "requests.0.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'"


def test_a_custom_id_of_64_allowed_characters_is_fine(client, demo_accounts):
    response = send(client, A_BATCHES, dumps({"requests": [request_item("aZ0_-" * 12 + "abcd")]}))
    assert response.status_code == 200, response.content


# --- what else Python's json would take that the APIs refuse -----------------------------------


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        (b"NaN", "The request body is not valid JSON."),
        (b"Infinity", "The request body is not valid JSON."),
        (b"-Infinity", "The request body is not valid JSON."),
        (b"1e999", "The request body is not valid JSON: a number in it is too large."),
        (b"1" * 40, "The request body is not valid JSON: a number in it is too large."),
    ],
)
def test_numbers_json_does_not_have_are_a_400(client, demo_accounts, literal, message):
    a_body = dumps({"requests": [request_item(temperature=0)]}).replace(
        b'"temperature": 0', b'"temperature": ' + literal
    )
    assert anthropic_error(send(client, A_BATCHES, a_body)) == message
    o_body = dumps(openai_create(metadata={"k": 0})).replace(b'"k": 0', b'"k": ' + literal)
    assert openai_error(send(client, O_BATCHES, o_body)) == message


@pytest.mark.parametrize("body", [b"{} x", b"{}{}", b"\xef\xbb\xbf{}", b"", b" ", b"\xff\xfe{\x00}\x00"])
def test_what_is_not_one_json_object_is_a_400_on_both(client, demo_accounts, body):
    assert error_of(send(client, A_BATCHES, body)).startswith("The request body ")
    assert error_of(send(client, O_BATCHES, body)).startswith("The request body ")


def test_of_duplicate_keys_the_last_wins_as_in_json(client, demo_accounts):
    item = json.dumps(request_item("b"))
    body = f'{{"requests": [5], "requests": [{item}]}}'
    created = send(client, A_BATCHES, body.encode())
    assert created.status_code == 200 and created.json()["request_counts"]["processing"] == 1
    body = f'{{"requests": [{item}, {item}], "requests": null}}'
    assert anthropic_error(send(client, A_BATCHES, body.encode())) == "requests: Field required"
    body = f'{{"requests": {{"a": [{item}]}}, "requests": "x"}}'
    assert anthropic_error(send(client, A_BATCHES, body.encode())) == "requests: Input should be a valid list"
    body = f'{{"requests": "x", "requests": [{item}, {json.dumps(request_item("c"))}]}}'
    assert send(client, A_BATCHES, body.encode()).json()["request_counts"]["processing"] == 2
    body = '{"completion_window": 1, "completion_window": "48h", "input_file_id": "f", "endpoint": "/v1/embeddings"}'
    assert openai_error(send(client, O_BATCHES, body.encode())).startswith("Invalid value: '48h'")


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("input_file_id", ["file-x"], "an array"),
        ("endpoint", {"a": 1}, "an object"),
        ("completion_window", 24, "an integer"),
        ("completion_window", 0, "an integer"),
        ("input_file_id", False, "a boolean"),
        ("endpoint", 1.5, "a decimal"),
    ],
)
def test_openai_create_fields_of_the_wrong_type_are_invalid_type(client, demo_accounts, field, value, kind):
    response = send(client, O_BATCHES, dumps({**openai_create(), field: value}))
    assert openai_error(response) == f"Invalid type for '{field}': expected a string, but got {kind} instead."
    assert response.json()["error"]["code"] == "invalid_type" and response.json()["error"]["param"] == field


# --- what PostgreSQL cannot store: U+0000, and (before migration 0003) long custom_ids and models ---


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", A_BATCHES + "/msgbatch_01a%00b"),
        ("POST", A_BATCHES + "/msgbatch_01a%00b/cancel"),
        ("DELETE", A_BATCHES + "/msgbatch_01a%00b"),
        ("GET", A_BATCHES + "/msgbatch_01a%00b/results"),
        ("GET", O_BATCHES + "/batch_a%00b"),
        ("POST", O_BATCHES + "/batch_a%00b/cancel"),
        ("GET", O_FILES + "/file-a%00b"),
        ("GET", O_FILES + "/file-a%00b/content"),
    ],
)
def test_an_id_with_a_nul_is_not_found(client, demo_accounts, method, path):
    response = send(client, path, b"", method=method)
    if path.startswith(A_BATCHES):
        anthropic_error(response, 404, "not_found_error")
    else:
        openai_error(response, 404)


def test_a_cursor_or_input_file_with_a_nul_is_a_400(client, demo_accounts):
    assert anthropic_error(client.get(A_BATCHES + "?after_id=a%00b", **ANTHROPIC)).startswith("after_id: no object")
    assert openai_error(client.get(O_BATCHES + "?after=a%00b", **OPENAI)).startswith("after: no object")
    assert "File not found" in openai_error(send(client, O_BATCHES, dumps(openai_create("file-\x00"))))


def test_a_nul_where_the_simulator_stores_text_is_refused(client, demo_accounts):
    message = anthropic_error(send(client, A_BATCHES, dumps({"requests": [request_item(model="m\x00")]})))
    assert message == "requests.0.params.model: String should not contain the NUL character (U+0000)"
    file_id = uploaded(client, dumps(LINE) + b"\n")
    for metadata in ({"k\x00": "v"}, {"k": "v\x00"}):
        response = send(client, O_BATCHES, dumps(openai_create(file_id, metadata=metadata)))
        assert "NUL" in openai_error(response) and response.json()["error"]["param"] == "metadata"
    content = b"\n".join(
        [dumps({**LINE, "custom_id": "a\x00"}), dumps({**LINE, "custom_id": "b", "body": {"model": "\x00"}})]
    )
    _, problems = input_problems(content, "/v1/chat/completions")
    assert [(p["code"], p["param"], p["line"]) for p in problems] == [
        ("invalid_value", "custom_id", 1),
        ("invalid_value", "body.model", 2),
    ]


def test_long_custom_ids_and_models_are_stored_whole(client, demo_accounts):
    long_model = "m" * 300
    created = send(client, A_BATCHES, dumps({"requests": [request_item(model=long_model)]}))
    assert created.status_code == 200, created.content
    line = {**LINE, "custom_id": "c" * 500, "body": {"model": long_model}}
    created = send(client, O_BATCHES, dumps(openai_create(uploaded(client, dumps(line) + b"\n"))))
    assert created.status_code == 200 and created.json()["model"] == long_model


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/simulator/anthropic/v1/messages/batches%0A", ANTHROPIC),
        ("/simulator/anthropic/x%0Ay", ANTHROPIC),
        ("/simulator/openai/v1/batches%0A", OPENAI),
        ("/simulator/openai/%0A", OPENAI),
    ],
)
def test_a_path_with_a_newline_gets_the_providers_404(client, demo_accounts, path, headers):
    response = client.get(path, **headers)
    if headers is ANTHROPIC:
        anthropic_error(response, 404, "not_found_error")
    else:
        openai_error(response, 404)


# --- properties: no bad request is a 5xx, every 4xx in the provider's envelope ----------------

BODY_ENDPOINTS = [
    ("POST", A_BATCHES),
    ("POST", A_BATCHES + "/msgbatch_01nope/cancel"),
    ("DELETE", A_BATCHES + "/msgbatch_01nope"),
    ("POST", O_BATCHES),
    ("POST", O_BATCHES + "/batch_nope/cancel"),
    ("POST", O_FILES),
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-16",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=bogus",
    "multipart/form-data",
    "multipart/form-data; boundary=b0undary",
    "multipart/form-data; boundary=b0undary; charset=latin-1",
    "",
]
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


ERROR_KINDS = {
    "anthropic": {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error"},
    "openai": {
        400: "invalid_request_error",
        404: "invalid_request_error",
        405: "invalid_request_error",
        409: "invalid_request_error",
    },
}


def assert_answered_as_the_api(response) -> None:
    assert response.status_code < 500, response.content[:500]
    if response.status_code < 400:
        assert isinstance(response.json(), dict)
        return
    provider = "anthropic" if "request-id" in response else "openai"
    kind = {**ERROR_KINDS[provider], 413: "request_too_large"}[response.status_code]
    (anthropic_error if provider == "anthropic" else openai_error)(response, response.status_code, kind)


# JSON texts as a client might send them, good or bad: json.dumps of values whose strings may hold lone
# surrogates (escaped, so legal JSON), plus the texts Python's json would take that others refuse.
# Characters that matter to a parser, lone surrogates among them (st.characters() leaves those out).
chars = st.characters() | st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\\", '"', "\n", "\x00"])
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(chars, max_size=12)
    | st.sampled_from(["a", "m", "24h", "/v1/chat/completions", "batch", "file-x", "a\n"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(chars, max_size=8)
            | st.sampled_from(["requests", "custom_id", "params", "model", "metadata", "input_file_id", "endpoint"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@st.composite
def json_texts(draw) -> bytes:
    text = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans()))  # NaN, Infinity as Python writes them
    mangle = draw(st.sampled_from(["none", "deep", "duplicate", "cut", "huge"]))
    if mangle == "deep":
        depth = draw(st.sampled_from([wire.MAX_JSON_DEPTH, wire.MAX_JSON_DEPTH + 1, DEEP]))
        at = draw(st.integers(0, len(text)))
        text = text[:at] + "[" * depth + text[at:]
    elif mangle == "duplicate" and text.startswith("{") and text != "{}":
        text = text[:-1] + ", " + text[1:]
    elif mangle == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif mangle == "huge":
        text = text.replace("0", "1e999", 1)
    return text.encode("utf-8", "surrogatepass")  # a raw surrogate, when not escaped: not UTF-8


@PROPERTY_SETTINGS
@given(st.sampled_from(BODY_ENDPOINTS), st.sampled_from(CONTENT_TYPES), st.binary(max_size=300))
@example(("POST", O_FILES), "multipart/form-data", b"--x\r\n")
@example(("POST", A_BATCHES), "application/json", b"\xed\xb0\x80")
def test_arbitrary_bytes_are_never_a_5xx(client, demo_accounts, endpoint, content_type, body):
    method, path = endpoint
    assert_answered_as_the_api(send(client, path, body, content_type, method=method))


@PROPERTY_SETTINGS
@given(st.sampled_from(BODY_ENDPOINTS), json_texts())
@example(("POST", A_BATCHES), b'{"requests": [{"custom_id": "\\udc00"}]}')
@example(("POST", O_BATCHES), b'{"metadata": ' + b"[" * DEEP)
def test_arbitrary_json_is_never_a_5xx(client, demo_accounts, endpoint, body):
    method, path = endpoint
    assert_answered_as_the_api(send(client, path, body, method=method))


anthropic_requests = st.lists(
    st.fixed_dictionaries(
        {"custom_id": json_scalars},
        optional={
            "params": json_values
            | st.fixed_dictionaries(
                {"model": json_scalars, "max_tokens": json_scalars, "messages": json_values},
                optional={"metadata": json_values},
            )
        },
    )
    | json_values,
    max_size=4,
)


@PROPERTY_SETTINGS
@given(anthropic_requests, st.booleans())
def test_arbitrary_anthropic_requests_are_never_a_5xx(client, demo_accounts, requests, ascii_only):
    body = json.dumps({"requests": requests}, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert_answered_as_the_api(send(client, A_BATCHES, body))


input_lines = st.lists(
    st.fixed_dictionaries(
        {"custom_id": json_scalars, "method": st.just("POST") | json_scalars},
        optional={"url": st.just("/v1/chat/completions") | json_scalars, "body": json_values},
    )
    | json_values,
    max_size=4,
)


@PROPERTY_SETTINGS
@given(
    input_lines,
    st.fixed_dictionaries(
        {},
        optional={
            "endpoint": st.just("/v1/chat/completions") | json_scalars,
            "completion_window": st.just("24h") | json_scalars,
            "metadata": json_values,
        },
    ),
)
def test_arbitrary_openai_input_files_and_creates_are_never_a_5xx(client, demo_accounts, lines, fields):
    content = "\n".join(json.dumps(line) for line in lines).encode()
    body = multipart(("purpose", b"batch", None), ("file", content, "in.jsonl"))
    upload = send(client, O_FILES, body, "multipart/form-data; boundary=b0undary")
    assert_answered_as_the_api(upload)
    file_id = upload.json()["id"] if upload.status_code == 200 else "file-x"
    create = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **fields}
    assert_answered_as_the_api(send(client, O_BATCHES, json.dumps(create).encode("utf-8", "surrogatepass")))
