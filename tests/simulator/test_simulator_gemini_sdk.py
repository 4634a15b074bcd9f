"""The official `google-genai` SDK, over real HTTP (loopback only), against the embedded Gemini Batch
Mode simulator: create (inline requests and an uploaded file), list every page through the SDK's
pager, get, cancel, the results (inlined responses and the responses file through files.download),
faults, and the SDK's own ClientError / ServerError for a wrong key, a malformed id and an unknown batch."""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest
from google.genai import errors, types

from dashboard.providers import gemini
from dashboard.simulator.models import SimBatch
from tests.factories import GEMINI_KEYS

MODEL = "gemini-2.5-flash"
ENDED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


def inline(count: int, *, prefix: str = "req") -> list[dict]:
    return [
        {"contents": [{"parts": [{"text": f"Question {i}"}], "role": "user"}], "metadata": {"key": f"{prefix}-{i}"}}
        for i in range(count)
    ]


def create(client, count: int = 3, *, seconds: float | None = None, display_name: str | None = None):
    headers = {} if seconds is None else {"x-sim-processing-seconds": str(seconds)}
    config = types.CreateBatchJobConfig(display_name=display_name, http_options=types.HttpOptions(headers=headers))
    return client.batches.create(model=MODEL, src=inline(count), config=config)


def watch(client, name: str, until, *, seconds: float = 15, every: float = 0.1) -> list:
    deadline = time.monotonic() + seconds
    seen = []
    while True:
        job = client.batches.get(name=name)
        seen.append(job)
        if until(job):
            return seen
        assert time.monotonic() < deadline, f"batch stuck; last states {[job.state for job in seen[-5:]]}"
        time.sleep(every)


def raw_get(simulator: str, name: str, key: str = GEMINI_KEYS["ops"], **headers) -> httpx.Response:
    return httpx.get(f"{simulator}/gemini/v1beta/{name}", headers={"x-goog-api-key": key, **headers}, timeout=20)


# --- create, get, progress ------------------------------------------------------------------------------


def test_create_answers_a_pending_operation_the_sdk_reads(gemini_client, simulator, settings):
    settings.SIMULATOR_VALIDATING_SECONDS = 60  # pending throughout
    client = gemini_client()
    job = create(client, 3, display_name="nightly-eval")
    assert job.name.startswith("batches/") and gemini.BATCH_ID.fullmatch(job.name.removeprefix("batches/"))
    assert job.state == "JOB_STATE_PENDING"
    assert job.display_name == "nightly-eval" and job.model == f"models/{MODEL}"
    assert abs(job.create_time.timestamp() - time.time()) < 60 and job.end_time is None and job.dest is None

    body = raw_get(simulator, job.name).json()
    assert set(body) == {"name", "metadata"}  # not done: no done, error or response
    metadata = body["metadata"]
    assert metadata["@type"] == "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
    assert metadata["batchStats"] == {"requestCount": "3", "pendingRequestCount": "3"}  # int64 as strings, 0s left out
    assert metadata["state"] == "BATCH_STATE_PENDING" and metadata["name"] == job.name
    batch = gemini.parse_batch(body, account="gemini-ops")  # what the dashboard reads of it
    assert (batch.status, batch.counts.total, batch.counts.processing, batch.can_cancel) == ("pending", 3, 3, True)


@pytest.mark.slow
@pytest.mark.usefixtures("fast_simulator")
def test_a_batch_runs_to_succeeded_with_inlined_responses(gemini_client, simulator, settings):
    settings.SIMULATOR_ERROR_PERCENT = 30
    client = gemini_client()
    job = create(client, 20)
    seen = watch(client, job.name, lambda job: job.state in ENDED)
    states = list(dict.fromkeys(job.state for job in seen))
    assert states[-1] == "JOB_STATE_SUCCEEDED" and set(states) <= {
        "JOB_STATE_PENDING",
        "JOB_STATE_RUNNING",
        "JOB_STATE_SUCCEEDED",
    }
    done = seen[-1]
    assert done.end_time is not None and done.end_time >= done.create_time
    responses = done.dest.inlined_responses
    assert len(responses) == 20
    keys = [response.metadata["key"] for response in responses]
    assert keys == [f"req-{i}" for i in range(20)]
    errored = [response for response in responses if response.error is not None]
    succeeded = [response for response in responses if response.response is not None]
    assert len(errored) + len(succeeded) == 20 and errored and succeeded
    assert succeeded[0].response.text.startswith("Simulated answer #")
    assert succeeded[0].response.usage_metadata.prompt_token_count > 0

    body = raw_get(simulator, job.name).json()
    stats = body["metadata"]["batchStats"]
    assert stats == {
        "requestCount": "20",
        "successfulRequestCount": str(len(succeeded)),
        "failedRequestCount": str(len(errored)),
    }
    assert (
        body["done"] is True and body["response"]["inlinedResponses"] == body["metadata"]["output"]["inlinedResponses"]
    )
    batch = gemini.parse_batch(body, account="gemini-ops")
    assert (batch.status, batch.counts.succeeded, batch.counts.errored) == ("succeeded", len(succeeded), len(errored))


# --- list: every page through the SDK's pager ---------------------------------------------------------


def test_list_pages_newest_first_through_the_sdk_pager(gemini_client, simulator):
    client = gemini_client()
    names = [create(client, 1).name for _ in range(7)]
    pager = client.batches.list(config=types.ListBatchJobsConfig(page_size=3))
    assert len(pager.page) == 3
    listed = [job.name for job in pager]  # the pager reads on with nextPageToken
    assert listed == names[::-1]
    first = httpx.get(
        f"{simulator}/gemini/v1beta/batches", params={"pageSize": 3}, headers={"x-goog-api-key": GEMINI_KEYS["ops"]}
    ).json()
    assert len(first["operations"]) == 3 and first["nextPageToken"]
    last = httpx.get(
        f"{simulator}/gemini/v1beta/batches",
        params={"pageSize": 10, "pageToken": first["nextPageToken"]},
        headers={"x-goog-api-key": GEMINI_KEYS["ops"]},
    ).json()
    assert len(last["operations"]) == 4 and "nextPageToken" not in last


def test_accounts_are_isolated_and_an_empty_list_says_nothing(gemini_client, simulator):
    job = create(gemini_client(), 1)
    research = gemini_client(GEMINI_KEYS["research"])
    assert list(research.batches.list()) == []
    empty = httpx.get(f"{simulator}/gemini/v1beta/batches", headers={"x-goog-api-key": GEMINI_KEYS["research"]})
    assert empty.json() == {}  # proto3: no operations, no nextPageToken
    with pytest.raises(errors.ClientError) as raised:
        research.batches.get(name=job.name)
    assert raised.value.code == 404


def test_a_bad_page_token_is_invalid_argument(simulator, gemini_client):
    gemini_client()
    answer = httpx.get(
        f"{simulator}/gemini/v1beta/batches",
        params={"pageToken": "nonsense"},
        headers={"x-goog-api-key": GEMINI_KEYS["ops"]},
    )
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"


# --- cancel ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("fast_simulator")
def test_cancel_answers_empty_and_the_batch_ends_cancelled(gemini_client, simulator):
    client = gemini_client()
    job = create(client, 50, seconds=60)
    watch(client, job.name, lambda job: job.state == "JOB_STATE_RUNNING")
    answer = httpx.post(f"{simulator}/gemini/v1beta/{job.name}:cancel", headers={"x-goog-api-key": GEMINI_KEYS["ops"]})
    assert (answer.status_code, answer.json()) == (200, {})
    assert client.batches.cancel(name=job.name) is None  # again, through the SDK: accepted, the first time kept
    assert SimBatch.objects.get(public_id=job.name.removeprefix("batches/")).cancel_initiated_at is not None
    seen = watch(client, job.name, lambda job: job.state in ENDED)
    assert seen[-1].state == "JOB_STATE_CANCELLED"
    body = raw_get(simulator, job.name).json()
    assert body["done"] is True and body["error"]["code"] == 1 and "response" not in body
    batch = gemini.parse_batch(body, account="gemini-ops")
    counts = batch.counts
    assert batch.status == "cancelled" and counts.canceled > 0
    assert counts.succeeded + counts.errored + counts.canceled == counts.total == 50

    with pytest.raises(errors.ClientError) as raised:
        client.batches.cancel(name=job.name)
    assert raised.value.code == 400 and raised.value.status == "FAILED_PRECONDITION"


# --- a file batch: upload, create, the responses file -------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("fast_simulator")
def test_an_uploaded_file_batch_writes_a_responses_file_the_sdk_downloads(gemini_client, simulator):
    client = gemini_client()
    lines = [{"key": f"row-{i}", "request": {"contents": [{"parts": [{"text": f"Q{i}"}]}]}} for i in range(12)]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.upload(
        file=io.BytesIO(content),
        config=types.UploadFileConfig(display_name="rows.jsonl", mime_type="application/jsonl"),
    )
    assert uploaded.name.startswith("files/") and uploaded.size_bytes == len(content) and uploaded.state == "ACTIVE"
    assert client.files.get(name=uploaded.name).display_name == "rows.jsonl"

    job = client.batches.create(model=MODEL, src=uploaded.name)
    done = watch(client, job.name, lambda job: job.state in ENDED)[-1]
    assert (
        done.state == "JOB_STATE_SUCCEEDED"
        and done.dest.file_name == f"files/batch-{job.name.removeprefix('batches/')}"
    )
    data = client.files.download(file=done.dest.file_name)
    results = [json.loads(line) for line in data.decode().splitlines()]
    assert [result["key"] for result in results] == [f"row-{i}" for i in range(12)]
    assert all(("response" in result) != ("error" in result) for result in results)
    parsed = [gemini.parse_result_line(n, result, "") for n, result in enumerate(results, 1)]
    assert {line.type for line in parsed} <= {"succeeded", "errored"} and parsed[0].custom_id == "row-0"
    # The REST docs' /download/ path serves the same bytes.
    same = httpx.get(
        f"{simulator}/gemini/download/v1beta/{done.dest.file_name}:download",
        params={"alt": "media"},
        headers={"x-goog-api-key": GEMINI_KEYS["ops"]},
    )
    assert same.content == data


# --- errors: the SDK's own classes -------------------------------------------------------------------------


def test_a_wrong_key_is_google_s_api_key_invalid(gemini_client, simulator):
    with pytest.raises(errors.ClientError) as raised:
        gemini_client("AIzaSyWrongKey0000000000000000000000").batches.get(name="batches/abc")
    assert (raised.value.code, raised.value.status) == (400, "INVALID_ARGUMENT")
    assert raised.value.message == "API key not valid. Please pass a valid API key."
    assert raised.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    missing = httpx.get(f"{simulator}/gemini/v1beta/batches")
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("name", ["batches/BAD_ID", "batches/bad id", "batches/-x", "batches/a.b"])
def test_a_malformed_id_is_invalid_argument(gemini_client, name):
    with pytest.raises(errors.ClientError) as raised:
        gemini_client().batches.get(name=name)
    assert (raised.value.code, raised.value.status) == (400, "INVALID_ARGUMENT")


def test_an_unknown_batch_is_not_found(gemini_client):
    client = gemini_client()
    for call in (client.batches.get, client.batches.cancel):
        with pytest.raises(errors.ClientError) as raised:
            call(name="batches/" + "z" * 36)
        assert (raised.value.code, raised.value.status) == (404, "NOT_FOUND")


def test_bad_create_bodies_are_invalid_argument(gemini_client, simulator):
    client = gemini_client()
    with pytest.raises(errors.ClientError) as raised:
        client.batches.create(model=MODEL, src="files/doesnotexist")
    assert raised.value.code == 400
    url = f"{simulator}/gemini/v1beta/models/{MODEL}:batchGenerateContent"
    key = {"x-goog-api-key": GEMINI_KEYS["ops"]}
    for body in (
        {},
        {"batch": {}},
        {"batch": {"inputConfig": {"requests": {"requests": []}}}},
        {"batch": {"inputConfig": {"requests": {"requests": [{"request": {}}]}}}},
    ):
        answer = httpx.post(url, json=body, headers=key)
        assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT", body


# --- faults ---------------------------------------------------------------------------------------------


def test_faults_are_google_errors(gemini_client):
    client = gemini_client()
    with pytest.raises(errors.ClientError) as limited:
        client.batches.list(
            config=types.ListBatchJobsConfig(http_options=types.HttpOptions(headers={"x-sim-fault": "429"}))
        )
    assert (limited.value.code, limited.value.status) == (429, "RESOURCE_EXHAUSTED")
    for fault, code, status in (("500", 500, "INTERNAL"), ("529", 503, "UNAVAILABLE")):
        with pytest.raises(errors.ServerError) as raised:
            client.batches.list(
                config=types.ListBatchJobsConfig(http_options=types.HttpOptions(headers={"x-sim-fault": fault}))
            )
        assert (raised.value.code, raised.value.status) == (code, status)


def test_a_hanging_answer_times_out_the_client(gemini_client, settings):
    settings.SIMULATOR_HANG_SECONDS = 3
    client = gemini_client(timeout=1000)
    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        client.batches.list(
            config=types.ListBatchJobsConfig(http_options=types.HttpOptions(headers={"x-sim-fault": "hang"}))
        )
    assert time.monotonic() - started < 2.5


def test_latency_delays_the_answer(gemini_client):
    client = gemini_client()
    started = time.monotonic()
    list(
        client.batches.list(
            config=types.ListBatchJobsConfig(http_options=types.HttpOptions(headers={"x-sim-latency-ms": "400"}))
        )
    )
    assert time.monotonic() - started >= 0.4


def test_an_unknown_route_is_google_s_not_found(simulator, gemini_client):
    gemini_client()
    answer = httpx.get(f"{simulator}/gemini/v1beta/nothing-here", headers={"x-goog-api-key": GEMINI_KEYS["ops"]})
    assert answer.status_code == 404 and answer.json()["error"]["status"] == "NOT_FOUND"


def test_an_account_wide_fault_set_by_the_command_reaches_the_sdk(gemini_client):
    from django.core.management import call_command

    client = gemini_client()
    call_command("simulator_fault", "gemini", "ops", "--fault", "529", stdout=io.StringIO())
    with pytest.raises(errors.ServerError) as raised:
        list(client.batches.list())
    assert (raised.value.code, raised.value.status) == (503, "UNAVAILABLE")
    call_command("simulator_fault", "gemini", "ops", "--fault", "", stdout=io.StringIO())
    assert list(client.batches.list()) == []


@pytest.mark.usefixtures("fast_simulator")
def test_a_stalled_batch_holds_its_counts_until_released(gemini_client, simulator):
    from dashboard.simulator import stall

    client = gemini_client()
    job = create(client, 20, seconds=4)
    watch(client, job.name, lambda job: job.state == "JOB_STATE_RUNNING")
    public_id = job.name.removeprefix("batches/")
    assert stall.stall(public_id)
    held = raw_get(simulator, job.name).json()["metadata"]["batchStats"]
    time.sleep(1.0)
    again = raw_get(simulator, job.name).json()["metadata"]
    assert (again["state"], again["batchStats"]) == ("BATCH_STATE_RUNNING", held)
    assert stall.release(public_id)
    done = watch(client, job.name, lambda job: job.state in ENDED)[-1]
    assert done.state == "JOB_STATE_SUCCEEDED" and len(done.dest.inlined_responses) == 20
