"""Background work on a real PostgreSQL, as production runs it: three worker processes (`manage.py
work`) share one queue (tests/integration/background_work.py makes 8 bulk cancels and 6 deliveries
at once); every task runs once, every batch is canceled once, and every delivery, refused by its
receiver the first time, is retried and sent, each by whichever worker took it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from tests.services import ROOT, app_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT = 90  # seconds: three workers starting on a loaded machine, a retry's backoff
SECRET = "whsec_0123456789abcdefghijklmnopqrstuv"


class RefusesEachDeliveryOnce(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        key = self.headers.get("X-Dashboard-Delivery", "")
        with self.server.lock:
            first = key not in self.server.seen
            self.server.seen.append(key)
        self.send_response(503 if first else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusesEachDeliveryOnce)
    server.daemon_threads = True
    server.seen, server.lock = [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_three_workers_share_the_queue_each_task_run_once_each_batch_canceled_once_each_delivery_retried_and_sent(
    postgres_server, receiver, tmp_path
):
    database_url = postgres_server.create_database(migrated=True)
    env = app_env(
        DATABASE_URL=database_url,
        NOTIFY_TEST_SECRET=SECRET,
        NOTIFY_ALLOWED_HOSTS="127.0.0.1",
        NOTIFY_RETRY_SECONDS="0.5",
        WORKER_SWEEP_SECONDS="0.3",
    )
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    made = subprocess.run(
        [sys.executable, "-m", "tests.integration.background_work", url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, f"{made.stdout}\n{made.stderr}"
    work = json.loads(made.stdout.strip().splitlines()[-1])
    assert len(work["operations"]) == 8

    logs = [tmp_path / f"worker-{number}.log" for number in range(3)]
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "work", "--name", f"w{number}"],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for number, log in enumerate(logs)
    ]

    def query(sql: str):
        with psycopg.connect(database_url) as db:
            return db.execute(sql).fetchall()

    try:
        deadline = time.monotonic() + WAIT
        while True:
            pending = query(
                "SELECT (SELECT count(*) FROM dashboard_bulkcancel WHERE finished_at IS NULL)"
                " + (SELECT count(*) FROM dashboard_delivery WHERE status <> 'sent')"
            )[0][0]
            if not pending:
                break
            assert time.monotonic() < deadline, f"{pending} left undone:\n" + "\n".join(
                log.read_text()[-3000:] for log in logs
            )
            time.sleep(0.3)
    finally:
        for worker in workers:
            worker.terminate()
        codes = [worker.wait(60) for worker in workers]
    assert codes == [0, 0, 0], "\n".join(log.read_text()[-3000:] for log in logs)

    attempts = query(
        "SELECT batch_id, count(*), count(*) FILTER (WHERE outcome = 'accepted') FROM dashboard_cancelattempt"
        " GROUP BY batch_id"
    )
    assert sorted(batch for batch, _, _ in attempts) == sorted(work["batches"])
    assert {(made, accepted) for _, made, accepted in attempts} == {(1, 1)}, "each batch canceled once"
    assert {state for (state,) in query("SELECT state FROM dashboard_bulkcancelitem")} == {"canceled"}

    deliveries = query("SELECT key::text, attempts FROM dashboard_delivery")
    assert len(deliveries) == 6 and {attempts for _, attempts in deliveries} == {2}
    assert sorted(receiver.seen) == sorted([key for key, _ in deliveries] * 2), "each refused once, then sent once"

    tasks = query("SELECT queue_name, status, worker_ids FROM django_tasks_database_dbtaskresult")
    bulk = [(status, worker_ids) for queue, status, worker_ids in tasks if queue == "bulk"]
    assert len(bulk) == 8 and all(status == "SUCCESSFUL" and len(ids) == 1 for status, ids in bulk)
    sends = [(status, worker_ids) for queue, status, worker_ids in tasks if queue == "notifications"]
    assert len(sends) == 12, "a task per attempt: two each"
    assert all(status == "SUCCESSFUL" and len(ids) == 1 for status, ids in sends)
