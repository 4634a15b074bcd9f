"""The dashboard watching the simulator's Gemini demo accounts over real HTTP: the poller stores their
batches, a cancel goes through the dashboard and the row ends live, and an ended batch's responses
(inlined, or the responses file) are read, summarized and downloaded like any provider's."""

from __future__ import annotations

import io
import json
import re
import time

import pytest
from google.genai import types

from dashboard.models import CancelAttempt, StoredBatch
from tests.factories import HTMX, assert_no_keys, created_ago, poll_store, text

MODEL = "gemini-2.5-flash"


def inline_batch(client, count: int = 5, *, seconds: float = 600):
    requests = [{"contents": [{"parts": [{"text": f"Q{i}"}]}], "metadata": {"key": f"req-{i}"}} for i in range(count)]
    headers = types.HttpOptions(headers={"x-sim-processing-seconds": str(seconds)})
    return client.batches.create(model=MODEL, src=requests, config=types.CreateBatchJobConfig(http_options=headers))


def file_batch(client, count: int = 8):
    lines = [{"key": f"row-{i}", "request": {"contents": [{"parts": [{"text": f"Q{i}"}]}]}} for i in range(count)]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.upload(
        file=io.BytesIO(content), config=types.UploadFileConfig(mime_type="application/jsonl")
    )
    return client.batches.create(model=MODEL, src=uploaded.name)


def batch_id(job) -> str:
    return job.name.removeprefix("batches/")


def test_the_poller_stores_gemini_batches_beside_the_others(
    operator_client, dashboard_upstream, gemini_client, settings
):
    settings.SIMULATOR_VALIDATING_SECONDS = 60  # pending throughout
    job = inline_batch(gemini_client(), 4)
    poll_store()
    stored = StoredBatch.objects.get(account="gemini-ops", batch_id=batch_id(job))
    assert (stored.provider, stored.status, stored.total, stored.processing) == ("gemini", "pending", 4, 4)
    page = operator_client.get("/", {"provider": "gemini"})
    body = text(page)
    assert f'id="row-gemini-ops-{batch_id(job)}"' in body and "Gemini · ops" in body
    assert_no_keys(page)


def test_a_cancel_through_the_dashboard_ends_the_batch_cancelled(
    operator_client, dashboard_upstream, gemini_client, settings
):
    settings.SIMULATOR_CANCEL_SECONDS = 0.5
    settings.SIMULATOR_VALIDATING_SECONDS = 60  # pending throughout
    job = inline_batch(gemini_client(), 10)
    poll_store()
    response = operator_client.post(f"/batches/gemini-ops/{batch_id(job)}/cancel", **HTMX)
    assert response.status_code == 200
    body = text(response)
    # Gemini's cancel answers {}: the batch is read again, still pending until the cancel takes effect.
    assert "Cancel accepted; status is now pending." in body and " data-live" in body
    attempt = CancelAttempt.objects.get()
    assert (attempt.account, attempt.outcome, attempt.status_after) == ("gemini-ops", "accepted", "pending")
    # Until the cancel shows, the row says it was accepted and offers no second one.
    for pending in (body, text(operator_client.get(f"/batches/gemini-ops/{batch_id(job)}/row", **HTMX))):
        assert re.search(r'title="cancel accepted [\d-]+ [\d:]+ UTC: Gemini shows it once it takes effect"', pending)
        assert re.search(r"<time [^>]*>just now</time>: Gemini shows it once it takes effect", pending)
        assert ">Cancel</button>" not in pending
    time.sleep(0.7)
    poll_store()  # the row reads the store: the poller follows the batch to its end
    ended = operator_client.get(f"/batches/gemini-ops/{batch_id(job)}/row", **HTMX)
    assert ended.status_code == 286 and 'data-status="cancelled"' in text(ended)
    assert "asked here; Gemini does not say" in text(ended)  # when the cancel was asked: our audit trail
    assert "canceled 10" in text(ended)
    # Gemini does not say when the cancel was asked for: the story is told from the audit trail's time.
    detail = text(operator_client.get(f"/batches/gemini-ops/{batch_id(job)}/"))
    assert "<th>Cancel requested</th>" in detail and "when this dashboard asked (its audit trail)" in detail
    assert "<th>Canceling took</th>" in detail and "still canceling" not in detail
    again = operator_client.post(f"/batches/gemini-ops/{batch_id(job)}/cancel", **HTMX)
    assert "had already ended; nothing was canceled" in text(again)


def test_inlined_responses_are_shown_summarized_and_downloaded(
    operator_client, dashboard_upstream, gemini_client, settings
):
    settings.SIMULATOR_ERROR_PERCENT = 40
    job = inline_batch(gemini_client(), 6, seconds=1)
    created_ago(batch_id(job), minutes=5)
    poll_store()
    detail = text(operator_client.get(f"/batches/gemini-ops/{batch_id(job)}/"))
    assert 'data-status="succeeded"' in detail and "req-0" in detail and "req-5" in detail
    assert "Download responses file (JSONL)" in detail
    summary = text(operator_client.get(f"/batches/gemini-ops/{batch_id(job)}/results/summary", **HTMX))
    assert "of 6 result lines" in summary
    download = operator_client.get(f"/batches/gemini-ops/{batch_id(job)}/results/download")
    lines = [json.loads(line) for line in b"".join(download.streaming_content).splitlines()]
    assert [line["metadata"]["key"] for line in lines] == [f"req-{i}" for i in range(6)]
    stored = StoredBatch.objects.get(account="gemini-ops", batch_id=batch_id(job))
    assert "inlinedResponses" in json.dumps(stored.raw) and "Simulated answer" not in json.dumps(stored.raw)


@pytest.mark.usefixtures("fast_simulator")
def test_the_responses_file_is_read_like_any_results_file(operator_client, dashboard_upstream, gemini_client):
    job = file_batch(gemini_client(), 8)
    created_ago(batch_id(job), minutes=5)
    poll_store()
    detail = text(operator_client.get(f"/batches/gemini-ops/{batch_id(job)}/"))
    assert "row-0" in detail and "row-7" in detail
    csv = b"".join(operator_client.get(f"/batches/gemini-ops/{batch_id(job)}/results/export.csv").streaming_content)
    assert csv.count(b"\n") == 9  # a header and eight lines


def test_a_cancel_whose_process_died_is_settled_as_accepted_once_the_batch_shows_it_cancelled(
    dashboard_upstream, gemini_client, settings
):
    """Gemini never says when a cancel was asked; its status saying one took effect settles the attempt."""
    from dashboard.accounts import find_account
    from dashboard.batches import services

    settings.SIMULATOR_CANCEL_SECONDS = 0.2
    client = gemini_client()
    job = inline_batch(client, 4)
    client.batches.cancel(name=job.name)  # upstream accepted it; then the process that asked died
    attempt = CancelAttempt.objects.create(actor="operator", via="web", account="gemini-ops", batch_id=batch_id(job))
    time.sleep(0.4)
    settled = services.reconcile_attempt(attempt=attempt, account=find_account("gemini-ops"))
    assert (settled.outcome, settled.status_after) == ("accepted", "cancelled")
    assert "upstream says the batch ended cancelled" in settled.message
