"""Bulk cancel: many batches canceled in one audited operation, resumable if its process dies.

1. Preview (`preview`): the batches the list's filters name that can still be canceled (not ended,
   in a cancelable status, not gone upstream), newest first, at most MAX_BATCHES. The preview's
   batches are signed into a token the confirmation carries back: what is canceled is exactly what
   was previewed (or the part of it the user kept checked), whatever arrived or ended since.
2. Confirm (`create`): the permission again, the token (this user's, at most PREVIEW_MAX_AGE old),
   the selection (a subset of the preview), and above TYPED_ABOVE batches the number typed; then the
   operation (BulkCancel) and one item per batch (BulkCancelItem) in one transaction. What changed
   since the preview (batches ended, or new ones matching) is said in the operation's note.
3. Work (`run`): the items one after another, each claimed first by a conditional UPDATE, then
   canceled through services.cancel_batch(via="bulk"), audited like any cancel (a CancelAttempt
   written before the call, completed after) and linked from the item. One at a time, so a big
   operation never bursts into a provider's rate limit. It is a task (`cancel_operation`, enqueued
   with the operation, in its transaction), run by a worker process (`manage.py work`).
4. Resume (`recover`, in every worker's sweep): an item's claim lasts `claim_seconds()` (longer than
   any cancel call can take) and the run renews the claims of all its remaining items before each
   cancel. If its worker dies (or the run fails), the claims expire (or are given up) and the task
   runs again; an item is never canceled by two workers at once.

The user's permission is checked on every request and again whenever a worker (re)starts an
operation: items of a user who lost it (or an account no longer configured) are skipped, with why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone
from django_tasks import task

from .. import background, leases, providers
from ..access.models import Role
from ..access.selectors import access_for
from ..accounts import Account, find_account
from ..batches import selectors, services
from ..batches.selectors import ListFilters
from ..models import BulkCancel, BulkCancelItem, CancelAttempt, StoredBatch

logger = logging.getLogger(__name__)

MAX_BATCHES = 500  # one operation's batches at most: narrow the filter for more
TYPED_ABOVE = 3  # above this many batches, the user types their number to confirm
PREVIEW_MAX_AGE = 60 * 60  # seconds a preview stays confirmable (once: a second confirmation gets the same operation)
# The typed number is asked once a user's confirmations within this window add up to more than TYPED_ABOVE,
# so that splitting many batches into small confirmations does not skip it.
TYPED_WINDOW = timedelta(minutes=10)
SALT = "dashboard.bulk.preview"
State = BulkCancelItem.State
ITEM_CLAIM = leases.LeaseFields(owner="claimed_by", until="claimed_until")


class Refused(Exception):
    """A confirmation the server will not act on; `message` says why, in the operator's words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def claim_seconds() -> float:
    """How long an item's claim lasts: past any cancel call (connect + read timeouts, and the retrieve
    a refused cancel makes), so that a claim expires only when its worker is gone."""
    if settings.BULK_CANCEL_CLAIM_SECONDS:
        return settings.BULK_CANCEL_CLAIM_SECONDS
    call = settings.UPSTREAM_TIMEOUT_SECONDS + settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS
    return max(60.0, 4 * call)


# --- preview ------------------------------------------------------------------------------------


def cancelable(*, accounts: list[Account], filters: ListFilters) -> QuerySet:
    """The stored batches the list's filters show that can still be canceled, newest first."""
    rows = selectors.filtered_batches(accounts=accounts, **filters.fields())
    statuses = Q()
    for name, module in providers.PROVIDERS.items():
        statuses |= Q(provider=name, status__in=sorted(module.CANCELABLE))
    return rows.filter(statuses, is_ended=False, gone_at__isnull=True).order_by("-created_at", "-pk")


def count_cancelable(*, accounts: list[Account], filters: ListFilters) -> int:
    return cancelable(accounts=accounts, filters=filters).count()


@dataclass(frozen=True)
class Preview:
    batches: list[dict[str, Any]]  # account, provider, batch_id, status, created_at, total, processing, metadata
    matched: int  # how many match: more than MAX_BATCHES means too many to cancel at once
    token: str  # signed: the user, the filters and the previewed batches
    recently_confirmed: int = 0  # batches the user confirmed within TYPED_WINDOW: they count for the typing

    @property
    def too_many(self) -> bool:
        return self.matched > MAX_BATCHES

    @property
    def typed_above(self) -> int:
        """Above this many of the preview's batches selected, their number is to be typed."""
        return max(0, TYPED_ABOVE - self.recently_confirmed)

    @property
    def needs_typing(self) -> bool:
        return len(self.batches) > self.typed_above


PREVIEW_FIELDS = ("account", "provider", "batch_id", "status", "created_at", "total", "processing", "metadata")


def preview(*, user, accounts: list[Account], filters: ListFilters) -> Preview:
    """Exactly the batches a confirmation would cancel, and the token that says so; none (and no
    token) when more than MAX_BATCHES match."""
    rows = cancelable(accounts=accounts, filters=filters)
    batches = list(rows.values(*PREVIEW_FIELDS)[: MAX_BATCHES + 1])
    if len(batches) > MAX_BATCHES:
        return Preview(batches=[], matched=rows.count(), token="")
    token = signing.dumps(
        {
            "user": user.pk,
            "filters": filters.fields(),
            "batches": [[row["account"], row["batch_id"]] for row in batches],
        },
        salt=SALT,
        compress=True,
    )
    recent = recently_confirmed(user=user, now=timezone.now())
    return Preview(batches=batches, matched=len(batches), token=token, recently_confirmed=recent)


def preview_again(*, token: str, user) -> Preview:
    """The preview a token was made from (its batches as the store has them now), to show again
    with what was wrong with its confirmation; raises Refused for a token that is not good."""
    previewed = read_token(token, user=user)
    wanted = set(previewed.batches)
    rows = StoredBatch.objects.filter(
        account__in={account for account, _ in wanted}, batch_id__in=[batch_id for _, batch_id in wanted]
    ).values(*PREVIEW_FIELDS)
    stored = {(row["account"], row["batch_id"]): row for row in rows}
    batches = [
        stored.get(batch) or {"account": batch[0], "batch_id": batch[1], "status": "not in the store"}
        for batch in previewed.batches
    ]
    recent = recently_confirmed(user=user, now=timezone.now())
    return Preview(batches=batches, matched=len(batches), token=token, recently_confirmed=recent)


@dataclass(frozen=True)
class Previewed:
    """What a preview token holds, once checked."""

    filters: ListFilters
    batches: list[tuple[str, str]]  # (account key, batch id), as previewed


def read_token(token: str, *, user) -> Previewed:
    try:
        data = signing.loads(token, salt=SALT, max_age=PREVIEW_MAX_AGE)
    except signing.SignatureExpired:
        raise Refused("This preview is more than an hour old: open it again to see what it would cancel now.") from None
    except signing.BadSignature:
        raise Refused("This confirmation does not come from a preview: open the preview again.") from None
    if data.get("user") != user.pk:
        raise Refused("This preview was made for another user: open it again.")
    filters = ListFilters.from_fields(data.get("filters", {}))
    return Previewed(filters=filters, batches=[(str(account), str(batch_id)) for account, batch_id in data["batches"]])


def batch_key(account: str, batch_id: str) -> str:
    """How the preview's checkboxes name a batch."""
    return f"{account}/{batch_id}"


# --- confirm ------------------------------------------------------------------------------------


def preview_digest(token: str) -> str:
    """A preview's identity, kept with the operation it made."""
    return hashlib.sha256(token.encode()).hexdigest()


def recently_confirmed(*, user, now: datetime) -> int:
    """The batches this user confirmed within TYPED_WINDOW before `now`."""
    recent = BulkCancel.objects.filter(user=user, created_at__gt=now - TYPED_WINDOW)
    return recent.aggregate(batches=Sum("total"))["batches"] or 0


def create(
    *,
    user,
    accounts: list[Account],
    token: str,
    selected: list[str],
    typed: str,
    worker: str = "",
    now: datetime | None = None,
) -> tuple[BulkCancel, bool]:
    """The operation, its items and its task (`cancel_operation`, enqueued), in one transaction, and
    True; or, for a preview confirmed before, the operation it made, and False. `worker`: a worker
    that is to run it itself at once, holding its items' claims (else they are the task's to take).
    Raises Refused for anything the server will not act on."""
    previewed = read_token(token, user=user)
    digest = preview_digest(token)
    earlier = BulkCancel.objects.filter(preview_digest=digest).first()
    if earlier is not None:
        return earlier, False
    chosen = set(selected)
    batches = [batch for batch in previewed.batches if batch_key(*batch) in chosen]
    if len(batches) != len(chosen):
        raise Refused("Only batches of the preview can be canceled from it: open the preview again.")
    if not batches:
        raise Refused("No batch is selected: nothing to cancel.")
    if not all(services.may_cancel(user, account_key=account_key) for account_key, _ in batches):
        raise Refused("You may cancel only the batches of accounts you are an operator of.")
    now = now or timezone.now()
    note = what_changed(accounts=accounts, previewed=previewed, chosen=batches)
    left_out = [batch_key(*batch) for batch in previewed.batches if batch_key(*batch) not in chosen]
    try:
        with transaction.atomic():
            # One confirmation of a user at a time (SQLite: every write transaction is), so that two at
            # once see each other: the same preview's, and the batches counted for the typed number.
            list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
            earlier = BulkCancel.objects.filter(preview_digest=digest).first()
            if earlier is not None:
                return earlier, False
            recent = recently_confirmed(user=user, now=now)
            confirmed = recent + len(batches) > TYPED_ABOVE
            if confirmed and typed.strip() != str(len(batches)):
                raise Refused(_typing_asked(len(batches), recent=recent, typed=typed))
            operation = BulkCancel.objects.create(
                created_at=now,
                user=user,
                actor=user.get_username(),
                source={
                    "filters": previewed.filters.fields(),
                    "previewed": len(previewed.batches),
                    "left_out": left_out,
                },
                total=len(batches),
                confirmed=confirmed,
                note=note,
                preview_digest=digest,
            )
            until = now + timedelta(seconds=claim_seconds())
            BulkCancelItem.objects.bulk_create(
                BulkCancelItem(
                    operation=operation,
                    position=position,
                    account=account,
                    batch_id=batch_id,
                    claimed_by=worker,
                    claimed_until=until if worker else None,
                )
                for position, (account, batch_id) in enumerate(batches)
            )
            operation.task_id = cancel_operation.enqueue(operation_id=operation.pk).id
            operation.save(update_fields=["task_id"])
    except IntegrityError:
        # The same preview confirmed at the same moment elsewhere, where the lock above does not hold.
        earlier = BulkCancel.objects.filter(preview_digest=digest).first()
        if earlier is None:
            raise
        return earlier, False
    logger.info("bulk cancel #%s by %s: %d batches", operation.pk, operation.actor, operation.total)
    return operation, True


def _typing_asked(count: int, *, recent: int, typed: str) -> str:
    asked = f"To cancel these {count} batches, type their number, {count}, in the box: "
    asked += f"you typed {typed.strip()[:20]!r}."
    if not recent:
        return asked
    minutes = int(TYPED_WINDOW.total_seconds() // 60)
    return (
        f"You confirmed {recent} batch{'es' if recent != 1 else ''} in the last {minutes} minutes, so the number is "
        f"asked above {TYPED_ABOVE} in all. {asked}"
    )


def what_changed(*, accounts: list[Account], previewed: Previewed, chosen: list[tuple[str, str]]) -> str:
    """What is not as previewed any more: chosen batches that can no longer be canceled (they are
    still tried, and recorded as upstream answers), and batches that match the filter now."""
    rows = cancelable(accounts=accounts, filters=previewed.filters).values("account", "batch_id")
    now_cancelable = {(row["account"], row["batch_id"]) for row in rows[: MAX_BATCHES * 2]}
    gone = [batch for batch in chosen if batch not in now_cancelable]
    arrived = now_cancelable - set(previewed.batches)
    notes = []
    if gone:
        notes.append(
            f"{len(gone)} of the batches previewed can no longer be canceled (ended or being canceled since "
            "the preview): each is still asked, and its answer recorded."
        )
    if arrived:
        notes.append(
            f"{len(arrived)} batch{'es' if len(arrived) != 1 else ''} not in the preview now match the filter: "
            "not included (only what was previewed is canceled)."
        )
    return " ".join(notes)


# --- work ---------------------------------------------------------------------------------------


def worker_name(base: str = "") -> str:
    """A name for one run of one operation: unique, so that claims say who holds them."""
    base = base or f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:bulk:{uuid.uuid4().hex[:12]}"


def claim(item_id: int, *, worker: str, now: datetime) -> bool:
    """Take (or renew) one pending item: a conditional UPDATE, so of two workers only one gets it."""
    until = now + timedelta(seconds=claim_seconds())
    item = BulkCancelItem.objects.filter(pk=item_id, state=State.PENDING)
    return bool(leases.take(item, fields=ITEM_CLAIM, owner=worker, now=now, until=until))


def _renew(operation_id: int, *, worker: str, now: datetime) -> None:
    until = now + timedelta(seconds=claim_seconds())
    items = BulkCancelItem.objects.filter(operation_id=operation_id, state=State.PENDING)
    leases.renew(items, fields=ITEM_CLAIM, owner=worker, now=now, until=until)


def finish_item(item_id: int, *, worker: str, state: str, message: str) -> bool:
    done = BulkCancelItem.objects.filter(pk=item_id, state=State.PENDING, claimed_by=worker).update(
        state=state, message=message[:2000], finished_at=timezone.now(), claimed_until=None
    )
    if not done:
        logger.warning("bulk cancel item %s was taken over while %s canceled it", item_id, worker)
    return bool(done)


def run(
    *,
    operation_id: int,
    worker: str,
    clock: Callable[[], datetime] = timezone.now,
    cancel: Callable[..., services.CancelResult] | None = None,
) -> None:
    """Work through the operation's pending items this worker can claim, one at a time; then mark
    the operation finished if nothing is pending any more. If this worker process is told to stop
    (background.stopping), the items left are given back instead. `cancel` is services.cancel_batch."""
    cancel = cancel or services.cancel_batch
    operation = BulkCancel.objects.select_related("user").filter(pk=operation_id).first()
    if operation is None:
        return
    user = operation.user
    # Read now, before any item is claimed (a cache that is down fails here, holding nothing): which
    # accounts it may cancel on is decided by this run.
    access = access_for(user=user)
    # Every pending item nobody holds is this run's from now on (renewed before each cancel): while it
    # lives, none looks abandoned to the sweep.
    now = clock()
    leases.take(
        BulkCancelItem.objects.filter(operation_id=operation_id, state=State.PENDING),
        fields=ITEM_CLAIM,
        owner=worker,
        now=now,
        until=now + timedelta(seconds=claim_seconds()),
    )
    while True:
        if background.stopping.is_set():  # this worker is stopping: the rest is handed back, run again elsewhere
            leases.release(
                BulkCancelItem.objects.filter(operation_id=operation_id, state=State.PENDING),
                fields=ITEM_CLAIM,
                owner=worker,
            )
            return
        now = clock()
        item = (
            BulkCancelItem.objects.filter(
                leases.free_or_ours(fields=ITEM_CLAIM, owner=worker, now=now),
                operation_id=operation_id,
                state=State.PENDING,
            )
            .order_by("position")
            .first()
        )
        if item is None:
            break
        if not claim(item.pk, worker=worker, now=now):
            continue  # another worker took it meanwhile: on to the next
        _renew(operation_id, worker=worker, now=now)
        allowed = user is not None and access.may(Role.OPERATOR, item.account)
        _work_on(operation, item, user=user, allowed=allowed, worker=worker, cancel=cancel)
    finish_if_done(operation_id)


def _work_on(operation: BulkCancel, item: BulkCancelItem, *, user, allowed: bool, worker: str, cancel) -> None:
    try:
        account: Account | None = services.resolve(account_key=item.account, batch_id=item.batch_id)
    except services.UnknownBatch:
        account = None
    if item.attempt_id is not None and _settled_by_earlier_attempt(item, account=account, worker=worker):
        return
    if not allowed:
        who = operation.actor or "its user"
        finish_item(
            item.pk,
            worker=worker,
            state=State.SKIPPED,
            message=f"Not canceled: {who} is not an operator of {item.account} now.",
        )
        return
    if account is None:
        finish_item(
            item.pk, worker=worker, state=State.SKIPPED, message="Not canceled: its account is not configured now."
        )
        return
    attempt = begin_attempt(operation, item, user=user, worker=worker)
    if attempt is None:
        logger.warning("bulk cancel item %s was taken over before %s canceled it", item.pk, worker)
        return
    result = cancel(
        account=account, batch_id=item.batch_id, actor=operation.actor, user=user, via="bulk", attempt=attempt
    )
    state, message = _state_of(result, item=item)
    finish_item(item.pk, worker=worker, state=state, message=message)


def begin_attempt(operation: BulkCancel, item: BulkCancelItem, *, user, worker: str) -> CancelAttempt | None:
    """The item's cancel attempt, recorded and linked to it before the upstream call, so that whoever
    resumes the item after a crash knows exactly which attempt was in flight; None if the item is
    not this worker's any more."""
    with transaction.atomic():
        attempt = CancelAttempt.objects.create(
            user=user, actor=operation.actor, via="bulk", account=item.account, batch_id=item.batch_id
        )
        linked = BulkCancelItem.objects.filter(pk=item.pk, state=State.PENDING, claimed_by=worker).update(
            attempt=attempt
        )
        if not linked:
            transaction.set_rollback(True)
            return None
    return attempt


def _settled_by_earlier_attempt(item: BulkCancelItem, *, account: Account | None, worker: str) -> bool:
    """For an item a worker died on after recording its attempt: settle the attempt from upstream if
    it is still pending, and finish the item by it; True if that finished it. False when upstream
    says the batch was not canceled: the item is canceled anew (a new attempt)."""
    attempt = CancelAttempt.objects.filter(pk=item.attempt_id).first()
    if attempt is None:
        return False
    if attempt.outcome == CancelAttempt.Outcome.PENDING:
        attempt = services.reconcile_attempt(attempt=attempt, account=account)
    if attempt.reconciled_at is not None and attempt.outcome == CancelAttempt.Outcome.UPSTREAM_ERROR:
        if attempt.status_after and account is not None:
            return False  # upstream said it was not canceled: ask again
        finish_item(item.pk, worker=worker, state=State.FAILED, message=attempt.message)
        return True
    result = services.CancelResult(
        outcome=attempt.outcome, message=attempt.message, status_after=attempt.status_after, attempt_id=attempt.pk
    )
    state, message = _state_of(result, item=item)
    finish_item(item.pk, worker=worker, state=state, message=message)
    return True


def _state_of(result: services.CancelResult, *, item: BulkCancelItem):
    if result.outcome == CancelAttempt.Outcome.ACCEPTED:
        return State.CANCELED, result.message
    if result.outcome == CancelAttempt.Outcome.ALREADY_ENDED:
        return State.ALREADY_ENDED, result.message
    # Refused because it is being canceled already (by an earlier attempt, or someone else): the
    # batch is stopping, which is what was asked.
    stored = StoredBatch.objects.filter(account=item.account, batch_id=item.batch_id).values(
        "cancel_initiated_at", "is_ended", "status"
    )
    row = stored.first()
    if row and row["cancel_initiated_at"] is not None and not row["is_ended"]:
        return State.CANCELED, (
            f"Already being canceled (requested {row['cancel_initiated_at']:%Y-%m-%d %H:%M:%S} UTC, "
            f"status {row['status']}): {result.message}"
        )
    return State.FAILED, result.message


def finish_if_done(operation_id: int) -> bool:
    """Mark the operation finished once no item is pending; True if it is finished."""
    if BulkCancelItem.objects.filter(operation_id=operation_id, state=State.PENDING).exists():
        return False
    BulkCancel.objects.filter(pk=operation_id, finished_at__isnull=True).update(finished_at=timezone.now())
    return True


# --- the task: a worker right after the confirmation, again if that worker died -------------------


@task(queue_name=background.BULK_QUEUE)
def cancel_operation(operation_id: int) -> dict[str, int]:
    """The operation's items, one after another, in a worker (`run`); the counts of its items after.
    If it raises, the claims this run holds are given up, so that the sweep runs it again shortly."""
    worker = worker_name()
    try:
        run(operation_id=operation_id, worker=worker)
    except Exception:
        leases.release(BulkCancelItem.objects.filter(operation_id=operation_id), fields=ITEM_CLAIM, owner=worker)
        raise
    rows = BulkCancelItem.objects.filter(operation_id=operation_id).values("state").annotate(n=Count("pk")).order_by()
    return {row["state"]: row["n"] for row in rows}


def abandoned(now: datetime) -> list[int]:
    """Operations with a pending item no live worker holds: its claim expired (or never made)."""
    return list(
        BulkCancelItem.objects.filter(leases.free(fields=ITEM_CLAIM, now=now), state=State.PENDING)
        .order_by("operation_id")
        .values_list("operation_id", flat=True)
        .distinct()
    )


def recover(*, now: datetime) -> list[int]:
    """For the workers' sweep: each operation with pending items nobody holds has its task run again
    (its worker died, or it failed) or enqueued (none stored), unless it waits in the queue or has
    only just started; the ids made ready. And the cancel attempts (bulk or single) a dead process
    left pending are settled by what upstream says."""
    # No cancel call outlasts a claim: an attempt pending longer than one lasts has lost its process.
    services.settle_abandoned_attempts(started_before=now - timedelta(seconds=claim_seconds()))
    # A worker that died after its last item and before saying the operation finished (read first: an
    # UPDATE every sweep would take SQLite's write lock for nothing).
    done = BulkCancel.objects.filter(finished_at__isnull=True).exclude(items__state=State.PENDING)
    done_ids = list(done.values_list("pk", flat=True))
    if done_ids:
        BulkCancel.objects.filter(pk__in=done_ids, finished_at__isnull=True).update(finished_at=now)
    ids = abandoned(now)
    if not ids:
        return []
    operations = BulkCancel.objects.filter(pk__in=ids).only("pk", "task_id")
    tasks = background.states(operation.task_id for operation in operations)
    # Its run takes every pending item's claim as it starts: a run younger than a claim may not have yet.
    long_ago = now - timedelta(seconds=claim_seconds())
    made_ready = []
    for operation in operations:
        task_state = tasks.get(str(operation.task_id))
        if task_state is None:
            made = background.enqueue_once(cancel_operation, row=operation, operation_id=operation.pk) is not None
        elif task_state.status == background.Status.RUNNING:
            made = background.run_again(operation.task_id, was=[task_state.status], started_before=long_ago)
        elif task_state.status == background.Status.FAILED:
            made = background.run_again(
                operation.task_id, was=[task_state.status], finished_before=now - background.RETRY_FAILED_AFTER
            )
        elif task_state.status == background.Status.SUCCESSFUL:  # its worker stopping gave the items back
            made = background.run_again(operation.task_id, was=[task_state.status])
        else:
            made = False  # ready: waiting for a worker
        if made:
            logger.info("bulk cancel #%s: its task is run again (its items' claims expired)", operation.pk)
            made_ready.append(operation.pk)
    return made_ready


# --- progress -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    operation: BulkCancel
    items: list[BulkCancelItem]
    counts: dict[str, int]  # state -> items, every state present
    statuses: dict[tuple[str, str], str]  # (account, batch id) -> the batch's stored status now
    task: background.TaskState | None = None  # its background task, while stored

    @property
    def finished(self) -> bool:
        return self.operation.finished_at is not None or not self.counts[State.PENDING]

    @property
    def done(self) -> int:
        return self.operation.total - self.counts[State.PENDING]


def progress(operation: BulkCancel) -> Progress:
    items = list(operation.items.select_related("attempt").order_by("position"))
    counts = {state: 0 for state in State.values}
    for row in operation.items.values("state").annotate(n=Count("pk")).order_by():
        counts[row["state"]] = row["n"]
    stored = StoredBatch.objects.filter(
        account__in={item.account for item in items}, batch_id__in=[item.batch_id for item in items]
    ).values_list("account", "batch_id", "status")
    statuses = {(account, batch_id): status for account, batch_id, status in stored}
    for item in items:
        item.status_now = statuses.get((item.account, item.batch_id), "")
    task_state = background.state(operation.task_id)
    return Progress(operation=operation, items=items, counts=counts, statuses=statuses, task=task_state)


def find_account_label(key: str) -> str:
    account = find_account(key)
    return account.label if account else key
