"""Background work in real worker processes (`manage.py work`, dashboard/background.py): a bulk cancel
over the simulator's HTTP and a webhook delivery each survive their worker being SIGKILLed mid-call;
a second worker runs the same task again, and nothing is canceled twice or lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.signals import request_started
from django.db import connection, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from dashboard.accounts import configured_accounts
from dashboard.alarms import evaluation
from dashboard.batches.selectors import ListFilters
from dashboard.bulk import operations
from dashboard.models import Alarm, BulkCancel, BulkCancelItem, CancelAttempt, Delivery, NotificationChannel
from tests.factories import anthropic_batch, openai_batch, poll_store
from tests.services import ROOT, app_env

pytestmark = pytest.mark.slow

WAIT = 60  # seconds: a claim expiring, a sweep, a loaded machine
SECRET = "whsec_0123456789abcdefghijklmnopqrstuv"


class Worker:
    """`manage.py work` as a process of its own on the test's database file."""

    def __init__(self, name: str, log: Path, **env: str) -> None:
        database = connection.settings_dict["NAME"]
        assert Path(database).is_file(), "a worker process needs a file database it can open too"
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "work", "--name", name],
                cwd=ROOT,
                env=app_env(SQLITE_PATH=database, WORKER_SWEEP_SECONDS="0.5", **env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        assert self.process.returncode in (0, -signal.SIGKILL), self.log.read_text()


def wait_for(condition, what: str, worker: Worker | None = None) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {WAIT} s" + (f"\n{worker.log.read_text()}" if worker else ""))
        time.sleep(0.1)


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def start(name: str, **env: str) -> Worker:
        started.append(Worker(name, tmp_path / f"{name}.log", **env))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


def test_a_bulk_cancel_whose_worker_is_killed_mid_call_is_finished_by_another_canceling_each_batch_once(
    dashboard_upstream, operator, anthropic_client, openai_client, workers
):
    made = [anthropic_batch(anthropic_client, seconds=600).id for _ in range(2)]
    made += [openai_batch(openai_client, seconds=600).id for _ in range(2)]
    poll_store()
    # What the simulator is asked to cancel, as its server receives it; the first cancel is held 3 s
    # (the simulator then cancels the batch, its caller gone): the worker is killed meanwhile.
    cancels: list[str] = []
    first_cancel = threading.Event()

    def received(sender, environ, **kwargs) -> None:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "POST" and path.endswith("/cancel"):
            cancels.append(path.split("/")[-2])
            if len(cancels) == 1:
                first_cancel.set()
                time.sleep(3)

    request_started.connect(received, weak=False)
    try:
        shown = operations.preview(user=operator, accounts=configured_accounts(), filters=ListFilters())
        selected = [operations.batch_key(row["account"], row["batch_id"]) for row in shown.batches]
        assert sorted(key.split("/")[1] for key in selected) == sorted(made)
        operation, _ = operations.create(
            user=operator, accounts=configured_accounts(), token=shown.token, selected=selected, typed="4"
        )
        env = {
            "SIMULATOR_BASE_URL": dashboard_upstream,
            "UPSTREAM_TIMEOUT_SECONDS": "10",
            "BULK_CANCEL_CLAIM_SECONDS": "3",
        }
        doomed = workers("doomed", **env)
        assert first_cancel.wait(WAIT), doomed.log.read_text()
        doomed.kill()  # mid-call: its cancel is on the wire
        task = DBTaskResult.objects.get(pk=operation.task_id)
        assert task.status == "RUNNING" and [worker.split(":")[0] for worker in task.worker_ids] == ["doomed"]
        assert BulkCancelItem.objects.filter(operation=operation, state="pending").count() == 4

        rescuer = workers("rescuer", **env)
        wait_for(
            lambda: BulkCancel.objects.filter(pk=operation.pk, finished_at__isnull=False).exists(),
            "the operation finished by the second worker",
            rescuer,
        )
    finally:
        request_started.disconnect(received)

    assert sorted(cancels) == sorted(made), "each batch asked to cancel exactly once"
    items = list(BulkCancelItem.objects.filter(operation=operation).select_related("attempt").order_by("position"))
    assert [item.state for item in items] == ["canceled"] * 4, [(item.state, item.message) for item in items]
    killed = next(item for item in items if item.batch_id == cancels[0])
    assert killed.attempt.outcome == "accepted" and killed.attempt.reconciled_at is not None
    assert CancelAttempt.objects.filter(via="bulk").count() == 4
    task.refresh_from_db()
    wait_for(lambda: DBTaskResult.objects.filter(pk=task.pk, status="SUCCESSFUL").exists(), "the task recorded done")
    task.refresh_from_db()
    assert [worker.split(":")[0] for worker in task.worker_ids] == ["doomed", "rescuer"]


class HangingOnce(BaseHTTPRequestHandler):
    """The first POST is held until the test lets go (its worker is killed meanwhile); then 200."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        seen = self.server.seen
        seen.append(self.headers.get("X-Dashboard-Delivery", ""))
        if len(seen) == 1:
            self.server.arrived.set()
            self.server.release.wait(WAIT)
            return  # no answer: the connection just closes
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hanging_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), HangingOnce)
    server.daemon_threads = True
    server.seen, server.arrived, server.release = [], threading.Event(), threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def test_a_delivery_whose_worker_is_killed_mid_send_is_sent_by_another_once_its_claim_expired(
    transactional_db, hanging_receiver, workers
):
    url = f"http://127.0.0.1:{hanging_receiver.server_address[1]}/hook"
    NotificationChannel.objects.create(name="ops", kind="webhook", target=url, secret_env="NOTIFY_TEST_SECRET")
    with transaction.atomic():  # as an evaluation writes the outbox
        alarm = Alarm.objects.create(
            rule="stuck", account="openai-ops", opened_at=timezone.now(), last_seen_at=timezone.now(), detail="stuck"
        )
        evaluation.alarms_changed([alarm], [])
    delivery = Delivery.objects.get()
    env = {
        "NOTIFY_TEST_SECRET": SECRET,
        "NOTIFY_ALLOWED_HOSTS": "127.0.0.1",
        "NOTIFY_TIMEOUT_SECONDS": "10",
        "NOTIFY_CLAIM_MARGIN_SECONDS": "1",
    }
    doomed = workers("doomed", **env)
    assert hanging_receiver.arrived.wait(WAIT), doomed.log.read_text()
    doomed.kill()  # mid-send: the receiver holds the request
    hanging_receiver.release.set()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0), "the killed attempt recorded nothing"
    task = DBTaskResult.objects.get(pk=delivery.task_id)
    assert task.status == "RUNNING"
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=5), "claimed past the send's limit"

    rescuer = workers("rescuer", **env)
    wait_for(lambda: Delivery.objects.filter(pk=delivery.pk, status="sent").exists(), "sent by the second", rescuer)
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.task_id == task.pk
    assert hanging_receiver.seen == [str(delivery.key)] * 2, "the same delivery, tried twice, sent once"
    wait_for(lambda: DBTaskResult.objects.filter(pk=task.pk, status="SUCCESSFUL").exists(), "the task recorded done")
    task.refresh_from_db()
    assert [worker.split(":")[0] for worker in task.worker_ids] == ["doomed", "rescuer"]
    time.sleep(1.5)  # a few more sweeps: nothing is sent again
    assert len(hanging_receiver.seen) == 2
