"""In real Chromium, with the poller in a process of its own: an Azure OpenAI batch made through the
official SDK's AzureOpenAI client arrives in the list beside the others, is canceled from its row, and
its row ends live (cancelling, then cancelled) without a reload."""

import json

import openai
import pytest
from playwright.sync_api import expect

from dashboard.providers import azure_openai

pytestmark = pytest.mark.browser


@pytest.fixture
def quick_live_rows(settings, dashboard_upstream):
    settings.ROW_POLL_SECONDS = 1
    settings.SIMULATOR_CANCEL_SECONDS = 2
    return settings


@pytest.mark.slow
def test_an_azure_batch_is_canceled_from_its_row_and_ends_live(
    quick_live_rows, signed_in_page, poller_process, live_server
):
    page = signed_in_page
    page.evaluate("window.__sameDocument = true")  # survives only if the page is never reloaded
    client = openai.AzureOpenAI(
        azure_endpoint=f"{live_server.url}/simulator/azure-openai",
        api_key=azure_openai.SIMULATOR_KEYS["ops"],
        api_version="2024-10-21",
        max_retries=0,
    )
    line = {"custom_id": "c1", "method": "POST", "url": "/chat/completions", "body": {"model": "gpt-4o-batch"}}
    upload = client.files.create(file=("input.jsonl", json.dumps(line).encode()), purpose="batch")
    running = client.batches.create(
        input_file_id=upload.id,
        endpoint="/chat/completions",
        completion_window="24h",
        extra_headers={"x-sim-processing-seconds": "300"},
    )

    row = page.locator(f"#row-azure-openai-ops-{running.id}")
    expect(row.locator(".provider-azure-openai")).to_have_text("Azure OpenAI", timeout=15_000)
    expect(row.locator(".badge")).to_have_text("in_progress", timeout=15_000)
    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    row.get_by_role("button", name="Cancel").click()

    expect(row.locator(".badge")).to_have_text("cancelling")
    assert dialogs and running.id in dialogs[0]
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(row.locator(".badge")).to_have_text("cancelled", timeout=15_000)
    assert page.evaluate("window.__sameDocument") is True
    assert client.batches.retrieve(running.id).status == "cancelled"
    client.close()
