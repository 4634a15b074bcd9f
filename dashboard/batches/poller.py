"""The poller: keeps the store fresh, one account at a time per poller, any number of pollers.

Each cycle, for every account this poller holds the lease of and that is due:
1. list newest first, page by page, until a page holds only batches already stored as ended;
2. backfill the older history one page further than last time, until it is complete;
3. refresh every stored batch that has not ended (and was not in this cycle's listing): by reading
   the listing on, down to the oldest of them, when that takes fewer requests than retrieving each
   (running batches are all recent, so they sit near the top of the newest-first listing);
   otherwise, and for any the listing did not show, by retrieves, POLL_CONCURRENCY at a time;
4. write the account's health: last success, or the (redacted) error, a failure count and when
   to try again (`retry-after` on 429; exponential backoff with jitter on 5xx, 529 and timeouts).

Pollers share the accounts fairly. Each beats (a PollerHeartbeat row, moved on each cycle and, by
a thread of `manage.py poll`, every third of POLL_SECONDS or of POLL_HEARTBEAT_SECONDS if smaller,
however long a cycle takes); the live pollers are those that beat within POLL_HEARTBEAT_SECONDS
and, on PostgreSQL, still hold their session lock (leases.hold_session_lock: released by the server
the moment a killed poller's connection closes). At each beat a poller looks for dead pollers that
still hold accounts, and if there are, claims its share again and polls what it took at once
(`take_over`), not at its next cycle. At the start of a cycle a
poller holds its share, ceil(accounts / live pollers): past it (a poller joined), it releases the
accounts it holds that it ranks lowest, below it (a poller left or died) it takes free accounts,
those it ranks highest first. The ranks are rendezvous hashes of (account, poller), the accounts
each live poller ranks highest over the others' first: every poller ranks alike and differently from
the others, so pollers never all release the same accounts, and N pollers split the work within a
cycle or two and then keep it (no account moves while the live pollers stay the same).

Leases are taken in one transaction per cycle: the free rows (no lease, an expired one, ours, or
a dead poller's) read
`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, then a conditional UPDATE (atomic on SQLite too),
so pollers never poll one account at once. A poller that stops cleanly releases its leases and
deletes its heartbeat; a dead one's accounts are taken as soon as it is seen dead (its lease,
POLL_LEASE_SECONDS, is renewed with each beat: it still frees an account whose owner has no
heartbeat row at all). Every write of an account's poll is made with its lease row locked and
still this poller's (`_holding`), so a poller paused past the window (or counted dead wrongly)
stops writing an account the moment another has taken it. Times are the database's clock
(leases.database_now), so pollers on machines whose clocks differ still agree on who is alive.

After each cycle (in `manage.py poll`: every POLL_SECONDS on a thread of its own, as an evaluation reads every
running batch and would hold up the cycles of the poller that evaluates), the alarms are evaluated
(dashboard/alarms/evaluation.py) by one poller at a time: the one
holding the evaluator's lease, a single row taken by a conditional UPDATE like the accounts' (a
pseudo-account row would show among the accounts). Its evaluation runs in one transaction holding
that row locked, so evaluations never overlap, even when one outlasts its lease. Whatever goes wrong
there is logged (and noted on that row) and never stops polling.

Evaluations write the notification outbox; workers send it (`manage.py work`, dashboard/background.py).
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import Case, Q, Value, When

from .. import leases, providers
from ..accounts import Account, configured_accounts, configured_secrets, provider_for
from ..alarms import evaluation
from ..models import AccountState, PollerHeartbeat, StoredBatch
from ..providers.base import NotFound, Page, Provider, ProviderError, RateLimited
from ..redaction import redact
from . import services, store

logger = logging.getLogger(__name__)

LIST_PAGE_LIMIT = 100
MAX_INCREMENTAL_PAGES = 20
MAX_BACKOFF_SECONDS = 300
# After a failed cycle (the database or the cache gone), the poller waits one poll interval, then
# doubling, up to this many: once the outage ends, it polls again within that long.
OUTAGE_BACKOFF_MAX_INTERVALS = 4
# False: running batches are refreshed by retrieves only (the strategy before, which bench/freshness.py compares).
REFRESH_BY_LISTING = True
ACCOUNT_LEASE = leases.LeaseFields(owner="lease_owner", until="lease_until")
# What an account's poll saves of its state: all but the lease, which only claims and beats move.
POLLED_STATE_FIELDS = [
    model_field.name
    for model_field in AccountState._meta.concrete_fields
    if model_field.name not in ("id", "account", "lease_owner", "lease_until")
]


class LeaseLost(Exception):
    """Another poller holds the account now: this one's poll of it stops, writing nothing more."""


@dataclass
class PollResult:
    account: str
    owner: str = ""  # the poller whose lease every write needs ("": no check, as in a lone test)
    listed: int = 0
    refreshed: int = 0
    changed: int = 0
    error: str = ""
    lost: bool = False  # another poller took the account mid-poll; what was left was not written
    warnings: list[dict] = field(default_factory=list)
    started: float = 0.0  # wall clock (time.time()) from the poll's start to its end
    ended: float = 0.0


def state_for(account: Account) -> AccountState:
    state, _ = AccountState.objects.get_or_create(account=account.key, defaults={"provider": account.provider})
    return state


def claim_all(accounts: list[Account], *, owner: str, now: datetime, seconds: float) -> list[Account]:
    """Take (or renew) the leases of those `accounts` no other poller holds; the accounts now ours.

    On PostgreSQL the free rows are read `FOR UPDATE SKIP LOCKED`, so pollers claiming at the same
    moment never wait on one another's rows; the UPDATE repeats the condition, which makes it atomic
    on SQLite too (one writer at a time, where one poller holds them all).
    """
    for account in accounts:
        state_for(account)
    keys = [account.key for account in accounts]
    until = now + timedelta(seconds=seconds)
    rows = AccountState.objects.filter(account__in=keys)
    leases.take(rows, fields=ACCOUNT_LEASE, owner=owner, now=now, until=until, skip_locked=True)
    mine = set(
        AccountState.objects.filter(account__in=keys, lease_owner=owner, lease_until=until).values_list(
            "account", flat=True
        )
    )
    return [account for account in accounts if account.key in mine]


def heartbeat_window() -> timedelta:
    return timedelta(seconds=settings.POLL_HEARTBEAT_SECONDS)


# How long a poller's transaction may sit idle before PostgreSQL ends its session, at the least.
IDLE_TRANSACTION_FLOOR_SECONDS = 10.0


def limit_idle_transactions(*, connection, **_: object) -> None:
    """connection_created, in `manage.py poll`: on PostgreSQL, a session idle inside a transaction
    for longer than the heartbeat window (at least IDLE_TRANSACTION_FLOOR_SECONDS) is ended by the
    server. A poller frozen mid-write (SIGSTOP, a paused VM) would otherwise keep its account rows
    locked for as long as it is frozen, and the others, which take free rows SKIP LOCKED, could never
    take them; resumed, its write fails and its next cycle reconnects. The poller's transactions
    hold no upstream call. The alarm evaluator's thread is left without the limit: one evaluation
    reads thousands of batches and computes between its statements."""
    if connection.vendor != "postgresql" or threading.current_thread().name.startswith("poll-alarms"):
        return
    limit_ms = int(max(heartbeat_window().total_seconds(), IDLE_TRANSACTION_FLOOR_SECONDS) * 1000)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, false)", [str(limit_ms)])


# A process's beats (its heartbeat thread) and claims (its cycles) one at a time: two UPDATEs of one
# poller's lease rows at once could deadlock on them.
_leasing = threading.RLock()


def beat(*, owner: str, now: datetime) -> None:
    """This poller is alive at `now`: its heartbeat moves on (never back), and the leases it still
    holds last POLL_LEASE_SECONDS from `now`."""
    with _leasing:
        # Before its heartbeat row exists: a row whose owner holds no session lock is a dead poller's.
        leases.hold_session_lock(_session_lock_name(owner))
        if not PollerHeartbeat.objects.filter(owner=owner, beat_at__lt=now).update(beat_at=now):
            PollerHeartbeat.objects.get_or_create(owner=owner, defaults={"started_at": now, "beat_at": now})
        until = now + timedelta(seconds=settings.POLL_LEASE_SECONDS)
        held = AccountState.objects.filter(lease_owner=owner, lease_until__gte=now, lease_until__lt=until)
        with transaction.atomic():
            if connections[held.db].features.has_select_for_update_skip_locked:
                # Past the rows this poller's polls are writing (locked by `_holding`): waiting for
                # them would hold up the next beat; they are renewed at the next one.
                held = AccountState.objects.filter(
                    pk__in=list(held.select_for_update(skip_locked=True).values_list("pk", flat=True))
                )
            held.update(lease_until=until)


def _session_lock_name(owner: str) -> str:
    return f"poller:{owner}"


def _pollers(*, now: datetime) -> tuple[list[str], list[str]]:
    """The pollers with a heartbeat row, live and dead, by name. Dead: its last beat is older than
    the window (paused, cut off, or gone), or, on PostgreSQL, its process holds no session lock any
    more (killed: its connection closed, whatever its last beat). An owner with no heartbeat row
    (one that has just started, whose row this transaction may not see yet) is neither."""
    beats = dict(PollerHeartbeat.objects.values_list("owner", "beat_at"))
    running = leases.session_locks_held([_session_lock_name(owner) for owner in beats])
    live = [
        owner
        for owner, beat_at in beats.items()
        if beat_at >= now - heartbeat_window() and _session_lock_name(owner) in running
    ]
    return sorted(live), sorted(set(beats) - set(live))


def live_pollers(*, now: datetime) -> list[str]:
    """The live pollers (`_pollers`), by name."""
    return _pollers(now=now)[0]


def _rank(account_key: str, owner: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{owner}\0{account_key}".encode(), digest_size=8).digest(), "big")


def _preference(account_key: str, owner: str, live: list[str]) -> tuple[bool, int]:
    """How much `owner` wants the account: first those it ranks over every other live poller (the
    account's rendezvous winner), then by its own rank."""
    mine = _rank(account_key, owner)
    return (all(mine >= _rank(account_key, other) for other in live), mine)


def _ensure_states(accounts: list[Account]) -> None:
    keys = [account.key for account in accounts]
    known = set(AccountState.objects.filter(account__in=keys).values_list("account", flat=True))
    missing = [AccountState(account=a.key, provider=a.provider) for a in accounts if a.key not in known]
    if missing:
        AccountState.objects.bulk_create(missing, ignore_conflicts=True)


def claim_share(accounts: list[Account], *, owner: str, now: datetime) -> list[Account]:
    """Beat, then hold this poller's share of `accounts`, ceil(accounts / live pollers): release
    the surplus it holds (those it ranks lowest), take free ones up to its share (those it ranks
    highest); the accounts now ours. The leases, taken or renewed, last POLL_LEASE_SECONDS."""
    with _leasing:
        return _claim_share(accounts, owner=owner, now=now)


def _claim_share(accounts: list[Account], *, owner: str, now: datetime) -> list[Account]:
    beat(owner=owner, now=now)  # renews the leases held, too
    # Rows of pollers dead for longer than any lease they held: nothing depends on them any more.
    forgotten = now - 2 * heartbeat_window() - timedelta(seconds=settings.POLL_LEASE_SECONDS)
    PollerHeartbeat.objects.filter(beat_at__lt=forgotten).delete()
    _ensure_states(accounts)
    live, dead = _pollers(now=now)
    live = sorted({*live, owner})
    share = math.ceil(len(accounts) / len(live))
    keys = [account.key for account in accounts]
    rows = AccountState.objects.filter(account__in=keys)

    def wanted_first(key: str) -> tuple[bool, int]:
        return _preference(key, owner, live)

    held = sorted(
        rows.filter(lease_owner=owner, lease_until__gte=now).values_list("account", flat=True),
        key=wanted_first,
        reverse=True,
    )
    if len(held) > share:
        leases.release(rows.filter(account__in=held[share:]), fields=ACCOUNT_LEASE, owner=owner)
        held = held[:share]
    until = now + timedelta(seconds=settings.POLL_LEASE_SECONDS)
    room = share - len(held)
    if room > 0:
        dead = Q(lease_owner__in=[name for name in dead if name != owner])
        takeable = leases.free(fields=ACCOUNT_LEASE, now=now) | dead
        candidates = rows.filter(takeable).exclude(account__in=held).values_list("account", flat=True)
        ranked = sorted(candidates, key=wanted_first, reverse=True)
        if ranked:
            # In that order, past the rows another poller is taking at this moment (SKIP LOCKED).
            in_order = Case(*(When(account=key, then=Value(n)) for n, key in enumerate(ranked)))
            leases.take(
                rows.filter(account__in=ranked).order_by(in_order),
                fields=ACCOUNT_LEASE,
                owner=owner,
                now=now,
                until=until,
                skip_locked=True,
                limit=room,
                also_free=dead,
            )
    mine = set(rows.filter(lease_owner=owner, lease_until__gte=now).values_list("account", flat=True))
    return [account for account in accounts if account.key in mine]


def leave(*, owner: str) -> None:
    """A clean stop: every lease of this poller released and its heartbeat gone, so that the others
    take its accounts at their next cycle."""
    leases.release(AccountState.objects.all(), fields=ACCOUNT_LEASE, owner=owner)
    PollerHeartbeat.objects.filter(owner=owner).delete()
    leases.drop_session_lock(_session_lock_name(owner))


def share_of(*, owner: str, now: datetime) -> tuple[int, int]:
    """How many accounts `owner` holds, and how many pollers are live."""
    held = AccountState.objects.filter(lease_owner=owner, lease_until__gte=now).count()
    return held, len(live_pollers(now=now))


def claim(account: Account, *, owner: str, now: datetime, seconds: float) -> bool:
    """Take (or renew) one account's lease; False while another poller holds it."""
    return bool(claim_all([account], owner=owner, now=now, seconds=seconds))


def release(account: Account, *, owner: str) -> None:
    leases.release(AccountState.objects.filter(account=account.key), fields=ACCOUNT_LEASE, owner=owner)


def is_due(state: AccountState, now: datetime) -> bool:
    return all(moment is None or moment <= now for moment in (state.backoff_until, state.next_poll_at))


def poll_account(
    account: Account,
    *,
    now: datetime,
    provider: Provider | None = None,
    owner: str = "",
    state: AccountState | None = None,
) -> PollResult:
    """One cycle for one account; never raises for upstream trouble (it is recorded on the account).

    `owner`: every write needs this poller's lease on the account; once another poller holds it,
    the poll stops (`lost`), leaving the account to it. `state`: the account's, if just read."""
    provider = provider or provider_for(account)
    state = state or state_for(account)
    result = PollResult(account=account.key, owner=owner, started=time.time())
    try:
        # Still this poller's, before any upstream call (a poller resumed after a pause asks nothing): a
        # plain read, as `_holding` around each write still decides; a transaction here would take
        # SQLite's write lock once a poll for nothing.
        if owner and not AccountState.objects.filter(account=account.key, lease_owner=owner).exists():
            raise LeaseLost(account.key)
        try:
            seen, after = _list_new(provider, account, state, now, result)
            seen |= _backfill(provider, state, now, result)
            _refresh_active(provider, account, now, seen, after, result)
        except ProviderError as error:
            result.error = redact(error.message, configured_secrets())
            _failed(state, error, now, result)
            logger.warning("poll of %s failed: %s", account.key, result.error)
        else:
            _succeeded(state, account, now, result)
            _count_results(account)
    except LeaseLost:
        result.lost = True
        logger.info("%s: another poller holds it now (this one was paused or counted dead); left to it", account.key)
    result.ended = time.time()
    return result


@contextmanager
def _holding(result: PollResult) -> Iterator[None]:
    """Around each write of an account's poll: its lease row locked and still this poller's, so no
    other poller takes the account while it is written; LeaseLost once another has."""
    if not result.owner:
        yield
        return
    with transaction.atomic():
        rows = AccountState.objects.select_for_update().filter(account=result.account, lease_owner=result.owner)
        if not list(rows.values_list("pk", flat=True)[:1]):
            raise LeaseLost(result.account)
        yield


def _count_results(account: Account) -> None:
    """Count the results of the account's next ended batches (POLL_RESULTS_PER_CYCLE). Never raises: a
    failure is logged, and the batch is counted again in a later cycle."""
    if settings.POLL_RESULTS_PER_CYCLE <= 0:
        return
    try:
        services.count_ended_results(account=account, limit=settings.POLL_RESULTS_PER_CYCLE)
    except ProviderError as error:
        logger.warning("counting results of %s failed: %s", account.key, redact(error.message, configured_secrets()))
    except Exception:
        logger.exception("counting results of %s failed (polling goes on)", account.key)


def _record(batches, now: datetime, result: PollResult) -> None:
    with _holding(result):
        result.changed += store.record_many(batches, fetched_at=now)


def _record_page(page: Page, account: Account, now: datetime, result: PollResult) -> bool:
    """Store a list page's batches, but those already stored in an ended status (final: rewriting
    them each cycle would only cost). True if the page held batches stored as ended."""
    _unreadable(page, result)
    result.listed += len(page.batches)
    stored_ended = dict(
        StoredBatch.objects.filter(
            account=account.key, batch_id__in=[batch.id for batch in page.batches], is_ended=True
        ).values_list("batch_id", "status")
    )
    # A batch marked ended only because a retrieve said 404 keeps its last status: if it is listed
    # again after all, it is written again.
    ended = providers.module(account.provider).ENDED
    final = {batch_id for batch_id, status in stored_ended.items() if status in ended}
    _record([batch for batch in page.batches if batch.id not in final], now, result)
    return bool(stored_ended)


def _unreadable(page, result: PollResult) -> None:
    result.warnings.extend({"batch": batch_id, "reason": message} for batch_id, message in page.unreadable)


def _list_new(
    provider: Provider, account: Account, state: AccountState, now: datetime, result: PollResult
) -> tuple[set[str], str | None]:
    """Newest first until the listing reaches a batch already stored as ended: the ids listed, and
    the cursor that reads on from there (None when the listing was read to its end).

    An account seen for the first time gets one page here; the backfill reads the rest, a page a cycle.
    """
    first_look = not StoredBatch.objects.filter(account=state.account).exists()
    seen: set[str] = set()
    after = None
    for _ in range(MAX_INCREMENTAL_PAGES):
        page = provider.list_page(limit=LIST_PAGE_LIMIT, after=after)
        reached_known = _record_page(page, account, now, result)
        ids = [batch.id for batch in page.batches]
        seen.update(ids)
        if not page.has_more or not page.batches:
            state.backfill_done = True  # the whole history was listed, whenever the first look was
            return seen, None
        after = page.next_cursor
        if first_look:
            state.backfill_after = after
            break
        if reached_known:
            break
    if not state.backfill_done and not state.backfill_after:
        # A first look whose state was never saved (its poller killed, or its lease taken, before
        # the end of the poll): the backfill starts from here instead of never.
        state.backfill_after = after or ""
    return seen, after


def _backfill(provider: Provider, state: AccountState, now: datetime, result: PollResult) -> set[str]:
    """One page of older history per cycle, from where the last one stopped; the ids listed."""
    if state.backfill_done or not state.backfill_after:
        return set()
    page = provider.list_page(limit=LIST_PAGE_LIMIT, after=state.backfill_after)
    _unreadable(page, result)
    _record(page.batches, now, result)
    result.listed += len(page.batches)
    if page.has_more and page.batches:
        state.backfill_after = page.next_cursor or ""
    else:
        state.backfill_done = True
    return {batch.id for batch in page.batches}


def _refresh_active(
    provider: Provider, account: Account, now: datetime, seen: set[str], after: str | None, result: PollResult
) -> None:
    """Bring every stored batch that has not ended, and was not listed this cycle, up to date.

    Reading the listing on from `after` (where this cycle's listing stopped: no page is read twice)
    down to the oldest of them takes about one request per page of the batches stored since that
    one was created; retrieving takes one request per batch. The listing is read when it takes
    fewer; whatever it did not show (deleted, unreadable) is retrieved.
    """
    wanted = dict(
        StoredBatch.objects.filter(account=account.key, is_ended=False)
        .exclude(batch_id__in=seen)
        .order_by("-created_at", "-batch_id")
        .values_list("batch_id", "created_at")
    )
    if not wanted:
        return
    if REFRESH_BY_LISTING and after is not None:
        limit = page_limit(account)
        oldest = min(wanted.values())
        since = StoredBatch.objects.filter(account=account.key, created_at__gte=oldest).exclude(batch_id__in=seen)
        if math.ceil(since.count() / limit) < len(wanted):
            _list_active(provider, account, now, after, limit, wanted, result)
    _retrieve(provider, account, now, list(wanted), result)


def page_limit(account: Account) -> int:
    """The largest page the account's list endpoint serves (its provider module's MAX_PAGE_LIMIT)."""
    return int(getattr(providers.module(account.provider), "MAX_PAGE_LIMIT", LIST_PAGE_LIMIT))


def _list_active(
    provider: Provider,
    account: Account,
    now: datetime,
    after: str,
    limit: int,
    wanted: dict[str, datetime],
    result: PollResult,
) -> None:
    """Read the listing on from `after` until every batch in `wanted` (id: created_at) was shown, or
    the listing is past the oldest of them; those shown are recorded and taken out of `wanted`.

    Never more pages than there were batches to retrieve, whatever the store's count said."""
    oldest = min(wanted.values())
    for _ in range(len(wanted) - 1):
        page = provider.list_page(limit=limit, after=after)
        _record_page(page, account, now, result)
        ids = [batch.id for batch in page.batches]
        shown = wanted.keys() & set(ids)
        result.refreshed += len(shown)
        for batch_id in shown:
            del wanted[batch_id]
        if not wanted or not page.has_more or not page.batches or page.batches[-1].created_at < oldest:
            return
        after = page.next_cursor


def _retrieve(provider: Provider, account: Account, now: datetime, batch_ids: list[str], result: PollResult) -> None:
    """Retrieve each batch, POLL_CONCURRENCY at a time, and record the answers as they come.

    Only this (the account's) thread writes to the store. The first ProviderError stops retrieves
    not yet started and is raised once those in flight have answered: what they brought is recorded.
    """
    if not batch_ids:
        return
    concurrency = max(1, min(settings.POLL_CONCURRENCY, len(batch_ids)))

    def fetch(batch_id: str):
        try:
            return provider.retrieve(batch_id)
        finally:
            connections.close_all()  # this pool's threads end with the account's cycle

    failure: ProviderError | None = None
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="poll-retrieve")
    try:
        futures = {pool.submit(fetch, batch_id): batch_id for batch_id in batch_ids}
        for future in as_completed(futures):
            if future.cancelled():
                continue
            batch_id = futures[future]
            try:
                batch = future.result()
            except NotFound:
                # Deleted upstream (Anthropic lets ended batches be deleted), or never there: a 404
                # is definite. Its row says so and is no longer polled; its last state is kept.
                with _holding(result):
                    gone = store.mark_gone(account_key=account.key, batch_id=batch_id, at=now)
                if gone:
                    logger.info("%s/%s: the provider answers 404 (deleted or not found)", account.key, batch_id)
                continue
            except ProviderError as error:
                if failure is None:
                    failure = error
                    for other in futures:
                        other.cancel()
                continue
            _record([batch], now, result)
            result.refreshed += 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if failure is not None:
        raise failure


def _succeeded(state: AccountState, account: Account, now: datetime, result: PollResult) -> None:
    has_active = StoredBatch.objects.filter(account=account.key, is_ended=False).exists()
    state.last_success_at = now
    if state.first_success_at is None:
        state.first_success_at = now
    state.consecutive_failures = 0
    state.backoff_until = None
    state.warnings = result.warnings
    idle = timedelta(seconds=settings.POLL_IDLE_SECONDS)
    state.next_poll_at = None if has_active else now + idle
    with _holding(result):
        state.save(update_fields=POLLED_STATE_FIELDS)


def backoff_seconds(error: ProviderError, failures: int, *, rand: Callable[[], float] = random.random) -> float:
    """429: what retry-after says (at least the poll interval); otherwise exponential with full jitter."""
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return max(float(settings.POLL_SECONDS), min(error.retry_after, MAX_BACKOFF_SECONDS))
    ceiling = min(MAX_BACKOFF_SECONDS, settings.POLL_SECONDS * 2 ** min(failures, 10))
    return settings.POLL_SECONDS + rand() * ceiling


def outage_backoff_seconds(failures: int) -> float:
    """How long to wait after `failures` cycles in a row failed as a whole (not an account's poll)."""
    return settings.POLL_SECONDS * min(2 ** max(failures - 1, 0), OUTAGE_BACKOFF_MAX_INTERVALS)


def _failed(state: AccountState, error: ProviderError, now: datetime, result: PollResult) -> None:
    state.consecutive_failures += 1
    state.last_error_at = now
    state.last_error = redact(error.message, configured_secrets())[:1000]
    state.backoff_until = now + timedelta(seconds=backoff_seconds(error, state.consecutive_failures))
    with _holding(result):
        state.save(update_fields=POLLED_STATE_FIELDS)


def run_cycle(
    *, owner: str, now: datetime, accounts: list[Account] | None = None, evaluate: bool = True
) -> list[PollResult]:
    """Beat, hold this poller's share of the configured accounts (`claim_share`), and poll,
    concurrently, those of them that are due; then, `evaluate`, the alarms (`manage.py poll`
    evaluates them on a thread of its own instead, so that an evaluation never delays the polls)."""
    accounts = configured_accounts() if accounts is None else accounts
    mine = claim_share(accounts, owner=owner, now=now)
    results = poll_due(mine, owner=owner, now=now)
    if evaluate:
        # Even with nothing due (every account backing off, say): "account failing" is an alarm too.
        evaluate_alarms(owner=owner, now=now, accounts=accounts)
    return results


def take_over(*, owner: str, now: datetime, accounts: list[Account] | None = None) -> list[Account]:
    """Between cycles (the heartbeat thread, at each beat): if a dead poller (`_pollers`) still
    holds accounts, claim this poller's share again now instead of at the next cycle; the accounts
    newly taken, to poll at once (`poll_due`). Cheap when nobody died: two small reads."""
    accounts = configured_accounts() if accounts is None else accounts
    _, dead = _pollers(now=now)
    keys = [account.key for account in accounts]
    orphaned = AccountState.objects.filter(account__in=keys, lease_owner__in=dead, lease_until__gte=now)
    if not dead or not orphaned.exists():
        return []
    with _leasing:
        before = set(
            AccountState.objects.filter(account__in=keys, lease_owner=owner, lease_until__gte=now).values_list(
                "account", flat=True
            )
        )
        mine = _claim_share(accounts, owner=owner, now=now)
    return [account for account in mine if account.key not in before]


# The accounts this process is polling at the moment: a take-over's polls and a cycle's never poll
# one account twice at once.
_in_flight: set[str] = set()
_in_flight_guard = threading.Lock()
# The threads that poll accounts, one pool per kind of caller (a cycle; a take-over, which must not
# wait behind a cycle's queue), kept for the process's life with their database connections: a
# connection made per account poll cost a PostgreSQL backend's start and its cold caches each time.
_pools: dict[str, tuple[int, ThreadPoolExecutor]] = {}
_pools_guard = threading.Lock()


def _pool(name: str) -> ThreadPoolExecutor:
    size = max(1, settings.POLL_ACCOUNT_CONCURRENCY)
    with _pools_guard:
        known = _pools.get(name)
        if known is None or known[0] != size:
            if known is not None:
                known[1].shutdown(wait=False)
            known = _pools[name] = (size, ThreadPoolExecutor(max_workers=size, thread_name_prefix=name))
        return known[1]


def poll_due(mine: list[Account], *, owner: str, now: datetime, pool: str = "poll") -> list[PollResult]:
    """Poll those of `mine` that are due (and not being polled by this process already),
    POLL_ACCOUNT_CONCURRENCY at a time (on the threads of `pool`), those polled longest ago first."""
    states = {state.account: state for state in AccountState.objects.filter(account__in=[a.key for a in mine])}
    never = datetime.min.replace(tzinfo=now.tzinfo)
    due = sorted(
        (account for account in mine if account.key in states and is_due(states[account.key], now)),
        key=lambda account: states[account.key].last_success_at or never,
    )
    with _in_flight_guard:
        due = [account for account in due if account.key not in _in_flight]
        _in_flight.update(account.key for account in due)

    def poll(account: Account) -> PollResult:
        # Like a request's start: a connection that broke (the database restarted) or outlived
        # CONN_MAX_AGE is closed, and this poll reconnects.
        close_old_connections()
        try:
            return poll_account(account, now=now, owner=owner, state=states[account.key])
        finally:
            with _in_flight_guard:
                _in_flight.discard(account.key)

    futures = []
    try:
        futures = [_pool(pool).submit(poll, account) for account in due]
        return [future.result() for future in futures]
    finally:
        wait(futures)
        with _in_flight_guard:
            _in_flight.difference_update(account.key for account in due)


def evaluate_alarms(*, owner: str, now: datetime, accounts: list[Account]) -> evaluation.Evaluation | None:
    """The alarms, if this poller holds the evaluator's lease (taken or renewed here); None if it
    does not, alarms are off (ALARMS_ENABLED), or the evaluation failed. Never raises: a failure is
    logged and noted on the evaluator's row, and polling goes on."""
    if not settings.ALARMS_ENABLED:
        return None
    try:
        if not evaluation.claim_evaluator(owner, now=now, seconds=settings.POLL_LEASE_SECONDS):
            return None
        return evaluation.evaluate(now, accounts=[account.key for account in accounts])
    except Exception as error:
        logger.exception("alarm evaluation failed (polling goes on)")
        try:
            evaluation.evaluation_failed(error)
        except Exception:
            logger.exception("could not note the failed alarm evaluation")
        return None
