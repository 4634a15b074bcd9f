"""Reading the store for the pages and the CLI: no upstream call here, ever.

The poller keeps the store fresh; these functions say what it holds and how fresh it is. A batch
read from the store comes with when it was last fetched and whether it is stale: not ended and
either its account's polls are failing or its row has not been refreshed for STALE_POLLS poll
intervals. An ended batch is never stale: nothing about it changes any more.

Lists are paged by keyset (created_at, id), newest first: a cursor names the row a page stopped
at, so new batches arriving at the top never shift the older pages (no duplicates, no gaps).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlencode

from django.conf import settings
from django.db import connection
from django.db.models import CharField, Count, F, Func, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, StrIndex
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ..accounts import Account
from ..models import AccountState, Alarm, BatchChange, CancelAttempt, StoredBatch
from ..providers.base import Batch
from . import search_index, store, trigram_sample

ACTIVE = "active"  # status filter: every batch that has not ended
STALE_POLLS = 3  # a row, or an account's last success, older than this many poll intervals is late
MAX_LIMIT = 200
# How much older than a first page's top row a batch stored since may be and still be brought in live.
LATE_ARRIVAL = timedelta(minutes=10)
MAX_SEARCH = 200
# A term with fewer matches than this in the whole store has its rows found by SQLite's trigram
# index (migration 0024), read by rowid and sorted (a few milliseconds at most); a commoner term
# fills a page sooner by walking the list's order.
RARE_MATCHES = 500
TRIGRAM = 3  # the trigram index finds no term shorter than this
# More accounts than this are read in one arm, not merged one per account (SQLite allows 500 arms).
MERGED_ACCOUNTS = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ListFilters:
    """The list's filters, as the list page, its header and bulk cancel all read them; "" is no filter.

    `fields()` is how they are passed to the selectors below and kept (in a bulk cancel's preview
    token and operation); `query()` is how the list's URLs write them."""

    provider: str = ""
    account_key: str = ""
    status: str = ""
    search: str = ""

    QUERY_NAMES: ClassVar[dict[str, str]] = {
        "provider": "provider",
        "account_key": "account",
        "status": "status",
        "search": "q",
    }

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> ListFilters:
        """Filters kept by `fields()`: whatever else the dict holds is ignored."""
        return cls(**{name: str(fields.get(name, "")) for name in cls.QUERY_NAMES})

    def fields(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in self.QUERY_NAMES}

    def query_params(self) -> dict[str, str]:
        """Every filter by its name in the list's query string (provider, account, status, q)."""
        return {query_name: getattr(self, name) for name, query_name in self.QUERY_NAMES.items()}

    def query(self, **more: str) -> str:
        """The list's query string for these filters (those set only), then `more` (a page's cursor)."""
        return urlencode({**{name: value for name, value in self.query_params().items() if value}, **more})

    def __bool__(self) -> bool:
        return any(self.fields().values())


@dataclass(frozen=True)
class StoredView:
    """A batch as the store has it, with how fresh that is."""

    batch: Batch
    fetched_at: datetime
    stale_reason: str = ""
    gone_at: datetime | None = None  # the provider answers 404 for it since then: deleted or not found
    open_alarms: int = 0  # alarms about this batch that are open (see dashboard/alarms/)
    cancel_accepted_at: datetime | None = None  # the first cancel of it this dashboard saw accepted
    pk: int = 0  # its row in the store
    lagging: bool = False  # stale because its row was not refreshed for STALE_POLLS poll intervals
    fingerprint: str = ""  # changes whenever anything its row shows changes (row_fingerprint)

    @property
    def cancel_pending(self) -> bool:
        """A cancel was accepted but the provider's status does not show it yet (Gemini has no
        canceling state: a batch stays running until the cancel takes effect)."""
        return not self.is_final and self.batch.cancel_initiated_at is None and self.cancel_accepted_at is not None

    @property
    def is_stale(self) -> bool:
        return bool(self.stale_reason)

    @property
    def is_final(self) -> bool:
        """Nothing about it will change: ended, or gone upstream (deleted or not found)."""
        return self.batch.is_ended or self.gone_at is not None


@dataclass(frozen=True)
class StoreListing:
    rows: list[StoredView]
    older: str | None  # cursor for the next page of older batches (pass as `before`); None at the end
    newer: str | None  # cursor for the page of newer batches (pass as `after`); None on the first page
    top: str  # cursor of the newest row shown (or of the start of time): pass as `newer_than`

    @property
    def batches(self) -> list[Batch]:
        return [row.batch for row in self.rows]


@dataclass(frozen=True)
class NewRows:
    """Batches that arrived above the top of a first page since it was rendered."""

    rows: list[StoredView]  # newest first
    top: str  # the new top: pass as `newer_than` next time
    more: bool  # more arrived than `limit`: only a reload shows them all


@dataclass(frozen=True)
class AccountNotice:
    """A configured account whose polls fail or lag, or that has batches we could not read."""

    account: Account
    problem: str  # "failing", "lagging", "never_polled", or "" when only `unreadable` is worth saying
    last_error: str  # redacted by the poller
    last_error_at: datetime | None
    last_success_at: datetime | None
    consecutive_failures: int
    unreadable: tuple[tuple[str, str], ...]  # (batch id or "", reason), as in providers' Page.unreadable

    @property
    def label(self) -> str:
        return self.account.label


# --- cursors --------------------------------------------------------------------------------------


def _encode_cursor(row: StoredBatch | None) -> str:
    """The cursor of a row; of the start of time (before every row) for None."""
    return _cursor(_EPOCH if row is None else row.created_at, 0 if row is None else row.pk)


def _cursor(created_at: datetime, pk: int) -> str:
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}.{pk}".encode()).decode().rstrip("=")


def _decode_cursor(token: str | None) -> tuple[datetime, int] | None:
    """(created_at, pk) from a cursor; None for anything unreadable (the first page is shown)."""
    if not token or len(token) > 64:
        return None
    try:
        micros, pk = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(".")
        return _EPOCH + timedelta(microseconds=int(micros)), int(pk)
    except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError):
        return None


# --- reading rows ---------------------------------------------------------------------------------


def _with_account_health(rows: QuerySet[StoredBatch]) -> QuerySet[StoredBatch]:
    """Each row with its account's failure count and last error, how many alarms about it are open,
    and when a cancel of it was first accepted: still one query."""
    state = AccountState.objects.filter(account=OuterRef("account"))
    open_alarms = (
        Alarm.objects.filter(batch=OuterRef("pk"), resolved_at__isnull=True)
        .order_by()
        .values("batch")
        .annotate(count=Count("pk"))
        .values("count")
    )
    accepted = CancelAttempt.objects.filter(
        account=OuterRef("account"), batch_id=OuterRef("batch_id"), outcome=CancelAttempt.Outcome.ACCEPTED
    ).order_by("requested_at")
    return rows.annotate(
        cancel_accepted_at=Subquery(accepted.values("requested_at")[:1]),
        account_failures=Subquery(state.values("consecutive_failures")[:1]),
        account_error=Subquery(state.values("last_error")[:1]),
        open_alarms=Coalesce(Subquery(open_alarms[:1]), 0),
    )


def _staleness(row: StoredBatch, now: datetime) -> tuple[str, bool]:
    """Why the row is stale ("" if it is not), and whether that is because it was not refreshed."""
    if row.is_ended:
        return "", False
    if getattr(row, "account_failures", 0):
        error = getattr(row, "account_error", "") or "no reason recorded"
        return f"Polls of this account are failing ({error}); shown as last fetched.", False
    age = (now - row.last_fetched_at).total_seconds()
    if age > STALE_POLLS * settings.POLL_SECONDS:
        return f"Not refreshed for {int(age)} s: is the poller running?", True
    return "", False


def row_fingerprint(row: StoredBatch, *, stale_reason: str, lagging: bool) -> str:
    """A short digest of everything a batch's row shows, from its stored columns and the annotations
    of `_with_account_health`: it changes when the row would read differently, and not when the
    poller only fetched the same state again (nor as time passes: how long ago is the browser's to say).
    A row not refreshed says since when, not for how many seconds. What a batch is given when it is
    made and keeps (its id, creation, metadata) is left out: feed.UNWATCHED."""
    shown = (
        row.status,
        row.is_ended,
        row.gone_at,
        row.counts_known,
        *(getattr(row, name) for name in store.COUNT_FIELDS),
        row.expires_at,
        row.ended_at,
        row.cancel_initiated_at,
        getattr(row, "open_alarms", 0) or 0,
        _moment(getattr(row, "cancel_accepted_at", None)),
        "lagging" if lagging else stale_reason,
        row.last_fetched_at if stale_reason or row.is_ended else None,
    )
    text = repr(tuple(value.timestamp() if isinstance(value, datetime) else value for value in shown))
    digest = hashlib.blake2b(text.encode(), digest_size=6).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _view(row: StoredBatch, now: datetime) -> StoredView:
    stale_reason, lagging = _staleness(row, now)
    return StoredView(
        batch=store.as_batch(row),
        fetched_at=row.last_fetched_at,
        stale_reason=stale_reason,
        gone_at=row.gone_at,
        open_alarms=getattr(row, "open_alarms", 0) or 0,
        cancel_accepted_at=_moment(getattr(row, "cancel_accepted_at", None)),
        pk=row.pk,
        lagging=lagging,
        fingerprint=row_fingerprint(row, stale_reason=stale_reason, lagging=lagging),
    )


def _moment(value: Any) -> datetime | None:
    """A subquery's datetime, which the row poll's raw query hands back as the database keeps it
    (SQLite: naive UTC, or text)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if isinstance(value, datetime) and timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


def newest_first(rows: QuerySet[StoredBatch]) -> QuerySet[StoredBatch]:
    return rows.order_by("-created_at", "-pk")


def list_batches(
    *,
    accounts: list[Account],
    provider: str = "",
    account_key: str = "",
    status: str = "",
    search: str = "",
    before: str | None = None,
    after: str | None = None,
    limit: int = 25,
    now: datetime | None = None,
) -> StoreListing:
    """One page of the configured accounts' stored batches, newest first, every filter in SQL.

    `status` is a provider's status word or ACTIVE (not ended); `search` matches the batch id or a
    metadata value, case-insensitively. `before` (a listing's `older`) pages towards older batches,
    `after` (a listing's `newer`) back towards newer ones; an unreadable cursor gives the first page.
    """
    now = now or timezone.now()
    limit = max(1, min(limit, MAX_LIMIT))
    keys = _account_keys(accounts=accounts, provider=provider, account_key=account_key)
    older_than = _decode_cursor(before)
    newer_than = _decode_cursor(after) if older_than is None else None
    if newer_than is not None:
        created_at, pk = newer_than
        above = Q(created_at__gte=created_at) & (Q(created_at__gt=created_at) | Q(pk__gt=pk))
        page = _fetch(_page_keys(keys, status, search, above, limit=limit + 1, ascending=True), ascending=True)
        if len(page) > limit:  # more above this page
            page = page[:limit][::-1]
            return _listing(page, older=True, newer=True, now=now)
        # Up to the top: show the first page, full even if new batches came in meanwhile.
    elif older_than is not None:
        created_at, pk = older_than
        below = Q(created_at__lte=created_at) & (Q(created_at__lt=created_at) | Q(pk__lt=pk))
        page = _fetch(_page_keys(keys, status, search, below, limit=limit + 1))
        return _listing(page[:limit], older=len(page) > limit, newer=True, now=now)
    page = _fetch(_page_keys(keys, status, search, Q(), limit=limit + 1))
    return _listing(page[:limit], older=len(page) > limit, newer=False, now=now)


def _account_keys(*, accounts: list[Account], provider: str, account_key: str) -> list[str]:
    # The provider filter is a set of accounts too: every row's provider is its account's.
    return [
        account.key
        for account in accounts
        if (not account_key or account.key == account_key) and (not provider or account.provider == provider)
    ]


def _filtered(
    rows: QuerySet[StoredBatch], *, status: str, search: str, found_by: list[str] | None = None
) -> QuerySet[StoredBatch]:
    """`found_by`: trigrams of the term (trigram_sample.rarest_trigrams) that PostgreSQL's trigram
    index is to find its rows by, the whole term then checked by `strpos`, which no index serves."""
    if status == ACTIVE:
        # Not `is_ended=False`, which Django writes `NOT is_ended`: SQLite seeks no index with that.
        rows = rows.filter(is_ended__in=[False])
    elif status:
        rows = rows.filter(status=status)
    term = _search_term(search)
    if term and found_by:
        rows = rows.alias(term_at=StrIndex("search_text", Value(term))).filter(term_at__gt=0)
        for trigram in found_by:
            rows = rows.filter(search_text__contains=trigram)
    elif term:
        rows = rows.filter(search_text__contains=term)  # stored lowercased: LIKE, escaped by Django
    return rows


def _search_term(search: str) -> str:
    return search.strip()[:MAX_SEARCH].lower()


def filtered_batches(
    *, accounts: list[Account], provider: str = "", account_key: str = "", status: str = "", search: str = ""
) -> QuerySet[StoredBatch]:
    """The stored batches of `accounts` the list's filters show (as `list_batches` reads them), unordered."""
    keys = _account_keys(accounts=accounts, provider=provider, account_key=account_key)
    return _filtered(StoredBatch.objects.filter(account__in=keys), status=status, search=search)


def _page_keys(
    keys: list[str],
    status: str,
    search: str,
    bound: Q,
    *,
    limit: int,
    ascending: bool = False,
    rare_terms_by_index: bool = True,
) -> QuerySet | None:
    """The keys (pk, created_at) of the first `limit` filtered rows within `bound`, newest first
    (or oldest first, `ascending`); None when no account is asked for.

    One arm per account, merged: each arm walks an index led by the account (and the status, or
    whether ended) in list order from the cursor on, and the merge stops reading once it has `limit`
    rows. So a page reads about `limit` + one entry per account whatever the store holds, where
    `account IN (...)` sorted every matching row (a temporary B-tree on SQLite, a sort on
    PostgreSQL): neither database merges an IN list's index ranges in order.

    A search on SQLite: a rare term's rows (`_rare_term_rows`) are looked up in the trigram index,
    then read by rowid and those few sorted; any other term walks the whole store in list order in
    one index that holds all it tests (migration 0024) until the page is full: about `limit` over
    the share of the store's rows that the filters and the term keep, whatever its size. (Walked
    per account, an account without the term had all its entries read.)
    A search on PostgreSQL: one arm, the planner choosing between its trigram index and the walk;
    a rare term is looked up by its rarest trigrams only (`trigram_sample`), whose posting lists
    do not grow with the store as those of trigrams every row holds do.
    `rare_terms_by_index` false walks a rare term too: a bound that keeps the walk short (the
    first page's probe) makes the trigram index no cheaper."""
    if not keys:
        return None
    order = ("created_at", "pk") if ascending else ("-created_at", "-pk")
    term = _search_term(search)
    rare_term_rows = _rare_term_rows(search) if rare_terms_by_index else None
    found_by: list[str] | None = None
    if rare_term_rows == []:
        return None  # no batch holds the term
    if term and connection.vendor == "sqlite":
        # The account unindexed (`+account`): SQLite, which assumes an equality on an index keeps a
        # few rows, would otherwise seek each account's entries and sort them all.
        arms = [StoredBatch.objects.alias(any_account=_Unindexed("account")).filter(any_account__in=keys)]
        if rare_term_rows is not None:
            arms = [arms[0].filter(pk__in=rare_term_rows)]
    elif len(keys) > MERGED_ACCOUNTS or (term and connection.vendor == "postgresql"):
        # PostgreSQL's trigram index finds a term's rows wherever they are, and its statistics tell
        # it when walking the newest-first index is cheaper (a common term): one arm. Per account, it
        # would read the trigram index once an account, or walk an account without the term whole.
        # A rare term's rows are found by its rarest trigrams only (trigram_sample).
        arms = [StoredBatch.objects.filter(account__in=keys)]
        if term and rare_terms_by_index:
            found_by = trigram_sample.rarest_trigrams(term, page_rows=limit)
    else:
        arms = [StoredBatch.objects.filter(account=key) for key in keys]
    arms = [
        _filtered(arm, status=status, search=search, found_by=found_by).filter(bound).values("pk", "created_at")
        for arm in arms
    ]
    if len(arms) == 1:
        return arms[0].order_by(*order)[:limit]
    if connection.features.supports_slicing_ordering_in_compound:
        # PostgreSQL merges the arms in order (Merge Append) only if each is ordered and limited
        # itself; otherwise it appends them whole and sorts. SQLite's merge reads ordered arms lazily
        # as they are, and takes no limit in an arm.
        arms = [arm.order_by(*order)[:limit] for arm in arms]
    return arms[0].union(*arms[1:], all=True).order_by(*order)[:limit]


class _Unindexed(Func):
    """A column as SQLite's `+column`: the same value, but no index is sought for it."""

    template = "+%(expressions)s"
    output_field = CharField()

    def __init__(self, column: str) -> None:
        super().__init__(F(column))


def _rare_term_rows(search: str) -> list[int] | None:
    """The rowids of the batches whose search text holds a rare term, from SQLite's trigram index;
    None where that index is not the way: not SQLite (PostgreSQL's planner chooses between its
    trigram index and the walk itself), a term of fewer than three characters (no trigram) or with
    a NUL (which ends SQLite's full-text query), or one with RARE_MATCHES matches or more (read up to
    that many). The index matches case folded as SQLite folds it, which finds the text's matches and
    maybe more: the search's LIKE still decides."""
    term = _search_term(search)
    if connection.vendor != "sqlite" or len(term) < TRIGRAM or "\x00" in term or not search_index.has_trigrams():
        return None
    table = search_index.trigrams_table()
    phrase = '"' + term.replace('"', '""') + '"'  # the term as one string, whatever it holds
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH %s LIMIT %s", [phrase, RARE_MATCHES])  # noqa: S608
        rows = [rowid for (rowid,) in cursor.fetchall()]
    return rows if len(rows) < RARE_MATCHES else None


def newer_batches(
    *,
    accounts: list[Account],
    newer_than: str,
    provider: str = "",
    account_key: str = "",
    status: str = "",
    search: str = "",
    limit: int = 25,
    now: datetime | None = None,
) -> NewRows:
    """What a first page lacks: the filtered batches stored since it was rendered (`StoreListing.top`:
    its top row's creation time and the store's newest row then), newest first, that were created
    after its top row or at most LATE_ARRIVAL before it. Providers stamp creation to the second (OpenAI,
    Azure) or finer, and each account is listed in its turn, so a batch created just before the top
    row may be stored after it: it is brought in too, not left for a reload. An unreadable cursor
    finds nothing (it never dumps the whole store)."""
    now = now or timezone.now()
    limit = max(1, min(limit, MAX_LIMIT))
    top = _decode_cursor(newer_than)
    if top is None:
        return NewRows(rows=[], top=newer_than, more=False)
    created_at, stored_up_to = top
    keys = _account_keys(accounts=accounts, provider=provider, account_key=account_key)
    arrived = Q(created_at__gte=created_at - LATE_ARRIVAL, pk__gt=stored_up_to)
    # Only what was created lately is walked: a rare term is no cheaper by the trigram index.
    page = _fetch(_page_keys(keys, status, search, arrived, limit=limit + 1, rare_terms_by_index=False))
    shown = page[:limit]
    if not shown:
        return NewRows(rows=[], top=newer_than, more=False)
    return NewRows(
        rows=[_view(row, now) for row in shown],
        top=_cursor(max(created_at, shown[0].created_at), max(stored_up_to, *(row.pk for row in shown))),
        more=len(page) > limit,
    )


def _fetch(page: QuerySet | None, *, ascending: bool = False) -> list[StoredBatch]:
    """The page's rows in one statement: the filtering and sorting carry only keys (an index
    holds them), and only the page's rows are read whole, with their accounts' health and the
    store's newest key (where the first page's probe starts)."""
    if page is None:
        return []
    # A merge orders by its columns' positions, which an outer query cannot pick one of: wrapped.
    sql, params = page.query.sql_with_params()  # compiled by the ORM; values stay parameters
    head, tail, before, after = _fetch_sql(StoredBatch.objects.db, ascending=ascending)
    return list(StoredBatch.objects.raw(head + sql + tail, [*before, *params, *after]))


_FETCH_SQL: dict[tuple[str, bool], tuple[str, str, tuple, tuple]] = {}
_PAGE_KEYS_MARK = "\x00page keys"


def _fetch_sql(alias: str, *, ascending: bool) -> tuple[str, str, tuple, tuple]:
    """`_fetch`'s statement around the page's keys query, compiled by the ORM once per database and
    order: (SQL before the keys query, after it, their parameters before, after). Building and
    compiling it with its four subqueries cost a list page more than running it."""
    if (alias, ascending) not in _FETCH_SQL:
        keys = RawSQL("SELECT page.pk FROM (%s) page", [_PAGE_KEYS_MARK])
        rows = _with_account_health(StoredBatch.objects.filter(pk__in=keys)).annotate(
            store_newest=Subquery(StoredBatch.objects.order_by("-pk").values("pk")[:1])
        )
        rows = rows.order_by("created_at", "pk") if ascending else newest_first(rows)
        sql, params = rows.query.sql_with_params()
        at = params.index(_PAGE_KEYS_MARK)
        mark = "SELECT page.pk FROM (%s) page"
        assert sql.count(mark) == 1 and sql.split(mark)[0].count("%s") == at, sql
        head, tail = sql.split(mark)
        _FETCH_SQL[alias, ascending] = (
            f"{head}SELECT page.pk FROM (",  # noqa: S608 (compiled by the ORM)
            f") page{tail}",
            tuple(params[:at]),
            tuple(params[at + 1 :]),
        )
    return _FETCH_SQL[alias, ascending]


def _listing(page: list[StoredBatch], *, older: bool, newer: bool, now: datetime) -> StoreListing:
    # The probe's start: the top row's creation time, and the store's newest row as the page was read
    # (whatever is stored after it has a greater key). No row at all: every row stored from now on.
    stored_up_to = page[0].store_newest if page else 0
    return StoreListing(
        rows=[_view(row, now) for row in page],
        older=_encode_cursor(page[-1]) if older and page else None,
        newer=_encode_cursor(page[0]) if newer and page else None,
        top=_cursor(page[0].created_at if page else _EPOCH, stored_up_to),
    )


_ROW_SQL: dict[str, tuple[str, int, int, tuple]] = {}  # database alias -> (SQL, index of account, of batch id)
_ACCOUNT_MARK, _BATCH_MARK = "\x00account", "\x00batch"


def _row_sql(alias: str) -> tuple[str, int, int, tuple]:
    """The row poll's SQL, compiled by the ORM once per database: building and compiling the query
    with its three subqueries cost a row poll about twice what running it does."""
    if alias not in _ROW_SQL:
        query = _with_account_health(StoredBatch.objects.filter(account=_ACCOUNT_MARK, batch_id=_BATCH_MARK))
        sql, params = query.order_by()[:1].query.sql_with_params()
        _ROW_SQL[alias] = (sql, params.index(_ACCOUNT_MARK), params.index(_BATCH_MARK), tuple(params))
    return _ROW_SQL[alias]


def batch_row(*, account: Account, batch_id: str, now: datetime | None = None) -> StoredView | None:
    """One stored batch with its freshness: a single query, the whole cost of a row poll."""
    sql, account_at, batch_at, template = _row_sql(StoredBatch.objects.db)
    params = list(template)
    params[account_at], params[batch_at] = account.key, batch_id
    row = next(iter(StoredBatch.objects.raw(sql, params)), None)
    return None if row is None else _view(row, now or timezone.now())


def unreadable_reason(*, account: Account, batch_id: str) -> str:
    """Why the poller could not read this batch at its last look, or "" if it could (or never saw it)."""
    state = AccountState.objects.filter(account=account.key).only("warnings").first()
    reasons = [reason for found, reason in _unreadable(state.warnings if state else None) if found == batch_id]
    return reasons[0] if reasons else ""


def find_batch(*, accounts: list[Account], batch_id: str, account_key: str = "") -> tuple[Account, StoredView] | None:
    """A stored batch by id alone (the CLI's way), in the given account or any of `accounts`."""
    by_key = {account.key: account for account in accounts if not account_key or account.key == account_key}
    row = _with_account_health(StoredBatch.objects.filter(account__in=list(by_key), batch_id=batch_id)).first()
    return None if row is None else (by_key[row.account], _view(row, timezone.now()))


@dataclass(frozen=True)
class ChangeHistory:
    changes: list[BatchChange]  # newest first
    total: int


def changes(*, account_key: str, batch_id: str, limit: int = 50) -> ChangeHistory:
    """The batch's latest changes, newest first: one row per observed change of its status or counts."""
    rows = BatchChange.objects.filter(batch__account=account_key, batch__batch_id=batch_id)
    latest = list(rows.order_by("-observed_at", "-id")[:limit])
    return ChangeHistory(changes=latest, total=len(latest) if len(latest) < limit else rows.count())


# --- account health -------------------------------------------------------------------------------


def _unreadable(warnings: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(warnings, list):
        return ()
    return tuple(
        (str(warning.get("batch") or ""), str(warning.get("reason") or "unreadable"))
        for warning in warnings
        if isinstance(warning, dict)
    )


def _problem(state: AccountState | None, now: datetime) -> str:
    if state is None or (state.last_success_at is None and not state.consecutive_failures):
        return "never_polled"
    if state.consecutive_failures:
        return "failing"
    interval = timedelta(seconds=settings.POLL_SECONDS)
    # An idle account is next polled at next_poll_at, not a poll interval after its last success.
    due = max(state.last_success_at + interval, state.next_poll_at or state.last_success_at)
    return "lagging" if now > due + (STALE_POLLS - 1) * interval else ""


def account_notices(*, accounts: list[Account], now: datetime) -> list[AccountNotice]:
    """What the banners say: each configured account whose polls fail, lag or never happened,
    and each with batches the poller could not read; in the accounts' order. One query."""
    states = {state.account: state for state in AccountState.objects.filter(account__in=[a.key for a in accounts])}
    notices = []
    for account in accounts:
        state = states.get(account.key)
        problem = _problem(state, now)
        unreadable = _unreadable(state.warnings) if state else ()
        if not problem and not unreadable:
            continue
        notices.append(
            AccountNotice(
                account=account,
                problem=problem,
                last_error=state.last_error if state and state.consecutive_failures else "",
                last_error_at=state.last_error_at if state else None,
                last_success_at=state.last_success_at if state else None,
                consecutive_failures=state.consecutive_failures if state else 0,
                unreadable=unreadable,
            )
        )
    return notices
