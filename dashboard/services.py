"""What the dashboard does, for the web views and the CLI alike.

Upstream answers are shared through Django's cache for a couple of seconds, so the number of
people watching does not multiply upstream calls; the last known state of every batch is kept
longer, so a row whose refresh fails can still show it, marked stale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from . import providers, store
from .accounts import Account, configured_accounts, find_account, provider_for
from .models import AccountState, CancelAttempt
from .providers.base import AlreadyEnded, Batch, NotFound, Page, ProviderError, UpstreamTimeout, jsonl_lines
from .results import ErrorSummary, ResultLine, ResultPage, page_of, parse_stream, summarize

logger = logging.getLogger(__name__)

LAST_KNOWN_SECONDS = 24 * 3600
ACTIVE = "active"  # status filter: every batch that has not ended


@dataclass(frozen=True)
class BatchView:
    batch: Batch
    stale_reason: str = ""
    fetched_at: datetime | None = None

    @property
    def is_stale(self) -> bool:
        return bool(self.stale_reason)


@dataclass(frozen=True)
class AccountFailure:
    account: Account
    message: str


@dataclass(frozen=True)
class UnreadableBatches:
    """Batches of one account left out of a listing because we cannot read them."""

    account: Account
    batches: tuple[tuple[str, str], ...]  # (id, or "" if unreadable; our message), as in Page.unreadable


@dataclass
class Listing:
    batches: list[Batch]
    failures: list[AccountFailure]
    next_cursor: dict[str, str] | None  # account key -> after id; absent accounts are exhausted
    unreadable: list[UnreadableBatches] = field(default_factory=list)  # warned about; the other batches are listed


@dataclass(frozen=True)
class CancelResult:
    view: BatchView | None
    outcome: str
    message: str


class UnknownBatch(Exception):
    """Account unknown or id malformed: answered as a 404 without any upstream call."""


def _batch_cache_key(account_key: str, batch_id: str) -> str:
    return f"batch:{account_key}:{batch_id}"


def _last_known_key(account_key: str, batch_id: str) -> str:
    return f"last-known:{account_key}:{batch_id}"


def _remember(batches: list[Batch]) -> None:
    cache.set_many({_last_known_key(batch.account, batch.id): batch for batch in batches}, LAST_KNOWN_SECONDS)


def resolve(*, account_key: str, batch_id: str) -> Account:
    """The account of a batch URL, with the id checked against the provider's id shape."""
    account = find_account(account_key)
    if account is None or not provider_for(account).is_valid_id(batch_id):
        raise UnknownBatch(f"No batch {batch_id!r} in account {account_key!r}.")
    return account


@dataclass(frozen=True)
class _Failed:
    error: ProviderError


def shared_upstream(cache_key: str, fetch):
    """One upstream call per key per UPSTREAM_CACHE_SECONDS, however many viewers ask at once.

    The first asker takes a lock in the shared cache and calls upstream; the others wait for its
    answer (or its error, which is shared too, so a failing provider is not hammered).
    """
    ttl = settings.UPSTREAM_CACHE_SECONDS
    found = cache.get(cache_key)
    if found is None and ttl > 0:
        lock_key = f"{cache_key}:lock"
        if not cache.add(lock_key, True, timeout=settings.UPSTREAM_TIMEOUT_SECONDS + 5):
            deadline = time.monotonic() + settings.UPSTREAM_TIMEOUT_SECONDS + 1
            while found is None and time.monotonic() < deadline and cache.get(lock_key) is not None:
                time.sleep(0.02)
                found = cache.get(cache_key)
        else:
            try:
                found = _call(fetch)
                cache.set(cache_key, found, ttl)
            finally:
                cache.delete(lock_key)
    if found is None:
        found = _call(fetch)
    if isinstance(found, _Failed):
        raise found.error
    return found


def _call(fetch):
    try:
        return fetch()
    except ProviderError as error:
        return _Failed(error)


def _fetch_page(account: Account, after: str | None, limit: int) -> Page:
    def fetch() -> Page:
        page = provider_for(account).list_page(limit=limit, after=after)
        _remember(page.batches)
        return page

    return shared_upstream(f"page:{account.key}:{after or ''}:{limit}", fetch)


def list_batches(
    *,
    cursor: dict[str, str] | None = None,
    limit: int | None = None,
    provider: str = "",
    account_key: str = "",
    status: str = "",
) -> Listing:
    """One page of every selected account's batches, merged newest first.

    Each account is asked for `limit` batches after its own cursor, all accounts at once; the
    newest `limit` of the union are shown and each account's cursor moves past what was shown.
    """
    limit = limit or settings.LIST_PAGE_SIZE
    accounts = [
        account
        for account in configured_accounts()
        if (not provider or account.provider == provider) and (not account_key or account.key == account_key)
    ]
    if cursor is not None:
        accounts_to_ask = [account for account in accounts if account.key in cursor]
    else:
        accounts_to_ask = accounts
    pages: dict[str, Page] = {}
    failures: list[AccountFailure] = []
    with ThreadPoolExecutor(max_workers=max(1, len(accounts_to_ask))) as pool:
        futures = {
            account.key: pool.submit(_fetch_page, account, (cursor or {}).get(account.key) or None, limit)
            for account in accounts_to_ask
        }
        for account in accounts_to_ask:
            try:
                pages[account.key] = futures[account.key].result()
            except ProviderError as error:
                logger.warning("listing %s failed: %s", account.key, error.message)
                failures.append(AccountFailure(account=account, message=error.message))

    unreadable = [
        UnreadableBatches(account=account, batches=tuple(pages[account.key].unreadable))
        for account in accounts_to_ask
        if account.key in pages and pages[account.key].unreadable
    ]
    for note in unreadable:
        logger.warning(
            "listing %s: %d batch(es) cannot be read: %s",
            note.account.key,
            len(note.batches),
            "; ".join(message for _, message in note.batches),
        )

    merged = sorted(
        (batch for page in pages.values() for batch in page.batches),
        key=lambda batch: batch.created_at,
        reverse=True,
    )[:limit]
    next_cursor: dict[str, str] = {}
    for key, page in pages.items():
        shown = [batch for batch in merged if batch.account == key]
        if len(shown) < len(page.batches):
            next_cursor[key] = shown[-1].id if shown else (cursor or {}).get(key, "")
        elif page.has_more and page.batches:
            next_cursor[key] = page.batches[-1].id
    for failure in failures:
        # An account that failed keeps its place, so "next" does not silently skip it.
        if cursor is not None and failure.account.key in cursor:
            next_cursor[failure.account.key] = cursor[failure.account.key]

    if status == ACTIVE:
        merged = [batch for batch in merged if not batch.is_ended]
    elif status:
        merged = [batch for batch in merged if batch.status == status]
    return Listing(batches=merged, failures=failures, next_cursor=next_cursor or None, unreadable=unreadable)


def get_batch(*, account: Account, batch_id: str) -> BatchView:
    """The batch as of at most UPSTREAM_CACHE_SECONDS ago; its last known state if that fails."""

    def fetch() -> BatchView:
        batch = provider_for(account).retrieve(batch_id)
        _remember([batch])
        return BatchView(batch=batch, fetched_at=timezone.now())

    try:
        return shared_upstream(_batch_cache_key(account.key, batch_id), fetch)
    except ProviderError as error:
        last = cache.get(_last_known_key(account.key, batch_id))
        if last is None:
            raise
        return BatchView(batch=last, stale_reason=error.message)


def cancel_batch(*, account: Account, batch_id: str, actor: str, user=None, via: str = "web") -> CancelResult:
    """Ask upstream to cancel, with the attempt recorded before the call and completed after it."""
    attempt = CancelAttempt.objects.create(
        user=user,
        actor=actor,
        via=via,
        account=account.key,
        batch_id=batch_id,
    )
    try:
        batch = provider_for(account).cancel(batch_id)
    except AlreadyEnded as error:
        attempt_outcome, message, batch = CancelAttempt.Outcome.ALREADY_ENDED, error.message, None
    except UpstreamTimeout as error:
        attempt_outcome, batch = CancelAttempt.Outcome.UPSTREAM_ERROR, None
        message = f"{error.message} The provider may still have accepted the cancel: check the batch's status."
    except ProviderError as error:
        attempt_outcome, message, batch = CancelAttempt.Outcome.UPSTREAM_ERROR, error.message, None
    except Exception as error:
        # Whatever broke, the attempt is completed in the audit trail and the operator gets an answer.
        logger.exception("cancel of %s/%s failed unexpectedly", account.key, batch_id)
        attempt_outcome, batch = CancelAttempt.Outcome.UPSTREAM_ERROR, None
        message = (
            f"The cancel call failed unexpectedly ({type(error).__name__}); whether the provider "
            "canceled the batch is unknown: check its status."
        )
    else:
        attempt_outcome, message = CancelAttempt.Outcome.ACCEPTED, f"Cancel accepted; status is now {batch.status}."

    cache.delete(_batch_cache_key(account.key, batch_id))
    if batch is None:
        try:
            view = get_batch(account=account, batch_id=batch_id)
        except Exception:
            view = None
    else:
        _remember([batch])
        view = BatchView(batch=batch, fetched_at=timezone.now())
    if view is not None and view.fetched_at is not None:
        _store_and_wake(account, view)
    attempt.outcome = attempt_outcome
    attempt.message = message
    attempt.status_after = view.batch.status if view else ""
    if batch is not None:
        attempt.counts_at_cancel = batch.raw.get("request_counts")
    attempt.finished_at = timezone.now()
    attempt.save(update_fields=["outcome", "message", "status_after", "finished_at", "counts_at_cancel"])
    return CancelResult(view=view, outcome=attempt_outcome, message=message)


def _store_and_wake(account: Account, view: BatchView) -> None:
    """The store shows the cancel's answer at once, and the poller's next cycle takes this account now."""
    try:
        store.record(view.batch, fetched_at=view.fetched_at)
        AccountState.objects.filter(account=account.key).update(next_poll_at=None)
    except Exception:
        # The cancel itself happened and is audited; the poller will catch the store up.
        logger.exception("storing the cancel answer of %s/%s failed", account.key, view.batch.id)


def find_batch(*, batch_id: str, account_key: str = "") -> tuple[Account, BatchView]:
    """A batch by id alone (the CLI's way): asks each account whose id shape fits."""
    candidates = [
        account
        for account in configured_accounts()
        if (not account_key or account.key == account_key) and provider_for(account).is_valid_id(batch_id)
    ]
    failure: ProviderError | None = None
    for account in candidates:
        try:
            return account, get_batch(account=account, batch_id=batch_id)
        except NotFound:
            continue
        except ProviderError as error:
            failure = failure or error
    if failure is not None:
        raise failure
    raise UnknownBatch(f"No batch {batch_id!r} in {account_key or 'any configured account'}.")


def iter_results(*, account: Account, batch: Batch) -> Iterator[ResultLine]:
    """Every result line of an ended batch, parsed one at a time as it streams in."""
    provider = provider_for(account)
    sources = provider.result_sources(batch)
    named = providers.module(account.provider).LINES_NAME_SOURCE

    def lines() -> Iterator[tuple[str, bytes]]:
        for source in sources:
            with provider.open_results(batch.id, source, known=batch) as response:
                for line in jsonl_lines(response):
                    yield (source if named else "", line)

    return parse_stream(account.provider, lines())


def open_download(*, account: Account, batch: Batch, source: str) -> Iterator[bytes]:
    """The upstream JSONL bytes, unchanged. Upstream errors raise here, before any byte is sent."""
    stack = ExitStack()
    response = stack.enter_context(provider_for(account).open_results(batch.id, source, known=batch))

    def body() -> Iterator[bytes]:
        with stack:
            yield from response.iter_raw()

    return body()


RESULTS_SUMMARY_SECONDS = 600


def results_page(
    *, account: Account, batch: Batch, offset: int, size: int, kind: str = "", source: str = "", custom_id: str = ""
) -> ResultPage:
    """One page of result lines; the upstream stream is read only as far as this page needs."""
    lines = iter_results(account=account, batch=batch)
    try:
        return page_of(lines, offset=offset, size=size, kind=kind, source=source, custom_id=custom_id)
    finally:
        lines.close()


def error_summary(*, account: Account, batch: Batch) -> ErrorSummary:
    """Results counted by type and by error; one full streaming pass, shared while it is fresh."""
    cache_key = f"results-summary:{account.key}:{batch.id}"
    summary = cache.get(cache_key)
    if summary is None:
        summary = summarize(iter_results(account=account, batch=batch))
        cache.set(cache_key, summary, RESULTS_SUMMARY_SECONDS)
    return summary


@dataclass(frozen=True)
class CancelStory:
    requested_at: datetime
    ended_at: datetime | None
    canceling_took: timedelta | None
    finished_after_cancel: int | None  # None: the provider does not tell
    canceled: int
    explanation: str


def cancel_story(*, batch: Batch, attempts: list[CancelAttempt]) -> CancelStory | None:
    if batch.cancel_initiated_at is None:
        return None
    took = batch.ended_at - batch.cancel_initiated_at if batch.ended_at else None
    accepted = next(
        (a for a in reversed(attempts) if a.outcome == CancelAttempt.Outcome.ACCEPTED and a.counts_at_cancel), None
    )
    finished_after, explanation = providers.module(batch.provider).after_cancel(
        batch, accepted.counts_at_cancel if accepted is not None else None
    )
    return CancelStory(
        requested_at=batch.cancel_initiated_at,
        ended_at=batch.ended_at,
        canceling_took=took,
        finished_after_cancel=finished_after,
        canceled=batch.counts.canceled,
        explanation=explanation,
    )


def cancel_attempts(*, account_key: str, batch_id: str) -> list[CancelAttempt]:
    return list(CancelAttempt.objects.filter(account=account_key, batch_id=batch_id).order_by("requested_at", "id"))
