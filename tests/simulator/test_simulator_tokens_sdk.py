"""Tokens checked against the official SDKs (issue 21): simulated batches of every provider are read
through its SDK over real HTTP (anthropic, openai, openai.AzureOpenAI, google-genai; boto3 for
Bedrock), every result's usage is added up here, independently of the dashboard's parsers, and the
sums are compared with what the dashboard stored (BatchTokens, counted by the poller without anyone
opening the batch), shows (the detail page) and exports (the CSV's billed columns): exactly."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import Counter

import openai
import pytest
from django.urls import reverse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from dashboard.models import StoredBatch
from tests.factories import AZURE_OPENAI_KEYS, OPENAI_KEYS, anthropic_request, created_ago, poll_store

KINDS = ("input", "cache_read", "cache_write", "output", "reasoning")
GA_VERSION = "2024-10-21"


@pytest.fixture
def counting(dashboard_upstream, settings):
    """The dashboard's accounts reaching the simulator over real HTTP, its poller counting results."""
    settings.POLL_RESULTS_PER_CYCLE = 1
    settings.SIMULATOR_ERROR_PERCENT = 10
    return dashboard_upstream


def stored_tokens(account: str, batch_id: str) -> tuple[StoredBatch, dict[str, dict[str, int]]]:
    row = StoredBatch.objects.get(account=account, batch_id=batch_id)
    tokens = {t.model: {kind: getattr(t, kind) for kind in (*KINDS, "requests")} for t in row.tokens.all()}
    return row, tokens


def shown(client, account: str, batch_id: str) -> str:
    response = client.get(reverse("batch-detail", args=[account, batch_id]))
    assert response.status_code == 200
    section = re.search(r'<div class="batch-tokens">(.*?)</div>', response.content.decode(), re.S).group(1)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", section)).split())


def exported(client, account: str, batch_id: str) -> dict[str, int]:
    response = client.get(reverse("batch-results-export", args=[account, batch_id]))
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    return {kind: sum(int(row[f"billed_{kind}_tokens"] or 0) for row in rows) for kind in KINDS}


def row_text(model: str, sums: dict[str, int]) -> str:
    cells = [f"{sums[kind]:,}" for kind in KINDS]
    return " ".join([model, *cells, f"{sum(sums[kind] for kind in KINDS):,}", f"{sums['requests']:,}"])


def assert_realistic(sums: dict[str, int], *, cache_write: bool, reasoning: bool) -> None:
    assert sums["input"] > 0 and sums["output"] > 0 and sums["cache_read"] > 0
    assert (sums["cache_write"] > 0) is cache_write
    assert (sums["reasoning"] > 0) is reasoning


# --- Anthropic: summed from the results, cache reads and writes ---------------------------------------------


def test_anthropic_tokens_are_the_sdk_s_sums_of_every_result(counting, anthropic_client, operator_client):
    client = anthropic_client()
    batch = client.messages.batches.create(requests=[anthropic_request(index) for index in range(60)])
    created_ago(batch.id, hours=1)  # ended
    assert client.messages.batches.retrieve(batch.id).processing_status == "ended"

    sums: Counter = Counter()
    models = set()
    for result in client.messages.batches.results(batch.id):
        if result.result.type != "succeeded":
            continue
        usage = result.result.message.usage
        models.add(result.result.message.model)
        sums["input"] += usage.input_tokens  # Anthropic's input_tokens leave the cache out
        sums["cache_read"] += usage.cache_read_input_tokens or 0
        sums["cache_write"] += usage.cache_creation_input_tokens or 0
        sums["output"] += usage.output_tokens
        sums["reasoning"] += 0
        sums["requests"] += 1
    assert_realistic(sums, cache_write=True, reasoning=False)
    (model,) = models

    poll_store()  # nobody opens the batch: the poller counts it
    row, tokens = stored_tokens("anthropic-ops", batch.id)
    assert (row.tokens_source, row.tokens_note) == ("results", "")
    assert tokens == {model: dict(sums)}
    assert row_text(model, sums) in shown(operator_client, "anthropic-ops", batch.id)
    assert exported(operator_client, "anthropic-ops", batch.id) == {kind: sums[kind] for kind in KINDS}


# --- OpenAI and Azure OpenAI: the batch object's usage, which is the sum of the output file's ---------------------


def openai_sums(client: openai.OpenAI, batch) -> tuple[Counter, set[str]]:
    """The output file's usage added up, each body read as the SDK's ChatCompletion."""
    sums: Counter = Counter()
    models = set()
    for line in client.files.content(batch.output_file_id).text.splitlines():
        completion = ChatCompletion.model_validate(json.loads(line)["response"]["body"])
        usage = completion.usage
        cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
        reasoning = usage.completion_tokens_details.reasoning_tokens if usage.completion_tokens_details else 0
        models.add(completion.model)
        sums["input"] += usage.prompt_tokens - cached
        sums["cache_read"] += cached
        sums["cache_write"] += 0
        sums["output"] += usage.completion_tokens - reasoning
        sums["reasoning"] += reasoning
        sums["requests"] += 1
    return sums, models


def assert_batch_usage_is_the_sum(batch, sums: Counter) -> None:
    usage = batch.usage  # the SDK's BatchUsage
    assert usage.input_tokens == sums["input"] + sums["cache_read"]
    assert usage.input_tokens_details.cached_tokens == sums["cache_read"]
    assert usage.output_tokens == sums["output"] + sums["reasoning"]
    assert usage.output_tokens_details.reasoning_tokens == sums["reasoning"]
    assert usage.total_tokens == sum(sums[kind] for kind in KINDS)


def chat_lines(model: str, count: int) -> bytes:
    lines = [
        {
            "custom_id": f"req-{index:03d}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"Question {index}"}]},
        }
        for index in range(count)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.mark.parametrize("model, reasons", [("o4-mini", True), ("gpt-4o-mini", False)])
def test_openai_tokens_are_the_batch_object_s_and_the_sdk_s_sums(
    counting, openai_client, operator_client, model, reasons
):
    client = openai_client(OPENAI_KEYS["ops"])
    upload = client.files.create(file=("in.jsonl", chat_lines(model, 40), "application/jsonl"), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    created_ago(batch.id, hours=1)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.model == model

    sums, models = openai_sums(client, batch)
    assert models == {model}
    assert_realistic(sums, cache_write=False, reasoning=reasons)
    assert_batch_usage_is_the_sum(batch, sums)

    poll_store()
    row, tokens = stored_tokens("openai-ops", batch.id)
    assert (row.tokens_source, row.tokens_note) == ("batch", "")
    assert tokens == {model: dict(sums)}
    assert row_text(model, sums) in shown(operator_client, "openai-ops", batch.id)
    assert exported(operator_client, "openai-ops", batch.id) == {kind: sums[kind] for kind in KINDS}


def test_openai_responses_api_batch_tokens_are_the_batch_object_s_and_the_sdk_s_sums(
    counting, openai_client, operator_client
):
    """A /v1/responses batch: each body is a Responses API `response`, read as the SDK's Response; its
    usage names the counts input_tokens / output_tokens, the dashboard's export reads them the same."""
    model = "o4-mini"
    client = openai_client(OPENAI_KEYS["ops"])
    lines = [
        {
            "custom_id": f"r-{index:03d}",
            "method": "POST",
            "url": "/v1/responses",
            "body": {"model": model, "input": "Hi"},
        }
        for index in range(40)
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    upload = client.files.create(file=("in.jsonl", content, "application/jsonl"), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/responses", completion_window="24h")
    created_ago(batch.id, hours=1)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.model == model

    sums: Counter = Counter()
    statuses = Counter()
    for line in client.files.content(batch.output_file_id).text.splitlines():
        response = Response.model_validate(json.loads(line)["response"]["body"])
        assert response.object == "response" and response.model == model
        assert response.output_text.startswith("Simulated answer #")
        statuses[response.status] += 1
        usage = response.usage
        cached, reasoning = usage.input_tokens_details.cached_tokens, usage.output_tokens_details.reasoning_tokens
        assert usage.total_tokens == usage.input_tokens + usage.output_tokens
        sums["input"] += usage.input_tokens - cached
        sums["cache_read"] += cached
        sums["cache_write"] += 0
        sums["output"] += usage.output_tokens - reasoning
        sums["reasoning"] += reasoning
        sums["requests"] += 1
    assert statuses["completed"] > statuses["incomplete"] > 0  # one in ten ran out of output tokens
    assert_realistic(sums, cache_write=False, reasoning=True)
    assert_batch_usage_is_the_sum(batch, sums)

    poll_store()
    row, tokens = stored_tokens("openai-ops", batch.id)
    assert (row.tokens_source, row.tokens_note) == ("batch", "")
    assert tokens == {model: dict(sums)}
    assert row_text(model, sums) in shown(operator_client, "openai-ops", batch.id)
    assert exported(operator_client, "openai-ops", batch.id) == {kind: sums[kind] for kind in KINDS}


def test_a_running_openai_batch_s_tokens_grow_with_its_batch_object(counting, openai_client):
    client = openai_client(OPENAI_KEYS["ops"])
    upload = client.files.create(file=("in.jsonl", chat_lines("gpt-5", 300), "application/jsonl"), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        extra_headers={"x-sim-processing-seconds": "7200"},
    )
    totals = []
    for minutes in (10, 40):
        created_ago(batch.id, minutes=minutes)
        seen = client.batches.retrieve(batch.id)
        assert seen.status == "in_progress"
        poll_store()
        row, tokens = stored_tokens("openai-ops", batch.id)
        assert row.tokens_source == "batch"
        stored = tokens["gpt-5"]
        assert sum(stored[kind] for kind in KINDS) == seen.usage.total_tokens
        assert stored["reasoning"] == seen.usage.output_tokens_details.reasoning_tokens
        totals.append(seen.usage.total_tokens)
    assert 0 < totals[0] < totals[1]


def test_azure_openai_tokens_are_the_batch_object_s_and_the_sdk_s_sums(counting, simulator, operator_client):
    client = openai.AzureOpenAI(
        azure_endpoint=simulator + "/azure-openai",
        api_key=AZURE_OPENAI_KEYS["ops"],
        api_version=GA_VERSION,
        max_retries=0,
    )
    upload = client.files.create(
        file=("in.jsonl", chat_lines("gpt-4o-batch", 30), "application/jsonl"), purpose="batch"
    )
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    created_ago(batch.id, hours=1)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    sums, models = openai_sums(client, batch)
    assert models == {batch.model}
    assert_realistic(sums, cache_write=False, reasoning=False)
    assert_batch_usage_is_the_sum(batch, sums)

    poll_store()
    row, tokens = stored_tokens("azure-openai-ops", batch.id)
    assert row.tokens_source == "batch"
    assert tokens == {batch.model: dict(sums)}
    assert row_text(batch.model, sums) in shown(operator_client, "azure-openai-ops", batch.id)
    assert exported(operator_client, "azure-openai-ops", batch.id) == {kind: sums[kind] for kind in KINDS}
    client.close()


# --- Gemini: summed from the inlined responses, cached content and thoughts ------------------------------------


def test_gemini_tokens_are_the_sdk_s_sums_of_every_response(counting, gemini_client, operator_client):
    from google.genai import types

    client = gemini_client()
    requests = [
        {"contents": [{"parts": [{"text": f"Question {i}"}], "role": "user"}], "metadata": {"key": f"req-{i}"}}
        for i in range(40)
    ]
    job = client.batches.create(model="gemini-2.5-flash", src=requests, config=types.CreateBatchJobConfig())
    batch_id = job.name.removeprefix("batches/")
    created_ago(batch_id, hours=1)
    job = client.batches.get(name=job.name)
    assert job.state == "JOB_STATE_SUCCEEDED"

    sums: Counter = Counter()
    models = set()
    for inlined in job.dest.inlined_responses:
        if inlined.response is None:
            continue
        usage = inlined.response.usage_metadata
        cached = usage.cached_content_token_count or 0
        models.add(inlined.response.model_version)
        sums["input"] += usage.prompt_token_count - cached + (usage.tool_use_prompt_token_count or 0)
        sums["cache_read"] += cached
        sums["cache_write"] += 0
        sums["output"] += usage.candidates_token_count or 0
        sums["reasoning"] += usage.thoughts_token_count or 0
        sums["requests"] += 1
    assert_realistic(sums, cache_write=False, reasoning=True)
    (model,) = models

    poll_store()
    row, tokens = stored_tokens("gemini-ops", batch_id)
    assert (row.tokens_source, row.tokens_note) == ("results", "")
    assert tokens == {model: dict(sums)}
    assert row_text(model, sums) in shown(operator_client, "gemini-ops", batch_id)
    assert exported(operator_client, "gemini-ops", batch_id) == {kind: sums[kind] for kind in KINDS}


# --- The detail page: counted when someone opens it first, shown without a reload ---------------------------


def test_the_first_count_on_the_detail_page_swaps_in_its_tokens_and_cost(
    dashboard_upstream, anthropic_client, operator_client
):
    client = anthropic_client()
    batch = client.messages.batches.create(requests=[anthropic_request(index) for index in range(8)])
    created_ago(batch.id, hours=1)  # ended
    poll_store()  # stored, not counted: the poller's counting is off here (POLL_RESULTS_PER_CYCLE 0)
    assert StoredBatch.objects.get(batch_id=batch.id).tokens_source == ""
    assert shown(operator_client, "anthropic-ops", batch.id).startswith("Not counted yet")

    response = operator_client.get(
        reverse("batch-results-summary", args=["anthropic-ops", batch.id]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert '<section id="summary"' in body
    assert body.count('id="batch-spend" hx-swap-oob="true"') == 1, "the tokens and cost come out of band"
    row, tokens = stored_tokens("anthropic-ops", batch.id)
    assert row.tokens_source == "results" and tokens
    (model, sums), *_ = tokens.items()
    section = re.search(r'<div class="batch-tokens">(.*?)</div>', body, re.S).group(1)
    assert row_text(model, sums) in " ".join(html.unescape(re.sub(r"<[^>]+>", " ", section)).split())
    assert "Not counted yet" not in body and "Estimated cost" in body
    again = operator_client.get(reverse("batch-detail", args=["anthropic-ops", batch.id])).content.decode()
    assert "hx-swap-oob" not in again.split('id="batch-spend"', 1)[1][:20], "the page itself swaps nothing"
