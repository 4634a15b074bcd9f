"""Leases on rows: a row is held by one owner until a moment, and whoever finds it free (no lease,
an expired one) or already theirs may take it. Taking is a conditional UPDATE that repeats the
condition, so of two owners taking at once only one gets a row (atomic on SQLite too, where one
writer writes at a time). Each model names its own two fields (`LeaseFields`): the poller's
accounts, the alarm evaluator's single row, bulk cancel's items, the notifications' deliveries.

Lease times are best read from the database's clock (`database_now`): owners on several machines
then compare one clock, whatever their own clocks' skew.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
