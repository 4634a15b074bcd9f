"""Sending the outbox: rounds that claim the deliveries that are due, send them and record each outcome.

**A round.** `deliver_due(now, limit)` claims the deliveries that are due, sends each on a thread of
its own (all at once, so one slow receiver delays none of the others) and waits for them no longer
than NOTIFY_TIMEOUT_SECONDS in all, then records each outcome: sent, or failing with the next try
after an exponential backoff with jitter, or given up after NOTIFY_MAX_ATTEMPTS. Claiming is a
conditional UPDATE that moves `next_attempt_at` past the round's time limit and stamps the round's
token, a lease (leases.py; `SELECT … FOR UPDATE SKIP LOCKED` first on PostgreSQL): two workers
never send one delivery at the same moment, and one killed mid-send leaves it due again
NOTIFY_CLAIM_MARGIN_SECONDS after the send's limit. Delivery is at least once: a receiver may see a
delivery twice (a 2xx lost on the way back), and tells by its `X-Dashboard-Delivery` id, the same on
every try.

**As tasks.** The pollers only write the outbox (outbox.py, in the transaction that changes the
alarm). Every worker's sweep (`enqueue_due`, every WORKER_SWEEP_SECONDS) enqueues a `deliver` task
for each delivery that is due and has none waiting or running; the task is one attempt (a round of
that one delivery), and a failure's backoff makes it due again later, when the sweep enqueues the
next attempt. A worker killed mid-send leaves its claim to expire: the delivery is due again while
its task still says "running", and the sweep makes that same task ready again. Each delivery keeps
the id of its latest task (`task_id`: its state in the admin).

Logs name the channel and the delivery, never a URL or a secret, and error texts are redacted of
every account key, every channel secret and the channel's URL.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django_tasks import task

from .. import background, leases
from ..models import Delivery
from ..redaction import redact
from .channels import all_secrets
from .messages import utc_iso
from .sending import Prepared, SendThread, prepare

logger = logging.getLogger(__name__)

Status = Delivery.Status

ERROR_LIMIT = 300  # characters of an error kept in last_error and logged
DUE_STATUSES = (Status.PENDING, Status.FAILING)
# A delivery's claim: due again once `next_attempt_at` has passed, never once it is null (sent, given up).
DELIVERY_CLAIM = leases.LeaseFields(owner="claimed_by", until="next_attempt_at", until_is_due_time=True)


def _due(now: datetime) -> Q:
    return Q(status__in=DUE_STATUSES, next_attempt_at__lte=now, channel__enabled=True)


def anything_due(now: datetime) -> bool:
    return Delivery.objects.filter(_due(now)).exists()


def claim_due(now: datetime, limit: int, *, token: str, seconds: float, ids: list[int] | None = None) -> list[Delivery]:
    """Take up to `limit` due deliveries (of `ids`, if given), oldest due first, for `seconds`: their
    `next_attempt_at` moved past that and `claimed_by` set to `token` (a lease: rows another worker
    has locked are skipped on PostgreSQL); the deliveries now ours, with their channels."""
    deliveries = Delivery.objects.filter(status__in=DUE_STATUSES, channel__enabled=True)
    if ids is not None:
        deliveries = deliveries.filter(pk__in=ids)
    if not deliveries.filter(next_attempt_at__lte=now).exists():  # without a write lock (SQLite takes one)
        return []
    oldest_due_first = deliveries.order_by("next_attempt_at", "pk")
    until = now + timedelta(seconds=seconds)
    leases.take(
        oldest_due_first, fields=DELIVERY_CLAIM, owner=token, now=now, until=until, skip_locked=True, limit=limit
    )
    return list(Delivery.objects.filter(claimed_by=token).select_related("channel").order_by("pk"))


def backoff_seconds(attempts: int, *, rand: Callable[[], float] = random.random) -> float:
    """After the `attempts`-th failure: NOTIFY_RETRY_SECONDS doubled each time, at most
    NOTIFY_RETRY_MAX_SECONDS, with jitter: between half that and all of it."""
    base = settings.NOTIFY_RETRY_SECONDS
    ceiling = min(settings.NOTIFY_RETRY_MAX_SECONDS, base * 2 ** min(max(attempts - 1, 0), 30))
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
        if attempts >= settings.NOTIFY_MAX_ATTEMPTS:
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
            utc_iso(delivery.next_attempt_at),
            delivery.last_error,
        )
    return delivery


def deliver_due(
    now: datetime | None = None, limit: int | None = None, *, ids: list[int] | None = None
) -> list[Delivery]:
    """Send up to `limit` (NOTIFY_BATCH_SIZE) due deliveries (of `ids`, if given), all at once, each
    on a thread of its own, waiting for them NOTIFY_TIMEOUT_SECONDS at most; record each outcome.
    The deliveries tried."""
    now = now or timezone.now()
    limit = settings.NOTIFY_BATCH_SIZE if limit is None else limit
    seconds = settings.NOTIFY_TIMEOUT_SECONDS
    token = uuid.uuid4().hex
    claimed = claim_due(now, limit, token=token, seconds=seconds + settings.NOTIFY_CLAIM_MARGIN_SECONDS, ids=ids)
    if not claimed:
        return []
    secrets = all_secrets()
    prepared = [prepare(delivery, now, secrets=secrets) for delivery in claimed]
    sends = [(item, SendThread(item.send) if item.send else None) for item in prepared]
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


# --- as tasks ---------------------------------------------------------------------------------

SWEEP_LIMIT = 200  # due deliveries looked at per sweep, oldest due first: the rest at the next


@task(queue_name=background.NOTIFY_QUEUE)
def deliver(delivery_id: int) -> str:
    """One attempt at one delivery, if it is due and nobody else's: its status after ("not due" if
    there was nothing to do: sent meanwhile, or another worker holds it)."""
    tried = deliver_due(timezone.now(), limit=1, ids=[delivery_id])
    return tried[0].status if tried else "not due"


def enqueue_due(*, now: datetime) -> int:
    """For the workers' sweep: a `deliver` task for each due delivery whose task is not waiting or
    running (none yet, its last attempt done, or its worker gone: the same task ready again); how
    many were made ready."""
    due = list(Delivery.objects.filter(_due(now)).order_by("next_attempt_at", "pk").only("pk", "task_id")[:SWEEP_LIMIT])
    if not due:
        return 0
    tasks = background.states(delivery.task_id for delivery in due)
    # A send's claim outlasts it by NOTIFY_CLAIM_MARGIN_SECONDS: a task still running when its delivery is
    # due again (and that started before that long) has lost its worker.
    long_ago = now - timedelta(seconds=settings.NOTIFY_TIMEOUT_SECONDS + settings.NOTIFY_CLAIM_MARGIN_SECONDS)
    made = 0
    for delivery in due:
        task_state = tasks.get(str(delivery.task_id))
        if task_state is None or task_state.status in (background.Status.SUCCESSFUL, background.Status.FAILED):
            made += background.enqueue_once(deliver, row=delivery, delivery_id=delivery.pk) is not None
        elif task_state.status == background.Status.RUNNING:
            if background.run_again(delivery.task_id, was=[task_state.status], started_before=long_ago):
                logger.warning("notification %s: its worker is gone; its task runs again", delivery.pk)
                made += 1
    return made
