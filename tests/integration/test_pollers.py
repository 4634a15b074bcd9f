"""Pollers as deployed: separate `manage.py poll` processes on one real PostgreSQL.

Two pollers never poll one account at once; when one is killed (no chance to release its
leases), the other takes its accounts over once the leases expire, and the store keeps filling.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from dashboard.providers import PROVIDERS
from tests.services import ROOT, app_env, manage, seed_sqlite, start_app_server, wait_until

pytestmark = pytest.mark.integration

ACCOUNTS = {f"{name}-{account}" for name, module in PROVIDERS.items() for account in module.SIMULATOR_KEYS}
LINE = re.compile(r"^(?P<account>[a-z0-9-]+): listed \d+, refreshed \d+, changed \d+")


def start_poller(env: dict[str, str], name: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "poll", "--owner", name, "-v", "2"],
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


@pytest.mark.slow
def test_two_pollers_share_the_accounts_and_one_takes_over_when_the_other_dies(postgres_server, tmp_path):
    database_url = postgres_server.create_database(migrated=True)
    # The simulator as the providers: its own SQLite, served over HTTP.
    simulator_env = app_env(SQLITE_PATH=str(tmp_path / "simulator.sqlite3"), SIMULATOR_PROCESSING_SECONDS="600")
    seed_sqlite(simulator_env)
    simulator = start_app_server(simulator_env, tmp_path / "simulator.log")
    env = app_env(
        DATABASE_URL=database_url,
        SIMULATOR_BASE_URL=f"{simulator.url}/simulator",
        POLL_SECONDS="0.3",
        POLL_IDLE_SECONDS="0.3",
        POLL_LEASE_SECONDS="2",
    )
    first = start_poller(env, "first", tmp_path / "first.log")
    second = None
    try:
        wait_until(
            lambda: set(owners(database_url)) == ACCOUNTS and stored(database_url) >= 32,
            timeout=30,
            what="the first poller to fill the store",
        )
        second = start_poller(env, "second", tmp_path / "second.log")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            held = owners(database_url)
            assert set(held.values()) <= {"first"}, f"an account changed hands while its poller lived: {held}"
            time.sleep(0.1)
        assert polled(tmp_path / "second.log") == [], "the second poller polled an account the first holds"
        assert set(polled(tmp_path / "first.log")) == ACCOUNTS

        first.send_signal(signal.SIGKILL)  # no goodbye: its leases stay until they expire
        first.wait(timeout=10)
        killed_at = time.monotonic()
        wait_until(
            lambda: set(owners(database_url).values()) == {"second"},
            timeout=15,
            what="the second poller to take every account over",
        )
        assert time.monotonic() - killed_at >= 1.0, "taken over before the lease (2 s) could have expired"
        before = len(polled(tmp_path / "second.log"))
        wait_until(
            lambda: set(polled(tmp_path / "second.log")[before:]) == ACCOUNTS,
            timeout=15,
            what="the second poller to poll every account",
        )
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        simulator.stop()
    if second is not None:
        assert second.returncode == 0
        assert set(owners(database_url).values()) == {""}, "a poller stopped with SIGTERM releases its leases"


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
