"""The poller's cycles against httpx.MockTransport and a fake clock: no live server, no sleeping."""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from dashboard.accounts import Account
from dashboard.batches import poller
from dashboard.models import AccountState, BatchChange, PollerHeartbeat, StoredBatch
from dashboard.providers import anthropic
from tests.factories import DEMO_ACCOUNTS

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEY = "sk-ant-api03-POLLERtestKEY0123456789abcdef"
ACCOUNT = Account(name="ops", provider="anthropic", base_url="https://api.anthropic.com", api_key=KEY)


def batch_json(number: int, *, ended: bool = False) -> dict:
    """Batch `number` was created `number` minutes before T0 (a negative number: after T0)."""
    created = T0 - timedelta(minutes=number)
    return {
        "id": f"msgbatch_{number + 100_000:024d}",
        "type": "message_batch",
        "processing_status": "ended" if ended else "in_progress",
        "request_counts": {
            "processing": 0 if ended else 5,
            "succeeded": 5 if ended else 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        "ended_at": (created + timedelta(seconds=30)).isoformat().replace("+00:00", "Z") if ended else None,
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "expires_at": (created + timedelta(hours=24)).isoformat().replace("+00:00", "Z"),
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": None,
    }


class FakeAnthropic:
    """The Message Batches list and retrieve endpoints over an in-memory list, newest first."""

    def __init__(self, batches: list[dict]):
        self.batches = batches
        self.calls: list[str] = []
        self.fail_with: httpx.Response | None = None

    def add_newest(self, batch: dict) -> None:
        self.batches.insert(0, batch)

    def set(self, batch_id: str, **changes) -> None:
        for batch in self.batches:
            if batch["id"] == batch_id:
                batch.update(changes)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}?{request.url.query.decode()}".rstrip("?"))
        if self.fail_with is not None:
            return self.fail_with
        path = request.url.path
        if path == "/v1/messages/batches":
            limit = int(request.url.params.get("limit", "20"))
            after = request.url.params.get("after_id")
            start = next(i + 1 for i, b in enumerate(self.batches) if b["id"] == after) if after else 0
            page = self.batches[start : start + limit]
            return httpx.Response(
                200,
                json={
                    "data": page,
                    "has_more": start + limit < len(self.batches),
                    "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None,
                },
            )
        batch_id = path.rsplit("/", 1)[-1]
        for batch in self.batches:
            if batch["id"] == batch_id:
                return httpx.Response(200, json=batch)
        return httpx.Response(404, json={"type": "error", "error": {"type": "not_found_error", "message": "no"}})


@pytest.fixture
def upstream(settings, monkeypatch):
    settings.POLL_SECONDS = 3
    settings.POLL_IDLE_SECONDS = 30
    # Pages of 100, as these tests count them (Anthropic serves up to 1,000; a test may say so).
    monkeypatch.setattr(anthropic, "MAX_PAGE_LIMIT", 100)
    return FakeAnthropic([batch_json(n, ended=n > 3) for n in range(1, 251)])


def provider(upstream: FakeAnthropic) -> anthropic.AnthropicProvider:
    client = httpx.Client(
        base_url=ACCOUNT.base_url, transport=httpx.MockTransport(upstream), headers=anthropic.auth_headers(KEY)
    )
    return anthropic.AnthropicProvider(client, account=ACCOUNT.key)


def cycle(upstream: FakeAnthropic, at: datetime) -> poller.PollResult:
    upstream.calls.clear()
    return poller.poll_account(ACCOUNT, now=at, provider=provider(upstream))


def lists(upstream: FakeAnthropic) -> list[str]:
    return [call for call in upstream.calls if call.startswith("GET /v1/messages/batches?")]


def retrieves(upstream: FakeAnthropic) -> list[str]:
    return [call.rsplit("/", 1)[-1] for call in upstream.calls if "?" not in call]


def test_a_new_account_gets_its_newest_page_then_its_history_a_page_a_cycle(db, upstream):
    upstream.batches = [batch_json(n, ended=n > 3) for n in range(1, 351)]
    first = cycle(upstream, T0)
    assert first.error == ""
    assert lists(upstream) == [
        "GET /v1/messages/batches?limit=100",
        f"GET /v1/messages/batches?limit=100&after_id={batch_json(100)['id']}",
    ]
    assert StoredBatch.objects.count() == 200
    assert AccountState.objects.get().backfill_after == batch_json(200)["id"]
    second = cycle(upstream, T0 + timedelta(seconds=3))
    assert len(lists(upstream)) == 2, "the newest page again, and one older page"
    assert lists(upstream)[1].endswith(f"after_id={batch_json(200)['id']}")
    assert StoredBatch.objects.count() == 300 and second.listed == 200
    cycle(upstream, T0 + timedelta(seconds=6))
    assert StoredBatch.objects.count() == 350
    assert AccountState.objects.get().backfill_done
    cycle(upstream, T0 + timedelta(seconds=9))
    assert lists(upstream) == ["GET /v1/messages/batches?limit=100"], "history complete: no more backfill"


def test_incremental_listing_stops_where_the_stored_and_ended_batches_begin(db, upstream):
    for second in (0, 3):
        cycle(upstream, T0 + timedelta(seconds=second))
    assert AccountState.objects.get().backfill_done and StoredBatch.objects.count() == 250
    for minutes_after in range(1, 121):  # 120 new batches: more than a page
        upstream.add_newest(batch_json(-minutes_after, ended=True))
    result = cycle(upstream, T0 + timedelta(seconds=9))
    assert len(lists(upstream)) == 2, "the second page reaches known, ended batches"
    assert StoredBatch.objects.count() == 370
    assert result.changed == 120


def test_running_batches_are_retrieved_each_cycle_until_they_end(db, upstream):
    for second in (0, 3, 6):
        cycle(upstream, T0 + timedelta(seconds=second))
    running = list(StoredBatch.objects.filter(is_ended=False).values_list("batch_id", flat=True))
    assert sorted(running) == sorted(batch_json(n)["id"] for n in (1, 2, 3))
    # All three are on the first page, so the listing already refreshed them: no retrieve needed.
    assert retrieves(upstream) == []
    upstream.batches = upstream.batches[3:] + upstream.batches[:3]  # pretend they scrolled off page one
    upstream.set(batch_json(2)["id"], **{k: v for k, v in batch_json(2, ended=True).items() if k != "created_at"})
    result = cycle(upstream, T0 + timedelta(seconds=9))
    assert sorted(retrieves(upstream)) == sorted(batch_json(n)["id"] for n in (1, 2, 3))
    assert result.refreshed == 3 and result.changed == 1
    assert StoredBatch.objects.get(batch_id=batch_json(2)["id"]).is_ended
    assert BatchChange.objects.filter(batch__batch_id=batch_json(2)["id"]).count() == 2
    cycle(upstream, T0 + timedelta(seconds=12))
    assert sorted(retrieves(upstream)) == sorted(batch_json(n)["id"] for n in (1, 3)), "ended: not asked again"


def test_a_batch_gone_upstream_stops_being_refreshed(db, upstream):
    for second in (0, 3, 6):
        cycle(upstream, T0 + timedelta(seconds=second))
    gone = batch_json(1)["id"]
    upstream.batches = [b for b in upstream.batches if b["id"] != gone]
    upstream.batches = upstream.batches[2:] + upstream.batches[:2]
    result = cycle(upstream, T0 + timedelta(seconds=9))
    assert result.error == ""
    assert StoredBatch.objects.get(batch_id=gone).is_ended


def test_429_waits_for_retry_after_and_the_cycle_skips_the_account_until_then(db, upstream):
    upstream.fail_with = httpx.Response(
        429,
        headers={"retry-after": "17"},
        json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
    )
    result = cycle(upstream, T0)
    assert "429" in result.error
    state = AccountState.objects.get()
    assert state.backoff_until == T0 + timedelta(seconds=17)
    assert state.consecutive_failures == 1 and state.last_error_at == T0
    assert not poller.is_due(state, T0 + timedelta(seconds=16))
    assert poller.is_due(state, T0 + timedelta(seconds=17))
    upstream.fail_with = None
    assert poller.run_cycle(owner="a", now=T0 + timedelta(seconds=5), accounts=[ACCOUNT]) == []


@pytest.mark.parametrize("status", [500, 503, 529])
def test_server_errors_back_off_exponentially_with_jitter_and_a_success_resets(db, upstream, status):
    upstream.fail_with = httpx.Response(status, json={"type": "error", "error": {"type": "api_error", "message": "x"}})
    waits = []
    for failure in range(1, 5):
        now = T0 + timedelta(minutes=failure)
        cycle(upstream, now)
        state = AccountState.objects.get()
        assert state.consecutive_failures == failure
        waits.append((state.backoff_until - now).total_seconds())
        assert 3 <= waits[-1] <= 3 + 3 * 2**failure
    upstream.fail_with = None
    cycle(upstream, T0 + timedelta(minutes=10))
    state = AccountState.objects.get()
    assert (state.consecutive_failures, state.backoff_until, state.last_success_at) == (
        0,
        None,
        T0 + timedelta(minutes=10),
    )


def test_backoff_ceiling_grows_and_is_capped():
    from dashboard.providers.base import Overloaded, RateLimited

    assert poller.backoff_seconds(Overloaded("x"), 1, rand=lambda: 1.0) == 3 + 6
    assert poller.backoff_seconds(Overloaded("x"), 3, rand=lambda: 1.0) == 3 + 24
    assert poller.backoff_seconds(Overloaded("x"), 30, rand=lambda: 1.0) == 3 + poller.MAX_BACKOFF_SECONDS
    assert poller.backoff_seconds(Overloaded("x"), 30, rand=lambda: 0.0) == 3
    assert poller.backoff_seconds(RateLimited("x", retry_after=0.5), 1) == 3, "never sooner than the interval"
    assert poller.backoff_seconds(RateLimited("x", retry_after=1e9), 1) == poller.MAX_BACKOFF_SECONDS


def test_after_failed_cycles_the_poller_waits_doubling_from_the_poll_interval_up_to_a_cap(settings):
    settings.POLL_SECONDS = 2
    waits = [poller.outage_backoff_seconds(failures) for failures in range(1, 7)]
    assert waits == [2, 4, 8, 8, 8, 8]
    assert max(waits) == 2 * poller.OUTAGE_BACKOFF_MAX_INTERVALS


def test_manage_py_poll_goes_on_after_failed_cycles_and_logs_the_outage_once(
    transactional_db, settings, monkeypatch, caplog
):
    """A cycle that raises (the database gone) is retried: logged with its traceback once, the
    retries at DEBUG only, and once a cycle works again; SIGTERM still stops the loop."""
    import logging
    import os
    import signal

    from django.core.management import call_command
    from django.db import OperationalError

    settings.POLL_SECONDS = 0.01
    outcomes = iter([OperationalError("gone"), OperationalError("still gone"), OperationalError("gone"), None])
    cycles = []

    def run_cycle(*, owner, now, **_):
        cycles.append(now)
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome
        os.kill(os.getpid(), signal.SIGTERM)  # the handler the command installed stops the loop
        return []

    monkeypatch.setattr(poller, "run_cycle", run_cycle)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with caplog.at_level(logging.DEBUG, logger="dashboard.batches.poller"):
            call_command("poll", "--owner", "t")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(cycles) == 4
    records = [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.name == "dashboard.batches.poller"
    ]
    assert [level for level, _ in records] == ["ERROR", "DEBUG", "DEBUG", "WARNING"], records
    assert caplog.records[0].exc_info is not None
    assert "after 3 failed" in records[-1][1]


def test_manage_py_poll_once_reports_a_failed_cycle(transactional_db, monkeypatch):
    from django.core.management import call_command
    from django.db import OperationalError

    def run_cycle(*, owner, now, **_):
        raise OperationalError("gone")

    monkeypatch.setattr(poller, "run_cycle", run_cycle)
    with pytest.raises(OperationalError):
        call_command("poll", "--once", "--owner", "t")


def test_an_error_that_quotes_the_key_is_stored_redacted(db, upstream, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    upstream.fail_with = httpx.Response(
        500, json={"type": "error", "error": {"type": "api_error", "message": f"bad key {KEY.upper()}"}}
    )
    result = cycle(upstream, T0)
    state = AccountState.objects.get()
    for text in (result.error, state.last_error):
        assert KEY.lower() not in text.lower()


def test_an_account_with_nothing_running_is_polled_less_often(db, settings):
    idle = FakeAnthropic([batch_json(n, ended=True) for n in range(1, 5)])
    cycle(idle, T0)
    state = AccountState.objects.get()
    assert state.next_poll_at == T0 + timedelta(seconds=30)
    assert not poller.is_due(state, T0 + timedelta(seconds=29))
    assert poller.is_due(state, T0 + timedelta(seconds=30))


def test_one_poller_holds_an_account_until_its_lease_expires(db):
    assert poller.claim(ACCOUNT, owner="a", now=T0, seconds=30)
    assert not poller.claim(ACCOUNT, owner="b", now=T0 + timedelta(seconds=29), seconds=30)
    assert poller.claim(ACCOUNT, owner="a", now=T0 + timedelta(seconds=10), seconds=30), "renewed by its holder"
    assert not poller.claim(ACCOUNT, owner="b", now=T0 + timedelta(seconds=39), seconds=30)
    assert poller.claim(ACCOUNT, owner="b", now=T0 + timedelta(seconds=41), seconds=30), "a dead poller's lease"
    poller.release(ACCOUNT, owner="b")
    assert poller.claim(ACCOUNT, owner="a", now=T0 + timedelta(seconds=42), seconds=30)


def test_run_cycle_polls_only_leased_due_accounts(db, upstream, monkeypatch):
    other = Account(name="research", provider="anthropic", base_url="https://api.anthropic.com", api_key=KEY + "2")
    polled: list[str] = []
    monkeypatch.setattr(poller, "poll_account", lambda account, now, owner, **_: polled.append(account.key))
    assert poller.claim(other, owner="someone-else", now=T0, seconds=60)
    poller.run_cycle(owner="me", now=T0, accounts=[ACCOUNT, other])
    assert polled == ["anthropic-ops"]


def test_json_of_the_fake_is_what_the_provider_reads():
    """Guard for the fake above: the provider parses its batches."""
    parsed = anthropic.parse_batch(json.loads(json.dumps(copy.deepcopy(batch_json(7, ended=True)))), account="x")
    assert parsed.is_ended and parsed.counts.succeeded == 5


def test_manage_py_poll_once_fills_the_store_from_every_account_of_the_simulator(
    embedded_upstream, anthropic_sdk, openai_sdk
):
    from django.core.management import call_command

    from tests.factories import anthropic_batch, openai_batch

    running = anthropic_batch(anthropic_sdk, seconds=600).id
    ended = anthropic_batch(anthropic_sdk, "research", ended=True).id
    other = openai_batch(openai_sdk, seconds=600).id
    call_command("poll", "--once", "--owner", "test")
    stored = dict(StoredBatch.objects.values_list("batch_id", "is_ended"))
    assert stored[running] is False and stored[ended] is True and stored[other] is False
    states = AccountState.objects.order_by("account")
    assert [state.account for state in states] == sorted(key for key, _ in DEMO_ACCOUNTS)
    assert all(state.last_success_at and not state.last_error for state in states)
    assert all(state.lease_owner == "" for state in states), "leases are released on the way out"
    assert not PollerHeartbeat.objects.exists(), "and the heartbeat deleted"
    from dashboard.models import AlarmEvaluator

    assert AlarmEvaluator.objects.get().lease_owner == "", "so is the alarm evaluator's"


def test_manage_py_poll_is_quiet_unless_something_changed(embedded_upstream, anthropic_sdk):
    import io

    from django.core.management import call_command

    from tests.factories import anthropic_batch

    anthropic_batch(anthropic_sdk, "ops", ended=True)
    first, second, verbose = io.StringIO(), io.StringIO(), io.StringIO()
    call_command("poll", "--once", "--owner", "t", stdout=first)
    assert "anthropic-ops: listed 1, refreshed 0, changed 1" in first.getvalue()
    AccountState.objects.update(next_poll_at=None)  # due again at once
    call_command("poll", "--once", "--owner", "t", stdout=second)
    assert second.getvalue() == ""
    AccountState.objects.update(next_poll_at=None)
    call_command("poll", "--once", "--owner", "t", "-v", "2", stdout=verbose)
    assert "anthropic-ops: listed 1, refreshed 0, changed 0" in verbose.getvalue()


def test_listed_batches_stored_in_an_ended_status_are_not_written_again(db, upstream):
    for second in (0, 3):
        cycle(upstream, T0 + timedelta(seconds=second))
    ended, running = batch_json(50)["id"], batch_json(2)["id"]
    assert StoredBatch.objects.get(batch_id=ended).last_fetched_at == T0
    # As a retrieve's 404 leaves it: marked gone (ended), its last status kept.
    StoredBatch.objects.filter(batch_id=running).update(is_ended=True, gone_at=T0)
    result = cycle(upstream, T0 + timedelta(seconds=6))
    assert result.listed == 100 and lists(upstream) == ["GET /v1/messages/batches?limit=100"]
    assert StoredBatch.objects.get(batch_id=ended).last_fetched_at == T0, "final: not rewritten"
    relisted = StoredBatch.objects.get(batch_id=running)
    assert not relisted.is_ended and relisted.last_fetched_at == T0 + timedelta(seconds=6), "listed again: written"
    assert relisted.gone_at is None, "it exists after all"


# --- Refreshing the running batches: by the listing when cheaper, else by concurrent retrieves -----


def filled(upstream: FakeAnthropic) -> datetime:
    """Cycles until the account's history is stored; the time of the last one."""
    at = T0
    for _ in range(30):
        cycle(upstream, at)
        if AccountState.objects.get().backfill_done:
            return at
        at += timedelta(seconds=3)
    raise AssertionError("the backfill never finished")


def fetched_at(at: datetime) -> set[str]:
    return set(StoredBatch.objects.filter(last_fetched_at=at).values_list("batch_id", flat=True))


@pytest.mark.parametrize(("page_limit", "list_calls"), [(1000, 2), (100, 3)])
def test_running_batches_below_the_first_page_are_refreshed_by_reading_the_listing_on(
    db, upstream, monkeypatch, page_limit, list_calls
):
    monkeypatch.setattr(anthropic, "MAX_PAGE_LIMIT", page_limit)
    # 150 running batches, every other one of the newest 300; 100 ended ones older still.
    upstream.batches = [batch_json(n, ended=n % 2 == 0 or n > 300) for n in range(1, 401)]
    at = filled(upstream) + timedelta(seconds=3)
    running = set(StoredBatch.objects.filter(is_ended=False).values_list("batch_id", flat=True))
    assert len(running) == 150
    deep = batch_json(299)["id"]
    upstream.set(deep, **{k: v for k, v in batch_json(299, ended=True).items() if k != "created_at"})

    result = cycle(upstream, at)
    assert result.error == ""
    assert retrieves(upstream) == [], "no batch was retrieved one by one"
    assert len(lists(upstream)) == list_calls
    # The incremental listing's page (batches 1-100, where it meets stored ended ones) is not read again.
    assert lists(upstream)[1] == f"GET /v1/messages/batches?limit={page_limit}&after_id={batch_json(100)['id']}"
    assert running <= fetched_at(at), "every running batch was refreshed"
    assert StoredBatch.objects.get(batch_id=deep).is_ended and result.changed == 1
    assert result.refreshed == 100, "the 50 on the first page were refreshed by the incremental listing"

    gone = batch_json(297)["id"]  # deleted upstream: the listing does not show it, so it is asked for
    upstream.batches = [batch for batch in upstream.batches if batch["id"] != gone]
    later = at + timedelta(seconds=3)
    assert cycle(upstream, later).error == ""
    assert retrieves(upstream) == [gone]
    stored = StoredBatch.objects.get(batch_id=gone)
    assert stored.is_ended and stored.gone_at == later, "a 404 is definite: marked gone, no longer polled"
    assert stored.status == "in_progress", "its last known state is kept"
    assert cycle(upstream, later + timedelta(seconds=3)).error == ""
    assert gone not in retrieves(upstream), "not asked for again"


def test_a_few_running_batches_among_many_ended_ones_are_retrieved(db, upstream):
    old_running = (150, 400, 590)  # five pages of 100 down to the oldest: more requests than three retrieves
    upstream.batches = [batch_json(n, ended=n not in old_running) for n in range(1, 601)]
    at = filled(upstream) + timedelta(seconds=3)
    result = cycle(upstream, at)
    assert result.error == ""
    assert lists(upstream) == ["GET /v1/messages/batches?limit=100"]
    assert sorted(retrieves(upstream)) == sorted(batch_json(n)["id"] for n in old_running)
    assert {batch_json(n)["id"] for n in old_running} <= fetched_at(at)
    assert result.refreshed == 3


class SlowRetrieves(FakeAnthropic):
    """Retrieves take `seconds` each; counts how many are in flight at once."""

    def __init__(self, batches: list[dict], *, seconds: float = 0.05, first_together: int = 0):
        super().__init__(batches)
        self.seconds = seconds
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.failing: set[str] = set()
        # The first `first_together` retrieves wait for one another: proof that they are in flight at once.
        self.together = threading.Barrier(first_together, timeout=5) if first_together else None
        self.started = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/messages/batches":
            return super().__call__(request)
        with self.lock:
            self.in_flight += 1
            self.started += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            first_round = self.together is not None and self.started <= self.together.parties
        try:
            if first_round:
                self.together.wait()
            if request.url.path.rsplit("/", 1)[-1] in self.failing:
                self.calls.append(f"{request.method} {request.url.path}")
                return httpx.Response(500, json={"type": "error", "error": {"type": "api_error", "message": "x"}})
            time.sleep(self.seconds)
            return super().__call__(request)
        finally:
            with self.lock:
                self.in_flight -= 1


def twenty_running() -> list[dict]:
    return [batch_json(n, ended=n % 10 != 0) for n in range(1, 201)]


def test_retrieves_run_concurrently_up_to_poll_concurrency_and_are_all_recorded(db, settings, monkeypatch):
    settings.POLL_CONCURRENCY = 4
    monkeypatch.setattr(poller, "REFRESH_BY_LISTING", False)
    upstream = SlowRetrieves(twenty_running(), first_together=4)
    at = filled(upstream) + timedelta(seconds=3)
    upstream.batches = upstream.batches[100:] + upstream.batches[:100]  # batches 10..100 scroll off page one
    upstream.calls.clear()
    upstream.most_in_flight = upstream.started = 0
    result = poller.poll_account(ACCOUNT, now=at, provider=provider(upstream))
    assert result.error == ""
    running = {batch_json(n)["id"] for n in range(10, 201, 10)}
    on_first_page = {batch_json(n)["id"] for n in range(110, 201, 10)}
    assert sorted(retrieves(upstream)) == sorted(running - on_first_page)
    assert upstream.most_in_flight == 4, "four at once, never more"
    assert running <= fetched_at(at) and result.refreshed == 10
    assert StoredBatch.objects.filter(is_ended=False).count() == 20


def test_one_failed_retrieve_among_concurrent_ones_fails_the_cycle_and_keeps_the_others(db, settings, monkeypatch):
    settings.POLL_CONCURRENCY = 4
    monkeypatch.setattr(poller, "REFRESH_BY_LISTING", False)
    upstream = SlowRetrieves(twenty_running(), seconds=0.2)
    at = filled(upstream) + timedelta(seconds=3)
    upstream.batches = upstream.batches[100:] + upstream.batches[:100]  # batches 10..100 scroll off page one
    broken = batch_json(10)["id"]  # the newest of those: retrieved first
    assert broken in fetched_at(at - timedelta(seconds=3))
    upstream.failing = {broken}
    upstream.calls.clear()
    result = poller.poll_account(ACCOUNT, now=at, provider=provider(upstream))
    assert "500" in result.error
    state = AccountState.objects.get()
    assert state.consecutive_failures == 1 and state.last_error_at == at and state.backoff_until > at
    assert state.last_success_at < at
    answered = set(retrieves(upstream)) - {broken}
    assert answered, "the retrieves in flight when the error came answered"
    assert answered <= fetched_at(at), "and what they brought is stored"
    assert broken not in fetched_at(at)
    assert len(retrieves(upstream)) < 10, "retrieves not started when the error came were not made"
