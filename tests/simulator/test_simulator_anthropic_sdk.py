"""The Anthropic Message Batches simulator, driven by the official `anthropic` SDK over real HTTP.

Every endpoint is exercised through the SDK (and, where the SDK refuses to send a request, through
plain HTTP), so these tests fail if the simulator's wire format drifts from what the SDK parses.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import anthropic
import httpx
import httpx2
import pytest
from anthropic.types.messages import DeletedMessageBatch, MessageBatch, MessageBatchIndividualResponse

OPS, RESEARCH = "sk-ant-sim-ops", "sk-ant-sim-research"
VERSION = "2023-06-01"
MODEL = "claude-sonnet-4-5"
SLOW = {"x-sim-processing-seconds": "60"}

BATCH_KEYS = {
    "id",
    "type",
    "processing_status",
    "request_counts",
    "ended_at",
    "created_at",
    "expires_at",
    "archived_at",
    "cancel_initiated_at",
    "results_url",
}
COUNT_KEYS = {"processing", "succeeded", "errored", "canceled", "expired"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
BATCH_ID = re.compile(r"^msgbatch_[0-9A-Za-z]{24}$")
REQUEST_ID = re.compile(r"^req_[0-9A-Za-z]{20,}$")
RESULT_TYPES = {"succeeded", "errored", "canceled", "expired"}
WAIT_SECONDS = 12


# --- helpers ---------------------------------------------------------------------------------


def batch_requests(count: int, prefix: str | None = None, model: str = MODEL) -> list[dict]:
    prefix = prefix or "req-" + uuid.uuid4().hex[:8]
    return [
        {
            "custom_id": f"{prefix}-{i:04d}",
            "params": {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": f"Question {i}"}]},
        }
        for i in range(count)
    ]


def counts_of(batch: MessageBatch) -> dict[str, int]:
    rc = batch.request_counts
    return {
        "processing": rc.processing,
        "succeeded": rc.succeeded,
        "errored": rc.errored,
        "canceled": rc.canceled,
        "expired": rc.expired,
    }


def wait_until_ended(client: anthropic.Anthropic, batch_id: str, seconds: float = WAIT_SECONDS) -> MessageBatch:
    deadline = time.monotonic() + seconds
    seen = []
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        seen.append(batch.processing_status)
        if batch.processing_status == "ended":
            return batch
        assert batch.processing_status in {"in_progress", "canceling"}, batch
        if time.monotonic() > deadline:
            pytest.fail(f"batch {batch_id} did not end within {seconds}s; statuses seen: {set(seen)}")
        time.sleep(0.2)


def raw_http(simulator: str, key: str | None = OPS, version: str | None = VERSION) -> httpx.Client:
    headers = {}
    if key is not None:
        headers["x-api-key"] = key
    if version is not None:
        headers["anthropic-version"] = version
    return httpx.Client(base_url=simulator + "/anthropic", headers=headers, timeout=20)


def assert_error_envelope(response, status: int, kind: str) -> dict:
    """The provider's error shape: status, JSON envelope, request id in header and body agree."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"type", "error", "request_id"}, body
    assert body["type"] == "error"
    assert body["error"]["type"] == kind, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert REQUEST_ID.match(response.headers["request-id"]), response.headers
    assert body["request_id"] == response.headers["request-id"]
    return body


def assert_sdk_error(error: anthropic.APIStatusError, status: int, kind: str) -> dict:
    assert error.status_code == status
    assert error.type == kind
    assert error.request_id and REQUEST_ID.match(error.request_id)
    return assert_error_envelope(error.response, status, kind)


def parse_ts(value: str) -> datetime:
    assert TIMESTAMP.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- create and retrieve ---------------------------------------------------------------------


def test_create_returns_a_complete_in_progress_message_batch(anthropic_client):
    client = anthropic_client()
    requests = batch_requests(7)
    before = datetime.now(UTC)
    raw = client.messages.batches.with_raw_response.create(requests=requests, extra_headers=SLOW)
    after = datetime.now(UTC)

    assert raw.status_code == 200
    assert REQUEST_ID.match(raw.request_id)
    body = raw.http_response.json()
    assert set(body) == BATCH_KEYS
    assert set(body["request_counts"]) == COUNT_KEYS
    batch = raw.parse()
    assert isinstance(batch, MessageBatch)

    assert BATCH_ID.match(batch.id), batch.id
    assert batch.type == "message_batch"
    assert batch.processing_status == "in_progress"
    assert counts_of(batch) == {"processing": 7, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    assert sum(counts_of(batch).values()) == len(requests)
    assert batch.ended_at is None
    assert batch.cancel_initiated_at is None
    assert batch.archived_at is None
    assert batch.results_url is None
    for field in ("ended_at", "cancel_initiated_at", "archived_at", "results_url"):
        assert field in body and body[field] is None

    created, expires = parse_ts(body["created_at"]), parse_ts(body["expires_at"])
    assert batch.created_at == created and batch.expires_at == expires
    assert before - timedelta(seconds=2) <= created <= after + timedelta(seconds=2)
    assert expires - created == timedelta(hours=24)

    again = client.messages.batches.retrieve(batch.id)
    assert again.model_dump() == batch.model_dump()


def test_two_batches_get_distinct_ids_and_the_same_custom_ids_may_repeat_across_batches(anthropic_client):
    client = anthropic_client()
    requests = batch_requests(2, prefix="shared")
    first = client.messages.batches.create(requests=requests, extra_headers=SLOW)
    second = client.messages.batches.create(requests=requests, extra_headers=SLOW)
    assert first.id != second.id
    assert second.created_at >= first.created_at


def test_retrieve_of_an_unknown_batch_is_not_found(anthropic_client):
    client = anthropic_client()
    missing = "msgbatch_01" + "A" * 22
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.batches.retrieve(missing)
    body = assert_sdk_error(caught.value, 404, "not_found_error")
    assert missing in body["error"]["message"]
    for call in (client.messages.batches.cancel, client.messages.batches.delete):
        with pytest.raises(anthropic.NotFoundError):
            call(missing)
    with pytest.raises(anthropic.NotFoundError):
        client.get(f"/v1/messages/batches/{missing}/results", cast_to=httpx2.Response)


# --- list -------------------------------------------------------------------------------------


def test_list_pages_through_every_batch_newest_first(anthropic_client):
    client = anthropic_client()
    empty = client.messages.batches.list()
    assert empty.data == [] and empty.has_more is False
    assert empty.first_id is None and empty.last_id is None

    created = [client.messages.batches.create(requests=batch_requests(1), extra_headers=SLOW).id for _ in range(22)]
    newest_first = created[::-1]

    # Default limit is 20.
    raw = client.messages.batches.with_raw_response.list()
    assert set(raw.http_response.json()) == {"data", "has_more", "first_id", "last_id"}
    page = raw.parse()
    assert [b.id for b in page.data] == newest_first[:20]
    assert page.has_more is True
    assert page.first_id == newest_first[0] and page.last_id == newest_first[19]
    assert all(b.type == "message_batch" and b.processing_status == "in_progress" for b in page.data)

    # The SDK's auto-pagination over limit=1 sees every batch exactly once, newest first.
    pages_fetched = 0
    for sdk_page in client.messages.batches.list(limit=1).iter_pages():
        pages_fetched += 1
        assert len(sdk_page.data) == 1
    assert pages_fetched == 22
    assert [b.id for b in client.messages.batches.list(limit=1)] == newest_first

    # Manual after_id paging.
    walked, after = [], None
    while True:
        page = client.messages.batches.list(limit=1, **({"after_id": after} if after else {}))
        assert len(page.data) == 1
        assert page.first_id == page.last_id == page.data[0].id
        walked.append(page.data[0].id)
        if not page.has_more:
            break
        after = page.last_id
        assert len(walked) < 30, "has_more never became false"
    assert walked == newest_first

    # Manual before_id paging walks back up from the oldest towards the newest.
    walked, before = [], newest_first[-1]
    while True:
        page = client.messages.batches.list(limit=1, before_id=before)
        assert len(page.data) == 1
        assert page.first_id == page.last_id == page.data[0].id
        walked.append(page.data[0].id)
        if not page.has_more:
            break
        before = page.first_id
        assert len(walked) < 30, "has_more never became false"
    assert walked == created[1:]

    # The SDK follows first_id when paging with before_id.
    assert [b.id for b in client.messages.batches.list(limit=1, before_id=created[0])] == created[1:]

    # A before_id page is still ordered newest first, and is the page just newer than the cursor.
    page = client.messages.batches.list(limit=3, before_id=created[0])
    assert [b.id for b in page.data] == [created[3], created[2], created[1]]
    assert page.first_id == created[3] and page.last_id == created[1] and page.has_more is True
    page = client.messages.batches.list(limit=3, before_id=created[-3])
    assert [b.id for b in page.data] == [created[-1], created[-2]] and page.has_more is False

    # An after_id page starts just older than the cursor.
    page = client.messages.batches.list(limit=5, after_id=newest_first[2])
    assert [b.id for b in page.data] == newest_first[3:8] and page.has_more is True
    page = client.messages.batches.list(limit=5, after_id=newest_first[-2])
    assert [b.id for b in page.data] == [newest_first[-1]] and page.has_more is False

    # The maximum limit is allowed and returns everything.
    page = client.messages.batches.list(limit=1000)
    assert [b.id for b in page.data] == newest_first and page.has_more is False


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_list_limit_outside_1_to_1000_is_a_bad_request(anthropic_client, limit):
    client = anthropic_client()
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.batches.list(limit=limit)
    assert_sdk_error(caught.value, 400, "invalid_request_error")


# --- cancel, wait, results, delete ------------------------------------------------------------


@pytest.mark.usefixtures("fast_simulator")
def test_cancel_of_a_long_batch_ends_it_with_canceled_requests(anthropic_client):
    client = anthropic_client()
    requests = batch_requests(12)
    custom_ids = {r["custom_id"] for r in requests}
    batch = client.messages.batches.create(requests=requests, extra_headers=SLOW)
    assert batch.processing_status == "in_progress"

    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.id == batch.id
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    assert canceling.created_at <= canceling.cancel_initiated_at <= datetime.now(UTC) + timedelta(seconds=2)
    assert canceling.ended_at is None and canceling.results_url is None
    assert counts_of(canceling)["processing"] == len(requests)
    assert sum(counts_of(canceling).values()) == len(requests)

    # A second cancel while canceling is accepted and keeps the first cancel time.
    twice = client.messages.batches.cancel(batch.id)
    assert twice.processing_status == "canceling"
    assert twice.cancel_initiated_at == canceling.cancel_initiated_at

    # Still processing, so it can neither be deleted nor have results.
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.batches.delete(batch.id)
    assert_sdk_error(caught.value, 400, "invalid_request_error")
    with pytest.raises(anthropic.BadRequestError):
        client.get(f"/v1/messages/batches/{batch.id}/results", cast_to=httpx2.Response)

    ended = wait_until_ended(client, batch.id)
    counts = counts_of(ended)
    assert counts["processing"] == 0
    assert sum(counts.values()) == len(requests)
    assert counts["canceled"] > 0
    assert ended.cancel_initiated_at == canceling.cancel_initiated_at
    assert ended.ended_at is not None and ended.ended_at >= ended.cancel_initiated_at
    assert ended.ended_at < ended.created_at + timedelta(seconds=60)
    assert ended.results_url and ended.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")

    lines = list(client.messages.batches.results(batch.id))
    assert len(lines) == len(requests)
    assert {line.custom_id for line in lines} == custom_ids
    tally = Counter(line.result.type for line in lines)
    assert set(tally) <= RESULT_TYPES
    assert {kind: tally.get(kind, 0) for kind in RESULT_TYPES} == {k: v for k, v in counts.items() if k != "processing"}
    assert tally["canceled"] == counts["canceled"] > 0

    # Ended: it can no longer be canceled, and the error is the API's 400, not a crash.
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.batches.cancel(batch.id)
    assert_sdk_error(caught.value, 400, "invalid_request_error")
    assert client.messages.batches.retrieve(batch.id).processing_status == "ended"


@pytest.mark.usefixtures("fast_simulator")
def test_results_of_an_ended_batch_match_the_requests_and_the_counts(anthropic_client, simulator):
    client = anthropic_client()
    # 100 requests cover every fate slot exactly once: 8% errored and 2% expired by default.
    requests = batch_requests(100, prefix="eval")
    models = {r["custom_id"]: r["params"]["model"] for r in requests}
    batch = client.messages.batches.create(requests=requests)
    assert batch.processing_status == "in_progress"
    assert batch.results_url is None
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        client.messages.batches.results(batch.id)

    ended = wait_until_ended(client, batch.id)
    counts = counts_of(ended)
    assert counts["processing"] == 0 and counts["canceled"] == 0
    assert sum(counts.values()) == 100
    assert counts["errored"] > 0 and counts["succeeded"] > 0
    assert ended.cancel_initiated_at is None
    assert ended.created_at < ended.ended_at <= ended.created_at + timedelta(seconds=5)
    assert ended.results_url.startswith(simulator + "/anthropic/v1/messages/batches/")

    lines = list(client.messages.batches.results(batch.id))
    assert all(isinstance(line, MessageBatchIndividualResponse) for line in lines)
    assert len(lines) == 100
    assert {line.custom_id for line in lines} == set(models)
    tally = Counter(line.result.type for line in lines)
    assert set(tally) <= RESULT_TYPES
    assert {kind: tally.get(kind, 0) for kind in RESULT_TYPES} == {k: v for k, v in counts.items() if k != "processing"}

    error_kinds = set()
    for line in lines:
        result = line.result
        if result.type == "succeeded":
            message = result.message
            assert message.id.startswith("msg_")
            assert message.type == "message" and message.role == "assistant"
            assert message.model == models[line.custom_id]
            assert message.content and message.content[0].type == "text" and message.content[0].text
            assert message.stop_reason in {"end_turn", "max_tokens"}
            assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
        elif result.type == "errored":
            assert result.error.type == "error"
            assert result.error.error.type in {"invalid_request_error", "api_error", "overloaded_error"}
            assert result.error.error.message
            assert result.error.request_id and result.error.request_id.startswith("req_")
            error_kinds.add(result.error.error.type)
    assert error_kinds

    # The same stream over the raw path: JSON Lines, one object with exactly two keys per line.
    with raw_http(simulator) as http:
        response = http.get(f"/v1/messages/batches/{batch.id}/results")
    assert response.status_code == 200
    assert REQUEST_ID.match(response.headers["request-id"])
    raw_lines = response.text.splitlines()
    assert len(raw_lines) == 100
    parsed = [json.loads(text) for text in raw_lines]
    assert all(set(item) == {"custom_id", "result"} for item in parsed)
    errored = [item for item in parsed if item["result"]["type"] == "errored"]
    assert errored and all(set(item["result"]["error"]) == {"type", "error", "request_id"} for item in errored)
    assert all(set(item["result"]) == {"type"} for item in parsed if item["result"]["type"] in {"canceled", "expired"})

    # Results are stable between reads.
    assert [line.model_dump() for line in client.messages.batches.results(batch.id)] == [
        line.model_dump() for line in lines
    ]


def test_results_before_the_batch_has_ended_are_a_bad_request(anthropic_client, simulator):
    client = anthropic_client()
    batch = client.messages.batches.create(requests=batch_requests(3), extra_headers=SLOW)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.get(f"/v1/messages/batches/{batch.id}/results", cast_to=httpx2.Response)
    assert_sdk_error(caught.value, 400, "invalid_request_error")
    with raw_http(simulator) as http:
        response = http.get(f"/v1/messages/batches/{batch.id}/results")
    assert_error_envelope(response, 400, "invalid_request_error")


@pytest.mark.usefixtures("fast_simulator")
def test_delete_only_ended_batches_then_they_are_gone(anthropic_client):
    client = anthropic_client()
    running = client.messages.batches.create(requests=batch_requests(2), extra_headers=SLOW)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.batches.delete(running.id)
    assert_sdk_error(caught.value, 400, "invalid_request_error")
    assert client.messages.batches.retrieve(running.id).processing_status == "in_progress"

    quick = client.messages.batches.create(
        requests=batch_requests(3), extra_headers={"x-sim-processing-seconds": "0.5"}
    )
    wait_until_ended(client, quick.id)

    raw = client.messages.batches.with_raw_response.delete(quick.id)
    assert raw.status_code == 200
    assert REQUEST_ID.match(raw.request_id)
    assert raw.http_response.json() == {"id": quick.id, "type": "message_batch_deleted"}
    deleted = raw.parse()
    assert isinstance(deleted, DeletedMessageBatch)
    assert deleted.id == quick.id and deleted.type == "message_batch_deleted"

    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.batches.retrieve(quick.id)
    assert_sdk_error(caught.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.delete(quick.id)
    with pytest.raises(anthropic.NotFoundError):
        client.get(f"/v1/messages/batches/{quick.id}/results", cast_to=httpx2.Response)
    assert [b.id for b in client.messages.batches.list()] == [running.id]


# --- auth and isolation -----------------------------------------------------------------------


def test_a_wrong_key_is_an_authentication_error(anthropic_client, simulator):
    client = anthropic_client(key="sk-ant-sim-nobody")
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.batches.list()
    assert_sdk_error(caught.value, 401, "authentication_error")
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.batches.create(requests=batch_requests(1))
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.batches.retrieve("msgbatch_01" + "B" * 22)

    with raw_http(simulator, key="sk-ant-sim-nobody") as http:
        assert_error_envelope(http.get("/v1/messages/batches"), 401, "authentication_error")
    with raw_http(simulator, key=None) as http:
        assert_error_envelope(http.get("/v1/messages/batches"), 401, "authentication_error")
    # Nothing was created by the rejected create.
    assert anthropic_client().messages.batches.list().data == []


def test_the_documented_x_api_key_header_and_a_missing_anthropic_version(anthropic_client, simulator):
    created = anthropic_client().messages.batches.create(requests=batch_requests(1), extra_headers=SLOW)
    with raw_http(simulator) as http:
        response = http.get(f"/v1/messages/batches/{created.id}")
        assert response.status_code == 200
        assert response.json()["id"] == created.id
    with raw_http(simulator, version=None) as http:
        body = assert_error_envelope(http.get(f"/v1/messages/batches/{created.id}"), 400, "invalid_request_error")
        assert "anthropic-version" in body["error"]["message"]
        assert_error_envelope(
            http.post("/v1/messages/batches", json={"requests": batch_requests(1)}), 400, "invalid_request_error"
        )
    assert [b.id for b in anthropic_client().messages.batches.list()] == [created.id]


def test_accounts_are_isolated(anthropic_client, simulator):
    ops, research = anthropic_client(OPS), anthropic_client(RESEARCH)
    mine = ops.messages.batches.create(requests=batch_requests(2), extra_headers=SLOW)
    theirs = research.messages.batches.create(requests=batch_requests(1), extra_headers=SLOW)

    with pytest.raises(anthropic.NotFoundError) as caught:
        research.messages.batches.retrieve(mine.id)
    assert_sdk_error(caught.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        research.messages.batches.cancel(mine.id)
    with pytest.raises(anthropic.NotFoundError):
        research.messages.batches.delete(mine.id)
    with pytest.raises(anthropic.NotFoundError):
        research.get(f"/v1/messages/batches/{mine.id}/results", cast_to=httpx2.Response)

    assert [b.id for b in research.messages.batches.list()] == [theirs.id]
    assert [b.id for b in ops.messages.batches.list()] == [mine.id]
    # The research key's failed cancel did not touch the ops batch.
    still = ops.messages.batches.retrieve(mine.id)
    assert still.processing_status == "in_progress" and still.cancel_initiated_at is None


# --- request ids -------------------------------------------------------------------------------


@pytest.mark.usefixtures("fast_simulator")
def test_every_response_carries_a_request_id(anthropic_client, simulator):
    client = anthropic_client()
    batches = client.messages.batches.with_raw_response
    seen = []

    created = batches.create(requests=batch_requests(2), extra_headers={"x-sim-processing-seconds": "0.3"})
    batch_id = created.parse().id
    seen.append(created.request_id)
    retrieved = batches.retrieve(batch_id)
    assert retrieved.parse().id == batch_id
    seen.append(retrieved.request_id)
    seen.append(batches.list(limit=1).request_id)
    wait_until_ended(client, batch_id)
    seen.append(client.get(f"/v1/messages/batches/{batch_id}/results", cast_to=httpx2.Response).headers["request-id"])
    seen.append(batches.delete(batch_id).request_id)

    running = client.messages.batches.create(requests=batch_requests(2), extra_headers=SLOW)
    seen.append(batches.cancel(running.id).request_id)

    for call in (
        lambda: client.messages.batches.retrieve(batch_id),
        lambda: anthropic_client("bad").messages.batches.list(),
    ):
        with pytest.raises(anthropic.APIStatusError) as caught:
            call()
        seen.append(caught.value.request_id)
    with raw_http(simulator) as http:
        seen.append(http.get("/v1/messages/batchez").headers["request-id"])
        seen.append(
            http.get(f"/v1/messages/batches/{running.id}", headers={"x-sim-fault": "non-json"}).headers["request-id"]
        )

    assert all(rid and REQUEST_ID.match(rid) for rid in seen), seen
    assert len(set(seen)) == len(seen)


# --- create validation -------------------------------------------------------------------------


def _request(custom_id="ok-1", **params):
    base = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    return {"custom_id": custom_id, "params": {**base, **params}}


def _without(key):
    request = _request()
    del request["params"][key]
    return request


INVALID_CREATES = {
    "empty requests": ([], "requests"),
    "duplicate custom_id": ([_request("same"), _request("other"), _request("same")], "requests.2.custom_id"),
    "custom_id with a space": ([_request("has space")], "requests.0.custom_id"),
    "custom_id with a dot": ([_request("ok-1"), _request("a.b")], "requests.1.custom_id"),
    "custom_id with a slash": ([_request("a/b")], "requests.0.custom_id"),
    "custom_id non-ascii": ([_request("café")], "requests.0.custom_id"),
    "custom_id of 65 chars": ([_request("x" * 65)], "requests.0.custom_id"),
    "empty custom_id": ([_request("")], "requests.0.custom_id"),
    "missing custom_id": ([{"params": _request()["params"]}], "requests.0.custom_id"),
    "missing params": ([{"custom_id": "no-params"}], "requests.0.params"),
    "missing model": ([_without("model")], "requests.0.params.model"),
    "missing max_tokens": ([_without("max_tokens")], "requests.0.params.max_tokens"),
    "missing messages": ([_without("messages")], "requests.0.params.messages"),
    "request not an object": (["nope"], "requests.0"),
}


@pytest.mark.parametrize("requests, where", INVALID_CREATES.values(), ids=INVALID_CREATES.keys())
def test_invalid_creates_are_bad_requests_and_create_nothing(anthropic_client, requests, where):
    client = anthropic_client()
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.batches.create(requests=requests)
    body = assert_sdk_error(caught.value, 400, "invalid_request_error")
    assert body["error"]["message"].startswith(where + ":"), body
    assert client.messages.batches.list().data == []


def test_bodies_without_a_requests_list_are_bad_requests(anthropic_client, simulator):
    client = anthropic_client()
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.post("/v1/messages/batches", body={}, cast_to=MessageBatch)
    assert caught.value.api_message.startswith("requests:")
    with pytest.raises(anthropic.BadRequestError):
        client.post("/v1/messages/batches", body={"requests": {"custom_id": "x"}}, cast_to=MessageBatch)
    with raw_http(simulator) as http:
        response = http.post("/v1/messages/batches", content=b"{not json", headers={"content-type": "application/json"})
        assert_error_envelope(response, 400, "invalid_request_error")
        response = http.post("/v1/messages/batches", json=[1, 2])
        assert_error_envelope(response, 400, "invalid_request_error")
    assert client.messages.batches.list().data == []


@pytest.mark.parametrize("span", ["inf", "1e300"])
def test_a_rejected_create_leaves_no_batch_behind(anthropic_client, span):
    """An unusable processing span is refused, and the account's list keeps working afterwards."""
    client = anthropic_client()
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.batches.create(requests=batch_requests(1), extra_headers={"x-sim-processing-seconds": span})
    assert caught.value.status_code in {400, 500}
    assert caught.value.body["type"] == "error"
    page = client.messages.batches.list()
    assert page.data == [] and page.has_more is False


def test_boundary_custom_ids_are_accepted(anthropic_client):
    client = anthropic_client()
    ids = ["x" * 64, "a", "A-z_0-9"]
    batch = client.messages.batches.create(requests=[_request(i) for i in ids], extra_headers=SLOW)
    assert batch.request_counts.processing == 3


# --- faults and unknown routes -----------------------------------------------------------------


def test_rate_limit_fault_is_a_rate_limit_error_with_retry_after(anthropic_client):
    client = anthropic_client()
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.batches.create(requests=batch_requests(1), extra_headers={"x-sim-fault": "429"})
    assert_sdk_error(caught.value, 429, "rate_limit_error")
    retry_after = caught.value.response.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    # The faulted create did not create anything.
    assert client.messages.batches.list().data == []


def test_overloaded_fault_is_a_529_overloaded_error(anthropic_client):
    client = anthropic_client()
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.batches.list(extra_headers={"x-sim-fault": "529"})
    assert isinstance(caught.value, anthropic.APIStatusError)
    assert_sdk_error(caught.value, 529, "overloaded_error")


def test_server_error_fault_is_an_internal_server_error(anthropic_client):
    client = anthropic_client()
    batch = client.messages.batches.create(requests=batch_requests(1), extra_headers=SLOW)
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.batches.retrieve(batch.id, extra_headers={"x-sim-fault": "500"})
    assert_sdk_error(caught.value, 500, "api_error")
    with pytest.raises(anthropic.InternalServerError):
        client.messages.batches.cancel(batch.id, extra_headers={"x-sim-fault": "500"})
    # The faulted cancel did not cancel.
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"


@pytest.mark.usefixtures("fast_simulator")
def test_hang_fault_times_the_client_out(anthropic_client, settings):
    settings.SIMULATOR_HANG_SECONDS = 2  # well past the client's timeout
    client = anthropic_client(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.batches.list(extra_headers={"x-sim-fault": "hang"})
    assert time.monotonic() - started < 1.9
    # Let the hung server thread finish before the database is flushed.
    time.sleep(max(0.0, 2.3 - (time.monotonic() - started)))


def test_latency_header_delays_the_answer(anthropic_client):
    slow_client = anthropic_client(timeout=0.3)
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        slow_client.messages.batches.list(extra_headers={"x-sim-latency-ms": "1200"})
    assert time.monotonic() - started < 1.0
    time.sleep(1.0)  # let the delayed server thread finish
    client = anthropic_client()
    started = time.monotonic()
    page = client.messages.batches.list(extra_headers={"x-sim-latency-ms": "400"})
    assert time.monotonic() - started >= 0.4
    assert page.data == []


def test_non_json_fault_does_not_parse_as_a_message_batch(anthropic_client):
    client = anthropic_client()
    batch = client.messages.batches.create(requests=batch_requests(1), extra_headers=SLOW)
    try:
        outcome = client.messages.batches.retrieve(batch.id, extra_headers={"x-sim-fault": "non-json"})
    except anthropic.APIError as error:  # e.g. APIResponseValidationError under strict validation
        outcome = error
    assert not isinstance(outcome, MessageBatch)
    if isinstance(outcome, str):
        assert "<html>" in outcome and batch.id not in outcome
    raw = client.messages.batches.with_raw_response.retrieve(batch.id, extra_headers={"x-sim-fault": "non-json"})
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        raw.http_response.json()

    strict = anthropic.Anthropic(
        api_key=OPS, base_url=client.base_url, max_retries=0, timeout=20, _strict_response_validation=True
    )
    with pytest.raises(anthropic.APIResponseValidationError):
        strict.messages.batches.retrieve(batch.id, extra_headers={"x-sim-fault": "non-json"})


def test_unknown_routes_are_404_in_the_provider_envelope(anthropic_client, simulator):
    with raw_http(simulator) as http:
        for method, path in [
            ("GET", "/v1/messages/batchez"),
            ("POST", "/v1/messages/batchez"),
            ("GET", "/v1/messages/batches/msgbatch_01x/nope"),
            ("GET", "/v1/batches"),
        ]:
            body = assert_error_envelope(http.request(method, path), 404, "not_found_error")
            assert path in body["error"]["message"]
    client = anthropic_client()
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.get("/v1/messages/batchez", cast_to=httpx2.Response)
    assert_sdk_error(caught.value, 404, "not_found_error")


def test_wrong_method_on_a_known_route_is_an_error_envelope(anthropic_client, simulator):
    batch = anthropic_client().messages.batches.create(requests=batch_requests(1), extra_headers=SLOW)
    with raw_http(simulator) as http:
        for method, path in [
            ("PUT", "/v1/messages/batches"),
            ("POST", f"/v1/messages/batches/{batch.id}"),
            ("GET", f"/v1/messages/batches/{batch.id}/cancel"),
            ("DELETE", f"/v1/messages/batches/{batch.id}/results"),
        ]:
            assert_error_envelope(http.request(method, path), 405, "invalid_request_error")
    assert anthropic_client().messages.batches.retrieve(batch.id).processing_status == "in_progress"
