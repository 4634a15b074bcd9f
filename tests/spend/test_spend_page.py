"""The spend page: per account, model and day over the last 30 days or a chosen range, only the accounts one
may see, a chart without style attributes, CSV export through safe_cell, and the SQL grouping behind it."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from dashboard.models import BatchTokens, StoredBatch
from dashboard.spend import charts, table
from dashboard.spend.selectors import spend_report
from tests.conftest import make_user
from tests.factories import running_json, stored_batch

ENDED_COUNTS = {"processing": 0, "succeeded": 100, "errored": 0, "canceled": 0, "expired": 0}


@pytest.fixture(autouse=True)
def fresh_price_table():
    table._table.cache_clear()
    yield
    table._table.cache_clear()


def today() -> date:
    return timezone.now().astimezone(UTC).date()


def anthropic_ended(account: str, batch_id: str, ended: datetime, model: str, **tokens: int) -> StoredBatch:
    created = ended - timedelta(hours=1)
    body = running_json("anthropic", batch_id, created=created)
    body.update(processing_status="ended", ended_at=ended.isoformat(), request_counts=ENDED_COUNTS)
    row = stored_batch(account, batch_id, fetched_at=ended, body=body)
    BatchTokens.objects.create(batch=row, model=model, requests=100, **tokens)
    return row


def anthropic_running(account: str, batch_id: str, model: str, **tokens: int) -> StoredBatch:
    now = timezone.now()
    row = stored_batch(account, batch_id, fetched_at=now, created=now - timedelta(minutes=5))
    BatchTokens.objects.create(batch=row, model=model, **tokens)
    return row


def at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def visible(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def section(body: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">(.*?)</table>', body, re.S)
    assert match, element_id
    return visible(match.group(1))


@pytest.fixture
def spend_store(db):
    day = today()
    anthropic_ended(
        "anthropic-ops", "msgbatch_spendyesterday", at(day - timedelta(days=1)), "claude-opus-4-1", input=1_000_000
    )
    anthropic_ended(
        "anthropic-ops", "msgbatch_spendold", at(day - timedelta(days=40)), "claude-opus-4-1", output=1_000_000
    )
    anthropic_running("anthropic-research", "msgbatch_spendrunning", "claude-3-haiku-20240307", input=4_000_000)
    anthropic_ended("anthropic-research", "msgbatch_spendunknown", at(day, 0), "claude-fable-9", input=123)
    # gone upstream while running: it never ended, so it is nobody's spend today
    gone = anthropic_running("anthropic-ops", "msgbatch_spendgone", "claude-opus-4-1", input=10**9)
    StoredBatch.objects.filter(pk=gone.pk).update(gone_at=timezone.now())
    return day


def test_the_last_30_days_per_account_model_and_day(operator_client, spend_store):
    response = operator_client.get(reverse("spend"))
    assert response.status_code == 200
    body = response.content.decode()
    # yesterday's Opus $7.50 + today's running Haiku 4M × $0.25 / 2 = $0.50; the batch 40 days ago is out
    assert visible(re.search(r'id="spend-total">(.*?)<', body).group(1)) == "$8.00"
    assert "123 tokens have no price and are not in this total: price unknown for claude-fable-9 ." in visible(body)
    assert section(body, "spend-by-account").startswith("Account Tokens Estimated cost Anthropic · ops 1,000,000 $7.50")
    assert "Anthropic · research 4,000,123 $0.50 + 123 tokens unpriced" in section(body, "spend-by-account")
    by_model = section(body, "spend-by-model")
    assert "claude-opus-4-1 1,000,000 $7.50" in by_model
    assert "claude-3-haiku-20240307 4,000,000 $0.50" in by_model
    assert "claude-fable-9 123 price unknown" in by_model
    by_day = section(body, "spend-by-day")
    assert f"{spend_store.isoformat()} (today, with running batches) 4,000,123 $0.50" in by_day
    assert f"{(spend_store - timedelta(days=1)).isoformat()} 1,000,000 $7.50" in by_day
    assert by_day.count("(today") == 1 and len(re.findall(r"\d{4}-\d{2}-\d{2}", by_day)) == 30


def test_a_chosen_range_and_the_csv_export(operator_client, spend_store):
    start = spend_store - timedelta(days=45)
    end = spend_store - timedelta(days=1)
    response = operator_client.get(reverse("spend"), {"start": start.isoformat(), "end": end.isoformat()})
    assert (
        visible(re.search(r'id="spend-total">(.*?)<', response.content.decode()).group(1)) == "$45.00"
    )  # 7.50 + 37.50
    export = operator_client.get(
        reverse("spend"), {"start": start.isoformat(), "end": end.isoformat(), "format": "csv"}
    )
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert [(row["day"], row["model"], row["estimated_cost_usd"], row["priced"]) for row in rows] == [
        ((spend_store - timedelta(days=40)).isoformat(), "claude-opus-4-1", "37.5", "all"),
        ((spend_store - timedelta(days=1)).isoformat(), "claude-opus-4-1", "7.5", "all"),
    ]
    assert sum(Decimal(row["estimated_cost_usd"]) for row in rows) == Decimal(45)


def test_the_csv_cells_cannot_become_formulas(operator_client, db):
    anthropic_ended("anthropic-ops", "msgbatch_spendformula", at(today()), '=HYPERLINK("http://x")', input=5)
    rows = list(csv.DictReader(io.StringIO(operator_client.get(reverse("spend"), {"format": "csv"}).content.decode())))
    assert rows[0]["model"] == '\'=HYPERLINK("http://x")'
    assert rows[0]["estimated_cost_usd"] == "" and rows[0]["priced"] == "no"


def test_only_the_accounts_one_may_see(client, spend_store):
    client.force_login(make_user("ops-viewer", can_cancel=False, roles=("viewer",), accounts="anthropic-ops"))
    body = client.get(reverse("spend")).content.decode()
    assert "research" not in section(body, "spend-by-account")
    assert visible(re.search(r'id="spend-total">(.*?)<', body).group(1)) == "$7.50"
    rows = list(csv.DictReader(io.StringIO(client.get(reverse("spend"), {"format": "csv"}).content.decode())))
    assert {row["account"] for row in rows} == {"anthropic-ops"}
    client.force_login(make_user("nobody", can_cancel=False, roles=()))
    body = client.get(reverse("spend")).content.decode()
    assert "You may see no account" in body and "$0.00" in body


def test_signing_in_is_required(client, db):
    response = client.get(reverse("spend"))
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"start": "yesterday"}, "Dates are written YYYY-MM-DD"),
        ({"start": "2026-12-01", "end": "2026-11-01"}, "ends before it starts"),
        ({"start": "9999-12-31", "end": "9999-12-31"}, "starts after today"),
        ({"start": "2020-01-01", "end": "2026-12-01"}, "at most 366 days"),
    ],
)
def test_a_wrong_range_says_so_and_shows_a_sensible_one(operator_client, db, query, says):
    response = operator_client.get(reverse("spend"), query)
    assert response.status_code == 200
    assert says in response.content.decode()


def test_the_chart_draws_each_day_with_no_style_attribute(operator_client, spend_store):
    body = operator_client.get(reverse("spend")).content.decode()
    svg = re.search(r"<svg.*?</svg>", body, re.S).group(0)
    assert "style=" not in svg
    assert len(re.findall(r'<rect class="spend-bar"', svg)) == 30
    assert "$7.50" in svg


def test_the_bars_are_as_tall_as_their_share_of_the_top():
    day = date(2026, 12, 1)
    chart = charts.daily_bars(
        [(day, Decimal(0)), (day + timedelta(days=1), Decimal("7.5")), (day + timedelta(days=2), Decimal(3))]
    )
    assert chart is not None
    heights = [bar.height for bar in chart.bars]
    assert heights[0] == 0 and heights[1] > heights[2] > 0
    assert chart.y_ticks[-1].label == "$10.00"  # 7.50 rounds up to a readable top
    assert charts.daily_bars([]) is None
    assert "nothing on any day" in charts.daily_bars([(day, Decimal(0))]).description


def test_the_report_is_two_queries_whatever_the_number_of_batches(db, django_assert_num_queries):
    day = today()
    for index in range(20):
        anthropic_ended(
            "anthropic-ops",
            f"msgbatch_spendmany{index}",
            at(day - timedelta(days=index % 5)),
            "claude-3-haiku",
            input=1000,
        )
    table.current_table()
    with django_assert_num_queries(2):
        report = spend_report(account_keys=["anthropic-ops"], start=day - timedelta(days=29), end=day, today=day)
    assert sum(group.batches for group in report.groups) == 20
    assert len(report.groups) == 5
    assert report.total == Decimal(20_000) * Decimal("0.125") / 1_000_000


def test_the_list_header_says_what_each_account_spent_today(operator_client, spend_store):
    body = operator_client.get(reverse("list-header"), HTTP_HX_REQUEST="true").content.decode()
    glance = visible(
        re.search(r'<span class="glance-figure spent-today".*?</span>\s*<span class="glance-more', body, re.S).group(0)
    )
    # today: the running Haiku batch ($0.50) and a Fable batch without a price; yesterday's is not today's
    assert glance.startswith("$0.50 spent today + unpriced")
    cells = dict(re.findall(r'data-account="([a-z-]+)">.*?<td class="num spent-today">(.*?)</td>', body, re.S))
    assert visible(cells["anthropic-ops"]) == "$0.00"
    assert visible(cells["anthropic-research"]) == "$0.50 +?"
    total = re.search(r'summary-total.*?<td class="num spent-today">(.*?)</td>', body, re.S).group(1)
    assert visible(total) == "$0.50 +?"


@given(
    start=st.one_of(st.text(max_size=30), st.dates().map(date.isoformat)),
    end=st.one_of(st.text(max_size=30), st.dates().map(date.isoformat)),
)
def test_any_range_asked_for_gives_a_range_of_at_most_366_days_up_to_today(start, end):
    from django.test import RequestFactory

    from dashboard.web.spend_views import chosen_range

    today = date(2026, 12, 7)
    first, last, error = chosen_range(RequestFactory().get("/spend/", {"start": start, "end": end}), today)
    assert first <= last <= today
    assert (last - first).days < 366
    assert isinstance(error, str)
