"""Pollers as deployed: separate `manage.py poll` processes on one real PostgreSQL.

Pollers split the accounts fairly within two cycles of one joining; when one is killed (no chance
to release its leases), the others take its accounts over at their next beat (its session lock went
with its connection), whatever the heartbeat window, long before its leases end; no two pollers ever
poll one account at once.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from dashboard.providers import PROVIDERS
from tests.services import ROOT, app_env, manage, seed_sqlite, start_app_server, wait_until

pytestmark = pytest.mark.integration

ACCOUNTS = {f"{name}-{account}" for name, module in PROVIDERS.items() for account in module.SIMULATOR_KEYS}
LINE = re.compile(r"^(?P<account>[a-z0-9-]+): listed \d+, refreshed \d+, changed \d+")


def start_poller(env: dict[str, str], name: str, log: Path, *, verbosity: str = "2") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "poll", "--owner", name, "-v", verbosity],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def polled(log: Path) -> list[str]:
    return [m.group("account") for m in map(LINE.match, log.read_text(errors="replace").splitlines()) if m]


def owners(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT account, lease_owner FROM dashboard_accountstate").fetchall()
    return dict(rows)


def stored(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT count(*) FROM dashboard_storedbatch").fetchone()[0]


SHARED = 12  # accounts of the simulator the pollers share, each with running batches
SIM_ACCOUNTS = """
from datetime import timedelta
from django.utils import timezone
from dashboard.simulator.models import SimAccount, SimBatch, anthropic_batch_id, key_digest
for n in range({count}):
    key = key_digest(f"sk-ant-share-{{n}}")
    account = SimAccount.objects.create(provider="anthropic", name=f"team{{n}}", key_sha256=key)
    SimBatch.objects.bulk_create(
        SimBatch.planned(account=account, public_id=anthropic_batch_id(), output_file_id="", error_file_id="",
                         created_at=timezone.now() - timedelta(minutes=i), total=10, processing_seconds=3600)
        for i in range(3)
    )
"""
CYCLE = re.compile(
    r"^cycle: (?P<owner>\S+) holds (?P<held>\d+) accounts, (?P<live>\d+) pollers live, from (?P<at>[\d.]+)"
)
POLLED = re.compile(r"^(?P<account>[a-z0-9-]+): listed .*; polled (?P<start>[\d.]+)-(?P<end>[\d.]+)$")


def shared_accounts(tmp_path: Path, simulator_url: str) -> Path:
    """The accounts file of the SHARED simulator accounts."""
    entries = [
        {
            "name": f"team{n}",
            "provider": "anthropic",
            "base_url": f"{simulator_url}/simulator/anthropic",
            "api_key": f"sk-ant-share-{n}",
        }
        for n in range(SHARED)
    ]
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(entries))
    return path


def cycles(log: Path) -> list[tuple[int, float]]:
    """A poller's cycles (-v 3): the accounts it held after each, and when (the database's clock) it started."""
    lines = log.read_text(errors="replace").splitlines()
    return [(int(m["held"]), float(m["at"])) for m in map(CYCLE.match, lines) if m]


def polls(log: Path, *, lost: bool = True) -> list[tuple[str, float, float]]:
    """Each account's poll of a poller (-v 3): account, from, to (wall clock); `lost` false leaves out
    the polls that stopped as another poller held the account."""
    lines = log.read_text(errors="replace").splitlines()
    if not lost:
        lines = [line for line in lines if "; taken over by another poller" not in line]
    return [(m["account"], float(m["start"]), float(m["end"])) for m in map(POLLED.match, lines) if m]


def held_by(database_url: str) -> Counter:
    return Counter(owner for owner in owners(database_url).values() if owner)


def cycles_started_after(log: Path, moment: float, count: int) -> list[int]:
    """The accounts held after each of the first `count` cycles started after `moment` (fewer: not yet)."""
    return [held for held, at in cycles(log) if at > moment][:count]


@pytest.mark.slow
def test_pollers_share_the_accounts_fairly_and_take_a_killed_one_s_over_within_the_heartbeat_window(
    postgres_server, tmp_path
):
    database_url = postgres_server.create_database(migrated=True)
    simulator_env = app_env(SQLITE_PATH=str(tmp_path / "simulator.sqlite3"))
    seed_sqlite(simulator_env)
    manage("shell", "-c", SIM_ACCOUNTS.format(count=SHARED), env=simulator_env)
    simulator = start_app_server(simulator_env, tmp_path / "simulator.log")
    window = 3.0  # a heartbeat every second: a busy machine delays one now and then
    env = app_env(
        DATABASE_URL=database_url,
        BATCH_ACCOUNTS_FILE=str(shared_accounts(tmp_path, simulator.url)),
        POLL_SECONDS="0.5",
        POLL_IDLE_SECONDS="0.5",
        POLL_HEARTBEAT_SECONDS=str(window),
        POLL_LEASE_SECONDS="60",  # a takeover within seconds is the heartbeats', not a lease's end
        ALARMS_ENABLED="0",
    )
    logs = {name: tmp_path / f"{name}.log" for name in "abcd"}
    processes: dict[str, subprocess.Popen] = {}

    def rounds(after: float, count: int) -> dict[str, int]:
        """`count` rounds of cycles, each poller's first started after the last round was seen whole
        (after `after` for the first): what each held after its cycle of the last round."""
        held: dict[str, int] = {}
        for _ in range(count):
            for name in processes:
                held[name] = wait_until(
                    lambda name=name, after=after: cycles_started_after(logs[name], after, 1),
                    timeout=60,
                    what=f"a cycle of {name}",
                )[0]
            after = time.time()  # the database's clock is this machine's
        return held

    def join(name: str, share: int) -> None:
        """Start poller `name`: within two rounds of cycles after its first (the others release their
        surplus in the first; it takes its share in the second at the latest), each holds `share`."""
        processes[name] = start_poller(env, name, logs[name], verbosity="3")
        wait_until(lambda: cycles(logs[name]), timeout=60, what=f"{name}'s first cycle")
        assert rounds(time.time(), 2) == dict.fromkeys(processes, share)
        assert held_by(database_url) == dict.fromkeys(processes, share)

    try:
        join("a", 12)
        join("b", 6)
        join("c", 4)
        join("d", 3)
        settled = owners(database_url)
        time.sleep(2)  # a few cycles: nothing moves while the same pollers live
        assert owners(database_url) == settled

        killed_at = time.time()
        processes["d"].send_signal(signal.SIGKILL)  # no goodbye: its heartbeat row and leases stay
        processes["d"].wait(timeout=10)
        dead_by = killed_at + window  # its last beat was before the kill
        del processes["d"]
        assert rounds(dead_by, 1) == {"a": 4, "b": 4, "c": 4}, "d's accounts taken in the first cycles past the window"
        assert held_by(database_url) == {"a": 4, "b": 4, "c": 4}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        simulator.stop()

    assert [process.returncode for process in processes.values()] == [0, 0, 0]
    assert set(owners(database_url).values()) == {""}, "pollers stopped with SIGTERM release their leases"
    with psycopg.connect(database_url) as connection:
        beats = connection.execute("SELECT owner FROM dashboard_pollerheartbeat").fetchall()
    assert beats == [("d",)], "and delete their heartbeats; the killed one's stays until it is forgotten"

    # Never two pollers on one account: per account, no two polls of different pollers overlap.
    every = sorted((account, start, end, name) for name in "abcd" for account, start, end in polls(logs[name]))
    assert {account for account, *_ in every} == {f"anthropic-team{n}" for n in range(SHARED)}
    for (account, _, end, name), (next_account, start, _, next_name) in itertools.pairwise(every):
        if account == next_account and name != next_name:
            assert end <= start, f"{account} polled by {name} until {end} and by {next_name} from {start}"


def overlapping_polls(logs: dict[str, Path]) -> list[str]:
    """Polls of one account by two pollers at once (from -v 3 logs): none, ever. A poll that found its
    lease gone ("taken over by another poller") wrote nothing after that: a paused poller's polls
    under way or queued when it resumed stop there, and are not polls of an account it holds."""
    every = sorted(
        (account, start, end, name) for name, log in logs.items() for account, start, end in polls(log, lost=False)
    )
    return [
        f"{account} polled by {name} until {end} and by {next_name} from {start}"
        for (account, _, end, name), (next_account, start, _, next_name) in itertools.pairwise(every)
        if account == next_account and name != next_name and end > start
    ]


@pytest.mark.slow
def test_a_killed_poller_s_accounts_are_taken_and_polled_at_once_long_before_its_heartbeat_is_stale(
    postgres_server, tmp_path
):
    """A killed poller's connection closes, and with it its session lock: the others see it dead at
    their next beat, and take and poll its accounts then, whatever the heartbeat window (a minute
    here: the survivors' shares before it runs out can only come from the lock)."""
    database_url = postgres_server.create_database(migrated=True)
    simulator_env = app_env(SQLITE_PATH=str(tmp_path / "simulator.sqlite3"))
    seed_sqlite(simulator_env)
    manage("shell", "-c", SIM_ACCOUNTS.format(count=SHARED), env=simulator_env)
    simulator = start_app_server(simulator_env, tmp_path / "simulator.log")
    window = 60.0
    env = app_env(
        DATABASE_URL=database_url,
        BATCH_ACCOUNTS_FILE=str(shared_accounts(tmp_path, simulator.url)),
        POLL_SECONDS="0.5",
        POLL_IDLE_SECONDS="0.5",
        POLL_HEARTBEAT_SECONDS=str(window),
        POLL_LEASE_SECONDS="120",
        ALARMS_ENABLED="0",
    )
    logs = {name: tmp_path / f"{name}.log" for name in "abc"}
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name in logs:
            processes[name] = start_poller(env, name, logs[name], verbosity="3")
        wait_until(lambda: held_by(database_url) == dict.fromkeys(logs, 4), timeout=60, what="shares of 4/4/4")
        victim_accounts = {account for account, owner in owners(database_url).items() if owner == "c"}

        killed_at = time.time()
        processes["c"].send_signal(signal.SIGKILL)
        processes["c"].wait(timeout=10)
        del processes["c"]
        wait_until(
            lambda: held_by(database_url) == {"a": 6, "b": 6},
            timeout=window / 2,
            what="the survivors' shares of 6/6 before the killed poller's heartbeat is stale",
        )

        def polled_since_kill() -> set[str]:
            return {account for name in "ab" for account, start, _ in polls(logs[name]) if start > killed_at}

        wait_until(
            lambda: victim_accounts <= polled_since_kill(),
            timeout=window / 2,
            what="each of the killed poller's accounts polled by a survivor",
        )
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        simulator.stop()

    assert [process.returncode for process in processes.values()] == [0, 0]
    assert overlapping_polls(logs) == []


@pytest.mark.slow
def test_a_paused_poller_s_accounts_are_taken_once_its_heartbeat_is_stale_and_it_writes_none_of_them_after(
    postgres_server, tmp_path
):
    """A paused poller (SIGSTOP: a debugger, a frozen VM) keeps its connection, so its session lock:
    the others take its accounts once its last beat is older than the window; resumed, it writes
    nothing to the accounts it lost (never two pollers on one account) and takes its share again."""
    database_url = postgres_server.create_database(migrated=True)
    simulator_env = app_env(SQLITE_PATH=str(tmp_path / "simulator.sqlite3"))
    seed_sqlite(simulator_env)
    manage("shell", "-c", SIM_ACCOUNTS.format(count=SHARED), env=simulator_env)
    simulator = start_app_server(simulator_env, tmp_path / "simulator.log")
    env = app_env(
        DATABASE_URL=database_url,
        BATCH_ACCOUNTS_FILE=str(shared_accounts(tmp_path, simulator.url)),
        POLL_SECONDS="0.5",
        POLL_IDLE_SECONDS="0.5",
        POLL_HEARTBEAT_SECONDS="3",
        POLL_LEASE_SECONDS="120",  # taken over by the heartbeats, long before a lease's end
        ALARMS_ENABLED="0",
    )
    logs = {name: tmp_path / f"{name}.log" for name in "abc"}
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name in logs:
            processes[name] = start_poller(env, name, logs[name], verbosity="3")
        wait_until(lambda: held_by(database_url) == dict.fromkeys(logs, 4), timeout=60, what="shares of 4/4/4")
        processes["c"].send_signal(signal.SIGSTOP)
        paused_at = time.time()
        wait_until(lambda: held_by(database_url) == {"a": 6, "b": 6}, timeout=60, what="c's accounts taken")
        assert time.time() - paused_at > 2, "not before c's heartbeat was older than the window (3 s, less a beat)"
        processes["c"].send_signal(signal.SIGCONT)
        wait_until(lambda: held_by(database_url) == dict.fromkeys(logs, 4), timeout=60, what="c back to its share")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        simulator.stop()

    assert [process.returncode for process in processes.values()] == [0, 0, 0]
    assert overlapping_polls(logs) == []


def test_a_poller_claims_past_rows_another_holds_locked_without_waiting(postgres_server, tmp_path):
    """SKIP LOCKED: while another transaction holds one account's row (a poller mid-claim), a claim
    takes the other accounts at once instead of waiting for that lock."""
    database_url = postgres_server.create_database(migrated=True)
    env = app_env(DATABASE_URL=database_url)
    claim = (
        "from django.utils import timezone; from dashboard.batches import poller; from dashboard.accounts import "
        "configured_accounts; print(sorted(a.key for a in poller.claim_all(configured_accounts(), "
        "owner='{owner}', now=timezone.now(), seconds=60)))"
    )
    manage("shell", "-c", claim.format(owner="first"), env=env)  # creates the rows, takes them all
    with psycopg.connect(database_url) as locker:
        locker.execute("UPDATE dashboard_accountstate SET lease_until = NULL, lease_owner = ''")
        locker.commit()
        locker.execute("SELECT 1 FROM dashboard_accountstate WHERE account = 'openai-ops' FOR UPDATE")
        started = time.monotonic()
        taken = manage("shell", "-c", claim.format(owner="second"), env=env, timeout=30).strip().splitlines()[-1]
        waited = time.monotonic() - started
        locker.rollback()
    assert taken == str(sorted(ACCOUNTS - {"openai-ops"})), "the locked row is skipped, the others taken"
    assert waited < 20, f"the claim waited {waited:.1f} s on the locked row"
    assert owners(database_url)["openai-ops"] == ""


IDLE_TRANSACTIONS = """
import threading, time
from django.db import connections, transaction
from django.db.backends.signals import connection_created
from django.db.utils import DatabaseError
from dashboard.batches import poller

poller.IDLE_TRANSACTION_FLOOR_SECONDS = 0.5
connection_created.connect(poller.limit_idle_transactions, dispatch_uid="poller-idle-transactions")
connections.close_all()

def idle_in_a_transaction():
    try:
        with transaction.atomic():
            connections["default"].cursor().execute("SELECT 1")
            time.sleep(2)  # frozen mid-write, as a SIGSTOPped poller is
            connections["default"].cursor().execute("SELECT 1")
        return "kept"
    except DatabaseError:
        return "ended"
    finally:
        connections.close_all()

outcome = {}
for name in ("poll-retrieve_0", "poll-alarms"):
    thread = threading.Thread(target=lambda name=name: outcome.__setitem__(name, idle_in_a_transaction()), name=name)
    thread.start()
    thread.join()
print("OUTCOME", outcome["poll-retrieve_0"], outcome["poll-alarms"])
"""


def test_postgresql_ends_a_poller_transaction_left_idle_so_a_frozen_poller_keeps_no_row_locked(postgres_server):
    """A poller frozen inside a write (its account row locked FOR UPDATE) would keep that row from the
    others, who take rows SKIP LOCKED, for as long as it stays frozen: the server ends a poller's
    session idle in a transaction past the limit. The alarm evaluator's thread has no limit."""
    env = app_env(
        DATABASE_URL=postgres_server.create_database(migrated=True), POLL_SECONDS="0.25", POLL_HEARTBEAT_SECONDS="0.25"
    )
    out = manage("shell", "-c", IDLE_TRANSACTIONS, env=env, timeout=120)
    assert out.split("OUTCOME", 1)[1].split() == ["ended", "kept"], out
