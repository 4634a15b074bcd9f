"""/metrics: tokens by account, provider, model and kind, and their estimated cost, counted from the store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.models import BatchTokens
from dashboard.spend import table
from tests.batches.test_selectors import A_OPS, A_RES, put
from tests.metrics.test_metrics import demo_accounts_configured, metrics_on, scrape, value  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_price_table():
    table._table.cache_clear()
    yield
    table._table.cache_clear()


def test_tokens_and_cost_by_account_model_and_kind(client, db, metrics_on):  # noqa: F811
    now = timezone.now()
    first = put(A_OPS, "msgbatch_tokensa", now)
    second = put(A_OPS, "msgbatch_tokensb", now - timedelta(minutes=1))
    other = put(A_RES, "msgbatch_tokensc", now)
    BatchTokens.objects.create(batch=first, model="claude-opus-4-1", input=1_000_000, cache_read=10, output=3)
    BatchTokens.objects.create(batch=second, model="claude-opus-4-1", input=1_000_000, reasoning=7)
    BatchTokens.objects.create(batch=second, model="claude-fable-9", output=42)
    BatchTokens.objects.create(batch=other, model="", input=5)
    samples = scrape(client)
    tokens = "batch_dashboard_batch_tokens_total"
    opus = {"account": "anthropic-ops", "provider": "anthropic", "model": "claude-opus-4-1"}
    assert value(samples, tokens, **opus, kind="input") == 2_000_000
    assert value(samples, tokens, **opus, kind="cache_read") == 10
    assert value(samples, tokens, **opus, kind="cache_write") == 0
    assert value(samples, tokens, **opus, kind="output") == 3
    assert value(samples, tokens, **opus, kind="reasoning") == 7
    assert (
        value(samples, tokens, account="anthropic-ops", provider="anthropic", model="claude-fable-9", kind="output")
        == 42
    )
    assert value(samples, tokens, account="anthropic-research", provider="anthropic", model="", kind="input") == 5
    cost = "batch_dashboard_batch_cost_usd_total"
    # (2M × $15 + 10 × $1.50 + 10 × $75) / 2 per million
    assert value(samples, cost, **opus) == pytest.approx(15.0003825)
    assert value(samples, cost, account="anthropic-ops", provider="anthropic", model="claude-fable-9") is None
    assert value(samples, cost, account="anthropic-research", provider="anthropic", model="") is None
