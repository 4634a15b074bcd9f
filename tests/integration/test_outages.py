"""A running `manage.py poll` outlives its database and its cache: a real PostgreSQL and a real
Redis are stopped and started again under it. It logs the outage once, backs off, reconnects and
polls on; it stops cleanly (exit 0) even while the database is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.integration.test_pollers import ACCOUNTS, owners, polled, start_poller, stored
from tests.services import (
    ROOT,
    AppServer,
    app_env,
    free_port,
    manage,
    seed_sqlite,
    start_app_server,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAILED = "poll cycle failed;"  # the first failure of an outage; the retries say "failed again"
RECOVERED = "poll cycles work again"


def start_simulator(tmp_path: Path) -> AppServer:
    """The simulator as the providers: its own SQLite, served over HTTP (it never goes away here)."""
    env = app_env(SQLITE_PATH=str(tmp_path / "simulator.sqlite3"), SIMULATOR_PROCESSING_SECONDS="600")
    seed_sqlite(env)
    return start_app_server(env, tmp_path / "simulator.log")


def poller_env(simulator: AppServer, database_url: str, **overrides: str) -> dict[str, str]:
    settings = {
        "DATABASE_URL": database_url,
        "SIMULATOR_BASE_URL": f"{simulator.url}/simulator",
        "POLL_SECONDS": "0.3",
        "POLL_IDLE_SECONDS": "0.3",
        "POLL_LEASE_SECONDS": "30",
    }
    return app_env(**{**settings, **overrides})


def log_text(log: Path) -> str:
    return log.read_text(errors="replace")


def polls_every_account_again(log: Path, since: int) -> bool:
    return set(polled(log)[since:]) == ACCOUNTS


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def last_evaluated(database_url: str) -> datetime | None:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT last_evaluated_at FROM dashboard_alarmevaluator").fetchone()
    return row[0] if row else None


def test_the_poller_outlives_a_postgresql_restart(postgres_factory, tmp_path):
    database = postgres_factory()  # this test's own server: it stops it
    database_url = database.create_database()
    simulator = start_simulator(tmp_path)
    env = poller_env(simulator, database_url)
    manage("migrate", "--noinput", env=env)
    env["LOG_LEVEL"] = "DEBUG"  # the retries, logged at DEBUG only
    log = tmp_path / "poller.log"
    poller = start_poller(env, "poller", log)
    try:
        wait_until(
            lambda: polls_every_account_again(log, 0) and stored(database_url) >= 32,
            timeout=60,
            what="the poller to fill the store",
        )

        database.stop_server()
        wait_until(
            lambda: FAILED in log_text(log) or poller.poll() is not None,
            timeout=30,
            what="the poller to notice the database is gone",
        )
        failed_at = len(polled(log))
        assert poller.poll() is None, f"the poller died with the database:\n{log_text(log)}"
        wait_until(
            lambda: "(3 in a row" in log_text(log) or poller.poll() is not None,
            timeout=30,
            what="the poller to try again, and again",
        )
        assert poller.poll() is None, f"the poller died with the database:\n{log_text(log)}"

        assert database.start_server().returncode == 0
        restarted = datetime.now(UTC)
        wait_until(
            lambda: polls_every_account_again(log, failed_at),
            timeout=60,
            what=f"the poller to poll every account again after the restart:\n{log_text(log)}",
        )
        assert poller.poll() is None
        wait_until(lambda: RECOVERED in log_text(log), timeout=10, what="the poller to say it works again")
        # The alarms are evaluated on the poller's own connection: it reconnected too.
        wait_until(
            lambda: (last_evaluated(database_url) or restarted) > restarted,
            timeout=30,
            what="an alarm evaluation after the restart",
        )
        assert set(owners(database_url).values()) == {"poller"}

        # Stopped while the database is gone: a clean exit, and the leases expire by themselves.
        database.stop_server()
        wait_until(lambda: log_text(log).count(FAILED) == 2, timeout=30, what="the poller to notice the second outage")
        assert stop(poller) == 0, log_text(log)
        assert "could not release this poller's leases" in log_text(log)
    finally:
        stop(poller)
        simulator.stop()
    text = log_text(log)
    assert text.count(FAILED) == 2, f"each outage is logged once, not each retry:\n{text}"
    assert text.count(RECOVERED) == 1, text
    assert "Traceback" in text.split(FAILED, 1)[1], "the first failure comes with its traceback"


# Made without its task (as before there were tasks): a worker's sweep enqueues one and runs it.
ABANDONED_BULK_CANCEL = """
from django.contrib.auth import get_user_model
from django.utils import timezone
from dashboard.models import BulkCancel, BulkCancelItem, StoredBatch
batches = list(StoredBatch.objects.filter(is_ended=False, status="in_progress").order_by("batch_id")[:2])
operation = BulkCancel.objects.create(
    created_at=timezone.now(), user=get_user_model().objects.get(username="operator"), actor="operator", total=2
)
for position, batch in enumerate(batches):
    BulkCancelItem.objects.create(
        operation=operation, position=position, account=batch.account, batch_id=batch.batch_id
    )
print(operation.pk)
"""


def bulk_cancel_states(database_url: str, operation_id: int) -> tuple[bool, list[str]]:
    with psycopg.connect(database_url) as connection:
        finished = connection.execute(
            "SELECT finished_at IS NOT NULL FROM dashboard_bulkcancel WHERE id = %s", [operation_id]
        ).fetchone()[0]
        states = connection.execute(
            "SELECT state FROM dashboard_bulkcancelitem WHERE operation_id = %s ORDER BY position", [operation_id]
        ).fetchall()
    return finished, [state for (state,) in states]


def test_the_poller_outlives_a_redis_restart(postgres_server, redis_factory, tmp_path):
    """Polling needs no cache; a bulk cancel's task does (the user's permissions are read through
    it): a worker finishes it once Redis is back (a run while it is down fails and is retried)."""
    cache = redis_factory()  # this test's own Redis: it stops it
    database_url = postgres_server.create_database(migrated=True)
    simulator = start_simulator(tmp_path)
    env = poller_env(simulator, database_url, REDIS_URL=cache.url())
    manage("ensure_operator", env=env)
    log = tmp_path / "poller.log"
    worker_log = tmp_path / "worker.log"
    worker = None
    poller = start_poller(env, "poller", log)
    try:
        wait_until(
            lambda: polls_every_account_again(log, 0) and stored(database_url) >= 32,
            timeout=60,
            what="the poller to fill the store",
        )

        cache.stop_server()
        assert not cache.ping()
        without_redis = {key: value for key, value in env.items() if key != "REDIS_URL"}
        operation_id = int(manage("shell", "-c", ABANDONED_BULK_CANCEL, env=without_redis).strip().splitlines()[-1])
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "work", "--name", "worker"],
            cwd=ROOT,
            env={**env, "WORKER_SWEEP_SECONDS": "0.5"},
            stdout=worker_log.open("w"),
            stderr=subprocess.STDOUT,
        )
        stopped_at = len(polled(log))
        wait_until(
            lambda: polls_every_account_again(log, stopped_at) or poller.poll() is not None,
            timeout=60,
            what="the poller to poll every account while Redis is down",
        )
        assert poller.poll() is None, f"the poller died with Redis:\n{log_text(log)}"

        assert cache.start_server(), "Redis did not start again on its port"
        wait_until(
            lambda: bulk_cancel_states(database_url, operation_id) == (True, ["canceled", "canceled"]),
            timeout=60,
            what=f"a worker to finish the bulk cancel once Redis is back:\n{log_text(worker_log)}",
        )
        back_at = len(polled(log))
        wait_until(
            lambda: polls_every_account_again(log, back_at),
            timeout=60,
            what="the poller to poll every account after the restart",
        )
        assert poller.poll() is None
    finally:
        returncode = stop(poller)
        worker_returncode = stop(worker) if worker is not None else 0
        simulator.stop()
    assert returncode == 0, log_text(log)
    assert worker_returncode == 0, log_text(worker_log)
    assert set(owners(database_url).values()) == {""}, "a poller stopped with SIGTERM releases its leases"


def procfile_for_this_venv(tmp_path: Path) -> Path:
    """The Procfile, its `.venv/bin/` programs those beside the interpreter running the tests."""
    path = tmp_path / "Procfile"
    path.write_text((ROOT / "Procfile").read_text().replace(".venv/bin/", f"{Path(sys.executable).parent}/"))
    return path


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_procfile_restarts_a_process_that_exits_and_stopping_honcho_stops_them_all(postgres_server, tmp_path):
    """`make run`: honcho and the Procfile. A poller killed outright is started again (honcho alone
    would stop the web server too); Ctrl-C stops every process, and the poller releases its leases."""
    database_url = postgres_server.create_database(migrated=True)
    simulator = start_simulator(tmp_path)
    env = poller_env(simulator, database_url, POLL_LEASE_SECONDS="2", WEB_WORKERS="1")
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    log = tmp_path / "honcho.log"
    procfile = procfile_for_this_venv(tmp_path)
    honcho = subprocess.Popen(
        [Path(sys.executable).parent / "honcho", "start", "--no-colour", "-f", procfile, "-d", ROOT, "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )

    def one_poller() -> str | None:
        held = set(owners(database_url).values())
        return held.pop() if len(held) == 1 and "" not in held else None

    try:
        first = wait_until(one_poller, timeout=60, what=f"the poller to hold every account:\n{log_text(log)}")
        wait_until(lambda: healthy(web), timeout=60, what="the web server to answer")
        first_pid = int(first.rsplit(":", 1)[1])
        os.kill(first_pid, signal.SIGKILL)  # no goodbye: its leases expire

        second = wait_until(
            lambda: (one_poller() or first) != first and one_poller(),
            timeout=60,
            what=f"a new poller process to take the accounts over:\n{log_text(log)}",
        )
        assert honcho.poll() is None and healthy(web), f"the web server went down with the poller:\n{log_text(log)}"
        assert "starting it again" in log_text(log)

        honcho.send_signal(signal.SIGINT)  # Ctrl-C
        honcho.wait(timeout=60)
    finally:
        stop(honcho)
        simulator.stop()
    assert not alive(int(second.rsplit(":", 1)[1])), "the poller stopped with honcho"
    assert not healthy(web), "so did the web server"
    assert set(owners(database_url).values()) == {""}, f"the poller released its leases:\n{log_text(log)}"
    assert log_text(log).count("starting it again") == 1, "nothing was started again after Ctrl-C"
