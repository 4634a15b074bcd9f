"""What a live page asks every interval: which of the rows it watches read differently now.

A page watches its live rows by their store keys, each with the fingerprint of what it showed
(selectors.row_fingerprint). One query reads those rows' columns and health (no JSON of the
provider's is parsed, nothing is rendered) and compares; only the rows that changed are read whole
and turned into views, in a second query. Every query of the feed is here, scoped to the accounts
it is given, so that a user's accounts can be scoped in one place.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from ..accounts import Account
from ..models import Alarm, StoredBatch
from . import selectors

MAX_WATCHED = 500  # live rows one page watches at most (a page is 25; arrivals add to it)


@dataclass(frozen=True)
class RowChanges:
    changed: list[selectors.StoredView]  # the watched rows that read differently, in the order asked
    watching: dict[int, str]  # what to watch from now on: the rows still live, with their fingerprints


def watching(views: list[selectors.StoredView]) -> dict[int, str]:
    """What a page showing `views` watches: its rows that can still change, with their fingerprints."""
    return {view.pk: view.fingerprint for view in views if not view.is_final and view.pk}


def row_changes(*, accounts: list[Account], watched: dict[int, str], now: datetime | None = None) -> RowChanges:
    """The watched rows (store key: fingerprint as shown) whose fingerprint is different now, read
    whole; rows that became final are in `changed` once and no longer in `watching`. A key not in
    `accounts` (or no longer stored) is dropped silently."""
    now = now or timezone.now()
    keys = list(watched)[:MAX_WATCHED]
    if not keys:
        return RowChanges(changed=[], watching={})
    account_keys = [account.key for account in accounts]
    rows = selectors._with_account_health(
        StoredBatch.objects.filter(pk__in=keys, account__in=account_keys).defer("raw", "search_text", "timestamps")
    )
    current: dict[int, str] = {}
    for row in rows:
        stale_reason, lagging = selectors._staleness(row, now)
        current[row.pk] = selectors.row_fingerprint(row, stale_reason=stale_reason, lagging=lagging)
    differ = [pk for pk in keys if pk in current and current[pk] != watched[pk]]
    views: dict[int, selectors.StoredView] = {}
    if differ:
        whole = selectors._with_account_health(StoredBatch.objects.filter(pk__in=differ, account__in=account_keys))
        views = {row.pk: selectors._view(row, now) for row in whole}
    still = {}
    for pk in keys:
        if pk in views:
            if not views[pk].is_final:
                still[pk] = views[pk].fingerprint
        elif pk in current:
            still[pk] = watched[pk]
    return RowChanges(changed=[views[pk] for pk in differ if pk in views], watching=still)


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
