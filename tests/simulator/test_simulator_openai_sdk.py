"""The official `openai` SDK, over real HTTP, against the embedded OpenAI Batch/Files simulator.

Every endpoint the simulator serves is driven through the SDK a real user would use, so what is
asserted here is what a client of the real API would see: object shapes, statuses and their
timestamps, paging, error classes and bodies, headers and injected faults.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from openai.types import Batch, FileObject

from dashboard.simulator.models import SimBatch
from tests.factories import OPENAI_KEYS

CHAT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
BATCH_FIELDS = {
    "id",
    "object",
    "endpoint",
    "model",
    "errors",
    "input_file_id",
    "completion_window",
    "status",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "request_counts",
    "usage",
    "metadata",
}
PROGRESS_ORDER = ["validating", "in_progress", "finalizing", "completed"]


# --- helpers -------------------------------------------------------------------------------


def chat_line(custom_id: str, *, url: str = CHAT, model: str = MODEL) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": url,
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": f"Say hello to {custom_id}."}],
            "max_tokens": 50,
        },
    }


def jsonl(lines: list[dict | str]) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def upload(client: openai.OpenAI, content: bytes, name: str = "requests.jsonl") -> FileObject:
    return client.files.create(file=(name, content, "application/jsonl"), purpose="batch")


def new_batch(
    client: openai.OpenAI, count: int = 5, *, processing_seconds: float | None = None, metadata: dict | None = None
) -> Batch:
    file = upload(client, jsonl([chat_line(f"req-{i}") for i in range(count)]))
    headers = {} if processing_seconds is None else {"x-sim-processing-seconds": str(processing_seconds)}
    return client.batches.create(
        input_file_id=file.id, endpoint=CHAT, completion_window="24h", metadata=metadata, extra_headers=headers
    )


def watch(client: openai.OpenAI, batch_id: str, until, *, seconds: float = 14, every: float = 0.1) -> list[Batch]:
    """Every snapshot of the batch until `until(batch)` holds; fails past the deadline."""
    deadline = time.monotonic() + seconds
    seen = []
    while True:
        batch = client.batches.retrieve(batch_id)
        seen.append(batch)
        if until(batch):
            return seen
        assert time.monotonic() < deadline, f"batch stuck; last statuses {[b.status for b in seen[-5:]]}"
        time.sleep(every)


def read_lines(client: openai.OpenAI, file_id: str) -> list[dict]:
    text = client.files.content(file_id).text
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def counts_within_total(batch: Batch) -> bool:
    counts = batch.request_counts
    return 0 <= counts.completed and 0 <= counts.failed and counts.completed + counts.failed <= counts.total


# --- files ---------------------------------------------------------------------------------


def test_file_upload_retrieve_and_content_round_trip(openai_client):
    client = openai_client()
    content = jsonl([chat_line("alpha"), chat_line("beta"), chat_line("gamma")])

    created = upload(client, content, name="round-trip.jsonl")

    assert isinstance(created, FileObject)
    assert created.id.startswith("file-")
    assert created.object == "file"
    assert created.purpose == "batch"
    assert created.filename == "round-trip.jsonl"
    assert created.bytes == len(content)
    assert isinstance(created.created_at, int) and abs(created.created_at - time.time()) < 60
    assert created.status == "processed"
    assert created.model_extra == {}

    fetched = client.files.retrieve(created.id)
    assert fetched.model_dump() == created.model_dump()

    body = client.files.content(created.id)
    assert body.content == content


def test_file_upload_rejects_unknown_purpose_and_non_jsonl_name(openai_client):
    client = openai_client()
    with pytest.raises(openai.BadRequestError) as bad_purpose:
        client.files.create(file=("x.jsonl", b"{}\n", "application/jsonl"), purpose="nonsense")
    assert bad_purpose.value.param == "purpose"
    with pytest.raises(openai.BadRequestError) as bad_name:
        client.files.create(file=("x.csv", b"a,b\n", "text/csv"), purpose="batch")
    assert "jsonl" in bad_name.value.body["message"]


# --- batches: create and progress ----------------------------------------------------------


def test_batch_create_returns_every_documented_field(openai_client):
    client = openai_client()
    file = upload(client, jsonl([chat_line(f"req-{i}") for i in range(3)]))
    raw = client.batches.with_raw_response.create(
        input_file_id=file.id,
        endpoint=CHAT,
        completion_window="24h",
        metadata={"team": "ops", "run": "nightly-7"},
    )
    payload = raw.http_response.json()
    batch = raw.parse()

    assert set(payload) == BATCH_FIELDS
    assert batch.model_extra == {}
    assert batch.id.startswith("batch_")
    assert batch.object == "batch"
    assert batch.status == "validating"
    assert batch.endpoint == CHAT
    assert batch.input_file_id == file.id
    assert batch.completion_window == "24h"
    assert isinstance(payload["created_at"], int) and abs(payload["created_at"] - time.time()) < 60
    assert batch.expires_at == batch.created_at + 86_400
    for name in (
        "in_progress_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
        "output_file_id",
        "error_file_id",
        "errors",
    ):
        assert payload[name] is None, name
    # Like the real API, requests are only counted once validation has read the file.
    assert payload["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert batch.metadata == {"team": "ops", "run": "nightly-7"}
    assert batch.model == MODEL
    assert payload["usage"] == {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }

    again = client.batches.retrieve(batch.id)
    assert again.id == batch.id and again.created_at == batch.created_at and again.metadata == batch.metadata


@pytest.mark.slow
@pytest.mark.usefixtures("fast_simulator")
def test_batch_runs_to_completed_with_output_and_error_files(openai_client, settings):
    settings.SIMULATOR_ERROR_PERCENT = 8
    settings.SIMULATOR_FINALIZING_SECONDS = 1.5  # wide enough to be seen by polling
    client = openai_client()
    custom_ids = [f"req-{i:03d}" for i in range(100)]
    file = upload(client, jsonl([chat_line(cid) for cid in custom_ids]))
    created = client.batches.create(
        input_file_id=file.id,
        endpoint=CHAT,
        completion_window="24h",
        metadata={"suite": "sdk"},
        extra_headers={"x-sim-processing-seconds": "3"},  # some 30 polls while in progress
    )
    assert created.status == "validating"

    seen = [created, *watch(client, created.id, lambda b: b.status == "completed", every=0.1)]

    statuses = [b.status for b in seen]
    assert set(statuses) == set(PROGRESS_ORDER), statuses
    ranks = [PROGRESS_ORDER.index(s) for s in statuses]
    assert ranks == sorted(ranks), f"status went backwards: {statuses}"
    assert all(counts_within_total(b) for b in seen)
    assert all(b.output_file_id is None and b.error_file_id is None for b in seen if b.status != "completed")

    running = [b for b in seen if b.status == "in_progress"]
    assert all(b.in_progress_at is not None and b.finalizing_at is None for b in running)
    finished_counts = [b.request_counts.completed + b.request_counts.failed for b in running]
    assert finished_counts == sorted(finished_counts), "counts must only grow"
    intermediate = {n for n in finished_counts if 0 < n < 100}
    assert len(intermediate) >= 2, finished_counts

    done = seen[-1]
    assert done.created_at <= done.in_progress_at < done.finalizing_at <= done.completed_at
    assert done.failed_at is done.cancelled_at is done.expired_at is done.cancelling_at is None
    assert done.metadata == {"suite": "sdk"}
    counts = done.request_counts
    assert counts.total == 100 and counts.completed + counts.failed == 100
    assert counts.completed > 0 and counts.failed > 0
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens > 0
    assert done.output_file_id and done.error_file_id and done.output_file_id != done.error_file_id

    output = read_lines(client, done.output_file_id)
    errors = read_lines(client, done.error_file_id)
    assert len(output) == counts.completed
    assert len(errors) == counts.failed
    for line in output + errors:
        assert set(line) == {"id", "custom_id", "response", "error"}
        assert line["id"].startswith("batch_req_")
        if line["response"] is not None:
            assert set(line["response"]) == {"status_code", "request_id", "body"}
            assert line["response"]["request_id"].startswith("req_")
        else:
            assert set(line["error"]) >= {"code", "message"}
    for line in output:
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == MODEL
        assert body["choices"][0]["message"]["role"] == "assistant"
    for line in errors:
        assert line["error"] is not None or line["response"]["status_code"] >= 400
    ids = [line["custom_id"] for line in output + errors]
    assert sorted(ids) == custom_ids, "every request appears exactly once across both files"
    assert len({line["id"] for line in output + errors}) == 100

    # Output and error files are files too: their metadata can be read, and they never change.
    for file_id, lines in ((done.output_file_id, output), (done.error_file_id, errors)):
        meta = client.files.retrieve(file_id)
        assert meta.id == file_id and meta.object == "file" and meta.purpose == "batch_output"
        assert meta.bytes == len(client.files.content(file_id).content) > 0
        assert meta.model_extra == {}
        assert read_lines(client, file_id) == lines


# --- list ----------------------------------------------------------------------------------


def test_list_pages_newest_first_both_automatically_and_by_after(openai_client):
    client = openai_client()
    made = [new_batch(client, 2).id for _ in range(4)]
    newest_first = made[::-1]

    auto = [batch.id for batch in client.batches.list(limit=1)]
    assert auto == newest_first

    manual, pages, after = [], 0, openai.NOT_GIVEN
    while True:
        raw = client.batches.with_raw_response.list(limit=1, after=after)
        envelope = raw.http_response.json()
        assert set(envelope) == {"object", "data", "first_id", "last_id", "has_more"}
        assert envelope["object"] == "list"
        assert len(envelope["data"]) == 1
        assert envelope["first_id"] == envelope["last_id"] == envelope["data"][0]["id"]
        page = raw.parse()
        manual.append(page.data[0].id)
        pages += 1
        assert pages <= 10
        if not envelope["has_more"]:
            break
        after = envelope["last_id"]
    assert manual == newest_first

    whole = client.batches.with_raw_response.list().http_response.json()
    assert [b["id"] for b in whole["data"]] == newest_first
    assert whole["first_id"] == newest_first[0] and whole["last_id"] == newest_first[-1]
    assert whole["has_more"] is False

    two = client.batches.with_raw_response.list(limit=2, after=newest_first[0]).http_response.json()
    assert [b["id"] for b in two["data"]] == newest_first[1:3] and two["has_more"] is True


@pytest.mark.parametrize("limit", [0, 101])
def test_list_rejects_limit_out_of_range(openai_client, limit):
    client = openai_client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.list(limit=limit)
    assert caught.value.status_code == 400
    assert caught.value.param == "limit"


def test_list_of_a_fresh_project_is_empty(openai_client):
    payload = openai_client(OPENAI_KEYS["research"]).batches.with_raw_response.list().http_response.json()
    assert payload == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


# --- cancel --------------------------------------------------------------------------------


@pytest.mark.usefixtures("fast_simulator")
def test_cancel_in_progress_batch_goes_cancelling_then_cancelled(openai_client):
    client = openai_client()
    batch = new_batch(client, 50, processing_seconds=60)
    running = watch(client, batch.id, lambda b: b.status == "in_progress")[-1]
    time.sleep(0.3)

    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None and cancelling.cancelling_at >= running.in_progress_at
    assert cancelling.cancelled_at is None
    assert counts_within_total(cancelling)

    again = client.batches.cancel(batch.id)  # asking twice is harmless and keeps the first instant
    assert again.status in ("cancelling", "cancelled") and again.cancelling_at == cancelling.cancelling_at

    seen = watch(client, batch.id, lambda b: b.status == "cancelled")
    assert {b.status for b in seen} <= {"cancelling", "cancelled"}
    assert all(counts_within_total(b) for b in seen)
    done = seen[-1]
    assert done.cancelled_at is not None and done.cancelling_at <= done.cancelled_at
    assert done.completed_at is None and done.finalizing_at is None
    counts = done.request_counts
    assert counts.total == 50 and counts.completed + counts.failed < 50
    if counts.completed:
        assert len(read_lines(client, done.output_file_id)) == counts.completed
    else:
        assert done.output_file_id is None

    with pytest.raises(openai.ConflictError) as caught:
        client.batches.cancel(batch.id)
    assert caught.value.body["message"] == "Cannot cancel a batch with status 'cancelled'."


@pytest.mark.usefixtures("fast_simulator")
def test_cancel_completed_batch_is_conflict(openai_client):
    client = openai_client()
    batch = new_batch(client, 3)
    watch(client, batch.id, lambda b: b.status == "completed")

    with pytest.raises(openai.ConflictError) as caught:
        client.batches.cancel(batch.id)
    error = caught.value
    assert error.status_code == 409
    assert error.body["message"] == "Cannot cancel a batch with status 'completed'."
    assert error.type == "invalid_request_error"
    assert client.batches.retrieve(batch.id).status == "completed"


# --- validation ----------------------------------------------------------------------------


@pytest.mark.usefixtures("fast_simulator")
def test_invalid_input_lines_fail_the_batch_with_line_errors(openai_client):
    client = openai_client()
    content = jsonl(
        [
            chat_line("ok-1"),
            chat_line("wrong-url", url="/v1/embeddings"),
            '{"custom_id": "broken", "method": ',
            chat_line("ok-1"),
            chat_line("ok-2"),
        ]
    )
    file = upload(client, content)
    created = client.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="24h")
    assert created.status == "validating"
    assert created.errors is None, "problems are only reported once the batch has failed"

    seen = watch(client, created.id, lambda b: b.status == "failed")
    assert {b.status for b in seen} <= {"validating", "failed"}
    failed = seen[-1]
    assert failed.failed_at is not None and failed.failed_at >= failed.created_at
    assert failed.in_progress_at is None and failed.completed_at is None
    assert failed.output_file_id is None and failed.error_file_id is None
    assert failed.errors.object == "list"
    problems = [(e.code, e.line) for e in failed.errors.data]
    assert problems == [("mismatched_url", 2), ("invalid_json_line", 3), ("duplicate_custom_id", 4)]
    assert all(e.message for e in failed.errors.data)
    assert failed.errors.data[0].param == "url"
    assert "ok-1" in failed.errors.data[2].message

    with pytest.raises(openai.ConflictError):
        client.batches.cancel(created.id)


@pytest.mark.usefixtures("fast_simulator")
def test_error_lines_count_physical_lines_of_the_file(openai_client):
    client = openai_client()
    content = jsonl([chat_line("a"), "", chat_line("b", url="/v1/responses")])
    file = upload(client, content)
    batch = client.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="24h")
    failed = watch(client, batch.id, lambda b: b.status == "failed")[-1]
    assert [(e.code, e.line) for e in failed.errors.data] == [("mismatched_url", 3)]


def test_create_rejects_bad_parameters(openai_client):
    client = openai_client()
    file = upload(client, jsonl([chat_line("one")]))

    with pytest.raises(openai.BadRequestError) as bad_endpoint:
        client.batches.create(input_file_id=file.id, endpoint="/v1/not-an-endpoint", completion_window="24h")
    assert bad_endpoint.value.param == "endpoint"

    with pytest.raises(openai.BadRequestError) as bad_window:
        client.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="48h")
    assert bad_window.value.param == "completion_window"

    with pytest.raises(openai.BadRequestError) as bad_file:
        client.batches.create(input_file_id="file-doesnotexist000000000", endpoint=CHAT, completion_window="24h")
    assert bad_file.value.param == "input_file_id"
    assert "file-doesnotexist000000000" in bad_file.value.body["message"]

    with pytest.raises(openai.BadRequestError) as bad_metadata:
        client.batches.create(
            input_file_id=file.id, endpoint=CHAT, completion_window="24h", metadata={f"k{i}": "v" for i in range(17)}
        )
    assert bad_metadata.value.param == "metadata"

    assert client.batches.with_raw_response.list().http_response.json()["data"] == []


# --- auth, isolation, not found, request ids -----------------------------------------------


def test_wrong_key_is_authentication_error_with_masked_key(openai_client):
    key = "sk-sim-this-key-does-not-exist-9876"
    client = openai_client(key)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.batches.list()
    error = caught.value
    assert error.status_code == 401
    assert error.code == "invalid_api_key"
    assert error.type == "invalid_request_error"
    message = error.body["message"]
    assert message.startswith("Incorrect API key provided: ")
    assert "*" in message and message.rstrip(".").endswith("9876")
    assert key not in error.response.text
    assert key[:-4] not in error.response.text
    assert error.response.headers["x-request-id"].startswith("req_")

    with pytest.raises(openai.AuthenticationError):
        client.files.create(file=("x.jsonl", b"{}\n", "application/jsonl"), purpose="batch")


def test_projects_are_isolated(openai_client):
    ops, research = openai_client(OPENAI_KEYS["ops"]), openai_client(OPENAI_KEYS["research"])
    batch = new_batch(ops, 2)

    with pytest.raises(openai.NotFoundError):
        research.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        research.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):
        research.files.retrieve(batch.input_file_id)
    with pytest.raises(openai.NotFoundError):
        research.files.content(batch.input_file_id)
    with pytest.raises(openai.BadRequestError):
        research.batches.create(input_file_id=batch.input_file_id, endpoint=CHAT, completion_window="24h")
    assert batch.id not in [b.id for b in research.batches.list()]

    mine = new_batch(research, 1)
    assert [b.id for b in research.batches.list()] == [mine.id]
    assert [b.id for b in ops.batches.list()] == [batch.id]
    assert ops.batches.retrieve(batch.id).id == batch.id


def test_unknown_ids_are_not_found(openai_client):
    client = openai_client()
    with pytest.raises(openai.NotFoundError) as batch_missing:
        client.batches.retrieve("batch_00000000000000000000000000000000")
    assert batch_missing.value.status_code == 404
    assert batch_missing.value.type == "invalid_request_error"
    assert "batch_00000000000000000000000000000000" in batch_missing.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel("batch_00000000000000000000000000000000")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nope")
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-nope")


def test_unfinished_batch_output_file_is_not_found_yet(openai_client):
    client = openai_client()
    batch = new_batch(client, 2, processing_seconds=600)
    assert batch.output_file_id is None and batch.error_file_id is None
    # The ids exist internally, but their files must not be served before the batch has ended.
    stored = SimBatch.objects.get(public_id=batch.id)
    for file_id in (stored.output_file_id, stored.error_file_id):
        with pytest.raises(openai.NotFoundError):
            client.files.content(file_id)
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(file_id)


def test_every_response_carries_a_request_id(openai_client):
    client = openai_client()
    file = client.files.with_raw_response.create(
        file=("r.jsonl", jsonl([chat_line("a")]), "application/jsonl"), purpose="batch"
    )
    file_id = file.parse().id
    created = client.batches.with_raw_response.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    batch_id = created.parse().id
    responses = [
        file,
        client.files.with_raw_response.retrieve(file_id),
        client.files.with_raw_response.content(file_id),
        created,
        client.batches.with_raw_response.retrieve(batch_id),
        client.batches.with_raw_response.list(),
        client.batches.with_raw_response.cancel(batch_id),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(i.startswith("req_") and len(i) > 10 for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(r.http_response.status_code == 200 for r in responses)

    with pytest.raises(openai.NotFoundError) as caught:
        client.batches.with_raw_response.retrieve("batch_missing")
    assert caught.value.response.headers["x-request-id"].startswith("req_")
    assert caught.value.request_id == caught.value.response.headers["x-request-id"]


# --- faults --------------------------------------------------------------------------------


def test_rate_limit_fault_is_rate_limit_error_with_retry_after(openai_client):
    client = openai_client()
    with pytest.raises(openai.RateLimitError) as caught:
        client.batches.list(extra_headers={"x-sim-fault": "429"})
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.response.headers["x-request-id"].startswith("req_")
    assert client.batches.list().data == []  # the fault was for that one request only


@pytest.mark.parametrize("fault, status", [("500", 500), ("529", 503)])
def test_server_faults_are_internal_server_errors(openai_client, fault, status):
    client = openai_client()
    with pytest.raises(openai.InternalServerError) as caught:
        client.batches.retrieve("batch_whatever", extra_headers={"x-sim-fault": fault})
    assert caught.value.status_code == status
    assert caught.value.type == "server_error"
    assert caught.value.body["message"]


def test_faults_still_require_a_valid_key(openai_client):
    with pytest.raises(openai.AuthenticationError):
        openai_client("sk-sim-wrong-key-0000").batches.list(extra_headers={"x-sim-fault": "500"})


@pytest.mark.usefixtures("fast_simulator")
def test_hang_fault_times_out_the_client(openai_client, settings):
    settings.SIMULATOR_HANG_SECONDS = 2  # well past the client's timeout
    client = openai_client()
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.batches.list(extra_headers={"x-sim-fault": "hang"}, timeout=0.5)
    assert time.monotonic() - started < 1.9
    # Let the held request finish before the test database is flushed under it.
    time.sleep(max(0.0, started + 2.3 - time.monotonic()))


def test_non_json_fault_never_yields_a_batch(openai_client):
    client = openai_client()
    batch = new_batch(client, 1)

    raw = client.batches.with_raw_response.retrieve(batch.id, extra_headers={"x-sim-fault": "non-json"})
    assert raw.http_response.status_code == 200
    assert not raw.headers["content-type"].startswith("application/json")
    assert raw.headers["x-request-id"].startswith("req_")
    with pytest.raises(ValueError):
        raw.http_response.json()

    lenient = client.batches.retrieve(batch.id, extra_headers={"x-sim-fault": "non-json"})
    assert not isinstance(lenient, Batch)

    strict = openai_client(_strict_response_validation=True)
    with pytest.raises(openai.APIResponseValidationError):
        strict.batches.retrieve(batch.id, extra_headers={"x-sim-fault": "non-json"})


def test_latency_header_delays_the_answer(openai_client):
    client = openai_client()
    started = time.monotonic()
    assert client.batches.list(extra_headers={"x-sim-latency-ms": "400"}).data == []
    assert time.monotonic() - started >= 0.4


def test_unknown_route_is_404_in_the_error_envelope(openai_client, simulator):
    client = openai_client()
    with pytest.raises(openai.NotFoundError) as caught:
        client.get("/batches/x/y/z", cast_to=object)
    assert set(caught.value.body) == {"message", "type", "param", "code"}

    response = httpx.get(
        simulator + "/openai/v1/no-such-thing", headers={"authorization": f"Bearer {OPENAI_KEYS['ops']}"}, timeout=10
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"].startswith("req_")
    payload = response.json()
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    assert payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["message"]


def test_wrong_method_is_an_api_error_not_an_html_page(openai_client):
    client = openai_client()
    with pytest.raises(openai.APIStatusError) as caught:
        client.delete("/batches/batch_x", cast_to=object)
    assert caught.value.status_code == 405
    assert caught.value.body["type"] == "invalid_request_error"
