"""In real Chromium, with the poller and a worker in processes of their own: 20 running batches of both providers,
the list filtered to them, "Cancel 20 batches…", a preview of exactly those 20, the number typed,
the progress page until all 20 are canceled, then all 20 end on the list."""

import json
import re
import time

import pytest
from playwright.sync_api import expect

from dashboard.models import BulkCancel, CancelAttempt, StoredBatch

pytestmark = pytest.mark.browser

WAIT = 30_000  # ms: 20 batches, a poller cycle a second, on a machine that may be busy
REQUEST = {"params": {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}}
LINE = {"custom_id": "c1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o", "messages": []}}


@pytest.fixture
def quick(settings, dashboard_upstream):
    settings.ROW_POLL_SECONDS = 1
    settings.SIMULATOR_CANCEL_SECONDS = 2  # a canceled batch ends 2 s after its cancel
    return settings


@pytest.mark.slow
def test_a_bulk_cancel_of_20_batches_that_all_end(
    quick, anthropic_client, openai_client, signed_in_page, poller_process, worker_process, live_server
):
    page = signed_in_page
    long = {"x-sim-processing-seconds": "600"}
    made = [
        (
            "anthropic-ops",
            anthropic_client()
            .messages.batches.create(requests=[{"custom_id": f"r{i}", **REQUEST} for i in range(3)], extra_headers=long)
            .id,
        )
        for _ in range(12)
    ]
    for n in range(8):
        upload = openai_client().files.create(file=(f"in{n}.jsonl", json.dumps(LINE).encode()), purpose="batch")
        batch = openai_client().batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"job": "bulk-test"},
            extra_headers=long,
        )
        made.append(("openai-ops", batch.id))
    ids = {batch_id for _, batch_id in made}

    # The poller (its own process) stores them.
    deadline = time.monotonic() + WAIT / 1000
    while StoredBatch.objects.filter(batch_id__in=ids, is_ended=False).count() < 20:
        assert time.monotonic() < deadline, "the poller did not store the 20 batches"
        time.sleep(0.2)

    # Filter the list to the batches not ended yet: the header offers to cancel them.
    page.select_option("select[name=status]", "active")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"\?.*status=active"))
    expect(page.locator("tr.batch-row")).to_have_count(20, timeout=WAIT)
    expect(page.locator("table.list-summary tfoot .not-ended")).to_have_text("20", timeout=WAIT)
    entry = page.get_by_role("link", name="Cancel 20 batches…")
    expect(entry).to_be_visible(timeout=WAIT)
    entry.click()

    # The preview: exactly these 20, each ticked; more than 3, so the number is typed.
    page.wait_for_url(re.compile(r"/bulk-cancel/preview\?status=active$"))
    expect(page.get_by_role("heading", name="Cancel 20 batches")).to_be_visible()
    boxes = page.locator("input[type=checkbox][name=batch]")
    expect(boxes).to_have_count(20)
    previewed = {value.split("/", 1)[1] for value in boxes.evaluate_all("(boxes) => boxes.map((b) => b.value)")}
    assert previewed == ids
    assert all(boxes.evaluate_all("(boxes) => boxes.map((b) => b.checked)"))
    submit = page.get_by_role("button", name="Cancel 20 batches")
    # Unticking one says 19 (the server counts again on the confirmation); ticked again, 20.
    boxes.first.uncheck()
    expect(page.get_by_role("button", name="Cancel 19 batches")).to_be_visible()
    boxes.first.check()
    expect(submit).to_be_visible()
    # A wrong number is refused by the server, and nothing is canceled.
    page.fill("#typed", "2")
    submit.click()
    expect(page.locator(".bulk-error")).to_contain_text("type their number, 20, in the box")
    assert CancelAttempt.objects.count() == 0 and BulkCancel.objects.count() == 0
    page.fill("#typed", "20")
    page.get_by_role("button", name="Cancel 20 batches").click()

    # The progress page, polled until the operation has finished: all 20 canceled.
    page.wait_for_url(re.compile(r"/bulk-cancel/\d+/$"))
    progress = page.locator("#bulk-progress")
    expect(progress.locator(".total-canceled .n")).to_have_text("20", timeout=WAIT)
    expect(progress).to_have_class(re.compile(r"\bis-finished\b"), timeout=WAIT)
    expect(progress.locator("tr.bulk-item")).to_have_count(20)
    expect(progress.locator('tr.bulk-item[data-state="canceled"]')).to_have_count(20)
    for name in ("already_ended", "failed", "skipped", "pending"):
        expect(progress.locator(f".total-{name} .n")).to_have_text("0")
    operation = BulkCancel.objects.get()
    assert operation.finished_at is not None and operation.total == 20 and operation.confirmed
    assert CancelAttempt.objects.filter(via="bulk", outcome="accepted").count() == 20
    assert progress.get_attribute("hx-trigger") is None  # polling has stopped

    # Then all 20 end, as the list shows them (each row polls the store the poller keeps fresh).
    page.goto(live_server.url + "/")
    for account, batch_id in made:
        final = "ended" if account.startswith("anthropic") else "cancelled"
        expect(page.locator(f"#row-{account}-{batch_id} .badge")).to_have_text(final, timeout=WAIT)
    # And the header says so: nothing running, 20 ended in the last 24 h after a cancel.
    page.reload()
    total = page.locator("table.list-summary tfoot")
    expect(total.locator(".not-ended")).to_have_text("0", timeout=WAIT)
    expect(total.locator(".ended-outcomes")).to_have_text(re.compile(r"ended, canceled\s+12\s+cancelled\s+8"))
