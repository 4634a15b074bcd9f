"""Notifications (dashboard/notifications/): the outbox written with the alarm change, channels and
their filters, and delivery to a real HTTP receiver on 127.0.0.1 (allowed by NOTIFY_ALLOWED_HOSTS,
refused without) that checks the signature with the README's own code: retried after a 500 with
backoff (a fake clock), never following a redirect, cut at the timeout without holding up polling
however slowly the receiver answers, its answer never kept, email through Django's locmem backend,
and no key or secret in any payload, request or log line. The destination policy's classes of
addresses: tests/notifications/test_destinations.py."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from dashboard.alarms import evaluation
from dashboard.batches import poller
from dashboard.models import Alarm, Delivery, NotificationChannel, StoredBatch
from dashboard.notifications import channels, destinations, dispatch, signing
from tests.factories import stored_batch

SECRET = "whsec_0123456789abcdefghijklmnopqrstuv"
NOW = timezone.now().replace(microsecond=0)  # near the real clock: the receiver checks the timestamp's age


# --- a real receiver ------------------------------------------------------------------------------


def readme_verify():
    """The README's check for receivers, exactly as it is printed there (so the two cannot drift apart)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("**Verifying a webhook.**") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    return namespace["verify"]


receiver_verifies = readme_verify()


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each POST with the next of `answers` ((status, headers, body), "hang", or "drip headers" /
    "drip body": its answer a byte at a time until the client goes away), then 200."""

    url: str = ""
    secret: str = SECRET
    answers: list = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    gone: threading.Event = field(default_factory=threading.Event)  # a dripped-to client closed its end


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        receiver: Receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        verified = receiver_verifies(receiver.secret, self.headers, body)
        receiver.seen.append(Seen(self.path, dict(self.headers.items()), body, verified))
        answer = receiver.answers.pop(0) if receiver.answers else (200, {}, b"ok")
        if answer == "hang":
            receiver.release.wait(15)
            return
        if answer in ("drip headers", "drip body"):
            self.drip(answer, receiver)
            return
        status, headers, content = answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def drip(self, answer: str, receiver: Receiver) -> None:
        """One byte every 0.2 s, for as long as the client stays (or the test lasts)."""
        head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100000\r\n"
        if answer == "drip body":
            self.wfile.write(head + b"\r\n")
            slowly = b"x" * 100000
        else:
            slowly = head + b"X-Slow: " + b"x" * 100000  # headers that never end
        try:
            for at in range(len(slowly)):
                if receiver.release.wait(0.2):
                    return
                self.wfile.write(slowly[at : at + 1])
        except OSError:  # the client closed the connection: a broken pipe, a reset
            receiver.gone.set()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    # shutdown() waits for the loop to look again: every 0.5 s by default, half a second per test
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server.receiver
    server.receiver.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def now_is_near_the_real_clock():
    """NOW, for each test: the receivers check a timestamp's age against the real clock, and a
    worker may run this module's last test minutes after importing it."""
    global NOW
    NOW = timezone.now().replace(microsecond=0)


@pytest.fixture(autouse=True)
def no_environment_channels(monkeypatch, settings):
    """No NOTIFY_* variable of the machine running the tests; quick retries."""
    for spec in channels.ENVIRONMENT_CHANNELS:
        for name in (spec.target_env, spec.secret_env, *(f"{spec.prefix}_{part}" for part in ("RULES", "ACCOUNTS"))):
            if name:
                monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{spec.prefix}_EVENTS", raising=False)
    monkeypatch.setenv("NOTIFY_TEST_SECRET", SECRET)
    settings.NOTIFY_RETRY_SECONDS = 30
    settings.NOTIFY_RETRY_MAX_SECONDS = 3600
    settings.NOTIFY_MAX_ATTEMPTS = 10
    settings.NOTIFY_TIMEOUT_SECONDS = 5
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]  # the receivers' address: refused without this
    settings.DASHBOARD_URL = ""


class FakeDNS:
    """What names resolve to, in the tests' say: `answer(name, [addresses], [addresses]...)`: the
    answers given in turn, the last one from then on. Any other name as the system resolves it."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.asked: list[str] = []
        self.system = destinations.resolve

    def answer(self, name: str, *answers: list[str]) -> None:
        self.answers[name] = list(answers)

    def resolve(self, host: str, port: int) -> list:
        self.asked.append(host)
        if host not in self.answers:
            return self.system(host, port)
        turns = self.answers[host]
        return [ipaddress.ip_address(address) for address in (turns.pop(0) if len(turns) > 1 else turns[0])]


@pytest.fixture
def dns(monkeypatch) -> FakeDNS:
    fake = FakeDNS()
    monkeypatch.setattr(destinations, "resolve", fake.resolve)
    return fake


def wait_for(condition, seconds: float = 10) -> bool:
    """Whether `condition()` holds within `seconds` (a generous bound, not a measure)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def open_sockets() -> int:
    """This process's open sockets (Linux: /proc/self/fd)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:  # closed meanwhile (the listing's own descriptor, too)
            pass
    return count


def webhook(receiver: Receiver, **fields) -> NotificationChannel:
    return NotificationChannel.objects.create(
        name=fields.pop("name", "ops webhook"),
        kind="webhook",
        target=receiver.url,
        secret_env="NOTIFY_TEST_SECRET",
        **fields,
    )


def running_batch(batch_id: str = "batch_abc", account: str = "openai-ops") -> StoredBatch:
    """A running OpenAI batch created an hour ago, read since then and now (the alarms' subject)."""
    return stored_batch(
        account, batch_id, created=NOW - timedelta(hours=1), first_seen_at=NOW - timedelta(hours=1), fetched_at=NOW
    )


def change(
    rule: str = "stuck",
    account: str = "openai-ops",
    *,
    batch: StoredBatch | None = None,
    detail: str = "No change in status or counts since 2026-01-01 10:00 UTC.",
    at=None,
    resolve: Alarm | None = None,
) -> Alarm:
    """An alarm opened (or `resolve` resolved) at `at` (NOW), handed to the hook as evaluate() does."""
    at = at or NOW
    with transaction.atomic():
        if resolve is not None:
            resolve.resolved_at = at
            resolve.save()
            evaluation.alarms_changed([], [resolve])
            return resolve
        alarm = Alarm.objects.create(
            rule=rule, account=account, batch=batch, opened_at=at, last_seen_at=at, detail=detail
        )
        evaluation.alarms_changed([alarm], [])
        return alarm


# --- the webhook: signed, retried after a 500, never redirected, cut at the timeout ------------------


def test_a_500_is_retried_after_the_backoff_and_the_receiver_verifies_both_signatures(db, receiver, settings):
    settings.DASHBOARD_URL = "https://dash.example.com/"
    channel = webhook(receiver)
    alarm = change(batch=running_batch())
    [delivery] = Delivery.objects.all()
    assert (delivery.channel, delivery.alarm, delivery.event, delivery.status) == (channel, alarm, "opened", "pending")
    receiver.answers = [(500, {}, b"upstream of the receiver broke")]

    assert len(dispatch.deliver_due(NOW)) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failing", 1, "HTTP 500"), "no answer kept"
    assert NOW + timedelta(seconds=15) <= delivery.next_attempt_at <= NOW + timedelta(seconds=30), "30 s, jittered"
    assert dispatch.deliver_due(NOW + timedelta(seconds=14)) == [], "not due before its backoff"
    assert len(receiver.seen) == 1

    dispatch.deliver_due(NOW + timedelta(seconds=31))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 2, "")
    assert delivery.sent_at == NOW + timedelta(seconds=31) and delivery.next_attempt_at is None
    assert dispatch.deliver_due(NOW + timedelta(hours=1)) == [], "sent once"

    first, second = receiver.seen
    assert first.verified and second.verified
    assert first.headers["X-Dashboard-Delivery"] == second.headers["X-Dashboard-Delivery"] == str(delivery.key)
    assert int(second.headers["X-Dashboard-Timestamp"]) - int(first.headers["X-Dashboard-Timestamp"]) == 31
    assert first.headers["X-Dashboard-Event"] == "opened"
    assert first.headers["Content-Type"] == "application/json"
    body = second.json()
    assert set(body) == {"event", "alarm", "sent_at"}
    assert body["event"] == "opened" and body["sent_at"] == (NOW + timedelta(seconds=31)).isoformat()[:19] + "Z"
    assert body["alarm"] == {
        "id": alarm.pk,
        "rule": "stuck",
        "rule_label": "stuck",
        "account": "openai-ops",
        "batch_id": "batch_abc",
        "detail": alarm.detail,
        "opened_at": NOW.isoformat()[:19] + "Z",
        "resolved_at": None,
        "url": "https://dash.example.com/batches/openai-ops/batch_abc/",
    }


def signed_headers(timestamp: int, delivery: str = "", event: str = "opened", body: bytes = b"") -> dict[str, str]:
    delivery = delivery or str(uuid.uuid4())
    return {
        "X-Dashboard-Timestamp": str(timestamp),
        "X-Dashboard-Delivery": delivery,
        "X-Dashboard-Event": event,
        "X-Dashboard-Signature": signing.signature(SECRET, timestamp, delivery, event, body),
    }


def both_verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    """What the README's check and notifications.verify say, which must agree."""
    readme, ours = receiver_verifies(secret, headers, body), signing.verify(secret, headers, body)
    assert readme == ours, "the README's check and verify() differ"
    return ours


def test_the_documented_check_refuses_a_tampered_body_a_wrong_secret_and_an_old_timestamp():
    body = b'{"event":"opened"}'
    now = int(time.time())
    headers = signed_headers(now, body=body)
    assert both_verify(headers, body)
    assert not both_verify(headers, body + b" ")
    assert not both_verify(headers, body, SECRET + "x")
    old = signed_headers(now - 301, body=body)
    assert not both_verify(old, body)
    assert signing.verify(SECRET, old, body, now=now - 200), "within five minutes of the receiver's clock"


def test_a_captured_webhook_replayed_with_another_delivery_id_or_event_is_refused(db, receiver):
    """Issue 16, row 9: the delivery id and the event are signed, so a replay within the five minutes
    can change neither (a receiver dropping repeats by id would otherwise take it as new); and a
    signature of the former format (over the timestamp and body alone) no longer verifies."""
    webhook(receiver)
    change()
    dispatch.deliver_due(NOW)
    [captured] = receiver.seen
    assert captured.verified and both_verify(captured.headers, captured.body)

    for header, value in (("X-Dashboard-Delivery", str(uuid.uuid4())), ("X-Dashboard-Event", "resolved")):
        assert not both_verify(captured.headers | {header: value}, captured.body), header
    assert captured.headers["X-Dashboard-Signature"].startswith("v2=")
    timestamp = captured.headers["X-Dashboard-Timestamp"]
    former = hmac.new(SECRET.encode(), timestamp.encode() + b"." + captured.body, hashlib.sha256).hexdigest()
    assert not both_verify(captured.headers | {"X-Dashboard-Signature": "v1=" + former}, captured.body)
    # The parts cannot be shifted either: the event's text moved into the delivery id, the body's into the event.
    delivery, event = captured.headers["X-Dashboard-Delivery"], captured.headers["X-Dashboard-Event"]
    head, _, rest = captured.body.partition(b":")
    shifted = {"X-Dashboard-Delivery": f"{delivery}:{event}", "X-Dashboard-Event": head.decode()}
    assert not both_verify(captured.headers | shifted, rest)


def test_a_redirect_is_a_failure_and_is_not_followed(db, receiver):
    webhook(receiver)
    change()
    receiver.answers = [(302, {"Location": receiver.url + "/elsewhere"}, b"")]
    dispatch.deliver_due(NOW)
    delivery = Delivery.objects.get()
    assert delivery.status == "failing" and delivery.last_error.startswith("HTTP 302: a redirect, not followed")
    assert [seen.path for seen in receiver.seen] == ["/hook"]


def test_the_poller_only_writes_the_outbox_and_each_attempt_is_a_task_a_worker_runs(
    transactional_db, receiver, settings
):
    from django_tasks_db.models import DBTaskResult

    from dashboard import background

    settings.NOTIFY_TIMEOUT_SECONDS = 1
    settings.ALARMS_ENABLED = False  # this alarm is no stored batch's: an evaluation would resolve it
    webhook(receiver)
    change()
    receiver.answers = ["hang"]

    assert poller.run_cycle(owner="a", now=NOW, accounts=[]) == []
    assert receiver.seen == [] and not DBTaskResult.objects.exists(), "the poller sends nothing, enqueues nothing"

    # A worker's sweep enqueues one task for the delivery due; the task's attempt is cut at the timeout.
    assert dispatch.enqueue_due(now=timezone.now()) == 1
    assert dispatch.enqueue_due(now=timezone.now()) == 0, "its task waits: not enqueued twice"
    delivery = Delivery.objects.get()
    first = DBTaskResult.objects.get(pk=delivery.task_id)
    assert (first.status, first.queue_name, first.args_kwargs["kwargs"]) == (
        "READY",
        "notifications",
        {"delivery_id": delivery.pk},
    )
    assert background.run_ready() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failing", 1, "no answer within 1 s")
    first.refresh_from_db()
    assert (first.status, first.return_value) == ("SUCCESSFUL", "failing")
    assert dispatch.enqueue_due(now=timezone.now()) == 0, "not due before its backoff"

    # Its backoff passed: the next sweep enqueues the next attempt, a task of its own, which sends it.
    settings.NOTIFY_TIMEOUT_SECONDS = 10  # the receiver answers at once now, however busy the machine
    Delivery.objects.update(next_attempt_at=timezone.now())
    assert dispatch.enqueue_due(now=timezone.now()) == 1
    delivery.refresh_from_db()
    assert delivery.task_id != first.pk
    assert background.run_ready() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert DBTaskResult.objects.get(pk=delivery.task_id).return_value == "sent"
    assert len(receiver.seen) == 2
    assert dispatch.enqueue_due(now=timezone.now() + timedelta(days=1)) == 0, "sent: nothing more"
    assert background.run_ready() == 0


def test_a_delivery_task_whose_worker_died_runs_again_once_its_claim_expired(transactional_db, receiver, settings):
    from django_tasks_db.models import DBTaskResult

    from dashboard import background

    settings.NOTIFY_TIMEOUT_SECONDS = 1
    webhook(receiver)
    change()
    dispatch.enqueue_due(now=timezone.now())
    delivery = Delivery.objects.get()
    task = DBTaskResult.objects.get(pk=delivery.task_id)
    task.claim("worker-dead")  # a worker took it, claimed the delivery, and was killed before sending
    claimed = dispatch.claim_due(
        timezone.now(), 1, token="dead", seconds=1 + settings.NOTIFY_CLAIM_MARGIN_SECONDS, ids=[delivery.pk]
    )
    assert [claimed_delivery.pk for claimed_delivery in claimed] == [delivery.pk]
    assert dispatch.enqueue_due(now=timezone.now()) == 0, "claimed: its worker may be alive"
    assert background.run_ready() == 0

    # The claim expires: due again, its task still "running" since before that: the same task runs again.
    later = timezone.now() + timedelta(seconds=1 + settings.NOTIFY_CLAIM_MARGIN_SECONDS + 1)
    Delivery.objects.update(next_attempt_at=timezone.now())
    DBTaskResult.objects.filter(pk=task.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    assert dispatch.enqueue_due(now=later) == 1
    assert dispatch.enqueue_due(now=later) == 0, "made ready once"
    assert background.run_ready(worker_id="alive") == 1
    delivery.refresh_from_db()
    task.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.task_id) == ("sent", 1, task.pk)
    assert (task.status, task.worker_ids) == ("SUCCESSFUL", ["worker-dead", "alive"])
    assert len(receiver.seen) == 1


@pytest.mark.parametrize("drip", ["drip headers", "drip body"])
def test_a_receiver_that_drips_its_answer_is_cut_at_the_timeout_with_its_socket_closed_and_the_thread_ended(
    db, receiver, settings, drip
):
    """Issue 16, row 8: a receiver sending its headers a byte at a time (each byte well within any
    read timeout) kept the send's thread and socket for as long as it dripped. Now the whole send is
    bounded: the connection is closed at the timeout and the thread ends; a body is never read."""
    settings.NOTIFY_TIMEOUT_SECONDS = 1
    webhook(receiver)
    change()
    receiver.answers = [drip]
    sockets = open_sockets()

    dispatch.deliver_due(NOW)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.last_error) == (
        "failing",
        "no answer within 1 s" if drip == "drip headers" else "HTTP 500",
    )
    assert wait_for(receiver.gone.is_set), "the receiver saw the connection closed while still dripping"
    assert wait_for(lambda: not any(thread.name == "notify-send" for thread in threading.enumerate())), "ended"
    assert wait_for(lambda: open_sockets() <= sockets), "no socket left open, on either side"


def test_a_delivery_is_given_up_after_the_attempts_and_says_so(db, receiver, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 3
    webhook(receiver)
    change()
    receiver.answers = [(503, {}, b"")] * 3
    at = NOW
    for _ in range(3):
        dispatch.deliver_due(at)
        at += timedelta(hours=2)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at, delivery.last_error) == (
        "given_up",
        3,
        None,
        "HTTP 503",
    )
    assert dispatch.deliver_due(at + timedelta(days=1)) == []


def test_backoff_doubles_with_jitter_up_to_its_ceiling(settings):
    settings.NOTIFY_RETRY_SECONDS = 30
    settings.NOTIFY_RETRY_MAX_SECONDS = 600
    assert [dispatch.backoff_seconds(n, rand=lambda: 1.0) for n in range(1, 8)] == [
        30,
        60,
        120,
        240,
        480,
        600,
        600,
    ]
    assert [dispatch.backoff_seconds(n, rand=lambda: 0.0) for n in (1, 2, 7)] == [15, 30, 300]


def test_a_webhook_whose_secret_is_not_set_is_never_sent_unsigned(db, receiver, monkeypatch):
    monkeypatch.delenv("NOTIFY_TEST_SECRET")
    webhook(receiver)
    change()
    dispatch.deliver_due(NOW)
    delivery = Delivery.objects.get()
    assert delivery.status == "failing" and "NOTIFY_TEST_SECRET is not set" in delivery.last_error
    assert receiver.seen == []


def test_pollers_delivering_at_once_send_each_delivery_once(transactional_db, receiver):
    webhook(receiver)
    change()
    change("error_rate")
    barrier = threading.Barrier(4)
    sent: list[int] = []

    def deliver() -> None:
        from django.db import connections

        try:
            barrier.wait()
            sent.extend(delivery.pk for delivery in dispatch.deliver_due(NOW))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(sent) == sorted(Delivery.objects.values_list("pk", flat=True))
    assert len(receiver.seen) == 2
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}


# --- where channels may point: public addresses, or those NOTIFY_ALLOWED_HOSTS allows -----------------

ADD_CHANNEL = "/admin/dashboard/notificationchannel/add/"


@pytest.mark.parametrize("target", ["http://169.254.169.254/", "http://[::ffff:a9fe:a9fe]/", "http://localhost:6379/"])
def test_the_admin_refuses_a_channel_pointing_inside(db, admin_client, settings, target):
    """Issue 16, row 7: these were accepted, and the poller POSTed there and kept the answer."""
    settings.NOTIFY_ALLOWED_HOSTS = []
    answer = admin_client.post(ADD_CHANNEL, {"name": "inside", "kind": "slack", "target": target, "enabled": "on"})
    assert answer.status_code == 200 and b"Refused: " in answer.content
    assert not NotificationChannel.objects.exists()


def test_the_admin_takes_a_local_receiver_only_once_allowed(db, admin_client, receiver, settings):
    fields = {"name": "local", "kind": "slack", "target": receiver.url, "enabled": "on"}
    settings.NOTIFY_ALLOWED_HOSTS = []
    refused = admin_client.post(ADD_CHANNEL, fields)
    assert b"127.0.0.1 resolves to an address that is not public" in refused.content
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]
    assert admin_client.post(ADD_CHANNEL, fields).status_code == 302
    assert NotificationChannel.objects.get().target == receiver.url


def test_a_receiver_inside_is_refused_at_send_unless_allowed_and_its_answer_is_never_kept(
    db, receiver, settings, caplog
):
    """Issue 16, row 7: a channel already in the database (or saved when its name resolved
    elsewhere) pointing at a loopback receiver is refused when the poller connects; allowed, it is
    sent, and of whatever an inner service answers only the status is kept, in the row and the log."""
    settings.NOTIFY_ALLOWED_HOSTS = []
    webhook(receiver)
    change()
    dispatch.deliver_due(NOW)
    delivery = Delivery.objects.get()
    assert delivery.status == "failing" and delivery.last_error.startswith(
        "refused: 127.0.0.1 resolves to an address that is not public"
    )
    assert receiver.seen == [], "never connected to"

    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]
    inner = b'{"Code": "Success", "AccessKeyId": "ASIA-INNER-SERVICE", "Token": "inner-token"}'
    receiver.answers = [(400, {}, inner)]
    dispatch.deliver_due(NOW + timedelta(hours=2))
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_error, len(receiver.seen)) == (2, "HTTP 400", 1)
    stored = json.dumps(list(Delivery.objects.values()), default=str)
    assert "ASIA-INNER" not in stored + caplog.text and "inner-token" not in stored + caplog.text


def test_channels_from_the_environment_obey_the_policy_too(db, receiver, settings, monkeypatch):
    settings.NOTIFY_ALLOWED_HOSTS = []
    monkeypatch.setenv("NOTIFY_SLACK_WEBHOOK_URL", receiver.url.replace("127.0.0.1", "localhost"))
    change()
    dispatch.deliver_due(NOW)
    assert Delivery.objects.get().last_error.startswith("refused: localhost resolves to an address that is not public")
    assert receiver.seen == []
    settings.NOTIFY_ALLOWED_HOSTS = ["localhost"]  # by name: whatever it resolves to
    dispatch.deliver_due(NOW + timedelta(hours=2))
    assert Delivery.objects.get().status == "sent" and len(receiver.seen) == 1


def test_a_name_rebound_inside_after_the_save_is_refused_and_a_send_connects_to_the_address_it_checked(
    db, admin_client, receiver, settings, dns
):
    """DNS rebinding: public when the channel is saved, loopback when the poller connects. And once
    allowed, the connection goes to the address resolved (once) and checked, under the URL's name."""
    settings.NOTIFY_ALLOWED_HOSTS = []
    port = receiver.url.split(":")[2].split("/")[0]
    dns.answer("hooks.example", ["93.184.215.14"], ["93.184.215.14", "127.0.0.1"])
    fields = {"name": "rebound", "kind": "slack", "target": f"http://hooks.example:{port}/hook", "enabled": "on"}
    assert admin_client.post(ADD_CHANNEL, fields).status_code == 302, "public when saved"
    change()
    dispatch.deliver_due(NOW)
    assert Delivery.objects.get().last_error.startswith("refused: hooks.example resolves to an address that is not")
    assert receiver.seen == []

    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]  # the address allowed, not the name: 93.184.215.14 is public
    dns.answer("hooks.example", ["127.0.0.1"])
    dns.asked.clear()
    dispatch.deliver_due(NOW + timedelta(hours=2))
    assert Delivery.objects.get().status == "sent"
    assert dns.asked == ["hooks.example"], "resolved once"
    [seen] = receiver.seen
    assert seen.headers["Host"] == f"hooks.example:{port}"


def test_tls_is_spoken_to_the_url_s_name_not_to_the_address(db, settings, dns):
    """The connection goes to the checked address, but TLS's SNI (and so the certificate checked) is
    the URL's host name. This receiver has no certificate: the handshake fails after the name is seen."""
    names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection, pytest.raises(ssl.SSLError):
            context.wrap_socket(connection, server_side=True)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    dns.answer("hooks.example", ["127.0.0.1"])
    NotificationChannel.objects.create(
        name="tls", kind="slack", target=f"https://hooks.example:{listener.getsockname()[1]}/hook"
    )
    change()
    dispatch.deliver_due(NOW)
    server.join(10)
    listener.close()
    assert names == ["hooks.example"]
    assert Delivery.objects.get().last_error.startswith("ConnectError: ")


# --- Slack and email ----------------------------------------------------------------------------------


def test_slack_gets_text_in_the_operator_s_words_with_upstream_s_markup_made_inert(db, receiver, settings):
    settings.DASHBOARD_URL = "https://dash.example.com"
    NotificationChannel.objects.create(name="slack", kind="slack", target=receiver.url)
    change(batch=running_batch(), detail="Quoted upstream: <!channel> <https://evil.example|click> & more")
    dispatch.deliver_due(NOW)
    assert Delivery.objects.get().status == "sent"
    [seen] = receiver.seen
    assert "X-Dashboard-Signature" not in seen.headers
    assert seen.json() == {
        "text": "*Alarm opened: stuck — openai-ops, batch batch_abc*\n"
        "Quoted upstream: &lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; more\n"
        "<https://dash.example.com/batches/openai-ops/batch_abc/|Open in the dashboard>"
    }


def test_email_goes_through_django_s_backend(db, mailoutbox, settings):
    settings.DASHBOARD_URL = "https://dash.example.com"
    settings.DEFAULT_FROM_EMAIL = "dashboard@example.com"
    NotificationChannel.objects.create(name="mail", kind="email", target="ops@example.com, oncall@example.com")
    alarm = change(batch=running_batch())
    change(resolve=alarm, at=NOW + timedelta(minutes=5))
    dispatch.deliver_due(NOW + timedelta(minutes=5))
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    opened, resolved = sorted(mailoutbox, key=lambda mail: "resolved" in mail.subject)
    assert opened.subject == "[batch dashboard] Alarm opened: stuck — openai-ops, batch batch_abc"
    assert resolved.subject == "[batch dashboard] Alarm resolved: stuck — openai-ops, batch batch_abc"
    assert opened.to == ["ops@example.com", "oncall@example.com"] and opened.from_email == "dashboard@example.com"
    assert alarm.detail in opened.body and "https://dash.example.com/batches/openai-ops/batch_abc/" in opened.body
    assert "Resolved: " in resolved.body


def test_an_email_subject_cannot_carry_a_header(db, mailoutbox):
    NotificationChannel.objects.create(name="mail", kind="email", target="ops@example.com")
    batch = running_batch()
    # No provider module reads such an id, so the poller never stores one: written over the stored row.
    StoredBatch.objects.filter(pk=batch.pk).update(batch_id="batch_x\r\nBcc: someone@evil.example")
    change(batch=batch)
    dispatch.deliver_due(NOW)
    [mail] = mailoutbox
    assert "\n" not in mail.subject and mail.bcc == [] and Delivery.objects.get().status == "sent"


# --- the outbox: written with the alarm change, per matching channel ------------------------------------


def test_evaluate_writes_the_outbox_in_the_alarm_s_transaction_and_a_rollback_leaves_none(db, receiver, monkeypatch):
    from tests.alarms.store_rows import openai_row

    webhook(receiver)
    openai_row(1, created=NOW - timedelta(hours=1), at=NOW, completed=10)
    real = evaluation.alarms_changed

    def then_fail(opened, resolved):
        real(opened, resolved)
        assert Delivery.objects.count() == 1, "written, inside the transaction"
        raise RuntimeError("the evaluation fails after the outbox was written")

    monkeypatch.setattr(evaluation, "alarms_changed", then_fail)
    with pytest.raises(RuntimeError):
        evaluation.evaluate(NOW, accounts=["openai-ops"])
    assert Alarm.objects.count() == 0 and Delivery.objects.count() == 0

    monkeypatch.setattr(evaluation, "alarms_changed", real)
    [alarm] = evaluation.evaluate(NOW, accounts=["openai-ops"]).opened
    [delivery] = Delivery.objects.all()
    assert delivery.alarm_id == alarm.pk and delivery.payload["alarm"]["batch_id"] == "batch_" + "0" * 31 + "1"
    assert delivery.next_attempt_at == delivery.created_at == NOW


def test_each_channel_gets_the_rules_accounts_and_events_it_asks_for(db, receiver):
    every = webhook(receiver, name="every")
    stuck = webhook(receiver, name="stuck only", rules=["stuck"])
    anthropic = webhook(receiver, name="anthropic only", accounts=["anthropic-ops"])
    resolved = webhook(receiver, name="resolved only", events=["resolved"])
    webhook(receiver, name="off", enabled=False)

    first = change("stuck", "openai-ops")
    change("error_rate", "anthropic-ops")
    change(resolve=first, at=NOW + timedelta(minutes=1))

    def got(channel):
        return sorted(
            (d.payload["alarm"]["rule"], d.payload["alarm"]["account"], d.event)
            for d in Delivery.objects.filter(channel=channel)
        )

    assert got(every) == [
        ("error_rate", "anthropic-ops", "opened"),
        ("stuck", "openai-ops", "opened"),
        ("stuck", "openai-ops", "resolved"),
    ]
    assert got(stuck) == [("stuck", "openai-ops", "opened"), ("stuck", "openai-ops", "resolved")]
    assert got(anthropic) == [("error_rate", "anthropic-ops", "opened")]
    assert got(resolved) == [("stuck", "openai-ops", "resolved")]
    assert Delivery.objects.filter(channel__name="off").count() == 0


def test_no_channel_no_outbox_and_a_disabled_channel_s_waiting_deliveries_wait(db, receiver):
    change()
    assert Delivery.objects.count() == 0
    channel = webhook(receiver)
    change("error_rate")
    NotificationChannel.objects.filter(pk=channel.pk).update(enabled=False)
    assert dispatch.deliver_due(NOW) == [] and receiver.seen == []
    NotificationChannel.objects.filter(pk=channel.pk).update(enabled=True)
    assert [d.status for d in dispatch.deliver_due(NOW)] == ["sent"]


def test_channels_from_the_environment_hold_no_secret_and_follow_the_variables(db, receiver, monkeypatch, mailoutbox):
    slack_url = receiver.url + "/services/T0/B0/slack-token-123456"
    monkeypatch.setenv("NOTIFY_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("NOTIFY_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("NOTIFY_WEBHOOK_RULES", "stuck, ended_badly")
    monkeypatch.setenv("NOTIFY_SLACK_WEBHOOK_URL", slack_url)
    monkeypatch.setenv("NOTIFY_SLACK_EVENTS", "opened")
    monkeypatch.setenv("NOTIFY_EMAIL_TO", "ops@example.com")
    monkeypatch.setenv("NOTIFY_EMAIL_ACCOUNTS", "openai-ops")

    change("stuck")
    rows = {row.name: row for row in NotificationChannel.objects.all()}
    assert set(rows) == {"env:webhook", "env:slack", "env:email"}
    assert all(row.from_environment and row.enabled and row.target == "" for row in rows.values())
    webhook_row = rows["env:webhook"]
    assert (webhook_row.target_env, webhook_row.secret_env) == ("NOTIFY_WEBHOOK_URL", "NOTIFY_WEBHOOK_SECRET")
    assert webhook_row.rules == ["stuck", "ended_badly"] and rows["env:slack"].events == ["opened"]
    assert rows["env:email"].accounts == ["openai-ops"]
    stored = json.dumps(list(NotificationChannel.objects.values()), default=str)
    assert SECRET not in stored and "slack-token" not in stored and receiver.url not in stored

    assert sorted(d.status for d in dispatch.deliver_due(NOW)) == ["sent", "sent", "sent"]
    assert sorted(seen.path for seen in receiver.seen) == ["/hook", "/hook/services/T0/B0/slack-token-123456"]
    assert [seen.verified for seen in receiver.seen if seen.path == "/hook"] == [True]
    assert [mail.to for mail in mailoutbox] == [["ops@example.com"]]

    monkeypatch.delenv("NOTIFY_SLACK_WEBHOOK_URL")
    change("error_rate", "anthropic-ops")
    assert not NotificationChannel.objects.get(name="env:slack").enabled, "its variable is gone"
    assert Delivery.objects.filter(channel__name="env:slack").count() == 1
    assert Delivery.objects.filter(channel__name="env:webhook").count() == 1, "not its rule"
    assert Delivery.objects.filter(channel__name="env:email").count() == 1, "not its account"


def test_a_misspelt_rule_in_the_variables_matches_nothing_and_is_warned_of(db, receiver, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("NOTIFY_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("NOTIFY_WEBHOOK_RULES", "stuk")
    change("stuck")
    assert NotificationChannel.objects.get(name="env:webhook").rules == ["stuk"]
    assert Delivery.objects.count() == 0, "a typo never widens the filter to every rule"
    assert "channel env:webhook names ['stuk'], no alarm rule or event: it matches nothing" in caplog.text


# --- no key, no secret: in no payload, no request, no stored error, no log line --------------------


def test_no_api_key_or_secret_appears_in_a_payload_a_request_an_error_or_a_log_line(
    db, receiver, monkeypatch, caplog, mailoutbox
):
    api_key = "sk-proj-notifytest-0123456789abcdefghijklmnopqrstuvwxyz"
    slack_url = receiver.url + "/services/T000/B000/slack-credential-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    monkeypatch.setenv("NOTIFY_OPS_SLACK_URL", slack_url)
    caplog.set_level(logging.DEBUG)
    webhook(receiver)
    NotificationChannel.objects.create(name="slack", kind="slack", target_env="NOTIFY_OPS_SLACK_URL")
    NotificationChannel.objects.create(name="mail", kind="email", target="ops@example.com")
    # A detail that quotes the key (upstream echoing it) is redacted as the delivery is written.
    change(batch=running_batch(account="openai-default"), account="openai-default", detail=f"upstream said: {api_key}")
    # Receivers that quote the secrets back: their answers are neither stored nor logged.
    echo = f"bad request {api_key} {SECRET} {slack_url}".encode()
    receiver.answers = [(400, {}, echo), (400, {}, echo)]

    tried = dispatch.deliver_due(NOW)
    assert sorted(d.status for d in tried) == ["failing", "failing", "sent"]
    assert [d.last_error for d in tried if d.status == "failing"] == ["HTTP 400", "HTTP 400"]

    everything = "\n".join(
        [
            caplog.text,
            json.dumps(list(Delivery.objects.values()), default=str),
            json.dumps(list(NotificationChannel.objects.values()), default=str),
            *(seen.body.decode() + json.dumps(seen.headers) for seen in receiver.seen),
            *(mail.subject + mail.body for mail in mailoutbox),
        ]
    )
    assert "upstream said: [redacted]" in everything
    for secret in (api_key, api_key[:16], SECRET, SECRET[:16], "slack-credential"):
        assert secret not in everything
    assert "notification" in caplog.text and "failed" in caplog.text


# --- the admin: channels edited, deliveries read and retried by staff ------------------------------------


def test_staff_retry_makes_failing_and_given_up_deliveries_due_now_but_never_resends(db, receiver, admin_client):
    webhook(receiver)
    failing, given_up, sent = change("stuck"), change("error_rate"), change("expiring")
    Delivery.objects.filter(alarm=failing).update(
        status="failing", attempts=2, next_attempt_at=NOW + timedelta(hours=1)
    )
    Delivery.objects.filter(alarm=given_up).update(status="given_up", attempts=10, next_attempt_at=None)
    Delivery.objects.filter(alarm=sent).update(status="sent", attempts=1, next_attempt_at=None, sent_at=NOW)

    page = admin_client.get("/admin/dashboard/delivery/")
    assert page.status_code == 200 and b"Retry the selected deliveries now" in page.content
    before = timezone.now()
    answer = admin_client.post(
        "/admin/dashboard/delivery/",
        {"action": "retry_now", "_selected_action": list(Delivery.objects.values_list("pk", flat=True))},
        follow=True,
    )
    assert b"2 deliveries will be sent within seconds, by a worker. 1 already sent: not sent again." in answer.content
    states = {d.alarm_id: (d.status, d.attempts) for d in Delivery.objects.all()}
    assert states == {failing.pk: ("pending", 2), given_up.pk: ("pending", 10), sent.pk: ("sent", 1)}
    assert all(before <= d.next_attempt_at <= timezone.now() for d in Delivery.objects.exclude(status="sent"))
    assert admin_client.get(f"/admin/dashboard/delivery/{Delivery.objects.first().pk}/change/").status_code == 200
    # Made due, each gets a task from the next sweep; the list shows its status, linked to the task's page.
    assert dispatch.enqueue_due(now=timezone.now()) == 2
    listing = admin_client.get("/admin/dashboard/delivery/").content.decode()
    for delivery in Delivery.objects.exclude(status="sent"):
        link = f'<a href="/admin/django_tasks_database/dbtaskresult/{delivery.task_id}/change/">ready</a>'
        assert link in listing
        assert (
            admin_client.get(f"/admin/django_tasks_database/dbtaskresult/{delivery.task_id}/change/").status_code == 200
        )


def test_staff_without_the_permission_cannot_retry(db, receiver, client):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    staff = get_user_model().objects.create_user(username="staff", password=None, is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_delivery"))
    client.force_login(staff)
    webhook(receiver)
    change()
    Delivery.objects.update(status="given_up", next_attempt_at=None)
    page = client.get("/admin/dashboard/delivery/")
    assert page.status_code == 200 and b"retry_now" not in page.content
    client.post("/admin/dashboard/delivery/", {"action": "retry_now", "_selected_action": [Delivery.objects.get().pk]})
    assert Delivery.objects.get().status == "given_up"


def test_the_admin_edits_channels_and_never_shows_a_slack_url_or_a_secret(db, admin_client, monkeypatch, dns):
    dns.answer("example.com", ["93.184.215.14"])
    url = ADD_CHANNEL
    refused = admin_client.post(
        url, {"name": "hook", "kind": "webhook", "target": "https://example.com/hook", "secret_env": "SECRET_KEY"}
    )
    assert refused.status_code == 200 and b"starting with NOTIFY_" in refused.content
    unsigned = admin_client.post(url, {"name": "hook", "kind": "webhook", "target": "https://example.com/hook"})
    assert b"A webhook is always signed" in unsigned.content
    reserved = admin_client.post(url, {"name": "env:mine", "kind": "email", "target": "a@example.com"})
    assert b"the environment" in reserved.content
    made = admin_client.post(
        url,
        {
            "name": "hook",
            "kind": "webhook",
            "target": "https://example.com/hook",
            "secret_env": "NOTIFY_HOOK_SECRET",
            "rules": ["stuck", "expiring"],
            "accounts": "openai-ops, anthropic-ops",
            "events": ["opened"],
            "enabled": "on",
        },
    )
    assert made.status_code == 302
    channel = NotificationChannel.objects.get(name="hook")
    assert (channel.rules, channel.accounts, channel.events) == (
        ["stuck", "expiring"],
        ["openai-ops", "anthropic-ops"],
        ["opened"],
    )
    NotificationChannel.objects.create(
        name="slack", kind="slack", target="https://hooks.slack.example/services/T0/B0/slack-token-abcdef"
    )
    listing = admin_client.get("/admin/dashboard/notificationchannel/")
    assert b"hooks.slack.example" in listing.content and b"slack-token" not in listing.content

    monkeypatch.setenv("NOTIFY_EMAIL_TO", "ops@example.com")
    channels.channels()
    from_env = NotificationChannel.objects.get(name="env:email")
    page = admin_client.get(f"/admin/dashboard/notificationchannel/{from_env.pk}/change/")
    assert page.status_code == 200 and b'name="target_env"' not in page.content, "read-only"
