"""How long an account's ended batches ran: what the stuck alarm (dashboard/alarms/rules.py) and the
time-left estimate (eta.py) compare a running batch with, read and compared the same way by both.

A run time is (request total, seconds from creation to end). Only batches that ended of themselves
count: not canceled, none expired, not in a failure status (`failed_statuses`), not gone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from types import ModuleType

from .models import StoredBatch

RunTime = tuple[int, float]  # (request total, seconds from creation to end)
KEPT = 200  # the newest ended batches of an account that are read
SIMILAR_SIZE = 2.0  # "a similar size": at most this factor bigger or smaller
# Status words that mean a batch failed, for a provider module that does not say (ENDED_BADLY).
FAILURE_WORDS = frozenset({"failed", "expired"})


def failed_statuses(provider: ModuleType) -> frozenset[str]:
    """The ended statuses `provider` calls a failure: its ENDED_BADLY, else its ENDED ones named
    failed or expired."""
    declared = getattr(provider, "ENDED_BADLY", None)
    return frozenset(declared) if declared is not None else frozenset(provider.ENDED) & FAILURE_WORDS


def ended_run_times(*, account: str, failed: Iterable[str]) -> list[RunTime]:
    """The run times of the account's newest ended batches (at most KEPT), newest first; `failed`:
    the statuses that mean a batch failed. One query."""
    rows = (
        StoredBatch.objects.filter(
            account=account,
            is_ended=True,
            gone_at__isnull=True,
            ended_at__isnull=False,
            cancel_initiated_at__isnull=True,
            expired=0,
        )
        .exclude(status__in=set(failed))
        .order_by("-created_at")
        .values_list("total", "created_at", "ended_at")[:KEPT]
    )
    return [(total, (ended_at - created_at).total_seconds()) for total, created_at, ended_at in rows]


def similar_size_range(total: int) -> tuple[int, int]:
    """The request totals of a similar size to `total`, as whole numbers: (lowest, highest)."""
    return math.ceil(total / SIMILAR_SIZE), math.floor(total * SIMILAR_SIZE)


def of_similar_size(total: int, run_times: Iterable[RunTime]) -> list[float]:
    """The seconds of those `run_times` whose batch is of a similar size to `total`."""
    return [seconds for size, seconds in run_times if total / SIMILAR_SIZE <= size <= total * SIMILAR_SIZE]


def percentile(values: Iterable[float], rank: float) -> float:
    """The nearest-rank percentile: the smallest value at least `rank`% of the values are at most."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]
