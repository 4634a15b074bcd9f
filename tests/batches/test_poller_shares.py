"""Fair shares of the accounts among pollers, their heartbeats and fail-over, on a fake clock.

Each poller is an owner name calling `claim_share` (the start of its cycle) at moments of a fake
clock; the real processes on PostgreSQL are tests/integration/test_pollers.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from dashboard.accounts import Account
from dashboard.batches import poller
from dashboard.models import AccountState, PollerHeartbeat, StoredBatch
from tests.batches.test_poller import FakeAnthropic, batch_json, provider

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ACCOUNTS = [
    Account(name=f"team{n}", provider="anthropic", base_url="https://api.anthropic.com", api_key=f"k{n}")
    for n in range(12)
]


@pytest.fixture(autouse=True)
def timings(settings):
    settings.POLL_SECONDS = 3
    settings.POLL_HEARTBEAT_SECONDS = 6
    settings.POLL_LEASE_SECONDS = 30


def holders() -> dict[str, str]:
    return dict(AccountState.objects.values_list("account", "lease_owner"))


def shares() -> dict[str, int]:
    return dict(Counter(owner for owner in holders().values() if owner))


def cycle(owners: list[str], at: datetime) -> dict[str, list[str]]:
    """Each poller's cycle start in turn: the accounts each then holds, checked disjoint."""
    held = {owner: [a.key for a in poller.claim_share(ACCOUNTS, owner=owner, now=at)] for owner in owners}
    everyone = [key for keys in held.values() for key in keys]
    assert len(everyone) == len(set(everyone)), f"an account held by two pollers: {held}"
    return held


def test_pollers_that_join_split_the_accounts_within_two_cycles_and_then_keep_them(db):
    cycle(["a"], T0)
    assert shares() == {"a": 12}
    cycle(["b"], T0 + timedelta(seconds=1))
    assert shares() == {"a": 12}, "a newcomer takes nothing held by a live poller"
    cycle(["a", "b"], T0 + timedelta(seconds=3))
    assert shares() == {"a": 6, "b": 6}, "a released its surplus, b took it, in one cycle"
    cycle(["c"], T0 + timedelta(seconds=4))
    for second in (6, 9):
        cycle(["a", "b", "c"], T0 + timedelta(seconds=second))
    assert shares() == {"a": 4, "b": 4, "c": 4}
    split = holders()
    cycle(["d"], T0 + timedelta(seconds=10))
    for second in (12, 15):
        cycle(["a", "b", "c", "d"], T0 + timedelta(seconds=second))
    assert shares() == {"a": 3, "b": 3, "c": 3, "d": 3}
    moved = {key for key, owner in holders().items() if owner != split[key]}
    assert len(moved) == 3, "only the newcomer's share changed hands"
    settled = holders()
    for second in (18, 21, 24, 27):
        cycle(["a", "b", "c", "d"], T0 + timedelta(seconds=second))
    assert holders() == settled, "no account moves while the live pollers stay the same"


def test_a_poller_that_stops_cleanly_leaves_its_accounts_to_the_others_at_their_next_cycle(db):
    for second in (0, 3, 6):
        cycle(["a", "b", "c"], T0 + timedelta(seconds=second))
    assert shares() == {"a": 4, "b": 4, "c": 4}
    poller.leave(owner="c")
    assert not PollerHeartbeat.objects.filter(owner="c").exists()
    assert "c" not in shares()
    cycle(["a", "b"], T0 + timedelta(seconds=7))
    assert shares() == {"a": 6, "b": 6}


def test_a_dead_poller_s_accounts_are_taken_once_its_heartbeat_is_older_than_the_window(db):
    for second in (0, 3, 6):
        cycle(["a", "b", "c"], T0 + timedelta(seconds=second))
    dead = {key for key, owner in holders().items() if owner == "c"}
    # c beat last at T0+6 and is killed; its leases run to T0+36.
    cycle(["a", "b"], T0 + timedelta(seconds=12))
    assert shares() == {"a": 4, "b": 4, "c": 4}, "6 s after its beat, c is still live"
    cycle(["a", "b"], T0 + timedelta(seconds=12, milliseconds=1))
    assert shares() == {"a": 6, "b": 6}, "past the window its accounts are taken, long before its leases end"
    assert all(holders()[key] in {"a", "b"} for key in dead)


def test_a_poller_paused_past_the_window_writes_nothing_more_to_an_account_taken_from_it(db, settings):
    settings.POLL_IDLE_SECONDS = 30
    upstream = FakeAnthropic([batch_json(n, ended=n > 3) for n in range(1, 30)])
    account = Account(name="ops", provider="anthropic", base_url="https://api.anthropic.com", api_key="k")
    assert poller.claim_share([account], owner="a", now=T0) == [account]
    first = poller.poll_account(account, now=T0, provider=provider(upstream), owner="a")
    assert first.listed and not first.lost
    # a pauses; b, seeing no beat of a for longer than the window, takes the account and polls it.
    later = T0 + timedelta(seconds=7)
    assert poller.claim_share([account], owner="b", now=later) == [account]
    upstream.add_newest(batch_json(-1))
    resumed = poller.poll_account(account, now=later, provider=provider(upstream), owner="a")
    assert resumed.lost and resumed.changed == 0
    assert not StoredBatch.objects.filter(batch_id=batch_json(-1)["id"]).exists()
    assert AccountState.objects.get().last_success_at == T0, "nor its health"
    assert AccountState.objects.get().lease_owner == "b"
    taken = poller.poll_account(account, now=later, provider=provider(upstream), owner="b")
    assert not taken.lost and StoredBatch.objects.filter(batch_id=batch_json(-1)["id"]).exists()


def test_a_heartbeat_never_moves_back_and_renews_the_leases_still_held(db):
    poller.claim_share(ACCOUNTS[:2], owner="a", now=T0)
    poller.beat(owner="a", now=T0 + timedelta(seconds=5))
    poller.beat(owner="a", now=T0 + timedelta(seconds=4))  # a cycle's clock read before the thread's beat
    beat = PollerHeartbeat.objects.get(owner="a")
    assert (beat.started_at, beat.beat_at) == (T0, T0 + timedelta(seconds=5))
    assert set(AccountState.objects.values_list("lease_until", flat=True)) == {T0 + timedelta(seconds=35)}


def test_a_lease_whose_owner_never_beat_waits_for_its_end(db):
    """An owner without a heartbeat row (a poller whose first beat this transaction may not see yet,
    or a holder from before heartbeats) is not counted dead: its lease ends as leases always did."""
    assert poller.claim(ACCOUNTS[0], owner="old", now=T0, seconds=30)
    assert poller.claim_share(ACCOUNTS[:1], owner="a", now=T0 + timedelta(seconds=29)) == []
    assert poller.claim_share(ACCOUNTS[:1], owner="a", now=T0 + timedelta(seconds=31)) == ACCOUNTS[:1]


def test_long_dead_pollers_heartbeats_are_forgotten(db):
    poller.claim_share(ACCOUNTS, owner="gone", now=T0)
    poller.claim_share(ACCOUNTS, owner="a", now=T0 + timedelta(seconds=41))
    assert set(PollerHeartbeat.objects.values_list("owner", flat=True)) == {"gone", "a"}
    poller.claim_share(ACCOUNTS, owner="a", now=T0 + timedelta(seconds=43))
    assert set(PollerHeartbeat.objects.values_list("owner", flat=True)) == {"a"}


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    accounts=st.integers(min_value=1, max_value=12),
    joins=st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6, unique=True),
    order=st.randoms(use_true_random=False),
)
def test_any_number_of_pollers_settle_on_shares_that_differ_by_at_most_one_chunk(db, accounts, joins, order):
    """Whatever the accounts, the pollers and the order of their cycles: never an account held twice,
    every account held after three rounds (a newcomer may
    claim before the others released), nobody above ceil(accounts / pollers), and nothing moves after."""
    AccountState.objects.all().delete()
    PollerHeartbeat.objects.all().delete()
    mine = ACCOUNTS[:accounts]
    moment = T0
    for round_ in range(4):
        owners = list(joins)
        order.shuffle(owners)
        for owner in owners:
            moment += timedelta(milliseconds=100)
            held = [a.key for a in poller.claim_share(mine, owner=owner, now=moment)]
            assert all(holders()[key] == owner for key in held)
        if round_ == 2:
            settled = holders()
    share = -(-accounts // len(joins))
    counts = shares()
    assert sum(counts.values()) == accounts, counts
    assert max(counts.values()) <= share, counts
    assert holders() == settled


def test_manage_py_poll_beats_during_a_cycle_longer_than_the_window_and_says_goodbye(
    transactional_db, settings, monkeypatch
):
    """A cycle may outlast the heartbeat window (a slow upstream, a results file): the command's own
    thread keeps beating, so the others do not count it dead; SIGTERM ends it without a trace."""
    import os
    import signal
    import time

    from django.core.management import call_command

    settings.POLL_SECONDS = 0.1
    settings.POLL_HEARTBEAT_SECONDS = 0.3
    beats: list[datetime] = []

    def run_cycle(*, owner, now, **_):
        poller.claim_share(ACCOUNTS, owner=owner, now=now)
        for _ in range(8):  # 1.2 s: four windows
            time.sleep(0.15)
            beats.append(PollerHeartbeat.objects.get(owner=owner).beat_at)
        assert poller.live_pollers(now=poller.leases.database_now()) == [owner]
        os.kill(os.getpid(), signal.SIGTERM)
        return []

    monkeypatch.setattr(poller, "run_cycle", run_cycle)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        call_command("poll", "--owner", "long")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(set(beats)) >= 4, f"the heartbeat moved on during the cycle: {beats}"
    assert not PollerHeartbeat.objects.exists()
    assert set(AccountState.objects.values_list("lease_owner", flat=True)) == {""}


def test_an_account_whose_first_poll_was_cut_before_its_state_was_saved_still_gets_its_history(db, settings):
    """A first look writes its page of batches, then the poll is cut (its lease taken, the poller
    killed) before the account's state is saved: the next poll sees stored batches, no backfill
    position, and must still read the history to its end, not leave the backfill unstarted."""
    settings.POLL_IDLE_SECONDS = 30
    upstream = FakeAnthropic([batch_json(n) for n in range(1, 251)])  # all running: no ended one to stop at
    account = Account(name="ops", provider="anthropic", base_url="https://api.anthropic.com", api_key="k")
    assert poller.claim_share([account], owner="a", now=T0) == [account]
    first_page = upstream.batches[:100]
    from dashboard.batches import store

    store.record_many(
        [poller.providers.module("anthropic").parse_batch(b, account=account.key) for b in first_page], fetched_at=T0
    )
    for second in range(0, 30, 3):
        poller.poll_account(account, now=T0 + timedelta(seconds=second), provider=provider(upstream), owner="a")
    assert StoredBatch.objects.count() == 250
    assert AccountState.objects.get().backfill_done


def test_take_over_claims_a_dead_poller_s_accounts_between_cycles_and_only_then(db):
    """At a beat (`take_over`): nothing while every holder is live; once one is dead (its beat older
    than the window here; a killed one on PostgreSQL: its session lock gone), this poller's share
    again, the accounts newly taken returned to be polled at once."""
    cycle(["a", "b", "c"], T0)
    cycle(["a", "b", "c"], T0 + timedelta(seconds=1))
    assert shares() == {"a": 4, "b": 4, "c": 4}
    for owner in "ab":
        poller.beat(owner=owner, now=T0 + timedelta(seconds=5))
        assert poller.take_over(owner=owner, now=T0 + timedelta(seconds=5), accounts=ACCOUNTS) == []
    c_held = {key for key, owner in holders().items() if owner == "c"}
    later = T0 + timedelta(seconds=8)  # c's last beat (T0 + 1 s) is older than the window (6 s)
    taken = {}
    for owner in "ab":
        poller.beat(owner=owner, now=later)
        taken[owner] = {account.key for account in poller.take_over(owner=owner, now=later, accounts=ACCOUNTS)}
    assert shares() == {"a": 6, "b": 6}
    assert taken["a"] | taken["b"] == c_held and not taken["a"] & taken["b"]
    assert poller.take_over(owner="a", now=later, accounts=ACCOUNTS) == [], "nothing left to take"


def test_the_command_evaluates_the_alarms_on_a_thread_of_their_own_while_a_cycle_runs(
    transactional_db, settings, monkeypatch
):
    """An evaluation reads every running batch: in `manage.py poll` it must not hold up the cycles
    (the evaluating poller's accounts would be refreshed late), nor wait for one to end."""
    import os
    import signal
    import threading

    from django.core.management import call_command

    settings.POLL_SECONDS = 0.1
    evaluated = threading.Event()
    cycles: list[bool] = []

    def run_cycle(*, owner, now, evaluate=True, **_):
        cycles.append(evaluate)
        evaluated.wait(timeout=30)  # a cycle that lasts until an evaluation has happened
        os.kill(os.getpid(), signal.SIGTERM)
        return []

    monkeypatch.setattr(poller, "run_cycle", run_cycle)
    monkeypatch.setattr(poller, "evaluate_alarms", lambda **_: evaluated.set())
    previous = signal.getsignal(signal.SIGTERM)
    try:
        call_command("poll", "--owner", "evaluating")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert evaluated.is_set(), "evaluated while the cycle ran"
    assert cycles == [False], "and not by the cycle"
