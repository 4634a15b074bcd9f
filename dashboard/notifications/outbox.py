"""Notifications: alarm changes sent to Slack-compatible webhooks, signed JSON webhooks and email.

**The outbox.** `alarms.evaluate` hands what opened and resolved to `alarms.alarms_changed`, inside
its transaction; that calls `write_outbox`, which writes one `Delivery` row per matching channel and
event. A notification is therefore recorded if and only if its alarm change is (a rolled-back
evaluation leaves none), and nothing is sent inside the transaction.

**Sending.** `deliver_due(now, limit)` claims the deliveries that are due, sends each on a thread of
its own (all at once, so one slow receiver delays none of the others) and waits for them no longer
than NOTIFY_TIMEOUT_SECONDS in all, then records each outcome: sent, or failing with the next try
after an exponential backoff with jitter, or given up after NOTIFY_MAX_ATTEMPTS. Claiming is a
conditional UPDATE that moves `next_attempt_at` past the round's time limit and stamps the round's
token (`SELECT … FOR UPDATE SKIP LOCKED` first on PostgreSQL, as the poller's leases): two pollers
never send one delivery at the same moment, and one killed mid-send leaves it due again shortly
after. Delivery is at least once: a receiver may see a delivery twice (a 2xx lost on the way back),
and tells by its `X-Dashboard-Delivery` id, the same on every try.

**In the poller.** After each cycle `deliver_in_background(now)` starts one round on a thread of its
own, if anything is due and the previous round has finished: polling never waits for a receiver
(a round lasts at most NOTIFY_TIMEOUT_SECONDS, whatever the receivers do), and every poller may
send, the claims keep them apart. The thread is not a daemon: `poll --once` and a stopping poller
finish the round they started (a few seconds at most) before the process exits.

**HTTP.** httpcore, a fresh connection pool per send, through `destinations.GuardedBackend`: the
destination policy checked on the very address connected to (no loopback, private, link-local or
metadata address unless NOTIFY_ALLOWED_HOSTS allows it), and every connect, read, write and TLS
handshake bounded by what is left of NOTIFY_TIMEOUT_SECONDS, so the whole send is, drip or not. No
redirect is followed (a 3xx is a failure: the URL is what an operator configured, a redirect is not),
no proxy is used (the policy could not see where it connects). Anything but a 2xx is a failure; of
the answer only its status is kept (`HTTP 500`): its body is never read, so it can never be read
back from `last_error` or the log.

**Secrets.** A webhook's signing secret and a URL that is a credential (a Slack webhook's) are read
from environment variables named NOTIFY_* at send time; the database holds their names only. No
payload holds a secret (the alarm's detail is redacted once more as it is written); logs name the
channel and the delivery, never a URL or a secret, and error texts are redacted of every account
key, every channel secret and the channel's URL.

Signature (documented in the README, with a receiver's check): `X-Dashboard-Signature: v2=<hex
HMAC-SHA256(secret, "v2:<timestamp>:<delivery id>:<event>:<raw body>")>`, the three from the
X-Dashboard-Timestamp, -Delivery and -Event headers: none of them can be changed in a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpcore
import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, connections, transaction
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from ..accounts import configured_secrets
from ..models import Alarm, AlarmRule, Delivery, NotificationChannel, NotificationEvent, StoredBatch
from ..redaction import redact
from .destinations import DestinationRefused, GuardedBackend

logger = logging.getLogger(__name__)

Kind = NotificationChannel.Kind
Status = Delivery.Status
Event = NotificationEvent

SIGNATURE_VERSION = "v2"
TIMESTAMP_HEADER = "X-Dashboard-Timestamp"
SIGNATURE_HEADER = "X-Dashboard-Signature"
DELIVERY_HEADER = "X-Dashboard-Delivery"
EVENT_HEADER = "X-Dashboard-Event"
USER_AGENT = "batch-dashboard-notifications/1"
MIN_SECRET_LENGTH = 16  # a signing secret shorter than this is refused (32+ random characters advised)
ERROR_LIMIT = 300  # characters of an error kept in last_error and logged
CLAIM_MARGIN_SECONDS = 30  # a claim outlasts the round's time limit by this much
ENV_PREFIX = "env:"  # the names of the channels made from the environment


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def _from_env(name: str) -> str:
    return os.environ.get(name, "").strip() if name else ""


# --- channels from the environment --------------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentChannel:
    """A channel the NOTIFY_* variables make: `prefix`_RULES, _ACCOUNTS and _EVENTS filter it."""

    name: str
    kind: str
    target_env: str
    prefix: str
    secret_env: str = ""


ENVIRONMENT_CHANNELS = (
    EnvironmentChannel("env:slack", Kind.SLACK, "NOTIFY_SLACK_WEBHOOK_URL", "NOTIFY_SLACK"),
    EnvironmentChannel("env:webhook", Kind.WEBHOOK, "NOTIFY_WEBHOOK_URL", "NOTIFY_WEBHOOK", "NOTIFY_WEBHOOK_SECRET"),
    EnvironmentChannel("env:email", Kind.EMAIL, "NOTIFY_EMAIL_TO", "NOTIFY_EMAIL"),
)
SYNCED_FIELDS = ("kind", "target", "target_env", "secret_env", "rules", "accounts", "events", "enabled")


def _names(environ, name: str) -> list[str]:
    return [value.strip() for value in environ.get(name, "").split(",") if value.strip()]


def _unknown(fields: dict) -> list[str]:
    """The rules and events a channel's variables name that do not exist (they match nothing)."""
    return sorted((set(fields["rules"]) - set(AlarmRule.values)) | (set(fields["events"]) - set(Event.values)))


def environment_channels(environ=None) -> dict[str, dict]:
    """The channels the environment configures, by name: each one's fields (no value of a URL or a
    secret: the names of the variables that hold them)."""
    environ = os.environ if environ is None else environ
    found = {}
    for spec in ENVIRONMENT_CHANNELS:
        if not environ.get(spec.target_env, "").strip():
            continue
        found[spec.name] = {
            "kind": spec.kind,
            "target": "",
            "target_env": spec.target_env,
            "secret_env": spec.secret_env,
            # A name that is no rule or event is kept, and matches nothing: a typo never widens a filter.
            "rules": _names(environ, f"{spec.prefix}_RULES"),
            "accounts": _names(environ, f"{spec.prefix}_ACCOUNTS"),
            "events": _names(environ, f"{spec.prefix}_EVENTS") or list(Event.values),
            "enabled": True,
        }
    return found


def channels() -> list[NotificationChannel]:
    """Every enabled channel, the environment's brought in step with the NOTIFY_* variables first
    (made, changed, or switched off once their variable is gone). One query when nothing changed."""
    wanted = environment_channels()
    rows = list(NotificationChannel.objects.all())
    by_name = {row.name: row for row in rows}
    for name, fields in wanted.items():
        row = by_name.get(name)
        if row is not None and not row.from_environment:
            logger.warning("notifications: a channel made in the admin is named %s; the environment's is skipped", name)
            continue
        if row is not None and all(getattr(row, field) == value for field, value in fields.items()):
            continue
        if unknown := _unknown(fields):
            logger.warning(
                "notifications: channel %s names %s, no alarm rule or event: it matches nothing", name, unknown
            )
        if row is None:
            by_name[name] = NotificationChannel.objects.create(name=name, from_environment=True, **fields)
        else:
            for field, value in fields.items():
                setattr(row, field, value)
            row.save(update_fields=list(SYNCED_FIELDS))
    for row in rows:
        if row.from_environment and row.enabled and row.name not in wanted:
            row.enabled = False
            row.save(update_fields=["enabled"])
    return [row for row in by_name.values() if row.enabled]


# --- the outbox -----------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _link(account: str, batch_id: str | None) -> str | None:
    """The alarm's page in the dashboard (its batch's, or the list for an account's), if DASHBOARD_URL is set."""
    base = getattr(settings, "DASHBOARD_URL", "").rstrip("/")
    if not base:
        return None
    try:
        if batch_id is None:
            return base + reverse("batch-list")
        return base + reverse("batch-detail", kwargs={"account_key": account, "batch_id": batch_id})
    except NoReverseMatch:  # an upstream id the URL cannot hold (a slash): the list, then
        return base + reverse("batch-list")


def payload_for(alarm: Alarm, event: str, *, batch_id: str | None, secrets: Sequence[str]) -> dict:
    """What a channel is told of one alarm change, stored with the delivery: no secret, the detail
    (upstream's words among ours) redacted once more."""
    return {
        "event": event,
        "alarm": {
            "id": alarm.pk,
            "rule": alarm.rule,
            "rule_label": AlarmRule(alarm.rule).label,
            "account": alarm.account,
            "batch_id": batch_id,
            "detail": redact(alarm.detail, list(secrets)),
            "opened_at": _iso(alarm.opened_at),
            "resolved_at": _iso(alarm.resolved_at),
            "url": _link(alarm.account, batch_id),
        },
    }


def notification_secrets(rows: Iterable[NotificationChannel] | None = None) -> list[str]:
    """What the channels hold that must not be shown: every signing secret, and every URL (a Slack
    webhook's is its credential; any may carry a token), as their variables hold them now."""
    rows = NotificationChannel.objects.all() if rows is None else rows
    found = []
    for row in rows:
        names = [row.secret_env] + ([row.target_env] if row.kind != Kind.EMAIL else [])
        found += [value for name in names if (value := _from_env(name))]
        if row.kind != Kind.EMAIL and row.target.strip():
            found.append(row.target.strip())
    return found


def all_secrets(rows: Iterable[NotificationChannel] | None = None) -> list[str]:
    """Every account's key and every channel's secret and URL: what errors and payloads are redacted of."""
    return configured_secrets() + notification_secrets(rows)


def write_outbox(opened: Sequence[Alarm], resolved: Sequence[Alarm]) -> list[Delivery]:
    """One delivery per enabled channel that wants each change; called inside the evaluation's
    transaction (alarms.alarms_changed), so it is written if and only if the change is. No I/O."""
    targets = channels()
    if not targets:
        return []
    changes = [(alarm, Event.OPENED.value, alarm.opened_at) for alarm in opened]
    changes += [(alarm, Event.RESOLVED.value, alarm.resolved_at or alarm.last_seen_at) for alarm in resolved]
    wanted = [
        (alarm, event, at, channel)
        for alarm, event, at in changes
        for channel in targets
        if channel.wants(alarm.rule, alarm.account, event)
    ]
    if not wanted:
        return []
    batch_pks = {alarm.batch_id for alarm, *_ in wanted if alarm.batch_id is not None}
    upstream_ids = dict(StoredBatch.objects.filter(pk__in=batch_pks).values_list("pk", "batch_id"))
    secrets = all_secrets()
    payloads: dict[tuple[int, str], dict] = {}
    rows = []
    for alarm, event, at, channel in wanted:
        if (alarm.pk, event) not in payloads:
            batch_id = upstream_ids.get(alarm.batch_id)
            payloads[alarm.pk, event] = payload_for(alarm, event, batch_id=batch_id, secrets=secrets)
        rows.append(
            Delivery(
                channel=channel,
                alarm=alarm,
                event=event,
                payload=payloads[alarm.pk, event],
                created_at=at,
                next_attempt_at=at,
            )
        )
    return Delivery.objects.bulk_create(rows, batch_size=500)


# --- what each kind of channel sends ------------------------------------------------------------


def signature(secret: str, timestamp: int | str, delivery: str, event: str, body: bytes) -> str:
    """The X-Dashboard-Signature value: v2=hex(HMAC-SHA256(secret, "v2:<timestamp>:<delivery>:<event>:" +
    body)): the headers a receiver acts on are signed with the body, so a replay cannot change them."""
    signed = f"{SIGNATURE_VERSION}:{timestamp}:{delivery}:{event}:".encode() + body
    return f"{SIGNATURE_VERSION}={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def verify(secret: str, headers, body: bytes, *, now: float | None = None, tolerance: float = 300) -> bool:
    """What a receiver does (the README's snippet): the signature recomputed from the headers and the
    raw body and compared in constant time, and a timestamp no more than `tolerance` seconds from now
    (a replayed request is refused once that has passed; within it, the delivery id tells a repeat)."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    delivery = headers.get(DELIVERY_HEADER, "")
    event = headers.get(EVENT_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    now = time.time() if now is None else now
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    if ":" in delivery + event:  # neither ever holds one: no part of the signed text can be moved into another
        return False
    return hmac.compare_digest(signature(secret, timestamp, delivery, event, body), given)


SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _slack(text: str | None) -> str:
    """Untrusted text made inert in Slack's mrkdwn: no <!channel> mention, no <url|link> of upstream's."""
    return (text or "").translate(SLACK_ESCAPES)


def _headline(alarm: dict, event: str) -> str:
    subject = alarm["account"] + (f", batch {alarm['batch_id']}" if alarm.get("batch_id") else "")
    return f"Alarm {event}: {alarm['rule_label']} — {subject}"


def slack_body(payload: dict) -> dict:
    alarm, event = payload["alarm"], payload["event"]
    lines = [f"*{_slack(_headline(alarm, event))}*"]
    if alarm.get("detail"):
        lines.append(_slack(alarm["detail"]))
    if alarm.get("url"):
        lines.append(f"<{_slack(alarm['url'])}|Open in the dashboard>")
    return {"text": "\n".join(lines)}


def webhook_body(payload: dict, now: datetime) -> bytes:
    body = {"event": payload["event"], "alarm": payload["alarm"], "sent_at": _iso(now)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def email_message(payload: dict) -> tuple[str, str]:
    """Subject (one line: no header can be injected) and plain-text body."""
    alarm, event = payload["alarm"], payload["event"]
    subject = re.sub(r"[\r\n\t]+", " ", f"[batch dashboard] {_headline(alarm, event)}")[:200]
    lines = [
        _headline(alarm, event),
        "",
        f"Rule:     {alarm['rule_label']}",
        f"Account:  {alarm['account']}",
        f"Batch:    {alarm.get('batch_id') or '(the account)'}",
        f"Opened:   {alarm.get('opened_at')}",
    ]
    if alarm.get("resolved_at"):
        lines.append(f"Resolved: {alarm['resolved_at']}")
    if alarm.get("detail"):
        lines += ["", alarm["detail"]]
    if alarm.get("url"):
        lines += ["", alarm["url"]]
    return subject, "\n".join(lines) + "\n"


# --- one send -------------------------------------------------------------------------------------


class SendFailed(Exception):
    """Why a send did not succeed, in words that may be stored and logged once redacted."""


def _post(url: str, body: bytes, headers: dict[str, str], seconds: float) -> None:
    """POST `body` to a destination the policy allows: returns on a 2xx, else raises SendFailed.
    Connect to last byte within `seconds`; no redirect followed; the answer's body never read."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    timeouts = dict.fromkeys(("connect", "read", "write", "pool"), seconds)
    try:
        request = httpx.Request("POST", url, content=body, headers=headers)  # the URL parsed, Host set
        target = httpcore.URL(
            scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port, target=request.url.raw_path
        )
        backend = GuardedBackend(deadline=time.monotonic() + seconds)
        with (
            httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), network_backend=backend) as pool,
            pool.stream(
                "POST", target, headers=request.headers.raw, content=body, extensions={"timeout": timeouts}
            ) as response,
        ):
            status = response.status
    except DestinationRefused as refusal:
        raise SendFailed(f"refused: {refusal}") from None
    except httpcore.TimeoutException:
        raise SendFailed(f"no answer within {seconds:g} s") from None
    except (httpcore.NetworkError, httpcore.UnsupportedProtocol, httpx.InvalidURL) as error:
        raise SendFailed(f"{type(error).__name__}: {error}") from None  # our side's words, no byte of the answer
    except Exception as error:  # a protocol error quotes what the receiver sent: not kept
        raise SendFailed(f"{type(error).__name__}: not an HTTP answer") from None
    if 300 <= status < 400:
        raise SendFailed(f"HTTP {status}: a redirect, not followed (configure the final URL)")
    if not 200 <= status < 300:
        raise SendFailed(f"HTTP {status}")


@dataclass
class Prepared:
    """A delivery ready to go: everything read from the database and the environment beforehand, so
    the send's thread touches neither."""

    delivery: Delivery
    send: Callable[[], None] | None
    secrets: list[str]
    error: str = ""  # why it cannot be sent at all (a variable not set)


def prepare(delivery: Delivery, now: datetime, *, secrets: list[str] | None = None) -> Prepared:
    """The send of one delivery at `now`; `secrets`: what its error is redacted of (all_secrets())."""
    channel = delivery.channel
    seconds = _setting("NOTIFY_TIMEOUT_SECONDS", 5)
    target = channel.target.strip() or _from_env(channel.target_env)
    secrets = all_secrets() if secrets is None else secrets
    if not target:
        return Prepared(delivery, None, secrets, f"{channel.target_env or 'the target'} is not set")
    if channel.kind == Kind.SLACK:
        body = json.dumps(slack_body(delivery.payload), ensure_ascii=False).encode()
        return Prepared(delivery, lambda: _post(target, body, {}, seconds), secrets)
    if channel.kind == Kind.WEBHOOK:
        secret = _from_env(channel.secret_env)
        if len(secret) < MIN_SECRET_LENGTH:
            problem = f"{channel.secret_env or 'the signing secret'} is not set or shorter than {MIN_SECRET_LENGTH}"
            return Prepared(delivery, None, secrets, problem)
        body = webhook_body(delivery.payload, now)
        timestamp = str(int(now.timestamp()))
        headers = {
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(secret, timestamp, str(delivery.key), delivery.event, body),
            DELIVERY_HEADER: str(delivery.key),
            EVENT_HEADER: delivery.event,
        }
        return Prepared(delivery, lambda: _post(target, body, headers, seconds), secrets)
    if channel.kind == Kind.EMAIL:
        subject, text = email_message(delivery.payload)
        addresses = [address.strip() for address in target.split(",") if address.strip()]
        return Prepared(delivery, lambda: _mail(subject, text, addresses), secrets)
    return Prepared(delivery, None, secrets, f"unknown kind of channel {channel.kind!r}")


def _mail(subject: str, text: str, addresses: list[str]) -> None:
    try:
        send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, addresses, fail_silently=False)
    except Exception as error:
        raise SendFailed(f"{type(error).__name__}: {error}") from None


class _Send(threading.Thread):
    """One send on a thread of its own. An HTTP send ends itself at the deadline; its caller stops
    waiting then anyway (an SMTP conversation, a name resolution, may outlast it a little)."""

    def __init__(self, work: Callable[[], None]):
        super().__init__(name="notify-send", daemon=True)  # never holds the process
        self.work = work
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.work()
        except SendFailed as failure:
            self.error = str(failure)
        except Exception as error:  # a bug, or a backend's surprise: a failure like any other
            self.error = f"{type(error).__name__}: {error}"


# --- claiming, sending, recording -----------------------------------------------------------------

DUE_STATUSES = (Status.PENDING, Status.FAILING)


def _due(now: datetime) -> Q:
    return Q(status__in=DUE_STATUSES, next_attempt_at__lte=now, channel__enabled=True)


def anything_due(now: datetime) -> bool:
    return Delivery.objects.filter(_due(now)).exists()


def claim_due(now: datetime, limit: int, *, token: str, seconds: float) -> list[Delivery]:
    """Take up to `limit` due deliveries, oldest due first, for `seconds`: their `next_attempt_at`
    moved past that and `claimed_by` set to `token`, by a conditional UPDATE (rows another poller has
    locked are skipped on PostgreSQL); the deliveries now ours, with their channels."""
    if not anything_due(now):  # the common case, without a write lock (SQLite takes one per transaction)
        return []
    due = Delivery.objects.filter(_due(now)).order_by("next_attempt_at", "pk")
    until = now + timedelta(seconds=seconds)
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        pks = list(due.values_list("pk", flat=True)[:limit])
        # The condition again: atomic on SQLite too, where no row is locked.
        Delivery.objects.filter(pk__in=pks, status__in=DUE_STATUSES, next_attempt_at__lte=now).update(
            next_attempt_at=until, claimed_by=token
        )
    return list(Delivery.objects.filter(claimed_by=token).select_related("channel").order_by("pk"))


def backoff_seconds(attempts: int, *, rand: Callable[[], float] = random.random) -> float:
    """After the `attempts`-th failure: NOTIFY_RETRY_SECONDS doubled each time, at most
    NOTIFY_RETRY_MAX_SECONDS, with jitter: between half that and all of it."""
    base = _setting("NOTIFY_RETRY_SECONDS", 30)
    ceiling = min(_setting("NOTIFY_RETRY_MAX_SECONDS", 3600), base * 2 ** min(max(attempts - 1, 0), 30))
    return ceiling / 2 + rand() * ceiling / 2


def _clean(error: str, secrets: list[str]) -> str:
    """An error fit to store and log: redacted, on one line, cut short."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", redact(error, secrets)).strip()
    return text[:ERROR_LIMIT]


def _record(prepared: Prepared, error: str | None, now: datetime, token: str) -> Delivery:
    delivery = prepared.delivery
    attempts = delivery.attempts + 1
    fields: dict = {"attempts": attempts, "last_attempt_at": now}
    if error is None:
        fields |= {"status": Status.SENT, "sent_at": now, "next_attempt_at": None, "last_error": ""}
    else:
        fields["last_error"] = _clean(error, prepared.secrets)
        if attempts >= int(_setting("NOTIFY_MAX_ATTEMPTS", 10)):
            fields |= {"status": Status.GIVEN_UP, "next_attempt_at": None}
        else:
            fields |= {"status": Status.FAILING, "next_attempt_at": now + timedelta(seconds=backoff_seconds(attempts))}
    # Only while the claim is ours: a round that outlived it leaves the delivery to the one that took it over.
    if not Delivery.objects.filter(pk=delivery.pk, claimed_by=token).update(**fields):
        logger.warning("notification %s: its claim was taken over; this attempt is not recorded", delivery.key)
        return delivery
    for name, value in fields.items():
        setattr(delivery, name, value)
    channel = delivery.channel.name
    if error is None:
        logger.info("notification %s (%s) sent to channel %s", delivery.key, delivery.event, channel)
    elif delivery.status == Status.GIVEN_UP:
        logger.warning(
            "notification %s to channel %s failed, given up after %d attempts: %s",
            delivery.key,
            channel,
            attempts,
            delivery.last_error,
        )
    else:
        logger.warning(
            "notification %s to channel %s failed (attempt %d, next try %s): %s",
            delivery.key,
            channel,
            attempts,
            _iso(delivery.next_attempt_at),
            delivery.last_error,
        )
    return delivery


def deliver_due(now: datetime | None = None, limit: int | None = None) -> list[Delivery]:
    """Send up to `limit` (NOTIFY_BATCH_SIZE) due deliveries, all at once, each on a thread of its
    own, waiting for them NOTIFY_TIMEOUT_SECONDS at most; record each outcome. The deliveries tried."""
    now = now or timezone.now()
    limit = int(_setting("NOTIFY_BATCH_SIZE", 10)) if limit is None else limit
    seconds = _setting("NOTIFY_TIMEOUT_SECONDS", 5)
    token = uuid.uuid4().hex
    claimed = claim_due(now, limit, token=token, seconds=seconds + CLAIM_MARGIN_SECONDS)
    if not claimed:
        return []
    secrets = all_secrets()
    prepared = [prepare(delivery, now, secrets=secrets) for delivery in claimed]
    sends = [(item, _Send(item.send) if item.send else None) for item in prepared]
    for _, send in sends:
        if send is not None:
            send.start()
    deadline = time.monotonic() + seconds + 0.5
    tried = []
    for item, send in sends:
        if send is None:
            error = item.error
        else:
            send.join(max(0.0, deadline - time.monotonic()))
            error = f"no answer within {seconds:g} s" if send.is_alive() else send.error
        tried.append(_record(item, error, now, token))
    return tried


def retry_now(deliveries, *, now: datetime | None = None) -> int:
    """Make these deliveries (those not sent) due at once: staff's "retry now". A delivery given up
    gets one more attempt. How many were made due."""
    now = now or timezone.now()
    return deliveries.exclude(status=Status.SENT).update(status=Status.PENDING, next_attempt_at=now)


# --- in the poller's process ------------------------------------------------------------------

_background: threading.Thread | None = None
_background_lock = threading.Lock()


def _round(now: datetime) -> None:
    try:
        deliver_due(now)
    except Exception:
        logger.exception("notification delivery failed (it is tried again after the next cycle)")
    finally:
        connections.close_all()  # this thread's connections end with it


def deliver_in_background(now: datetime) -> threading.Thread | None:
    """One round of `deliver_due(now)` on a thread of its own, if anything is due and the previous
    round has finished: the thread (None if none was started). The caller never waits for a receiver."""
    global _background
    with _background_lock:
        if _background is not None and _background.is_alive():
            return None
        if not anything_due(now):
            return None
        _background = threading.Thread(target=_round, args=(now,), name="notify-deliver")
        _background.start()
        return _background
