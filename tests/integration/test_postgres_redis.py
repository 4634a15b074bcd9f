"""The dashboard as it is deployed: gunicorn processes on one PostgreSQL and one Redis.

Everything here runs as real subprocesses (manage.py, gunicorn) on throwaway servers started by
tests/services.py, and talks to them over HTTP like a browser would.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.services import PYTHON, ROOT, AppServer, app_env, manage, manage_commands, start_app_server, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Fast simulator, fast polling: a canceled batch ends a second after the cancel, and the poller
# looks every second.
FAST = {
    "SIMULATOR_PROCESSING_SECONDS": "600",
    "SIMULATOR_CANCEL_SECONDS": "1",
    "SIMULATOR_VALIDATING_SECONDS": "0.3",
    "SIMULATOR_FINALIZING_SECONDS": "0.3",
    "SIMULATOR_HANG_SECONDS": "3",
    "ROW_POLL_SECONDS": "1",
    "POLL_SECONDS": "1",
    "POLL_IDLE_SECONDS": "1",
    "UPSTREAM_TIMEOUT_SECONDS": "5",
}
ROW_TAG = re.compile(r"<tr\b[^>]*\bclass=\"batch-row[^>]*>", re.S)
# A live row's own poll (the page's feed watches it; the row view still answers for one row).
LIVE_ROW_LINK = re.compile(r' data-live[^>]*>.*?<a [^>]*?href="(/batches/[^"]+/)"', re.S)


def row_tag(html: str) -> str:
    match = ROW_TAG.search(html)
    assert match, f"no batch row in: {html[:500]}"
    return match.group(0)


def row_status(html: str) -> str:
    match = re.search(r'data-status="([^"]*)"', row_tag(html))
    assert match, row_tag(html)
    return match.group(1)


def simulator_calls(access_log: Path) -> int:
    """Requests the simulator process answered: each one is an upstream call of an app server."""
    return sum(1 for line in access_log.read_text(errors="replace").splitlines() if " /simulator/" in line)


def sign_in(base_url: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=30)
    client.get("/login/")
    answer = client.post(
        "/login/",
        data={"username": "operator", "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
    )
    assert answer.status_code == 302, answer.text[:500]
    return client


@dataclass
class Stack:
    simulator: AppServer
    app1: AppServer
    app2: AppServer
    poller: subprocess.Popen
    access_log: Path
    password: str
    database_url: str


@pytest.fixture(scope="module")
def stack(postgres_server, redis_server, tmp_path_factory):
    """Two app servers, a simulator server (three gunicorn processes) and a poller process, on one
    PostgreSQL and one Redis."""
    workdir = tmp_path_factory.mktemp("stack")
    database_url = postgres_server.create_database(migrated=True)
    redis_server.client(db=2).flushdb()
    env = app_env(DATABASE_URL=database_url, REDIS_URL=redis_server.url(db=2), **FAST)
    access_log = workdir / "simulator-access.log"
    started: list[AppServer] = []

    def start(env: dict[str, str], name: str) -> AppServer:
        server = start_app_server(env, workdir / f"{name}.log")
        started.append(server)
        return server

    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            prepared = pool.submit(manage_commands, ("seed_demo",), ("ensure_operator",), env=env)
            sim = pool.submit(start, {**env, "ACCESS_LOG": str(access_log)}, "simulator").result()
            # The app servers send their upstream calls over HTTP to the simulator process.
            apps = [
                pool.submit(start, {**env, "SIMULATOR_BASE_URL": f"{sim.url}/simulator"}, f"app{n}") for n in (1, 2)
            ]
            app1, app2 = (future.result() for future in apps)
            password = prepared.result().split("password:")[1].split()[0]
        with (workdir / "poller.log").open("w") as log:
            poller = subprocess.Popen(
                [PYTHON, "manage.py", "poll", "--owner", "integration-poller"],
                cwd=ROOT,
                env={**env, "SIMULATOR_BASE_URL": f"{sim.url}/simulator"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        yield Stack(sim, app1, app2, poller, access_log, password, database_url)
    finally:
        if "poller" in locals():
            poller.terminate()
            poller.wait(timeout=15)
        for server in started:
            server.stop()


def test_migrate_and_check_on_postgresql_with_the_cache_in_redis(postgres_server, redis_server):
    database_url = postgres_server.create_database()
    redis_server.client(db=1).flushdb()
    env = app_env(DATABASE_URL=database_url, REDIS_URL=redis_server.url(db=1))

    manage("migrate", "--noinput", env=env)

    # `check` and `showmigrations` run in the process that probes the cache: one Django start, not three.
    token = secrets.randbelow(10**9)
    output = manage(
        "shell",
        "-c",
        "from django.core.management import call_command;"
        "call_command('check', databases=['default'], fail_level='WARNING');"  # raises (exit 1) on a warning
        "call_command('showmigrations');"
        "from django.core.cache import caches; from django.db import connection;"
        f"caches['default'].set('integration-probe', {token}, 60);"
        "print(connection.vendor, connection.settings_dict['NAME'], type(caches['default']).__name__)",
        env=env,
    )
    assert "System check identified no issues" in output
    migrations = output.split("System check identified no issues", 1)[1]
    assert "[X] 0001_initial" in migrations and "[ ]" not in migrations, "a migration is left unapplied"
    shown = output.splitlines()[-1].split()
    assert shown == ["postgresql", database_url.rsplit("/", 1)[1], "RedisCache"]
    # Django's Redis cache keys are ":<version>:<key>", and integers are stored as plain digits.
    assert redis_server.client(db=1).get(":1:integration-probe") == str(token).encode()

    with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as db:
        tables = {name for (name,) in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"dashboard_cancelattempt", "simulator_simbatch", "django_session", "auth_user"} <= tables


def create_batches(simulator: AppServer) -> dict[str, str]:
    """One long-running batch in each provider's ops account, made directly on the simulator."""
    api = f"{simulator.url}/simulator"
    slow = {"x-sim-processing-seconds": "600"}
    with httpx.Client(timeout=10) as client:
        anthropic = client.post(
            f"{api}/anthropic/v1/messages/batches",
            headers={"x-api-key": "sk-ant-sim-ops", "anthropic-version": "2023-06-01", **slow},
            json={
                "requests": [
                    {
                        "custom_id": "a1",
                        "params": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
                    }
                ]
            },
        )
        assert anthropic.status_code == 200, anthropic.text
        openai_auth = {"Authorization": "Bearer sk-sim-ops"}
        line = (
            '{"custom_id": "o1", "method": "POST", "url": "/v1/chat/completions", '
            '"body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}}\n'
        )
        upload = client.post(
            f"{api}/openai/v1/files",
            headers=openai_auth,
            data={"purpose": "batch"},
            files={"file": ("in.jsonl", line.encode(), "application/jsonl")},
        )
        assert upload.status_code == 200, upload.text
        openai = client.post(
            f"{api}/openai/v1/batches",
            headers={**openai_auth, **slow},
            json={"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        )
        assert openai.status_code == 200, openai.text
    return {"anthropic-ops": anthropic.json()["id"], "openai-ops": openai.json()["id"]}


def poll_rows(client: httpx.Client, rows: list[str], deadline: float, polls: list[int], lock: threading.Lock) -> None:
    """One viewer: every live row again and again until the deadline, as htmx would, only faster."""
    while time.monotonic() < deadline:
        for row in rows:
            answer = client.get(row, headers={"HX-Request": "true"})
            assert answer.status_code in (200, 286), answer.text[:300]
            with lock:
                polls[0] += 1
        time.sleep(0.02)


def polling_load(stack: Stack, clients: list[httpx.Client], rows: list[str], seconds: float) -> tuple[int, int]:
    """(row polls, upstream calls) for one viewer per client polling `rows` for `seconds`."""
    before = simulator_calls(stack.access_log)
    polls, lock = [0], threading.Lock()
    deadline = time.monotonic() + seconds
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        for future in [pool.submit(poll_rows, client, rows, deadline, polls, lock) for client in clients]:
            future.result()
    # Each upstream call finished (and was logged by the simulator) before the row that needed it
    # was answered, so the log is complete once every viewer is done.
    return polls[0], simulator_calls(stack.access_log) - before


def test_two_app_servers_share_one_postgresql_and_one_redis(stack: Stack):
    for server in (stack.app1, stack.app2):
        health = httpx.get(f"{server.url}/healthz", timeout=10)
        assert health.status_code == 200, health.text
        assert health.json() == {"status": "ok", "database": "ok", "cache": "ok"}

    batches = create_batches(stack.simulator)
    one = sign_in(stack.app1.url, stack.password)
    # Sessions live in PostgreSQL: server 2 knows the session that server 1 signed in.
    two = httpx.Client(base_url=stack.app2.url, timeout=30, cookies={"sessionid": one.cookies["sessionid"]})
    assert two.get("/audit/").status_code == 200

    # --- What the poller stores, both servers show; a cancel through one is seen through the other
    for account, batch_id in batches.items():
        row = f"/batches/{account}/{batch_id}/row"

        def stored(row=row) -> httpx.Response | None:
            answer = two.get(row, headers={"HX-Request": "true"})
            return answer if 'class="batch-row"' in answer.text else None  # stored and fresh

        before = wait_until(stored, timeout=20, interval=0.1, what=f"the poller to store {batch_id}")
        assert row_status(before.text) in ("validating", "in_progress"), row_tag(before.text)

        canceled = one.post(
            f"/batches/{account}/{batch_id}/cancel",
            headers={"HX-Request": "true", "X-CSRFToken": one.cookies["csrftoken"]},
        )
        assert canceled.status_code == 200, canceled.text[:500]
        assert row_status(canceled.text) in ("canceling", "cancelling"), row_tag(canceled.text)
        # The cancel wrote its answer into the store: server 2 shows it before any poll.
        assert row_status(two.get(row, headers={"HX-Request": "true"}).text) == row_status(canceled.text)

        def ended(row=row) -> httpx.Response | None:
            answer = two.get(row, headers={"HX-Request": "true"})
            tag = row_tag(answer.text)
            return answer if row_status(answer.text) in ("ended", "cancelled") and "hx-trigger" not in tag else None

        final = wait_until(ended, timeout=20, interval=0.1, what=f"{account}/{batch_id} to end on server 2")
        assert final.status_code == 286  # htmx: stop polling

    with psycopg.connect(stack.database_url.replace("postgres://", "postgresql://")) as db:
        audit = db.execute("SELECT batch_id, outcome, actor FROM dashboard_cancelattempt").fetchall()
    assert sorted(audit) == sorted((batch_id, "accepted", "operator") for batch_id in batches.values())

    # --- Viewers cost database reads only: no upstream call, on one server or spread over two ----
    listing = one.get("/")
    rows = [
        f"{link}row" for link in LIVE_ROW_LINK.findall(listing.text) if not any(b in link for b in batches.values())
    ]
    rows = rows[:8]
    assert len(rows) >= 4, "the seeded demo data should have live rows"
    stack.poller.terminate()  # from here on, every simulator request would be a web server's
    stack.poller.wait(timeout=15)
    viewers = [httpx.Client(base_url=stack.app1.url, timeout=30, cookies=one.cookies) for _ in range(2)]
    spread = [httpx.Client(base_url=server.url, timeout=30, cookies=one.cookies) for server in (stack.app1, stack.app2)]
    polls_one, calls_one = polling_load(stack, viewers, rows, 3.0)
    polls_two, calls_two = polling_load(stack, spread, rows, 3.0)
    listed = [client.get("/").status_code for client in (*viewers, *spread)]
    for client in (one, two, *viewers, *spread):
        client.close()
    assert listed == [200] * 4
    assert polls_one >= 4 * len(rows) and polls_two >= 4 * len(rows), (polls_one, polls_two)
    assert (calls_one, calls_two) == (0, 0), f"{calls_one} and {calls_two} upstream calls from the web servers"


def test_healthz_fails_while_redis_is_down(postgres_server, redis_factory, tmp_path):
    redis = redis_factory()  # this test's own Redis: stopping it breaks nobody else
    # /healthz only runs SELECT 1, so an empty database serves it.
    env = app_env(DATABASE_URL=postgres_server.create_database(), REDIS_URL=redis.url(), **FAST)
    server = start_app_server(env, tmp_path / "app.log")
    try:
        healthy = httpx.get(f"{server.url}/healthz", timeout=30)
        assert healthy.status_code == 200, healthy.text
        assert healthy.json()["status"] == "ok"

        redis.stop()
        failing = httpx.get(f"{server.url}/healthz", timeout=30)
        assert failing.status_code == 503, failing.text
        body = failing.json()
        assert body["status"] == "failing"
        assert body["database"] == "ok"
        assert body["cache"].startswith("unreachable"), body
        assert failing.headers["Cache-Control"] == "no-store"
    finally:
        server.stop()
