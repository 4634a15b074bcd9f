"""The detail page's cost: tokens × the price table, said as an estimate at list prices as of a date, a model
without a price named with its tokens still shown, and never a cost made up from unknown tokens."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse

from dashboard.models import BatchTokens, StoredBatch
from dashboard.spend import table
from dashboard.spend.selectors import batch_spend
from dashboard.templatetags.spend import token_kinds, usd
from tests.factories import stored_batch

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_price_table():
    table._table.cache_clear()
    yield
    table._table.cache_clear()


def anthropic_row(batch_id: str = "msgbatch_cost1") -> StoredBatch:
    return stored_batch("anthropic-ops", batch_id, fetched_at=T0, created=T0)


def cost_section(client, row: StoredBatch) -> str:
    response = client.get(reverse("batch-detail", args=[row.account, row.batch_id]))
    assert response.status_code == 200
    match = re.search(r'<div class="batch-cost" id="batch-cost">(.*?)</div>', response.content.decode(), re.S)
    assert match, "no cost on the detail page"
    return match.group(1)


def visible(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def test_the_detail_page_shows_the_estimated_cost_at_list_prices_as_of_a_date(operator_client):
    row = anthropic_row()
    row.tokens_source = StoredBatch.TokensSource.RESULTS
    row.save(update_fields=["tokens_source"])
    BatchTokens.objects.create(
        batch=row, model="claude-opus-4-1-20250805", input=1_000_000, cache_read=2_000_000, output=100_000, requests=10
    )
    text = visible(cost_section(operator_client, row))
    # (1M × $15 + 2M × $1.50 + 0.1M × $75) / 2 = $12.75
    assert "Estimated cost $12.75 so far at list prices as of 7 Dec 2026, batch discount included." in text
    assert "claude-opus-4-1-20250805 3,100,000 $12.75 price source" in text
    assert "unknown" not in text


def test_a_model_without_a_price_is_named_with_its_tokens_and_adds_nothing(operator_client):
    row = anthropic_row()
    BatchTokens.objects.create(batch=row, model="claude-opus-4-5", input=2_000_000, requests=1)
    BatchTokens.objects.create(batch=row, model="claude-fable-9", input=1_234_567, output=1, requests=1)
    BatchTokens.objects.create(batch=row, model="", input=10, requests=1)
    text = visible(cost_section(operator_client, row))
    assert "Estimated cost $5.00 so far" in text  # Opus 4.5 only: 2M × $5 / 2
    assert "not counting what is said below" in text
    assert "Price unknown for model claude-fable-9 : its 1,234,568 tokens are not priced." in text
    assert "Price unknown for model (not reported) : its 10 tokens are not priced." in text
    assert "claude-fable-9 1,234,568 price unknown" in text


def test_kinds_without_a_price_are_said_and_not_counted(operator_client, tmp_path, settings):
    rates = tmp_path / "rates.json"
    entry = {"provider": "anthropic", "model": "claude-haiku-4-5", "batch_discount": "0.5", "as_of": "2026-12-01"}
    entry.update(usd_per_million_tokens={"input": "1", "output": "5"}, source="a price file without cache prices")
    rates.write_text(json.dumps({"entries": [entry]}))
    settings.PRICES_FILE = str(rates)
    table._table.cache_clear()
    row = anthropic_row()
    BatchTokens.objects.create(batch=row, model="claude-haiku-4-5", input=1_000_000, cache_read=5, cache_write=7)
    text = visible(cost_section(operator_client, row))
    table._table.cache_clear()
    assert "Estimated cost $0.50 so far" in text
    said = "The cache reads and cache writes of claude-haiku-4-5 have no price in the table and are not counted."
    assert said in text


def test_unknown_tokens_give_no_cost_at_all(operator_client):
    row = anthropic_row()
    assert "Cost unknown: its tokens are not known yet." in visible(cost_section(operator_client, row))
    row.tokens_source = StoredBatch.TokensSource.UNAVAILABLE
    row.tokens_note = "Bedrock's results are in S3, which the dashboard does not read"
    row.save(update_fields=["tokens_source", "tokens_note"])
    text = visible(cost_section(operator_client, row))
    assert "Cost unknown: this batch's tokens are unavailable (Bedrock's results are in S3" in text
    assert "$" not in text


def test_an_override_file_prices_the_past_too_and_says_so(operator_client, settings, tmp_path: Path):
    row = anthropic_row()
    BatchTokens.objects.create(batch=row, model="claude-opus-4-1", input=1_000_000)
    assert "$7.50" in visible(cost_section(operator_client, row))
    path = tmp_path / "rates.json"
    path.write_text(
        json.dumps(
            {
                "entries": [
                    {
                        "provider": "anthropic",
                        "model": "claude-opus-4-1",
                        "usd_per_million_tokens": {"input": "10", "output": "40"},
                        "batch_discount": "0.5",
                        "as_of": "2026-11-01",
                        "source": "Contract ACME-2026 <b>annex</b>",
                    }
                ]
            }
        )
    )
    settings.PRICES_FILE = str(path)
    section = cost_section(operator_client, row)
    said = "Estimated cost $5.00 so far at the rates of the price file (PRICES_FILE) as of 1 Nov 2026"
    assert said in visible(section)
    assert "&lt;b&gt;annex&lt;/b&gt;" in section  # a source that is not a web address is text, escaped
    assert "<b>annex" not in section


def test_an_ended_batch_has_no_so_far(operator_client):
    ended = {
        "processing_status": "ended",
        "ended_at": T0.isoformat(),
        "request_counts": {"processing": 0, "succeeded": 1, "errored": 0, "canceled": 0, "expired": 0},
    }
    row = stored_batch("anthropic-ops", "msgbatch_costended", fetched_at=T0, created=T0, **ended)
    BatchTokens.objects.create(batch=row, model="claude-3-haiku", input=4_000_000, output=400_000)
    # (4M × $0.25 + 0.4M × $1.25) / 2 = $0.75
    assert "Estimated cost $0.75 at list prices" in visible(cost_section(operator_client, row))


def test_batch_spend_reads_tokens_in_two_queries(db, django_assert_num_queries):
    row = anthropic_row()
    for index in range(5):
        BatchTokens.objects.create(batch=row, model=f"claude-3-haiku-2024030{index}", input=100)
    table.current_table()
    with django_assert_num_queries(2):
        spend = batch_spend(stored_batch_pk=row.pk, provider="anthropic")
    assert len(spend.models) == 5
    assert spend.total == Decimal("0.0000625")
    assert spend.complete


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (Decimal("12.345"), "$12.35"),
        (Decimal("1234567.891"), "$1,234,567.89"),
        (Decimal(0), "$0.00"),
        (Decimal("0.004"), "under $0.01"),
        (Decimal("0.005"), "$0.01"),
        (None, "—"),
    ],
)
def test_dollars_are_shown_to_the_cent(amount, shown):
    assert usd(amount) == shown


def test_kinds_are_listed_in_words():
    assert token_kinds(("cache_read",)) == "cache reads"
    assert token_kinds(("cache_read", "cache_write", "reasoning")) == "cache reads, cache writes and reasoning"


def test_a_batch_whose_results_report_no_tokens_has_nothing_to_estimate(operator_client):
    row = anthropic_row()
    row.tokens_source = StoredBatch.TokensSource.RESULTS
    row.tokens_note = "3 of 3 results had no usage"
    row.save(update_fields=["tokens_source", "tokens_note"])
    text = visible(cost_section(operator_client, row))
    assert text == "No cost to estimate: no result of this batch reports tokens (3 of 3 results had no usage)."


def test_a_price_copied_from_litellms_dataset_links_the_official_page_and_says_where_it_was_copied_from(
    operator_client,
):
    row = anthropic_row()
    BatchTokens.objects.create(batch=row, model="claude-haiku-5-5", input=1_000_000, requests=1)
    section = cost_section(operator_client, row)
    assert 'href="https://platform.claude.com/docs/en/models/haiku-5-5/overview"' in section
    text = visible(section)
    assert "price source (via LiteLLM 1.110.2 model_prices_and_context_window, entry claude-haiku-5-5)" in text
    assert "Estimated cost $0.05 so far" in text  # 1M × $0.10, halved
