"""The poller: keeps the store fresh, one account at a time per poller, any number of pollers.

Each cycle, for every account this poller holds the lease of and that is due:
1. list newest first, page by page, until a page holds only batches already stored as ended;
2. backfill the older history one page further than last time, until it is complete;
3. retrieve every stored batch that has not ended (and was not in this cycle's listing);
4. write the account's health: last success, or the (redacted) error, a failure count and when
   to try again (`retry-after` on 429; exponential backoff with jitter on 5xx, 529 and timeouts).

Leases are a conditional UPDATE (take the lease if it is free, expired or already ours): one
statement, atomic on PostgreSQL and SQLite alike, so pollers never poll one account at once and a
killed poller's accounts are taken over once its lease expires.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections
from django.db.models import Q

from . import store
from .accounts import Account, configured_accounts, provider_for
from .models import AccountState, StoredBatch
from .providers.base import NotFound, Provider, ProviderError, RateLimited
from .redaction import redact

logger = logging.getLogger(__name__)

LIST_PAGE_LIMIT = 100
MAX_INCREMENTAL_PAGES = 20
MAX_BACKOFF_SECONDS = 300


@dataclass
class PollResult:
    account: str
    listed: int = 0
    refreshed: int = 0
    changed: int = 0
    error: str = ""
    warnings: list[dict] = field(default_factory=list)


def state_for(account: Account) -> AccountState:
    state, _ = AccountState.objects.get_or_create(account=account.key, defaults={"provider": account.provider})
    return state


def claim(account: Account, *, owner: str, now: datetime, seconds: float) -> bool:
    """Take (or renew) the account's lease; False while another poller holds it."""
    state_for(account)
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner)
    taken = AccountState.objects.filter(free, account=account.key).update(
        lease_owner=owner, lease_until=now + timedelta(seconds=seconds)
    )
    return taken == 1


def release(account: Account, *, owner: str) -> None:
    AccountState.objects.filter(account=account.key, lease_owner=owner).update(lease_owner="", lease_until=None)


def is_due(state: AccountState, now: datetime) -> bool:
    return all(moment is None or moment <= now for moment in (state.backoff_until, state.next_poll_at))


def poll_account(account: Account, *, now: datetime, provider: Provider | None = None) -> PollResult:
    """One cycle for one account; never raises for upstream trouble (it is recorded on the account)."""
    provider = provider or provider_for(account)
    state = state_for(account)
    result = PollResult(account=account.key)
    try:
        seen = _list_new(provider, state, now, result)
        _backfill(provider, state, now, result)
        _refresh_active(provider, account, now, seen, result)
    except ProviderError as error:
        result.error = redact(error.message)
        _failed(state, error, now)
        logger.warning("poll of %s failed: %s", account.key, result.error)
    else:
        _succeeded(state, account, now, result)
    return result


def _record(batches, now: datetime, result: PollResult) -> None:
    result.changed += store.record_many(batches, fetched_at=now)


def _unreadable(page, result: PollResult) -> None:
    result.warnings.extend({"batch": batch_id, "reason": message} for batch_id, message in page.unreadable)


def _list_new(provider: Provider, state: AccountState, now: datetime, result: PollResult) -> set[str]:
    """Newest first until the listing reaches a batch already stored as ended; the ids listed.

    An account seen for the first time gets one page here; the backfill reads the rest, a page a cycle.
    """
    first_look = not StoredBatch.objects.filter(account=state.account).exists()
    seen: set[str] = set()
    after = None
    for _ in range(MAX_INCREMENTAL_PAGES):
        page = provider.list_page(limit=LIST_PAGE_LIMIT, after=after)
        _unreadable(page, result)
        ids = [batch.id for batch in page.batches]
        reached_known = StoredBatch.objects.filter(account=state.account, batch_id__in=ids, is_ended=True).exists()
        _record(page.batches, now, result)
        result.listed += len(page.batches)
        seen.update(ids)
        if not page.has_more or not page.batches:
            if first_look:
                state.backfill_done = True
            break
        after = page.last_id or ids[-1]
        if first_look:
            state.backfill_after = after
            break
        if reached_known:
            break
    return seen


def _backfill(provider: Provider, state: AccountState, now: datetime, result: PollResult) -> None:
    """One page of older history per cycle, from where the last one stopped."""
    if state.backfill_done or not state.backfill_after:
        return
    page = provider.list_page(limit=LIST_PAGE_LIMIT, after=state.backfill_after)
    _unreadable(page, result)
    _record(page.batches, now, result)
    result.listed += len(page.batches)
    if page.has_more and page.batches:
        state.backfill_after = page.last_id or page.batches[-1].id
    else:
        state.backfill_done = True


def _refresh_active(provider: Provider, account: Account, now: datetime, seen: set[str], result: PollResult) -> None:
    active = StoredBatch.objects.filter(account=account.key, is_ended=False).exclude(batch_id__in=seen)
    for batch_id in active.values_list("batch_id", flat=True):
        try:
            batch = provider.retrieve(batch_id)
        except NotFound:
            # Deleted upstream (Anthropic lets ended batches be deleted): nothing more will change.
            StoredBatch.objects.filter(account=account.key, batch_id=batch_id).update(is_ended=True)
            continue
        _record([batch], now, result)
        result.refreshed += 1


def _succeeded(state: AccountState, account: Account, now: datetime, result: PollResult) -> None:
    has_active = StoredBatch.objects.filter(account=account.key, is_ended=False).exists()
    state.last_success_at = now
    state.consecutive_failures = 0
    state.backoff_until = None
    state.warnings = result.warnings
    idle = timedelta(seconds=settings.POLL_IDLE_SECONDS)
    state.next_poll_at = None if has_active else now + idle
    state.save()


def backoff_seconds(error: ProviderError, failures: int, *, rand: Callable[[], float] = random.random) -> float:
    """429: what retry-after says (at least the poll interval); otherwise exponential with full jitter."""
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return max(float(settings.POLL_SECONDS), min(error.retry_after, MAX_BACKOFF_SECONDS))
    ceiling = min(MAX_BACKOFF_SECONDS, settings.POLL_SECONDS * 2 ** min(failures, 10))
    return settings.POLL_SECONDS + rand() * ceiling


def _failed(state: AccountState, error: ProviderError, now: datetime) -> None:
    state.consecutive_failures += 1
    state.last_error_at = now
    state.last_error = redact(error.message)[:1000]
    state.backoff_until = now + timedelta(seconds=backoff_seconds(error, state.consecutive_failures))
    state.save()


def run_cycle(*, owner: str, now: datetime, accounts: list[Account] | None = None) -> list[PollResult]:
    """Poll, concurrently, every configured account this poller can lease and that is due."""
    accounts = configured_accounts() if accounts is None else accounts
    mine = [
        account for account in accounts if claim(account, owner=owner, now=now, seconds=settings.POLL_LEASE_SECONDS)
    ]
    due = [account for account in mine if is_due(state_for(account), now)]
    if not due:
        return []

    def poll(account: Account) -> PollResult:
        try:
            return poll_account(account, now=now)
        finally:
            connections.close_all()  # this pool's threads end with the cycle

    with ThreadPoolExecutor(max_workers=min(8, len(due)), thread_name_prefix="poll") as pool:
        return list(pool.map(poll, due))
