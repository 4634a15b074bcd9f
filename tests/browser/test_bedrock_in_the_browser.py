"""In real Chromium, with the poller in a process of its own: an Amazon Bedrock job made through boto3
arrives in the list beside the others, is stopped from its row, and its row ends live (Stopping, then
Stopped) without a reload."""

import boto3
import pytest
from botocore.config import Config
from playwright.sync_api import expect

from dashboard.providers import bedrock
from dashboard.simulator.bedrock_api import RECORDS_TAG

pytestmark = pytest.mark.browser


@pytest.fixture
def quick_live_rows(settings, dashboard_upstream):
    settings.ROW_POLL_SECONDS = 1
    settings.SIMULATOR_CANCEL_SECONDS = 2
    settings.SIMULATOR_VALIDATING_SECONDS = 1
    settings.SIMULATOR_PROCESSING_SECONDS = 300
    return settings


@pytest.mark.slow
def test_a_bedrock_job_is_stopped_from_its_row_and_ends_live(
    quick_live_rows, signed_in_page, poller_process, live_server
):
    page = signed_in_page
    page.evaluate("window.__sameDocument = true")  # survives only if the page is never reloaded
    client = boto3.client(
        "bedrock",
        endpoint_url=f"{live_server.url}/simulator/bedrock",
        region_name="us-east-1",
        aws_access_key_id=bedrock.SIMULATOR_OPTIONS["ops"]["access_key_id"],
        aws_secret_access_key=bedrock.SIMULATOR_KEYS["ops"],
        config=Config(retries={"total_max_attempts": 1}),
    )
    arn = client.create_model_invocation_job(
        jobName="browser-walk",
        roleArn="arn:aws:iam::123456789012:role/Batch",
        modelId="anthropic.claude-3-haiku-20240307-v1:0",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://walk-input/browser/"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://walk-output/browser/"}},
        tags=[{"key": RECORDS_TAG, "value": "200"}],
    )["jobArn"]
    job_id = arn.rsplit("/", 1)[1]

    row = page.locator(f"#row-bedrock-ops-{job_id}")
    expect(row.locator(".provider-bedrock")).to_have_text("Amazon Bedrock", timeout=15_000)
    expect(row.locator(".badge")).to_have_text("InProgress", timeout=15_000)
    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    row.get_by_role("button", name="Cancel").click()

    expect(row.locator(".badge")).to_have_text("Stopping")
    assert dialogs and job_id in dialogs[0]
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(row.locator(".badge")).to_have_text("Stopped", timeout=15_000)
    assert page.evaluate("window.__sameDocument") is True
    assert client.get_model_invocation_job(jobIdentifier=job_id)["status"] == "Stopped"
    client.close()
