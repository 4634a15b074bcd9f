"""What a live page asks every interval: which of the rows it watches read differently now.

A page watches its live rows by their store keys, each with the fingerprint of what it showed
(selectors.row_fingerprint). One query reads those rows' columns and health (no JSON of the
provider's is parsed, nothing is rendered) and compares; only the rows that changed are read whole
(stored_views), and only when no viewer's answer rendered them as they are now (web/live.py). Every
query of the feed is here, scoped to the accounts it is given, so that a user's accounts can be
scoped in one place.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace

from django.conf import settings
from django.db import connections
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from ..accounts import Account
from ..models import Alarm, StoredBatch
from . import selectors, store

MAX_WATCHED = 500  # live rows one page watches at most (a page is 25; arrivals add to it)


@dataclass(frozen=True)
class Changed:
    """A watched row that reads differently now: its fingerprint now, and whether it has ended."""

    pk: int
    fingerprint: str
    is_final: bool


@dataclass(frozen=True)
class RowChanges:
    changed: list[Changed]  # the watched rows that read differently, in the order asked
    watching: dict[int, str]  # what to watch from now on: the rows still live, with their fingerprints


def watching(views: list[selectors.StoredView]) -> dict[int, str]:
    """What a page showing `views` watches: its rows that can still change, with their fingerprints."""
    return {view.pk: view.fingerprint for view in views if not view.is_final and view.pk}


def row_changes(*, accounts: list[Account], watched: dict[int, str], now: datetime | None = None) -> RowChanges:
    """The watched rows (store key: fingerprint as shown) whose fingerprint is different now, from
    their columns alone (no provider JSON is read); rows that became final are in `changed` once and
    no longer in `watching`. A key not in `accounts` (or no longer stored) is dropped silently."""
    now = now or timezone.now()
    keys = list(watched)[:MAX_WATCHED]
    account_keys = [account.key for account in accounts]
    if not keys or not account_keys:
        return RowChanges(changed=[], watching={})
    lag_seconds = selectors.STALE_POLLS * settings.POLL_SECONDS
    current: dict[int, Changed] = {}
    for values in _watched_values(keys, account_keys):
        reading = _READINGS.get(values)
        if reading is None or (
            reading.may_lag and ((now - reading.fetched_at).total_seconds() > lag_seconds) != reading.lagging
        ):
            reading = _reading(values, now)
        current[reading.changed.pk] = reading.changed
    return RowChanges(
        changed=[current[pk] for pk in keys if pk in current and current[pk].fingerprint != watched[pk]],
        watching={pk: current[pk].fingerprint for pk in keys if pk in current and not current[pk].is_final},
    )


def stored_views(
    *, accounts: list[Account], pks: list[int], now: datetime | None = None
) -> dict[int, selectors.StoredView]:
    """The rows of `pks` in `accounts`, read whole, by store key."""
    now = now or timezone.now()
    rows = selectors._with_account_health(
        StoredBatch.objects.filter(pk__in=pks, account__in=[account.key for account in accounts])
    )
    return {row.pk: selectors._view(row, now) for row in rows}


# The watched rows' query, compiled by the ORM once per database and shape (keys in buckets of
# KEY_BUCKET, accounts) and read without making models: building and compiling it with its three
# subqueries, then a model for each row, cost several times what running it does, and it runs for
# every viewer every interval. Only what a row's fingerprint reads is selected (selectors.row_fingerprint).
KEY_BUCKET = 25
WATCHED = (
    "pk",
    "status",
    "is_ended",
    "gone_at",
    "counts_known",
    *store.COUNT_FIELDS,
    "expires_at",
    "ended_at",
    "cancel_initiated_at",
    "last_fetched_at",
    "cancel_accepted_at",
    "account_failures",
    "account_error",
    "open_alarms",
)
MOMENTS = ("gone_at", "expires_at", "ended_at", "cancel_initiated_at", "last_fetched_at", "cancel_accepted_at")
COLUMNS = {field.name for field in StoredBatch._meta.concrete_fields}
_WATCHED_SQL: dict[tuple[str, int, int], tuple[str, list[int], list[int], tuple]] = {}
_KEY_MARK = -(10**15)


def _watched_sql(alias: str, keys: int, accounts: int) -> tuple[str, list[int], list[int], tuple]:
    shape = (alias, keys, accounts)
    if shape not in _WATCHED_SQL:
        key_marks = [_KEY_MARK - index for index in range(keys)]
        account_marks = [f"\x00account{index}" for index in range(accounts)]
        query = selectors._with_account_health(StoredBatch.objects.filter(pk__in=key_marks, account__in=account_marks))
        columns = list(WATCHED)
        if connections[alias].vendor == "sqlite":
            # SQLite's driver would parse every datetime column of every row on every fetch; as text,
            # they are parsed only when a row's values are new (_reading).
            stored = [name for name in MOMENTS if name in COLUMNS]
            query = query.annotate(**{f"{name}_text": Cast(name, TextField()) for name in stored})
            columns = [f"{name}_text" if name in stored else name for name in WATCHED]
        sql, params = query.order_by().values_list(*columns).query.sql_with_params()
        _WATCHED_SQL[shape] = (
            sql,
            [params.index(mark) for mark in key_marks],
            [params.index(mark) for mark in account_marks],
            tuple(params),
        )
    return _WATCHED_SQL[shape]


def _watched_values(keys: list[int], account_keys: list[str]) -> list[tuple]:
    """The rows of `keys` in `account_keys` with their accounts' health, each as the database gives
    its WATCHED columns (SQLite: datetimes as text, booleans as integers), without the provider's JSON."""
    padded = keys + [0] * (-len(keys) % KEY_BUCKET)  # key 0 is never a row's
    alias = StoredBatch.objects.db
    sql, key_at, account_at, template = _watched_sql(alias, len(padded), len(account_keys))
    params = list(template)
    for at, key in zip(key_at, padded, strict=True):
        params[at] = key
    for at, account in zip(account_at, account_keys, strict=True):
        params[at] = account
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@dataclass(frozen=True)
class _Reading:
    """What a row's stored values read as: its fingerprint (and whether it ended) as of a moment when
    it was `lagging` or not. Only whether it lags yet depends on the time (selectors._staleness): a
    row that may lag is read again when that changes, every other reading holds while its values do."""

    changed: Changed
    fetched_at: datetime
    may_lag: bool
    lagging: bool


# The readings of the values last seen, shared by every viewer of the process: a row's values only
# change when the poller writes it, so nearly every feed request finds all its rows here and parses
# no datetime and hashes nothing. Emptied when full; entries are small (MAX_READINGS x ~2 kB).
_READINGS: dict[tuple, _Reading] = {}
MAX_READINGS = 20_000


def _reading(values: tuple, now: datetime) -> _Reading:
    row = SimpleNamespace(**dict(zip(WATCHED, values, strict=True)))
    for name in MOMENTS:
        setattr(row, name, selectors._moment(getattr(row, name)))
    row.is_ended, row.counts_known = bool(row.is_ended), bool(row.counts_known)
    stale_reason, lagging = selectors._staleness(row, now)
    is_final = row.is_ended or row.gone_at is not None
    reading = _Reading(
        changed=Changed(
            pk=row.pk,
            fingerprint=selectors.row_fingerprint(row, stale_reason=stale_reason, lagging=lagging),
            is_final=is_final,
        ),
        fetched_at=row.last_fetched_at,
        # As in selectors._staleness: an ended row never lags, one of a failing account says why instead.
        may_lag=not row.is_ended and not row.account_failures,
        lagging=lagging,
    )
    if len(_READINGS) >= MAX_READINGS:
        _READINGS.clear()
    _READINGS[values] = reading
    return reading


def stored_up_to(top: str) -> int:
    """The store's newest key when the page whose top this is (StoreListing.top) was read: 0 if unreadable."""
    decoded = selectors._decode_cursor(top)
    return decoded[1] if decoded else 0


@dataclass(frozen=True)
class StoreMarks:
    newest: int  # the store's newest key: nothing was stored since a page that has seen it
    open_alarms: int
    unacknowledged_alarms: int


def store_marks(*, accounts: list[str]) -> StoreMarks:
    """What every live page's feed looks at first, in one query of three index lookups: the store's
    newest key, and the header badge's counts of these accounts' alarms (alarm_selectors.open_alarm_counts)."""
    connection = connections[StoredBatch.objects.db]
    name = connection.ops.quote_name
    batches = name(StoredBatch._meta.db_table)
    alarms = name(Alarm._meta.db_table)
    resolved = name(Alarm._meta.get_field("resolved_at").column)
    acknowledged = name(Alarm._meta.get_field("acknowledged_at").column)
    newest = name(StoredBatch._meta.pk.column)
    account = name(Alarm._meta.get_field("account").column)
    if not accounts:
        scoped, parameters = "1 = 0", []
    else:
        scoped, parameters = f"{account} IN ({', '.join(['%s'] * len(accounts))})", list(accounts)
    sql = (
        f"SELECT (SELECT MAX({newest}) FROM {batches}), "  # noqa: S608 (names from the models)
        f"(SELECT COUNT(*) FROM {alarms} WHERE {resolved} IS NULL AND {scoped}), "
        f"(SELECT COUNT(*) FROM {alarms} WHERE {resolved} IS NULL AND {acknowledged} IS NULL AND {scoped})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters * 2)
        stored, open_count, unacknowledged = cursor.fetchone()
    return StoreMarks(newest=stored or 0, open_alarms=open_count, unacknowledged_alarms=unacknowledged)


def alarms_fingerprint(alarms: QuerySet[Alarm]) -> str:
    """A short digest of what a list of alarms shows: which, their detail, acknowledgement and
    resolution, and when each was last seen to the minute (the evaluator moves it on every cycle,
    while the page says it in minutes)."""
    shown = [
        (pk, acknowledged_at, note, detail, resolved_at, last_seen_at.replace(second=0, microsecond=0))
        for pk, acknowledged_at, note, detail, resolved_at, last_seen_at in alarms.order_by("pk").values_list(
            "pk", "acknowledged_at", "acknowledge_note", "detail", "resolved_at", "last_seen_at"
        )
    ]
    digest = hashlib.blake2b(repr(shown).encode(), digest_size=8).digest()
    return base64.urlsafe_b64encode(digest).decode()
