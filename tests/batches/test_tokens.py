"""Tokens per batch: the BatchTokens rows (disjoint kinds per model) and the batch's tokens source."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, transaction

from dashboard.models import BatchTokens, StoredBatch
from tests.factories import stored_batch

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_a_stored_batch_starts_with_tokens_not_known_yet_and_no_rows(db):
    row = stored_batch("openai-ops", "batch_tokens_1", fetched_at=T0, created=T0)
    assert (row.tokens_source, row.tokens_note) == ("", "")
    assert row.tokens_source == StoredBatch.TokensSource.NOT_KNOWN_YET
    assert not row.tokens.exists()


def test_one_tokens_row_per_batch_and_model_whose_kinds_add_up_to_the_total(db):
    row = stored_batch("anthropic-ops", "msgbatch_tokens1", fetched_at=T0, created=T0)
    tokens = BatchTokens.objects.create(
        batch=row, model="claude-x", input=10, cache_read=20, cache_write=30, output=40, reasoning=5, requests=2
    )
    BatchTokens.objects.create(batch=row, model="", input=1)
    assert tokens.total == 105
    assert sorted(row.tokens.values_list("model", flat=True)) == ["", "claude-x"]
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchTokens.objects.create(batch=row, model="claude-x", input=1)
    row.delete()
    assert not BatchTokens.objects.exists()
