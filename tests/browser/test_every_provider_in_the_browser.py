"""In real Chromium, with the poller in a process of its own: batches of all five providers, each made
through its official SDK, arrive on one list page; one batch of each provider the dashboard gained in
issue 18 is canceled from its row, and every such row ends live, without a reload, in its provider's
own words (Azure: cancelling, then cancelled; Bedrock: Stopping, then Stopped; Gemini: running until
the cancel takes effect, then cancelled)."""

import json

import boto3
import openai
import pytest
from botocore.config import Config
from google import genai
from google.genai import types
from playwright.sync_api import expect

from dashboard.providers import azure_openai, bedrock, gemini
from dashboard.simulator.bedrock_api import RECORDS_TAG

pytestmark = pytest.mark.browser

SLOW = {"x-sim-processing-seconds": "300"}  # running until canceled
MESSAGE = {"params": {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}}


@pytest.fixture
def quick_live_rows(settings, dashboard_upstream):
    settings.ROW_POLL_SECONDS = 1
    settings.SIMULATOR_CANCEL_SECONDS = 2
    settings.SIMULATOR_VALIDATING_SECONDS = 1
    return settings


def jsonl(line: dict) -> bytes:
    return json.dumps(line).encode()


def azure_batch(simulator: str) -> tuple[str, object]:
    client = openai.AzureOpenAI(
        azure_endpoint=f"{simulator}/azure-openai",
        api_key=azure_openai.SIMULATOR_KEYS["ops"],
        api_version="2024-10-21",
        max_retries=0,
    )
    line = {"custom_id": "c1", "method": "POST", "url": "/chat/completions", "body": {"model": "gpt-4o-batch"}}
    upload = client.files.create(file=("input.jsonl", jsonl(line)), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/chat/completions", completion_window="24h", extra_headers=SLOW
    )
    return batch.id, lambda: client.batches.retrieve(batch.id).status


def bedrock_job(simulator: str) -> tuple[str, object]:
    client = boto3.client(
        "bedrock",
        endpoint_url=f"{simulator}/bedrock",
        region_name="us-east-1",
        aws_access_key_id=bedrock.SIMULATOR_OPTIONS["ops"]["access_key_id"],
        aws_secret_access_key=bedrock.SIMULATOR_KEYS["ops"],
        config=Config(retries={"total_max_attempts": 1}),
    )
    arn = client.create_model_invocation_job(
        jobName="every-provider-walk",
        roleArn="arn:aws:iam::123456789012:role/Batch",
        modelId="anthropic.claude-3-haiku-20240307-v1:0",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://walk-input/every/"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://walk-output/every/"}},
        tags=[{"key": RECORDS_TAG, "value": "200"}],
    )["jobArn"]
    job_id = arn.rsplit("/", 1)[1]
    return job_id, lambda: client.get_model_invocation_job(jobIdentifier=job_id)["status"]


def gemini_batch(simulator: str) -> tuple[str, object]:
    client = genai.Client(
        api_key=gemini.SIMULATOR_KEYS["ops"],
        http_options=types.HttpOptions(base_url=f"{simulator}/gemini", timeout=20_000),
    )
    requests = [{"contents": [{"parts": [{"text": f"Q{i}"}]}], "metadata": {"key": f"q-{i}"}} for i in range(5)]
    config = types.CreateBatchJobConfig(http_options=types.HttpOptions(headers=SLOW))
    job = client.batches.create(model="gemini-2.5-flash", src=requests, config=config)
    return job.name.removeprefix("batches/"), lambda: client.batches.get(name=job.name).state


# provider: (how its batch is made, its word while running, as the cancel is accepted and at the end,
# and what its own SDK says at the end)
NEW_PROVIDERS = {
    "azure-openai": (azure_batch, "in_progress", "cancelling", "cancelled", "cancelled"),
    "bedrock": (bedrock_job, "InProgress", "Stopping", "Stopped", "Stopped"),
    "gemini": (gemini_batch, "running", "running", "cancelled", "JOB_STATE_CANCELLED"),
}


@pytest.mark.slow
def test_five_providers_on_one_page_and_each_new_one_canceled_live(
    quick_live_rows, anthropic_client, openai_client, signed_in_page, poller_process, live_server
):
    page = signed_in_page
    page.evaluate("window.__sameDocument = true")  # survives only if the page is never reloaded
    simulator = f"{live_server.url}/simulator"
    anthropic_client().messages.batches.create(
        requests=[{"custom_id": f"req-{i}", **MESSAGE} for i in range(3)], extra_headers=SLOW
    )
    line = {"custom_id": "c1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o"}}
    upload = openai_client().files.create(file=("input.jsonl", jsonl(line)), purpose="batch")
    openai_client().batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    made = {provider: make(simulator) for provider, (make, *_) in NEW_PROVIDERS.items()}

    for provider in ("anthropic", "openai", *NEW_PROVIDERS):
        expect(page.locator(f"tr.batch-row .provider-{provider}").first).to_be_visible(timeout=45_000)

    rows = {provider: page.locator(f"#row-{provider}-ops-{batch_id}") for provider, (batch_id, _) in made.items()}
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    for provider, (_, running, accepted, _, _) in NEW_PROVIDERS.items():
        row = rows[provider]
        expect(row.locator(".badge")).to_have_text(running, timeout=30_000)
        row.get_by_role("button", name="Cancel").click()
        expect(row.locator(".row-notice")).to_contain_text("Cancel accepted")
        expect(row.locator(".badge")).to_have_text(accepted)
        expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
    assert [any(batch_id in message for message in dialogs) for batch_id, _ in made.values()] == [True] * 3

    for provider, (_, _, _, ended, sdk_says) in NEW_PROVIDERS.items():
        expect(rows[provider].locator(".badge")).to_have_text(ended, timeout=30_000)
        expect(rows[provider]).not_to_have_attribute("data-live", "")  # the feed no longer watches an ended row
        assert made[provider][1]() == sdk_says
    assert page.evaluate("window.__sameDocument") is True
