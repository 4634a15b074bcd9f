"""The simulator's request size limits are the real APIs' documented ones, and big bodies are read
as streams: a create body is parsed as it arrives, never held whole (as bytes, text or objects)."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from django.test import Client, RequestFactory
from hypothesis import given
from hypothesis import strategies as st

from dashboard.simulator import openai_api, wire
from dashboard.simulator.openai_api import input_problems
from tests.conftest import ANTHROPIC_KEYS, OPENAI_KEYS

ANTHROPIC = {"HTTP_X_API_KEY": ANTHROPIC_KEYS["ops"], "HTTP_ANTHROPIC_VERSION": "2023-06-01"}
OPENAI = {"HTTP_AUTHORIZATION": f"Bearer {OPENAI_KEYS['ops']}"}
CREATE = "/simulator/anthropic/v1/messages/batches"


def request_item(custom_id: str, text: str = "hi") -> dict:
    return {
        "custom_id": custom_id,
        "params": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": text}]},
    }


def post_json(client: Client, body: bytes, **extra):
    return client.post(CREATE, data=body, content_type="application/json", **ANTHROPIC, **extra)


def error_message(response) -> str:
    return response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "The request body is not valid JSON."),
        (b"{not json", "The request body is not valid JSON."),
        (b'{"requests": [1, 2', "The request body is not valid JSON."),
        (b"[]", "The request body must be a JSON object."),
        (b'"text"', "The request body must be a JSON object."),
        (b"{}", "requests: Field required"),
        (b'{"requests": null}', "requests: Field required"),
        (b'{"requests": {"a": 1}}', "requests: Input should be a valid list"),
        (b'{"requests": "abc"}', "requests: Input should be a valid list"),
        (b'{"requests": []}', "requests: List should have at least 1 item after validation, not 0"),
        (b'{"requests": [5]}', "requests.0: Input should be a valid dictionary"),
        (b'{"requests": [[1, [2]]]}', "requests.0: Input should be a valid dictionary"),
    ],
)
def test_malformed_create_bodies_get_the_apis_400(client, demo_accounts, body, message):
    response = post_json(client, body)
    assert response.status_code == 400
    assert error_message(response) == message


def test_items_after_nested_lists_and_objects_are_read_in_order(client, demo_accounts):
    body = {
        "requests": [request_item("a"), {**request_item("b"), "extra": [[1, {"x": [2]}], {}]}, request_item("c")],
        "other": {"requests": 1},
    }
    response = post_json(client, json.dumps(body).encode())
    assert response.status_code == 200, response.content
    assert response.json()["request_counts"]["processing"] == 3


def test_a_duplicate_custom_id_is_found_while_streaming(client, demo_accounts):
    body = {"requests": [request_item("a"), request_item("b"), request_item("a")]}
    response = post_json(client, json.dumps(body).encode())
    assert response.status_code == 400
    assert error_message(response).startswith("requests.2.custom_id: Duplicate custom_id 'a'")


def test_over_100000_requests_is_refused_with_the_count(client, demo_accounts):
    body = json.dumps({"requests": [request_item(f"r{i}") for i in range(100_001)]}).encode()
    response = post_json(client, body)
    assert response.status_code == 400
    assert error_message(response) == "requests: List should have at most 100000 items after validation, not 100001"


def test_a_declared_body_over_256_mb_is_refused_before_reading(client, demo_accounts):
    response = post_json(client, b'{"requests": []}', CONTENT_LENGTH=str(256 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


def test_a_body_longer_than_the_limit_is_cut_off_while_streaming(rf):
    """Whatever Content-Length said, reading stops at the limit."""
    from dashboard.simulator.anthropic_api import DIALECT

    body = json.dumps({"requests": [request_item(f"r{i}") for i in range(200)]}).encode()
    request = rf.post("/", data=body, content_type="application/json")
    with pytest.raises(wire.ApiError) as refused:
        list(wire.stream_json_list(request, DIALECT, key="requests", limit=len(body) // 2))
    assert refused.value.status == 413


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4),
    max_leaves=25,
)


@given(items=st.lists(JSON_VALUES, max_size=5), duplicate=st.dictionaries(st.sampled_from("ab"), JSON_VALUES))
def test_streamed_items_are_what_json_reads(items, duplicate):
    """The streamed items are built from parser events by hand: they are the values Python's json reads,
    nested or not, and a key given twice in an object keeps its last value, as in json."""
    from dashboard.simulator.anthropic_api import DIALECT

    repeated = "{" + ", ".join(f'"a": {json.dumps(value)}' for value in [*duplicate.values(), 1]) + "}"
    body = '{"requests": [' + ", ".join([*map(json.dumps, items), repeated]) + "]}"
    request = RequestFactory().post("/", data=body.encode(), content_type="application/json")
    assert list(wire.stream_json_list(request, DIALECT, key="requests")) == json.loads(body)["requests"]


def test_a_big_create_body_is_parsed_in_a_fraction_of_its_size(rf):
    from dashboard.simulator.anthropic_api import validated_requests

    padding = "x" * 2000
    body = json.dumps({"requests": [request_item(f"r{i}", padding) for i in range(25_000)]}).encode()
    request = rf.post("/", data=body, content_type="application/json")
    tracemalloc.start()
    try:
        validated = validated_requests(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(validated) == 25_000 and validated[-1] == ("r24999", "m")
    print(f"\ncreate body {len(body) / 1e6:.1f} MB parsed with a peak of {peak / 1e6:.1f} MB")
    assert len(body) > 45_000_000
    assert peak < len(body) / 5, "the body, or its text, or its parsed objects, were held whole"


# --- OpenAI files ------------------------------------------------------------------------------


def upload(client: Client, content: bytes, *, name: str = "in.jsonl", purpose: str = "batch", **extra):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        "/simulator/openai/v1/files", {"purpose": purpose, "file": SimpleUploadedFile(name, content)}, **OPENAI, **extra
    )


def test_a_declared_upload_over_the_files_limit_is_refused_before_parsing(client, demo_accounts):
    response = upload(client, b"{}\n", CONTENT_LENGTH=str(513 * 1024 * 1024 + 1024 * 1024))
    assert response.status_code == 413


def test_batch_input_files_have_their_own_smaller_limit(client, demo_accounts, monkeypatch):
    monkeypatch.setattr(openai_api, "MAX_BATCH_INPUT_BYTES", 1000)
    line = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}})
    too_big = ((line + "\n") * 20).encode()
    refused = upload(client, too_big)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "file_too_large"
    assert upload(client, too_big, name="notes.txt", purpose="user_data").status_code == 200
    monkeypatch.setattr(openai_api, "MAX_FILE_BYTES", 1000)
    assert upload(client, too_big, name="notes.txt", purpose="user_data").status_code == 413


def test_input_lines_are_split_on_newlines_only_as_jsonl_says():
    line = json.dumps(
        {
            "custom_id": "a\u2028b",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "note": "x\u2029\x0cy"},
        },
        ensure_ascii=False,
    )
    content = (line + "\r\n\n" + line.replace("a\u2028b", "c") + "\n").encode()
    requests, problems = input_problems(content, "/v1/chat/completions")
    assert problems == []
    assert requests == [("a\u2028b", "m"), ("c", "m")]


def test_input_problems_name_the_line_and_put_too_many_first(monkeypatch):
    monkeypatch.setattr(openai_api, "MAX_INPUT_LINES", 2)
    good = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}})
    content = "\n".join([good, "", "not json", good.replace('"a"', '"b"')]).encode()
    _, problems = input_problems(content, "/v1/chat/completions")
    assert [(p["code"], p["line"]) for p in problems] == [("too_many_requests", None), ("invalid_json_line", 3)]
    assert problems[0]["message"] == "The batch input file has 3 requests; the limit is 2."
    _, problems = input_problems(b"\xff\xfe\n" + good.encode(), "/v1/chat/completions")
    assert [p["code"] for p in problems] == ["invalid_file_format"]
    _, problems = input_problems(b"\n \n", "/v1/chat/completions")
    assert [p["code"] for p in problems] == ["empty_file"]
