"""Cost checked against the official SDK: every result of a simulated Anthropic batch read through the
anthropic SDK, its usage added up here independently and priced at Anthropic's published batch prices
(written out below, not read from the table), equals to the cent what the detail page, the spend page
and its CSV show, after the dashboard counted the same results itself (the poller's results pass).

Every kind is in the sum at list prices (the cache prices the model's page leaves out are the shipped table's,
from LiteLLM's dataset), and again at a price file's negotiated rates, to the cent too."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.accounts import find_account
from dashboard.batches import services
from dashboard.models import StoredBatch
from dashboard.spend import table
from tests.factories import anthropic_batch, poll_store

# claude-sonnet-4-5 (what tests/factories.py's requests ask for): $3 input and $15 output per million at
# list price (platform.claude.com/docs/en/models/sonnet-4-5/overview), cache reads $0.30 and 5-minute cache
# writes $3.75 (platform.claude.com/docs/en/about-claude/pricing, as LiteLLM's dataset cites it); the Batch API
# halves every kind.
BATCH_USD_PER_TOKEN = {
    "input": Decimal("1.5") / 10**6,
    "output": Decimal("7.5") / 10**6,
    "cache_read": Decimal("0.15") / 10**6,
    "cache_write": Decimal("1.875") / 10**6,
}
# A price file's rates for the same model, cache kinds included; its discount halves them too.
NEGOTIATED = {"input": "2.4", "cache_read": "0.24", "cache_write": "3", "output": "12"}


@pytest.fixture(autouse=True)
def fresh_price_table():
    table._table.cache_clear()
    yield
    table._table.cache_clear()


def cents(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def visible(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def test_the_cost_shown_is_the_sdks_usage_at_the_published_batch_prices(
    operator_client, embedded_upstream, anthropic_sdk, settings, tmp_path
):
    batch = anthropic_batch(anthropic_sdk, count=150, seconds=60, ended=True)
    client = anthropic_sdk()
    sums = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
    models = set()
    for entry in client.messages.batches.results(batch.id):
        if entry.result.type != "succeeded":
            continue
        usage = entry.result.message.usage
        models.add(entry.result.message.model)
        sums["input"] += usage.input_tokens
        sums["output"] += usage.output_tokens
        sums["cache_read"] += usage.cache_read_input_tokens or 0
        sums["cache_write"] += usage.cache_creation_input_tokens or 0
    assert models == {"claude-sonnet-4-5"} and sums["input"] > 0 and sums["output"] > 0
    assert sums["cache_read"] > 0 and sums["cache_write"] > 0  # the simulator's realistic usage
    expected = sum(sums[kind] * price for kind, price in BATCH_USD_PER_TOKEN.items())

    poll_store()
    row = StoredBatch.objects.get(batch_id=batch.id)
    services.count_ended_results(account=find_account("anthropic-ops"), limit=10)
    row.refresh_from_db()
    assert row.tokens_source == "results"
    stored = row.tokens.get()
    assert (stored.input, stored.cache_read, stored.cache_write, stored.output) == (
        sums["input"],
        sums["cache_read"],
        sums["cache_write"],
        sums["output"],
    ), "tokens: exact"

    detail = operator_client.get(reverse("batch-detail", args=["anthropic-ops", batch.id])).content.decode()
    cost = visible(re.search(r'<div class="batch-cost" id="batch-cost">(.*?)</div>', detail, re.S).group(1))
    assert f"Estimated cost {cents(expected)} at list prices" in cost, "the detail page, to the cent"
    assert "no price" not in cost

    day = row.ended_at.date().isoformat() if row.ended_at else timezone.now().date().isoformat()
    export = operator_client.get(reverse("spend"), {"start": day, "end": day, "format": "csv"}).content.decode()
    rows = [line for line in csv.DictReader(io.StringIO(export)) if line["model"] == "claude-sonnet-4-5"]
    assert len(rows) == 1 and rows[0]["account"] == "anthropic-ops"
    assert Decimal(rows[0]["estimated_cost_usd"]) == expected, "the CSV: exact"
    assert rows[0]["priced"] == "all"
    page = operator_client.get(reverse("spend"), {"start": day, "end": day}).content.decode()
    assert visible(re.search(r'id="spend-total">(.*?)<', page).group(1)) == cents(expected), "the spend page"

    rates = tmp_path / "rates.json"
    entry = {"provider": "anthropic", "model": "claude-sonnet-4-5", "usd_per_million_tokens": NEGOTIATED}
    entry.update(batch_discount="0.5", as_of="2026-12-01", source="contract")
    rates.write_text(json.dumps({"entries": [entry]}))
    settings.PRICES_FILE = str(rates)
    everything = sum(sums[kind] * Decimal(price) / 2 / 10**6 for kind, price in NEGOTIATED.items())
    detail = operator_client.get(reverse("batch-detail", args=["anthropic-ops", batch.id])).content.decode()
    cost = visible(re.search(r'<div class="batch-cost" id="batch-cost">(.*?)</div>', detail, re.S).group(1))
    assert f"Estimated cost {cents(everything)} at the rates of the price file" in cost and "no price" not in cost
    export = operator_client.get(reverse("spend"), {"start": day, "end": day, "format": "csv"}).content.decode()
    [line] = [line for line in csv.DictReader(io.StringIO(export)) if line["model"] == "claude-sonnet-4-5"]
    assert Decimal(line["estimated_cost_usd"]) == everything and line["priced"] == "all"
