"""The detail page's Tokens section: tokens by kind per model, where they were read, and why they are
unknown or partial when they are: never a zero standing for "unknown"."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

from django.urls import reverse

from dashboard.models import BatchTokens, StoredBatch
from tests.factories import stored_batch
from tests.providers.test_providers import ANTHROPIC_ENDED

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def tokens_section(client, row: StoredBatch) -> str:
    response = client.get(reverse("batch-detail", args=[row.account, row.batch_id]))
    assert response.status_code == 200
    match = re.search(r'<div class="batch-tokens">(.*?)</div>', response.content.decode(), re.S)
    assert match, "no tokens on the detail page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


def ended_row(batch_id: str = "msgbatch_tokensshown1") -> StoredBatch:
    return stored_batch("anthropic-ops", batch_id, fetched_at=T0, body=ANTHROPIC_ENDED | {"id": batch_id})


def counted(row: StoredBatch, *, note: str = "") -> None:
    StoredBatch.objects.filter(pk=row.pk).update(tokens_source=StoredBatch.TokensSource.RESULTS, tokens_note=note)


def test_tokens_by_kind_per_model_and_over_all_models(operator_client):
    row = ended_row()
    counted(row)
    BatchTokens.objects.create(
        batch=row, model="claude-sonnet-4-5", input=1_200, cache_read=30_000, cache_write=4_000, output=900, requests=12
    )
    BatchTokens.objects.create(batch=row, model="claude-haiku-4-5", input=5, output=7, requests=1)
    text = tokens_section(operator_client, row)
    assert "Summed from the batch's results." in text
    assert "claude-sonnet-4-5 1,200 30,000 4,000 900 0 36,100 12" in text
    assert "claude-haiku-4-5 5 0 0 7 0 12 1" in text
    assert "All models 1,205 30,000 4,000 907 0 36,112" in text
    assert "⚠" not in text


def test_partial_tokens_say_how_many_results_had_no_usage(operator_client):
    row = ended_row()
    counted(row, note="12 of 1,000 results had no usage that could be read: their tokens are not counted.")
    BatchTokens.objects.create(batch=row, model="claude-sonnet-4-5", input=10, output=1, requests=988)
    text = tokens_section(operator_client, row)
    assert "⚠ 12 of 1,000 results had no usage that could be read: their tokens are not counted." in text
    assert "All models" not in text  # one model: no total row


def test_unknown_tokens_say_why_and_show_no_zero(operator_client):
    row = ended_row()
    assert tokens_section(operator_client, row) == (
        "Not counted yet: they are summed from the results, which the dashboard reads once after a batch ends."
    )
    StoredBatch.objects.filter(pk=row.pk).update(
        tokens_source=StoredBatch.TokensSource.UNAVAILABLE, tokens_note="The results could not be read: gone."
    )
    assert tokens_section(operator_client, row) == "Unknown: The results could not be read: gone."


def test_a_running_batch_without_usage_on_its_object_says_when_tokens_will_be_known(operator_client):
    row = stored_batch("anthropic-ops", "msgbatch_tokensrunning1", fetched_at=T0, created=T0)
    text = tokens_section(operator_client, row)
    assert (
        text
        == "Not known while it runs: Anthropic reports them in the results, which are summed once the batch has ended."
    )


def test_results_without_any_billed_request_are_none_not_unknown(operator_client):
    row = ended_row()
    counted(row)
    assert tokens_section(operator_client, row) == "None: no result of this batch reports tokens (no request ran)."


def test_a_running_openai_batch_shows_the_usage_of_its_batch_object_and_its_model(operator_client):
    body = {
        "id": "batch_tokensrunning1",
        "object": "batch",
        "endpoint": "/v1/responses",
        "model": "gpt-5-2025-08-07",
        "status": "in_progress",
        "created_at": int(T0.timestamp()),
        "expires_at": int(T0.timestamp()) + 86400,
        "request_counts": {"total": 10, "completed": 4, "failed": 0},
        "usage": {
            "input_tokens": 4_000,
            "input_tokens_details": {"cached_tokens": 1_000},
            "output_tokens": 800,
            "output_tokens_details": {"reasoning_tokens": 300},
            "total_tokens": 4_800,
        },
    }
    row = stored_batch("openai-ops", body["id"], fetched_at=T0, body=body)
    text = tokens_section(operator_client, row)
    assert "As OpenAI reports them on the batch, so far (updated as it runs)." in text
    assert "gpt-5-2025-08-07 3,000 1,000 0 500 300 4,800 4" in text


def test_a_model_name_from_upstream_is_escaped(operator_client):
    row = ended_row()
    counted(row)
    BatchTokens.objects.create(batch=row, model="<script>alert(1)</script>", input=1)
    response = operator_client.get(reverse("batch-detail", args=[row.account, row.batch_id]))
    assert b"<script>alert(1)</script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content
