"""The official `openai` SDK's Azure client, over real HTTP, against the simulated Azure OpenAI resource.

`openai.AzureOpenAI` on both routes (the GA route, azure_endpoint + api_version="2024-10-21"; the v1
route, base_url .../openai/v1) and `openai.OpenAI` on the v1 route (the key as a bearer token, as
Microsoft's v1 examples use it). What is OpenAI's own (input validation, output lines, list envelopes)
is asserted in test_simulator_openai_sdk.py; here: that the same flows work through Azure's clients,
and what is Azure's (auth, error bodies, api-version, ids, no expiry, isolation).
"""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta

import httpx
import openai
import pytest

from dashboard.providers import azure_openai
from dashboard.providers.base import AccountSpec, AlreadyEnded
from dashboard.simulator import clock
from dashboard.simulator.azure_openai_api import INVALID_KEY, MISSING_KEY
from dashboard.simulator.models import SimBatch
from tests.factories import OPENAI_KEYS

AZURE_KEYS = azure_openai.SIMULATOR_KEYS
CHAT = "/chat/completions"  # as Azure's own examples name it
ROUTES = ("ga", "v1", "openai-v1")
GA_VERSION = "2024-10-21"


@pytest.fixture
def azure_client(simulator):
    """`azure_client(route, key, **options)`: an SDK client of the simulated resource on `route`."""
    made: list[openai.OpenAI] = []

    def build(route: str = "ga", key: str = AZURE_KEYS["ops"], **options) -> openai.OpenAI:
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 20)
        endpoint = simulator + "/azure-openai"
        if route == "ga":
            client = openai.AzureOpenAI(azure_endpoint=endpoint, api_key=key, api_version=GA_VERSION, **options)
        elif route == "v1":
            client = openai.AzureOpenAI(base_url=f"{endpoint}/openai/v1", api_key=key, api_version="preview", **options)
        else:
            client = openai.OpenAI(base_url=f"{endpoint}/openai/v1", api_key=key, **options)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


def chat_line(custom_id: str) -> dict:
    body = {"model": "gpt-4o-batch", "messages": [{"role": "user", "content": f"Hello {custom_id}"}]}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def new_batch(client: openai.OpenAI, count: int = 3, *, processing_seconds: float | None = None):
    content = "".join(json.dumps(chat_line(f"req-{i}")) + "\n" for i in range(count)).encode()
    file = client.files.create(file=("input.jsonl", content, "application/jsonl"), purpose="batch")
    headers = {} if processing_seconds is None else {"x-sim-processing-seconds": str(processing_seconds)}
    return client.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="24h", extra_headers=headers)


def watch(client: openai.OpenAI, batch_id: str, until, *, seconds: float = 14):
    deadline = time.monotonic() + seconds
    seen = []
    while True:
        seen.append(client.batches.retrieve(batch_id))
        if until(seen[-1]):
            return seen
        assert time.monotonic() < deadline, [batch.status for batch in seen[-5:]]
        time.sleep(0.1)


def lines(client: openai.OpenAI, file_id: str) -> list[dict]:
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


# --- create, get, results -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("fast_simulator")
@pytest.mark.parametrize("route", ROUTES)
def test_a_batch_is_created_run_and_read_on_every_route(azure_client, settings, route):
    settings.SIMULATOR_ERROR_PERCENT = 10
    client = azure_client(route)
    raw = client.batches.with_raw_response.create(
        input_file_id=client.files.create(
            file=("in.jsonl", "".join(json.dumps(chat_line(f"r{i:02d}")) + "\n" for i in range(40)).encode()),
            purpose="batch",
        ).id,
        endpoint=CHAT,
        completion_window="24h",
        metadata={"route": route},
    )
    path = {"ga": "/simulator/azure-openai/openai/batches"}.get(route, "/simulator/azure-openai/openai/v1/batches")
    assert raw.http_response.url.path == path
    assert (raw.http_response.url.params.get("api-version"), raw.headers["apim-request-id"].count("-")) == (
        {"ga": GA_VERSION, "v1": "preview"}.get(route),
        4,  # a UUID, as API Management's
    )
    created = raw.parse()
    assert created.id.startswith("batch_") and created.status == "validating" and created.endpoint == CHAT
    assert created.metadata == {"route": route}

    done = watch(client, created.id, lambda batch: batch.status == "completed")[-1]
    counts = done.request_counts
    assert counts.total == 40 and counts.completed + counts.failed == 40 and counts.failed > 0
    output, errors = lines(client, done.output_file_id), lines(client, done.error_file_id)
    assert (len(output), len(errors)) == (counts.completed, counts.failed)
    assert sorted(line["custom_id"] for line in output + errors) == [f"r{i:02d}" for i in range(40)]
    assert all(line["response"]["status_code"] == 200 for line in output)
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    assert done.output_file_id.startswith("file-") and len(done.output_file_id) == 37


@pytest.mark.parametrize("route", ROUTES)
def test_every_page_is_listed_newest_first(azure_client, route):
    client = azure_client(route)
    made = [new_batch(client, 1).id for _ in range(3)]
    assert [batch.id for batch in client.batches.list(limit=1)] == made[::-1]  # the SDK reads every page
    first = client.batches.list(limit=2)
    assert [batch.id for batch in first.data] == made[:0:-1] and first.has_more is True
    rest = client.batches.list(limit=2, after=first.data[-1].id)
    assert [batch.id for batch in rest.data] == made[:1] and rest.has_more is False
    assert client.batches.retrieve(made[0]).id == made[0]


@pytest.mark.usefixtures("fast_simulator")
@pytest.mark.parametrize("route", ("ga", "openai-v1"))
def test_a_running_batch_is_canceled_and_an_ended_one_is_a_conflict(azure_client, route):
    client = azure_client(route)
    batch = new_batch(client, 30, processing_seconds=60)
    watch(client, batch.id, lambda b: b.status == "in_progress")
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    done = watch(client, batch.id, lambda b: b.status == "cancelled")[-1]
    assert done.cancelled_at >= done.cancelling_at and done.request_counts.completed < 30
    with pytest.raises(openai.ConflictError) as caught:
        client.batches.cancel(batch.id)
    assert caught.value.body == {"code": "conflict", "message": "Cannot cancel a batch with status 'cancelled'."}


def test_a_batch_past_its_24_hours_runs_on_and_is_not_expired(azure_client, openai_client):
    """Azure: "we do not expire the jobs that take longer". OpenAI's simulated batch, the same age, has expired."""
    azure, plain = azure_client("ga"), openai_client()
    day_and_more = 30 * 3600
    azure_batch = new_batch(azure, 2, processing_seconds=day_and_more)
    plain_file = plain.files.create(
        file=(
            "in.jsonl",
            b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}\n',
        ),
        purpose="batch",
    )
    plain_batch = plain.batches.create(
        input_file_id=plain_file.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        extra_headers={"x-sim-processing-seconds": str(day_and_more)},
    )
    yesterday = clock.now() - timedelta(hours=25)
    SimBatch.objects.filter(public_id__in=[azure_batch.id, plain_batch.id]).update(created_at=yesterday)

    running = azure.batches.retrieve(azure_batch.id)
    assert running.status == "in_progress" and running.expires_at < time.time()
    assert running.request_counts.total == 2 and running.request_counts.completed + running.request_counts.failed < 2
    assert running.expired_at is None
    assert azure_openai.parse_batch(running.model_dump(), account="azure-openai-ops").expires_at is None
    assert plain.batches.retrieve(plain_batch.id).status == "expired"


# --- Azure's errors -------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_a_wrong_key_is_an_authentication_error_in_azures_shape(azure_client, route):
    client = azure_client(route, "azure-sim-not-a-key-0000")
    with pytest.raises(openai.AuthenticationError) as caught:
        client.batches.list()
    error = caught.value
    assert error.status_code == 401 and error.body == {"code": "401", "message": INVALID_KEY}
    assert "azure-sim-not-a-key" not in error.response.text
    assert error.response.headers["apim-request-id"]
    with pytest.raises(openai.AuthenticationError):  # another provider's key is no key here
        azure_client(route, OPENAI_KEYS["ops"]).batches.list()


def test_a_missing_key_and_a_bearer_key_on_the_ga_route_are_refused(simulator):
    url = simulator + "/azure-openai/openai/batches?api-version=2024-10-21"
    for headers in ({}, {"authorization": f"Bearer {AZURE_KEYS['ops']}"}):
        answer = httpx.get(url, headers=headers, timeout=10)
        assert (answer.status_code, answer.json()) == (401, {"error": {"code": "401", "message": MISSING_KEY}})
    v1 = httpx.get(simulator + "/azure-openai/openai/v1/batches", headers={"api-key": AZURE_KEYS["ops"]}, timeout=10)
    assert v1.status_code == 200 and v1.json()["object"] == "list"


@pytest.mark.parametrize("route", ROUTES)
def test_unknown_and_malformed_batch_ids_are_not_found(azure_client, route):
    client = azure_client(route)
    for batch_id in ("batch_00000000-0000-0000-0000-000000000000", "not a batch id"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.batches.retrieve(batch_id)
        assert caught.value.body["code"] == "notFound" and batch_id in caught.value.body["message"]
        with pytest.raises(openai.NotFoundError):
            client.batches.cancel(batch_id)
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-00000000000000000000000000000000")


@pytest.mark.parametrize("route", ROUTES)
def test_a_bad_create_is_a_bad_request(azure_client, route):
    client = azure_client(route)
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id="file-missing", endpoint="/v1/images/edits", completion_window="24h")
    assert caught.value.body["target"] == "endpoint" and "/chat/completions" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id="file-missing", endpoint=CHAT, completion_window="24h")
    assert caught.value.body["target"] == "input_file_id"
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("notes.txt", b"hello"), purpose="batch")


def test_the_ga_route_requires_a_supported_api_version(simulator):
    headers = {"api-key": AZURE_KEYS["ops"]}
    url = simulator + "/azure-openai/openai/batches"
    missing = httpx.get(url, headers=headers, timeout=10)
    assert (missing.status_code, missing.json()) == (404, {"error": {"code": "404", "message": "Resource not found"}})
    old = httpx.get(url, params={"api-version": "2023-05-15"}, headers=headers, timeout=10)
    assert (old.status_code, old.json()["error"]["code"]) == (400, "BadRequest")
    preview = httpx.get(url, params={"api-version": "2025-04-01-preview"}, headers=headers, timeout=10)
    assert preview.status_code == 200


def test_an_unknown_path_is_api_managements_404(simulator):
    for path in ("/azure-openai/openai/v1/no-such-thing", "/azure-openai/anything", "/azure-openai/openai/batches/a/b"):
        answer = httpx.get(simulator + path, headers={"api-key": AZURE_KEYS["ops"]}, timeout=10)
        assert answer.status_code == 404, path
        assert answer.json() == {"error": {"code": "404", "message": "Resource not found"}}
        assert answer.headers["apim-request-id"]


def test_the_two_demo_accounts_are_isolated(azure_client):
    ops, research = azure_client("ga"), azure_client("ga", AZURE_KEYS["research"])
    batch = new_batch(ops, 1)
    with pytest.raises(openai.NotFoundError):
        research.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        research.files.content(batch.input_file_id)
    assert batch.id not in [b.id for b in research.batches.list()]
    assert ops.batches.retrieve(batch.id).id == batch.id


def test_faults_answer_in_azures_shape(azure_client):
    client = azure_client("ga")
    with pytest.raises(openai.RateLimitError) as caught:
        client.batches.list(extra_headers={"x-sim-fault": "429"})
    assert caught.value.body["code"] == "429" and int(caught.value.response.headers["retry-after"]) >= 1
    with pytest.raises(openai.InternalServerError) as caught:
        client.batches.list(extra_headers={"x-sim-fault": "529"})
    assert (caught.value.status_code, caught.value.body["code"]) == (503, "serviceUnavailable")
    started = time.monotonic()
    client.batches.list(extra_headers={"x-sim-latency-ms": "300"})
    assert time.monotonic() - started >= 0.3


# --- the dashboard's provider module against the simulator -----------------------------------


@pytest.mark.usefixtures("fast_simulator")
@pytest.mark.parametrize("api_version", ["", GA_VERSION])
def test_the_provider_module_reads_the_simulated_resource(azure_client, simulator, api_version):
    """What the poller does, over real HTTP on the account's route: list, get, results, cancel."""
    client = azure_client("ga")
    finished, running = new_batch(client, 4), new_batch(client, 5, processing_seconds=60)
    options = {"endpoint": simulator + "/azure-openai", **({"api_version": api_version} if api_version else {})}
    spec = AccountSpec(
        name="ops", base_url=azure_openai.base_url_for(options), api_key=AZURE_KEYS["ops"], options=options
    )
    connection = azure_openai.connect(spec)
    with httpx.Client(base_url=spec.base_url, headers=dict(connection.headers), params=dict(connection.params)) as http:
        provider = azure_openai.API(http, account="azure-openai-ops", secrets=connection.secrets)
        page = provider.list_page(limit=1)
        assert [batch.id for batch in page.batches] == [running.id] and page.next_cursor == running.id
        assert [batch.id for batch in provider.list_page(limit=5, after=page.next_cursor).batches] == [finished.id]
        watch(client, finished.id, lambda b: b.status == "completed")
        done = provider.retrieve(finished.id)
        assert done.is_ended and done.expires_at is None and done.counts.total == 4
        results = [json.loads(line)["custom_id"] for line in provider.stream_results(finished.id)]
        assert sorted(results) == [f"req-{i}" for i in range(4)]
        watch(client, running.id, lambda b: b.status == "in_progress")
        assert provider.cancel(running.id).status == "cancelling"
        watch(client, running.id, lambda b: b.status == "cancelled")
        with pytest.raises(AlreadyEnded):
            provider.cancel(running.id)


@pytest.mark.usefixtures("fast_simulator")
def test_a_stalled_batch_holds_its_counts_until_released(azure_client):
    from dashboard.simulator import stall

    client = azure_client("ga")
    batch = new_batch(client, 20, processing_seconds=4)
    watch(client, batch.id, lambda b: b.status == "in_progress")
    assert stall.stall(batch.id)
    held = client.batches.retrieve(batch.id)
    time.sleep(1.0)
    again = client.batches.retrieve(batch.id)
    assert (again.status, again.request_counts) == ("in_progress", held.request_counts)
    assert stall.release(batch.id)
    done = watch(client, batch.id, lambda b: b.status == "completed")[-1]
    assert done.request_counts.completed + done.request_counts.failed == 20


def test_an_account_wide_fault_is_set_by_the_simulator_fault_command(azure_client):
    from django.core.management import call_command

    call_command("simulator_fault", "azure-openai", "research", "--fault", "500", stdout=io.StringIO())
    with pytest.raises(openai.InternalServerError) as caught:
        azure_client("v1", AZURE_KEYS["research"]).batches.list()
    assert caught.value.body["code"] == "internalFailure"
    assert azure_client("v1").batches.list().data == []  # the other account answers
    call_command("simulator_fault", "azure-openai", "research", "--fault", "", stdout=io.StringIO())
    assert azure_client("v1", AZURE_KEYS["research"]).batches.list().data == []
