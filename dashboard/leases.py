"""Leases on rows: a row is held by one owner until a moment, and whoever finds it free (no lease,
an expired one) or already theirs may take it. Taking is a conditional UPDATE that repeats the
condition, so of two owners taking at once only one gets a row (atomic on SQLite too, where one
writer writes at a time). Each model names its own two fields (`LeaseFields`): the poller's
accounts, the alarm evaluator's single row, bulk cancel's items, the notifications' deliveries.

Lease times are best read from the database's clock (`database_now`): owners on several machines
then compare one clock, whatever their own clocks' skew.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone


@dataclass(frozen=True)
class LeaseFields:
    owner: str  # the field naming who holds the lease
    until: str  # the field saying until when: null or past, the lease is free
    # True where `until` is also when the row is next due (a delivery's `next_attempt_at`): the row
    # is free from that very moment, and never while `until` is null (nothing left to do).
    until_is_due_time: bool = False


def database_now(using: str = "default") -> datetime:
    """The database's clock on PostgreSQL (one query), this process's on SQLite (the same machine's)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def free(*, fields: LeaseFields, now: datetime) -> Q:
    """Rows nobody holds: never leased, or the lease expired (or, `until_is_due_time`, rows due)."""
    if fields.until_is_due_time:
        return Q(**{f"{fields.until}__lte": now})
    return Q(**{f"{fields.until}__isnull": True}) | Q(**{f"{fields.until}__lt": now})


def free_or_ours(*, fields: LeaseFields, owner: str, now: datetime) -> Q:
    return free(fields=fields, now=now) | Q(**{fields.owner: owner})


def take(
    rows: QuerySet,
    *,
    fields: LeaseFields,
    owner: str,
    now: datetime,
    until: datetime,
    skip_locked: bool = False,
    limit: int | None = None,
    also_free: Q | None = None,
) -> int:
    """Take (or renew) until `until` the lease of each of `rows` that is free or ours; how many.

    `skip_locked`: on PostgreSQL, first read the takeable rows `FOR UPDATE SKIP LOCKED` (only the
    rows' own table, whatever `rows` joins) in the same transaction, so owners taking many rows at
    the same moment never wait on one another's rows. `limit`: the first `limit` takeable rows only,
    in the order of `rows`. `also_free`: rows to count as free too, whatever their lease says (those
    of a dead owner)."""
    takeable = free_or_ours(fields=fields, owner=owner, now=now)
    if also_free is not None:
        takeable |= also_free
    held = {fields.owner: owner, fields.until: until}
    lock = skip_locked and connections[rows.db].features.has_select_for_update_skip_locked
    if not lock and limit is None:
        return rows.filter(takeable).update(**held)
    with transaction.atomic(using=rows.db):
        candidates = rows.filter(takeable)
        if lock:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        chosen = list(candidates.values_list("pk", flat=True)[:limit])
        # The conditions again: atomic on SQLite too, where no row is locked.
        return rows.order_by().filter(takeable, pk__in=chosen).update(**held)


def renew(rows: QuerySet, *, fields: LeaseFields, owner: str, now: datetime, until: datetime) -> int:
    """Move on to `until` the leases of `rows` that `owner` holds and that have not expired; how many."""
    return rows.filter(**{fields.owner: owner, f"{fields.until}__gte": now}).update(**{fields.until: until})


def release(rows: QuerySet, *, fields: LeaseFields, owner: str) -> int:
    """Give up the leases of `rows` that `owner` holds; how many."""
    return rows.filter(**{fields.owner: owner}).update(**{fields.owner: "", fields.until: None})


# --- Session locks: who is alive, from PostgreSQL's own view of its connections ----------------------
# A process holds a session-level advisory lock named after itself on a connection of its own, for as
# long as it lives. The server releases it the moment that connection closes: a process killed
# (SIGKILL, OOM, a crash) is known dead at once, without waiting for a heartbeat to go stale. A process
# paused, or a host cut off, keeps its connection open for a while: heartbeats still cover those.
# (host, port, database, name): (its connection, held)
_session_locks: dict[tuple[str, ...], tuple[Any, bool]] = {}
_session_locks_guard = threading.Lock()


def session_lock_key(name: str) -> int:
    """The advisory lock's key for `name` (a signed 64-bit integer, as PostgreSQL's are)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def hold_session_lock(name: str, *, using: str = "default") -> bool:
    """Hold the session lock `name` from now until this process ends or `drop_session_lock` (taken
    again at the next call if the connection broke: the database restarted). True while held;
    False on databases without advisory locks (SQLite: one machine, one process) or while another
    session holds it (a process of the same name still alive)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    where = tuple(str(connection.settings_dict.get(part)) for part in ("HOST", "PORT", "NAME"))
    with _session_locks_guard:
        raw, held = _session_locks.get((*where, name), (None, False))
        if raw is not None:
            try:
                if held:
                    raw.execute("SELECT 1")  # the connection, hence the lock, is still there
                    return True
            except Exception:
                raw.close()
                raw = None
        if raw is None or raw.closed:
            raw = connection.get_new_connection(connection.get_connection_params())
            raw.autocommit = True
        held = bool(raw.execute("SELECT pg_try_advisory_lock(%s)", [session_lock_key(name)]).fetchone()[0])
        _session_locks[(*where, name)] = (raw, held)
        return held


def drop_session_lock(name: str) -> None:
    """Give up the session lock `name`, whichever database holds it."""
    with _session_locks_guard:
        dropped = [_session_locks.pop(key)[0] for key in list(_session_locks) if key[-1] == name]
    for raw in dropped:
        raw.close()


def session_locks_held(names: list[str], *, using: str = "default") -> set[str]:
    """Those of `names` whose session lock some session of this database holds (on PostgreSQL; on
    other databases, all of them: nothing is known there, the heartbeats decide)."""
    connection = connections[using]
    if connection.vendor != "postgresql" or not names:
        return set(names)
    with connection.cursor() as cursor:
        # A bigint key shows as its high 32 bits (classid) and low 32 bits (objid), objsubid 1.
        cursor.execute(
            "SELECT classid::int8, objid::int8 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objsubid = 1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        held = {(high << 32) | low for high, low in cursor.fetchall()}
    return {name for name in names if session_lock_key(name) % (1 << 64) in held}
