"""In real Chromium, with the poller in a process of its own: sign in, watch new batches of both
providers arrive at the top of the list, cancel a running one and watch its row end."""

import json
import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

REQUEST = {"params": {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}}


@pytest.fixture
def quick_live_rows(settings, dashboard_upstream):
    settings.ROW_POLL_SECONDS = 1
    settings.SIMULATOR_CANCEL_SECONDS = 2
    return settings


@pytest.mark.slow
def test_cancel_moves_the_row_to_canceling_then_ended_and_polling_stops(
    quick_live_rows, anthropic_client, openai_client, signed_in_page, poller_process, live_server
):
    page = signed_in_page
    page.evaluate("window.__sameDocument = true")  # survives only if the page is never reloaded
    running = anthropic_client().messages.batches.create(
        requests=[{"custom_id": f"req-{i}", **REQUEST} for i in range(20)],
        extra_headers={"x-sim-processing-seconds": "300"},
    )
    upload = openai_client().files.create(
        file=(
            "input.jsonl",
            json.dumps(
                {
                    "custom_id": "c1",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o", "messages": []},
                }
            ).encode(),
        ),
        purpose="batch",
    )
    openai_client().batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")

    # The poller stores them; the list's probe brings them in above the first row, without a reload.
    expect(page.locator("tr.batch-row .provider-anthropic").first).to_be_visible()
    expect(page.locator("tr.batch-row .provider-openai").first).to_be_visible()

    row = page.locator(f"#row-anthropic-ops-{running.id}")
    expect(row.locator(".badge")).to_have_text("in_progress")
    row_path = f"/batches/anthropic-ops/{running.id}/row"
    polls: list[float] = []  # the page's feed: one request for every row
    row_polls: list[str] = []
    page.on("request", lambda request: polls.append(time.monotonic()) if "feed=" in request.url else None)
    page.on("request", lambda request: row_polls.append(request.url) if request.url.endswith(row_path) else None)

    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    row.get_by_role("button", name="Cancel").click()

    expect(row.locator(".badge")).to_have_text("canceling")
    assert dialogs and running.id in dialogs[0]
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(row.locator(".badge")).to_have_text("ended", timeout=15_000)
    expect(row).to_contain_text("canceled")
    assert page.evaluate("window.__sameDocument") is True
    assert len(polls) >= 1, "the page's feed never asked while the batch was canceling"
    assert row_polls == [], "a row polled on its own"

    # The ended row is no longer watched: the feed sends it no more.
    assert row.get_attribute("data-live") is None
    row.evaluate("element => { element.dataset.seenAtEnd = 'yes'; }")  # gone if the row is swapped again
    polls_at_end = len(polls)
    page.wait_for_timeout(3500)
    assert len(polls) > polls_at_end, "the feed goes on for new batches"
    assert row.get_attribute("data-seen-at-end") == "yes" and row_polls == []
