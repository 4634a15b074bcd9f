"""In real Chromium, with the poller in a process of its own: a Gemini batch made through the official
google-genai SDK arrives in the list beside the others, is canceled from its row, and its row ends live
(Gemini has no cancelling state: running until the cancel takes effect, then cancelled) without a reload."""

import pytest
from google import genai
from google.genai import types
from playwright.sync_api import expect

from dashboard.providers import gemini

pytestmark = pytest.mark.browser


@pytest.fixture
def quick_live_rows(settings, dashboard_upstream):
    settings.ROW_POLL_SECONDS = 1
    settings.SIMULATOR_CANCEL_SECONDS = 2
    return settings


@pytest.mark.slow
def test_a_gemini_batch_is_canceled_from_its_row_and_ends_live(
    quick_live_rows, signed_in_page, poller_process, live_server
):
    page = signed_in_page
    page.evaluate("window.__sameDocument = true")  # survives only if the page is never reloaded
    client = genai.Client(
        api_key=gemini.SIMULATOR_KEYS["ops"],
        http_options=types.HttpOptions(base_url=f"{live_server.url}/simulator/gemini", timeout=20_000),
    )
    requests = [{"contents": [{"parts": [{"text": f"Q{i}"}]}], "metadata": {"key": f"q-{i}"}} for i in range(5)]
    slow = types.CreateBatchJobConfig(http_options=types.HttpOptions(headers={"x-sim-processing-seconds": "300"}))
    job = client.batches.create(model="gemini-2.5-flash", src=requests, config=slow)
    batch_id = job.name.removeprefix("batches/")

    row = page.locator(f"#row-gemini-ops-{batch_id}")
    expect(row.locator(".provider-gemini")).to_have_text("Gemini", timeout=15_000)
    expect(row.locator(".badge")).to_have_text("running", timeout=15_000)
    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    row.get_by_role("button", name="Cancel").click()

    expect(row.locator(".row-notice")).to_contain_text("Cancel accepted", timeout=15_000)
    assert dialogs and batch_id in dialogs[0]
    expect(row.locator(".badge")).to_have_text("cancelled", timeout=15_000)
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True
    assert client.batches.get(name=job.name).state == "JOB_STATE_CANCELLED"
    client.close()
