"""In real Chromium: from the list to an ended batch's detail page, filter its results, download them."""

import json
import re
import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

REQUESTS = 100


def wait_until_ended(client, batch_id: str, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.processing_status} after {timeout} s"
        time.sleep(0.2)


def test_detail_page_filters_results_and_downloads_them(
    dashboard_upstream, anthropic_client, signed_in_page, poller_process, live_server, tmp_path
):
    client = anthropic_client()
    custom_ids = [f"row-{i:03d}" for i in range(REQUESTS)]
    created = client.messages.batches.create(
        requests=[
            {
                "custom_id": custom_id,
                "params": {
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": custom_id}],
                },
            }
            for custom_id in custom_ids
        ],
        extra_headers={"x-sim-processing-seconds": "0.5"},
    )
    counts = wait_until_ended(client, created.id).request_counts
    errored_ids = [
        entry.custom_id for entry in client.messages.batches.results(created.id) if entry.result.type == "errored"
    ]
    assert len(errored_ids) == counts.errored > 0

    page = signed_in_page
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(f"console {message.type}: {message.text}") if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    # The poller (its own process) stores the batch; the list's probe brings its row in.
    row = page.locator(f"#row-anthropic-ops-{created.id}")
    expect(row.locator(".badge")).to_have_text("ended")
    row.get_by_role("link", name=created.id).click()

    detail_url = f"{live_server.url}/batches/anthropic-ops/{created.id}/"
    page.wait_for_url(detail_url)
    expect(page.locator("h1.detail-title")).to_contain_text(created.id)

    # The error summary replaces its placeholder by itself.
    summary = page.locator("section#summary")
    expect(summary).to_contain_text(f"errored {counts.errored}")
    expect(summary).to_contain_text(f"of {REQUESTS} result lines")
    expect(summary.locator("table.summary-table tbody tr").first).to_be_visible()
    expect(page.get_by_text("Counting errors…")).to_have_count(0)
    results = page.locator("#results tr.result-line")
    expect(results).to_have_count(50)

    page.evaluate("window.__sameDocument = true")
    page.get_by_label("Result").select_option("errored")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"[?&]type=errored(&|$)"))
    expect(results).to_have_count(len(errored_ids))
    expect(page.locator("#results tr.result-line.result-errored")).to_have_count(len(errored_ids))
    assert page.locator("#results tr.result-line td:nth-child(2) code").all_inner_texts() == errored_ids
    expect(page.get_by_label("Result")).to_have_value("errored")
    assert page.evaluate("window.__sameDocument") is True, "the filter reloaded the whole page"
    expect(page.locator("section#summary")).to_contain_text(f"errored {counts.errored}")  # came back with the swap

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download results (JSONL)").click()
    download = download_info.value
    assert download.suggested_filename == f"{created.id}.jsonl"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    lines = [json.loads(line) for line in target.read_text().splitlines() if line.strip()]
    assert len(lines) == REQUESTS
    assert [line["custom_id"] for line in lines] == custom_ids
    assert sorted(line["custom_id"] for line in lines if line["result"]["type"] == "errored") == sorted(errored_ids)

    # Still the same page after the download, and nothing went wrong in it.
    assert page.url.startswith(detail_url)
    assert problems == []
