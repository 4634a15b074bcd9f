"""Selectors: the pages' and the CLI's reads of the store, filtered and paged in SQL."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard.accounts import Account
from dashboard.batches import selectors
from dashboard.models import AccountState, StoredBatch
from tests.factories import stored_batch
from tests.providers.test_providers import ANTHROPIC_RUNNING, OPENAI_IN_PROGRESS

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
A_OPS = Account(name="ops", provider="anthropic", base_url="https://api.anthropic.com", api_key="sk-ant-x-ops")
A_RES = Account(name="research", provider="anthropic", base_url="https://api.anthropic.com", api_key="sk-ant-x-res")
O_OPS = Account(name="ops", provider="openai", base_url="https://api.openai.com/v1", api_key="sk-proj-x-ops")
O_RES = Account(name="research", provider="openai", base_url="https://api.openai.com/v1", api_key="sk-proj-x-res")
ACCOUNTS = [A_OPS, A_RES, O_OPS, O_RES]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def anthropic_json(batch_id: str, created: datetime, *, status: str = "in_progress") -> dict:
    ended = status == "ended"
    return {
        **copy.deepcopy(ANTHROPIC_RUNNING),
        "id": batch_id,
        "processing_status": status,
        "created_at": iso(created),
        "expires_at": iso(created + timedelta(hours=24)),
        "ended_at": iso(created + timedelta(minutes=5)) if ended else None,
        "request_counts": {
            "processing": 0 if ended else 5,
            "succeeded": 5 if ended else 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
    }


def openai_json(batch_id: str, created: datetime, *, status: str = "in_progress", metadata=None) -> dict:
    body = copy.deepcopy(OPENAI_IN_PROGRESS)
    seconds = int(created.timestamp())
    body.update(
        id=batch_id,
        status=status,
        created_at=seconds,
        in_progress_at=seconds + 5,
        expires_at=seconds + 86400,
        metadata=metadata if metadata is not None else {"customer_id": "user_1", "batch_description": "nightly"},
    )
    if status == "completed":
        body.update(finalizing_at=seconds + 50, completed_at=seconds + 60, output_file_id="file-out1")
    return body


def put(account: Account, batch_id: str, created: datetime, *, fetched_at: datetime = T0, **kwargs) -> StoredBatch:
    as_json = anthropic_json if account.provider == "anthropic" else openai_json
    return stored_batch(account.key, batch_id, fetched_at=fetched_at, body=as_json(batch_id, created, **kwargs))


def healthy(*accounts: Account, at: datetime = T0) -> None:
    for account in accounts:
        AccountState.objects.update_or_create(
            account=account.key, defaults={"provider": account.provider, "last_success_at": at}
        )


@pytest.fixture
def mixed(db, settings):
    """Eight batches, one a minute back from T0, over the four accounts, of several statuses."""
    settings.POLL_SECONDS = 3
    healthy(*ACCOUNTS)
    minute = timedelta(minutes=1)
    put(A_OPS, "msgbatch_opsRunning", T0 - 1 * minute)
    put(O_OPS, "batch_opsRunning", T0 - 2 * minute, metadata={"team": "Search-Quality", "owner": "ana"})
    put(A_RES, "msgbatch_resEnded", T0 - 3 * minute, status="ended")
    put(O_RES, "batch_resDone", T0 - 4 * minute, status="completed", metadata={"team": "evals"})
    put(A_OPS, "msgbatch_opsCanceling", T0 - 5 * minute, status="canceling")
    put(O_OPS, "batch_opsDone", T0 - 6 * minute, status="completed")
    put(A_RES, "msgbatch_resRunning", T0 - 7 * minute)
    put(O_RES, "batch_resRunning", T0 - 8 * minute, metadata={"note": "rerun of batch_opsDone"})


def ids(listing: selectors.StoreListing) -> list[str]:
    return [batch.id for batch in listing.batches]


def listed(**filters) -> list[str]:
    return ids(selectors.list_batches(accounts=ACCOUNTS, now=T0, **filters))


# --- filters --------------------------------------------------------------------------------------


def test_everything_newest_first_as_batches_with_freshness(mixed):
    listing = selectors.list_batches(accounts=ACCOUNTS, now=T0)
    assert ids(listing) == [
        "msgbatch_opsRunning",
        "batch_opsRunning",
        "msgbatch_resEnded",
        "batch_resDone",
        "msgbatch_opsCanceling",
        "batch_opsDone",
        "msgbatch_resRunning",
        "batch_resRunning",
    ]
    first = listing.rows[0]
    assert first.batch.provider == "anthropic" and first.batch.account == "anthropic-ops"
    assert first.batch.counts.processing == 5
    assert first.fetched_at == T0 and not first.is_stale
    assert listing.older is None and listing.newer is None


def test_provider_filter(mixed):
    assert listed(provider="openai") == ["batch_opsRunning", "batch_resDone", "batch_opsDone", "batch_resRunning"]


def test_account_filter(mixed):
    assert listed(account_key="anthropic-research") == ["msgbatch_resEnded", "msgbatch_resRunning"]


def test_an_unconfigured_account_filter_shows_nothing(mixed):
    assert listed(account_key="anthropic-elsewhere") == []


def test_status_filter_is_the_providers_word(mixed):
    assert listed(status="completed") == ["batch_resDone", "batch_opsDone"]
    assert listed(status="in_progress") == [
        "msgbatch_opsRunning",
        "batch_opsRunning",
        "msgbatch_resRunning",
        "batch_resRunning",
    ]


def test_active_is_every_batch_not_ended(mixed):
    assert listed(status="active") == [
        "msgbatch_opsRunning",
        "batch_opsRunning",
        "msgbatch_opsCanceling",
        "msgbatch_resRunning",
        "batch_resRunning",
    ]


def test_filters_combine(mixed):
    assert listed(provider="anthropic", status="active", account_key="anthropic-ops") == [
        "msgbatch_opsRunning",
        "msgbatch_opsCanceling",
    ]
    assert listed(provider="openai", account_key="anthropic-ops") == []
    assert listed(provider="openai", status="completed", search="evals") == ["batch_resDone"]
    assert listed(status="active", search="opsdone") == ["batch_resRunning"], "a metadata value names it"


def test_search_matches_ids_case_insensitively(mixed):
    assert listed(search="OPSRUNNING") == ["msgbatch_opsRunning", "batch_opsRunning"]
    assert listed(search="  msgbatch_res ") == ["msgbatch_resEnded", "msgbatch_resRunning"]


def test_search_matches_metadata_values_but_not_keys(mixed):
    assert listed(search="search-quality") == ["batch_opsRunning"]
    assert listed(search="ANA") == ["batch_opsRunning"]
    assert listed(search="team") == [], "a key is not a value"
    assert listed(search="customer_id") == []


def test_search_wildcards_are_literal(mixed):
    assert listed(search="%") == []
    assert listed(search="_") == listed(), "every id holds an underscore"
    assert listed(search="ops_running") == []


def test_search_does_not_find_a_configured_key_echoed_in_metadata(db, monkeypatch):
    key = "sk-proj-SELECTORtestKEY0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    put(O_OPS, "batch_echo", T0, metadata={"note": f"sent with {key}", key: "as a key"})
    assert listed(search="sent with") == ["batch_echo"]
    assert listed(search=key[:20]) == []
    assert listed(search="redacted") == ["batch_echo"]
    assert listed(search="as a key") == ["batch_echo"]


def test_only_configured_accounts_are_listed(mixed):
    put(Account(name="gone", provider="openai", base_url="x", api_key="k"), "batch_gone", T0)
    assert "batch_gone" not in listed()
    assert listed(search="gone") == []
    assert ids(selectors.list_batches(accounts=[A_RES], now=T0)) == ["msgbatch_resEnded", "msgbatch_resRunning"]
    assert ids(selectors.list_batches(accounts=[], now=T0)) == []


# --- paging ---------------------------------------------------------------------------------------


@pytest.fixture
def many(db):
    """120 batches over the four accounts; every fourth pair created in the same second."""
    healthy(*ACCOUNTS)
    for n in range(120):
        account = ACCOUNTS[n % 4]
        created = T0 - timedelta(seconds=10 * (n // 2))  # pairs share a created_at: the id breaks the tie
        prefix = "msgbatch_" if account.provider == "anthropic" else "batch_"
        put(account, f"{prefix}n{n:04d}", created)
    return [
        (row.account, row.batch_id)
        for row in StoredBatch.objects.order_by("-created_at", "-pk").only("account", "batch_id")
    ]


def keys(listing: selectors.StoreListing) -> list[tuple[str, str]]:
    return [(batch.account, batch.id) for batch in listing.batches]


def test_paging_older_visits_every_batch_once_in_order(many):
    seen, cursor, pages = [], None, 0
    while True:
        listing = selectors.list_batches(accounts=ACCOUNTS, before=cursor, limit=25, now=T0)
        seen += keys(listing)
        pages += 1
        assert (listing.newer is None) == (pages == 1)
        if listing.older is None:
            break
        cursor = listing.older
    assert pages == 5 and len(seen) == 120
    assert seen == many


def test_paging_newer_walks_back_to_the_first_page(many):
    forward, cursor = [], None
    for _ in range(5):
        listing = selectors.list_batches(accounts=ACCOUNTS, before=cursor, limit=25, now=T0)
        forward.append(keys(listing))
        cursor = listing.older
    assert cursor is None
    back = [forward[-1]]
    newer = listing.newer
    while newer:
        listing = selectors.list_batches(accounts=ACCOUNTS, after=newer, limit=25, now=T0)
        back.append(keys(listing))
        newer = listing.newer
    assert back[::-1] == forward


def test_paging_is_stable_while_new_batches_arrive_at_the_top(many):
    first = selectors.list_batches(accounts=ACCOUNTS, limit=25, now=T0)
    seen = keys(first)
    cursor = first.older
    arrived = 0
    while cursor:
        for _ in range(7):  # new batches while the operator reads
            arrived += 1
            put(O_OPS, f"batch_new{arrived:04d}", T0 + timedelta(seconds=arrived))
        listing = selectors.list_batches(accounts=ACCOUNTS, before=cursor, limit=25, now=T0)
        seen += keys(listing)
        cursor = listing.older
    assert seen == many, "no duplicates, no gaps"
    # And back up to the top: every batch, the new ones first, in order (the top page may overlap
    # the one below it: it is always a full page).
    back, newer = [], listing.newer
    while newer:
        listing = selectors.list_batches(accounts=ACCOUNTS, after=newer, limit=25, now=T0)
        back = keys(listing) + back
        newer = listing.newer
    now_listed = [(row.account, row.batch_id) for row in StoredBatch.objects.order_by("-created_at", "-pk")]
    assert list(dict.fromkeys(back)) == now_listed[: len(set(back))]
    assert set(back) | set(seen[-25:]) == set(now_listed)
    assert back[0] == ("openai-ops", f"batch_new{arrived:04d}")


def test_newer_is_the_page_just_above_even_when_batches_arrived_on_top(many):
    second = selectors.list_batches(
        accounts=ACCOUNTS, before=selectors.list_batches(accounts=ACCOUNTS, limit=25).older, limit=25
    )
    for n in range(3):
        put(A_OPS, f"msgbatch_late{n}", T0 + timedelta(minutes=n + 1))
    back = selectors.list_batches(accounts=ACCOUNTS, after=second.newer, limit=25)
    assert keys(back) == many[:25] and back.newer is not None
    top = selectors.list_batches(accounts=ACCOUNTS, after=back.newer, limit=25)
    assert keys(top)[:3] == [("anthropic-ops", f"msgbatch_late{n}") for n in (2, 1, 0)]
    assert keys(top)[3:] == many[:22] and top.newer is None, "short of a page above: the full first page"


def test_newer_near_the_top_is_the_full_first_page(many):
    second = selectors.list_batches(
        accounts=ACCOUNTS, before=selectors.list_batches(accounts=ACCOUNTS, limit=10).older, limit=10
    )
    back = selectors.list_batches(accounts=ACCOUNTS, after=second.newer, limit=25)
    assert keys(back) == many[:25] and back.newer is None and back.older is not None


def test_paging_with_filters(many):
    seen, cursor = [], None
    while True:
        listing = selectors.list_batches(accounts=ACCOUNTS, provider="openai", before=cursor, limit=7, now=T0)
        seen += keys(listing)
        if not (cursor := listing.older):
            break
    assert seen == [key for key in many if key[0].startswith("openai-")]


@pytest.mark.parametrize("cursor", ["", "garbage", "!!!", "MTIz", "x" * 500])
def test_an_unreadable_cursor_gives_the_first_page(many, cursor):
    assert keys(selectors.list_batches(accounts=ACCOUNTS, before=cursor, limit=5)) == many[:5]
    assert keys(selectors.list_batches(accounts=ACCOUNTS, after=cursor, limit=5)) == many[:5]


def test_a_list_page_is_one_query(many, django_assert_num_queries):
    with django_assert_num_queries(1):
        selectors.list_batches(accounts=ACCOUNTS, status="active", search="n0", limit=25)
    # A term of three characters or more: first its matches counted in SQLite's trigram index.
    with django_assert_num_queries(2):
        selectors.list_batches(accounts=ACCOUNTS, status="active", search="n00", limit=25)


# --- one row, its freshness, its history ----------------------------------------------------------


def test_a_row_read_is_one_query(mixed, django_assert_num_queries):
    with django_assert_num_queries(1):
        view = selectors.batch_row(account=O_OPS, batch_id="batch_opsRunning", now=T0)
    assert view.batch.id == "batch_opsRunning" and view.batch.metadata["owner"] == "ana"
    assert view.fetched_at == T0 and not view.is_stale
    with CaptureQueriesContext(connection) as queries:
        assert selectors.batch_row(account=O_RES, batch_id="batch_opsRunning") is None
    assert len(queries) == 1


def test_a_running_row_not_refreshed_for_three_poll_intervals_is_stale(mixed):
    assert not selectors.batch_row(
        account=A_OPS, batch_id="msgbatch_opsRunning", now=T0 + timedelta(seconds=9)
    ).is_stale
    late = selectors.batch_row(account=A_OPS, batch_id="msgbatch_opsRunning", now=T0 + timedelta(seconds=10))
    assert late.is_stale and "10 s" in late.stale_reason


def test_an_ended_row_is_never_stale(mixed):
    AccountState.objects.filter(account="anthropic-research").update(consecutive_failures=3, last_error="boom")
    view = selectors.batch_row(account=A_RES, batch_id="msgbatch_resEnded", now=T0 + timedelta(days=2))
    assert view.batch.is_ended and not view.is_stale


def test_a_row_of_a_failing_account_is_stale_with_the_error(mixed):
    AccountState.objects.filter(account="openai-ops").update(
        consecutive_failures=2, last_error="OpenAI answered 503 [redacted]"
    )
    view = selectors.batch_row(account=O_OPS, batch_id="batch_opsRunning", now=T0)
    assert view.is_stale and "OpenAI answered 503 [redacted]" in view.stale_reason
    listing = selectors.list_batches(accounts=ACCOUNTS, now=T0)
    stale = {row.batch.id for row in listing.rows if row.is_stale}
    assert stale == {"batch_opsRunning"}, "batch_opsDone has ended; other accounts are healthy"


def test_each_row_says_how_many_alarms_about_it_are_open(mixed, django_assert_num_queries):
    from dashboard.models import Alarm, StoredBatch

    running = StoredBatch.objects.get(account="openai-ops", batch_id="batch_opsRunning")
    for rule, resolved in (("stuck", None), ("expiring", None), ("error_rate", T0)):
        Alarm.objects.create(
            rule=rule, account="openai-ops", batch=running, opened_at=T0, last_seen_at=T0, resolved_at=resolved
        )
    Alarm.objects.create(rule="account_failing", account="openai-ops", opened_at=T0, last_seen_at=T0)  # no batch
    with django_assert_num_queries(1):
        view = selectors.batch_row(account=O_OPS, batch_id="batch_opsRunning", now=T0)
    assert view.open_alarms == 2, "open ones only, about this batch only"
    listing = selectors.list_batches(accounts=ACCOUNTS, now=T0)
    assert {row.batch.id: row.open_alarms for row in listing.rows if row.open_alarms} == {"batch_opsRunning": 2}


def test_changes_are_the_batch_history_newest_first(db):
    put(O_OPS, "batch_hist", T0 - timedelta(minutes=5))
    put(O_OPS, "batch_hist", T0 - timedelta(minutes=5), fetched_at=T0 + timedelta(seconds=3))  # unchanged
    put(O_OPS, "batch_hist", T0 - timedelta(minutes=5), fetched_at=T0 + timedelta(seconds=6), status="completed")
    put(O_RES, "batch_hist", T0 - timedelta(minutes=5))  # same id, another account
    history = selectors.changes(account_key="openai-ops", batch_id="batch_hist")
    assert [(change.status, change.observed_at) for change in history.changes] == [
        ("completed", T0 + timedelta(seconds=6)),
        ("in_progress", T0),
    ]
    assert history.total == 2
    latest = selectors.changes(account_key="openai-ops", batch_id="batch_hist", limit=1)
    assert [change.status for change in latest.changes] == ["completed"] and latest.total == 2
    none = selectors.changes(account_key="openai-ops", batch_id="batch_none")
    assert none == selectors.ChangeHistory(changes=[], total=0)


# --- account health -------------------------------------------------------------------------------


@pytest.fixture
def poll3(settings):
    settings.POLL_SECONDS = 3
    settings.POLL_IDLE_SECONDS = 30


def test_healthy_accounts_have_no_notice(db, poll3):
    healthy(*ACCOUNTS, at=T0)
    assert selectors.account_notices(accounts=ACCOUNTS, now=T0 + timedelta(seconds=9)) == []


def test_a_failing_account_has_its_redacted_error_and_last_good_time(db, poll3):
    healthy(*ACCOUNTS, at=T0)
    AccountState.objects.filter(account="openai-ops").update(
        consecutive_failures=4, last_error="OpenAI said 401 for [redacted]", last_error_at=T0 + timedelta(seconds=3)
    )
    (notice,) = selectors.account_notices(accounts=ACCOUNTS, now=T0 + timedelta(seconds=4))
    assert notice.account == O_OPS and notice.label == "OpenAI · ops"
    assert notice.problem == "failing" and notice.consecutive_failures == 4
    assert notice.last_error == "OpenAI said 401 for [redacted]"
    assert (notice.last_success_at, notice.last_error_at) == (T0, T0 + timedelta(seconds=3))


def test_an_account_without_a_recent_success_lags(db, poll3):
    healthy(A_OPS, A_RES, O_OPS, at=T0)
    healthy(O_RES, at=T0 - timedelta(minutes=2))
    notices = selectors.account_notices(accounts=ACCOUNTS, now=T0 + timedelta(seconds=5))
    assert [(n.account.key, n.problem, n.last_success_at) for n in notices] == [
        ("openai-research", "lagging", T0 - timedelta(minutes=2))
    ]
    later = selectors.account_notices(accounts=ACCOUNTS, now=T0 + timedelta(seconds=10))
    assert [n.account.key for n in later] == [a.key for a in ACCOUNTS], "3 poll intervals without a success"


def test_an_idle_account_lags_only_after_its_next_poll_is_overdue(db, poll3):
    healthy(A_OPS, at=T0)
    AccountState.objects.filter(account="anthropic-ops").update(next_poll_at=T0 + timedelta(seconds=30))
    assert selectors.account_notices(accounts=[A_OPS], now=T0 + timedelta(seconds=36)) == []
    (notice,) = selectors.account_notices(accounts=[A_OPS], now=T0 + timedelta(seconds=37))
    assert notice.problem == "lagging"


def test_never_polled_accounts(db, poll3):
    healthy(A_OPS, A_RES, O_RES, at=T0)
    AccountState.objects.filter(account="anthropic-research").update(last_success_at=None)
    notices = selectors.account_notices(accounts=ACCOUNTS, now=T0)
    assert [(n.account.key, n.problem, n.last_success_at) for n in notices] == [
        ("anthropic-research", "never_polled", None),
        ("openai-ops", "never_polled", None),
    ]


def test_unreadable_batches_are_noticed_even_on_a_healthy_account(db, poll3):
    healthy(*ACCOUNTS, at=T0)
    AccountState.objects.filter(account="anthropic-ops").update(
        warnings=[{"batch": "msgbatch_bad", "reason": "created_at is not a date"}, {"batch": "", "reason": "no id"}]
    )
    (notice,) = selectors.account_notices(accounts=ACCOUNTS, now=T0)
    assert notice.problem == "" and notice.last_error == ""
    assert notice.unreadable == (("msgbatch_bad", "created_at is not a date"), ("", "no id"))


def test_only_configured_accounts_get_notices(db, poll3):
    AccountState.objects.create(account="openai-gone", provider="openai", consecutive_failures=9, last_error="x")
    healthy(A_OPS, at=T0)
    assert selectors.account_notices(accounts=[A_OPS], now=T0) == []


def test_notices_are_one_query(db, poll3, django_assert_num_queries):
    healthy(*ACCOUNTS, at=T0)
    with django_assert_num_queries(1):
        selectors.account_notices(accounts=ACCOUNTS, now=T0)


# --- the first page's probe ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_probe_brings_in_a_batch_stored_late_though_created_just_before_the_top_row():
    """OpenAI and Azure stamp creation to the second and each account is listed in its turn: a batch
    created a moment before the first page's top row can be stored after it. It arrives live; history
    the poller backfills (created long before) does not jump to the top; nothing arrives twice."""
    put(A_OPS, "msgbatch_top", T0)
    first = selectors.list_batches(accounts=ACCOUNTS)
    assert [row.batch.id for row in first.rows] == ["msgbatch_top"]
    put(O_OPS, "batch_sameSecond", T0 - timedelta(seconds=1))  # stored after the page was read
    put(O_RES, "batch_history", T0 - timedelta(hours=3))
    put(A_RES, "msgbatch_newer", T0 + timedelta(seconds=5))
    arrived = selectors.newer_batches(accounts=ACCOUNTS, newer_than=first.top)
    assert [row.batch.id for row in arrived.rows] == ["msgbatch_newer", "batch_sameSecond"]
    assert selectors.newer_batches(accounts=ACCOUNTS, newer_than=arrived.top).rows == []


@pytest.mark.django_db
def test_an_empty_first_pages_probe_brings_in_whatever_is_stored_after_it():
    first = selectors.list_batches(accounts=ACCOUNTS)
    assert first.rows == []
    put(O_OPS, "batch_first", T0 - timedelta(days=2))
    assert [row.batch.id for row in selectors.newer_batches(accounts=ACCOUNTS, newer_than=first.top).rows] == [
        "batch_first"
    ]
