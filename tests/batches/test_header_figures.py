"""The list page's header figures (dashboard/batches/header_figures.py, web/views.list_header): per account and in
total, batches not ended, requests in flight, the errored share and the batches ended in the last
24 hours by outcome, for a known store and a fake "now"."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard.accounts import Account
from dashboard.batches import header_figures
from dashboard.models import StoredBatch
from tests.factories import HTMX, iso, stored_batch, text
from tests.services import ACCOUNT_ENVIRONMENT

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
A_OPS = Account(name="ops", provider="anthropic", base_url="https://api.anthropic.com", api_key="sk-ant-x-ops")
A_RES = Account(name="research", provider="anthropic", base_url="https://api.anthropic.com", api_key="sk-ant-x-res")
O_OPS = Account(name="ops", provider="openai", base_url="https://api.openai.com/v1", api_key="sk-proj-x-ops")
ACCOUNTS = [A_OPS, A_RES, O_OPS]
_made = iter(range(1, 10_000))
ANTHROPIC_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")
OPENAI_ENDED_AT = {  # the timestamp OpenAI sets as a batch ends in each status
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelled": "cancelled_at",
}


def stored(
    account: Account,
    status: str,
    *,
    ended_ago: timedelta | None = None,
    after_cancel: bool = False,
    gone: bool = False,
    now: datetime = NOW,
    **counts: int,
) -> StoredBatch:
    """A batch created two days before `now` and read at `now` (or found gone an hour before), in
    `status` with `counts` (the store's names), ended `ended_ago`; `after_cancel`: a cancel began
    5 minutes before it ended (or before `now`)."""
    n = next(_made)
    created = now - timedelta(days=2)
    ended_at = now - ended_ago if ended_ago is not None else None
    cancel_initiated_at = (ended_at or now) - timedelta(minutes=5) if after_cancel else None
    if account.provider == "anthropic":
        batch_id = f"msgbatch_sum{n:04d}"
        said = {
            "processing_status": status,
            "request_counts": {name: counts.get(name, 0) for name in ANTHROPIC_COUNTS},
            "ended_at": iso(ended_at) if ended_at else None,
            "cancel_initiated_at": iso(cancel_initiated_at) if cancel_initiated_at else None,
        }
    else:
        batch_id = f"batch_sum{n:04d}"
        said = {
            "status": status,
            "request_counts": {
                "total": sum(counts.values()),
                "completed": counts.get("succeeded", 0),
                "failed": counts.get("errored", 0),
            },
            "cancelling_at": int(cancel_initiated_at.timestamp()) if cancel_initiated_at else None,
        }
        if ended_at is not None:
            said[OPENAI_ENDED_AT[status]] = int(ended_at.timestamp())
    gone_at = now - timedelta(hours=1) if gone else None
    row = stored_batch(
        account.key, batch_id, created=created, fetched_at=created if gone else now, gone_at=gone_at, **said
    )
    assert {name: getattr(row, name) for name in counts} == counts, "counts the provider's JSON can say"
    return row


@pytest.fixture
def known_store(db):
    # Running: in flight is what has not finished.
    stored(A_OPS, "in_progress", processing=5)
    stored(A_OPS, "in_progress", processing=7)
    stored(O_OPS, "in_progress", processing=10, succeeded=4, errored=1)
    stored(O_OPS, "cancelling", processing=3)  # OpenAI counts no canceled request until cancelled
    # Ended within the last 24 hours.
    stored(A_OPS, "ended", ended_ago=timedelta(hours=1), succeeded=8, errored=2)
    stored(A_OPS, "ended", ended_ago=timedelta(hours=2), after_cancel=True, succeeded=1, canceled=9)
    stored(O_OPS, "completed", ended_ago=timedelta(hours=23, minutes=59), succeeded=90, errored=10)
    stored(O_OPS, "failed", ended_ago=timedelta(hours=3))  # failed validation: no request ran
    stored(O_OPS, "expired", ended_ago=timedelta(hours=5), succeeded=5, errored=5, expired=10)
    stored(O_OPS, "cancelled", ended_ago=timedelta(hours=6), after_cancel=True, canceled=20)
    # Not within the window: exactly 24 hours ago, earlier, and (a clock skew) after now.
    stored(A_OPS, "ended", ended_ago=timedelta(hours=24), errored=100)
    stored(O_OPS, "completed", ended_ago=timedelta(days=3), errored=100)
    stored(O_OPS, "completed", ended_ago=timedelta(minutes=-1), errored=100)
    # Gone upstream (deleted or not found) before it ended: neither running nor ended in the window.
    stored(A_OPS, "in_progress", gone=True, processing=50)
    # An account that is not configured: not counted anywhere.
    other = Account(name="old", provider="openai", base_url="https://api.openai.com/v1", api_key="sk-proj-x-old")
    stored(other, "in_progress", processing=1000)
    stored(other, "completed", ended_ago=timedelta(hours=1), errored=1000)


def test_each_account_and_the_total_for_a_known_store(known_store):
    with CaptureQueriesContext(connection) as queries:
        result = header_figures.header_figures(accounts=ACCOUNTS, now=NOW)
    assert len(queries) == 2  # two aggregate queries, whatever the store's size

    by_key = {line.key: line for line in result.lines}
    assert list(by_key) == ["anthropic-ops", "anthropic-research", "openai-ops"]  # the accounts' order

    a_ops = by_key["anthropic-ops"]
    assert (a_ops.not_ended, a_ops.in_flight) == (2, 12)
    assert (a_ops.ran, a_ops.errored) == (11, 2)  # 8 + 2 and 1 + 0 ran
    assert a_ops.errored_percent == pytest.approx(100 * 2 / 11)
    assert a_ops.by_outcome == [("ended", 1), ("ended, canceled", 1)]

    o_ops = by_key["openai-ops"]
    assert (o_ops.not_ended, o_ops.in_flight) == (2, 13)
    assert (o_ops.ran, o_ops.errored) == (110, 15)  # completed 90 + 10, expired 5 + 5; expired requests never ran
    assert o_ops.by_outcome == [("completed", 1), ("failed", 1), ("expired", 1), ("cancelled", 1)]

    a_res = by_key["anthropic-research"]
    assert (a_res.not_ended, a_res.in_flight, a_res.ran, a_res.by_outcome) == (0, 0, 0, [])
    assert a_res.errored_percent is None  # nothing ran: no share, not 0 %

    total = result.total
    assert (total.not_ended, total.in_flight, total.ran, total.errored, total.ended_total) == (4, 25, 121, 17, 6)
    assert result.outcomes == ["ended", "ended, canceled", "completed", "failed", "expired", "cancelled"]
    assert result.since == NOW - timedelta(hours=24)


def test_the_window_moves_with_now(known_store):
    later = header_figures.header_figures(accounts=ACCOUNTS, now=NOW + timedelta(minutes=2))
    by_key = {line.key: line for line in later.lines}
    # The completed batch of 23 h 59 min ago has left the window; the one "ended" a minute after NOW has come in.
    assert by_key["openai-ops"].by_outcome == [("completed", 1), ("failed", 1), ("expired", 1), ("cancelled", 1)]
    assert (by_key["openai-ops"].ran, by_key["openai-ops"].errored) == (110, 105)
    earlier = header_figures.header_figures(accounts=ACCOUNTS, now=NOW - timedelta(days=10))
    assert earlier.total.ended_total == 0 and earlier.total.errored_percent is None
    assert earlier.total.not_ended == 4  # running is running, whenever "now" is


def test_the_header_figures_queries_read_only_their_indexes(known_store):
    assert connection.vendor == "sqlite", "the suite's database; the plans below are SQLite's"
    with CaptureQueriesContext(connection) as queries:
        header_figures.header_figures(accounts=ACCOUNTS, now=NOW)
    plans = []
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            cursor.execute("EXPLAIN QUERY PLAN " + query["sql"])
            plans.append(" ".join(str(row[-1]) for row in cursor.fetchall()))
    assert "stored_batch_running_counts" in plans[0], plans[0]
    assert "stored_batch_ended_outcomes" in plans[1], plans[1]


# --- on the page ------------------------------------------------------------------------------------


@pytest.fixture
def demo_store(db, monkeypatch, settings):
    """The default accounts (the simulator's four demo accounts) and a few stored batches of theirs."""
    for name in ACCOUNT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    ops = Account(name="ops", provider="anthropic", base_url="", api_key="x")
    openai_ops = Account(name="ops", provider="openai", base_url="", api_key="x")
    now = datetime.now(UTC)  # the page's header figures read the clock
    stored(ops, "in_progress", now=now, processing=4, succeeded=6, errored=2)
    stored(ops, "in_progress", now=now, processing=4, succeeded=6, errored=2)
    stored(openai_ops, "in_progress", now=now, processing=4, succeeded=6, errored=2)
    stored(openai_ops, "completed", now=now, ended_ago=timedelta(hours=2), processing=0, succeeded=6, errored=2)


def test_the_list_page_loads_its_header_figures_with_its_filters(operator_client, demo_store):
    page = text(operator_client.get("/?account=anthropic-research&status=active"))
    match = re.search(r'<section id="list-summary"[^>]*hx-get="([^"]+)"[^>]*hx-trigger="([^"]+)"', page)
    assert match, "no header figures on the list page"
    assert match.group(1) == "/summary?account=anthropic-research&amp;status=active"
    assert match.group(2) == "load, every 60s"


def test_the_header_fragment_says_the_numbers_and_what_they_mean(operator_client, demo_store):
    response = operator_client.get("/summary?account=openai-ops&status=active", **HTMX)
    assert response.status_code == 200
    body = text(response)
    assert "<html" not in body
    line = re.search(r'<tr class="summary-line is-selected" data-account="openai-ops">(.*?)</tr>', body, re.S)
    assert line, "the filtered account's line is marked"
    assert re.search(r'class="num not-ended">1<', line.group(1))
    assert re.search(r'class="num in-flight">4<', line.group(1))
    assert "25.0%" in line.group(1)  # 2 of the 8 that ran in the batch that ended 2 h ago
    assert '<span class="badge status-completed">completed</span> 1' in line.group(1)
    total = re.search(r'<tr class="summary-line summary-total">(.*?)</tr>', body, re.S).group(1)
    assert re.search(r'class="num not-ended">3<', total) and re.search(r'class="num in-flight">12<', total)
    # Each column says what it counts; the errored share says precisely how.
    assert "of the requests that ran (succeeded or errored) in the batches that ended in the last 24 hours" in body
    assert "Every account, whatever the filters below" in body
    # The filters' cancelable batches: the one running openai-ops batch.
    assert 'href="/bulk-cancel/preview?account=openai-ops&amp;status=active">Cancel 1 batch…</a>' in body


def test_viewers_see_the_header_figures_but_no_bulk_cancel(viewer_client, demo_store):
    body = text(viewer_client.get("/summary", **HTMX))
    assert "summary-total" in body
    assert "bulk-cancel" not in body and "Cancel " not in body
