"""Upstream calls counted in this process, and added to the database for every process's scrape.

Each process (web and pollers) counts its own calls in memory (`record_upstream_call`, which
`AppConfig.ready` installs as the providers' call recorder: their `send()` and `stream()` call it)
and a thread of its own adds them to UpstreamCallStats at most every METRICS_FLUSH_SECONDS, and once
more at exit, with F() expressions, so processes flushing at once add up. Nothing is counted while
metrics are off.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from ..models import UPSTREAM_LATENCY_BUCKETS
from .access import metrics_enabled

logger = logging.getLogger(__name__)

FAILURE_LOG_SECONDS = 60.0  # a flush that keeps failing is logged at most this often
IDLE_CLOSE_SECONDS = 30.0  # the flush thread closes its database connection after this long without calls
BUCKET_FIELDS = tuple(UPSTREAM_LATENCY_BUCKETS)  # the model's le_* columns, in order of their bounds
BUCKET_BOUNDS = tuple(UPSTREAM_LATENCY_BUCKETS.values())


@dataclass
class Tally:
    """One account's calls with one result, counted since the last flush."""

    calls: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKET_BOUNDS))  # cumulative, per bound

    def add(self, seconds: float) -> None:
        self.calls += 1
        self.seconds += seconds
        for index, bound in enumerate(BUCKET_BOUNDS):
            if seconds <= bound:
                self.buckets[index] += 1

    def merge(self, other: Tally) -> None:
        self.calls += other.calls
        self.seconds += other.seconds
        self.buckets = [mine + theirs for mine, theirs in zip(self.buckets, other.buckets, strict=True)]


class UpstreamCallCounter:
    """This process's upstream calls, counted in memory and added to UpstreamCallStats.

    `record` is what the calls pay: a lock and a few additions. A daemon thread, started with the
    first call, flushes at most every `interval` seconds while there is something to flush; an
    atexit hook flushes what is left. A failed flush (database away) keeps its counts for the next.
    """

    def __init__(self, interval: float | None = None, *, background: bool = True):
        self._interval = interval
        self._background = background  # False: flushed only when asked (tests)
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child counts its own calls only

    def _reset(self) -> None:
        self._lock = threading.Lock()  # guards _pending
        self._flushing = threading.Lock()  # one flush at a time in this process
        self._pending: dict[tuple[str, str], Tally] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self._failure_logged_at = -math.inf

    @property
    def interval(self) -> float:
        return float(self._interval if self._interval is not None else settings.METRICS_FLUSH_SECONDS)

    def record(self, account: str, result: str, seconds: float) -> None:
        with self._lock:
            tally = self._pending.get((account, result))
            if tally is None:
                tally = self._pending[(account, result)] = Tally()
            tally.add(max(0.0, seconds))
            if self._thread is None and self._background:
                self._start()
        self._wake.set()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            if not self._wake.wait(timeout=IDLE_CLOSE_SECONDS):
                connection.close()  # this thread's: no database connection held while there is nothing to write
                self._wake.wait()
            self._wake.clear()
            try:
                close_old_connections()  # this thread's connection, kept between flushes within its max age
                self.flush()
            except Exception:  # flush() logs its own failures; this thread must go on whatever happens
                logger.exception("metrics: the flush thread hit an error")
            time.sleep(self.interval)

    def pending(self) -> dict[tuple[str, str], Tally]:
        with self._lock:
            return {key: Tally(t.calls, t.seconds, list(t.buckets)) for key, t in self._pending.items()}

    def discard(self) -> None:
        """Forget what has not been flushed (tests)."""
        with self._flushing, self._lock:
            self._pending = {}

    def flush(self) -> int:
        """Add what was counted since the last flush to the database; the number of rows written.

        Never raises: on failure the counts go back to pending, and the failure is logged."""
        with self._flushing:
            with self._lock:
                taken, self._pending = self._pending, {}
            if not taken:
                return 0
            try:
                write_upstream_calls(taken)
            except Exception as error:
                with self._lock:
                    for key, tally in taken.items():
                        self._pending.setdefault(key, Tally()).merge(tally)
                self._failed(error)
                return 0
            if self._failing_since is not None:
                logger.info("metrics: upstream call counts are written again")
                self._failing_since = None
            return len(taken)

    def _failed(self, error: Exception) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failure_logged_at >= FAILURE_LOG_SECONDS:
            self._failure_logged_at = now
            logger.warning(
                "metrics: upstream call counts could not be written (%s: %s); kept in memory, tried again later",
                type(error).__name__,
                error,
            )


def write_upstream_calls(taken: dict[tuple[str, str], Tally]) -> None:
    """Add `taken` to UpstreamCallStats in one transaction: an UPDATE of F() sums per row, or the
    row's INSERT; an INSERT that loses a race with another process's becomes the UPDATE."""
    from ..models import UpstreamCallStats

    now = timezone.now()
    with transaction.atomic():
        for (account, result), tally in sorted(taken.items()):
            rows = UpstreamCallStats.objects.filter(account=account, result=result)
            sums = {
                "calls": F("calls") + tally.calls,
                "seconds_sum": F("seconds_sum") + tally.seconds,
                **{name: F(name) + count for name, count in zip(BUCKET_FIELDS, tally.buckets, strict=True) if count},
                "updated_at": now,
            }
            if rows.update(**sums):
                continue
            try:
                with transaction.atomic():
                    UpstreamCallStats.objects.create(
                        account=account,
                        result=result,
                        calls=tally.calls,
                        seconds_sum=tally.seconds,
                        updated_at=now,
                        **dict(zip(BUCKET_FIELDS, tally.buckets, strict=True)),
                    )
            except IntegrityError:
                rows.update(**sums)


upstream_calls = UpstreamCallCounter()


def record_upstream_call(account: str, result: str, seconds: float) -> None:
    """One upstream call (dashboard/providers/base.py); counted only while metrics are on."""
    if metrics_enabled():
        upstream_calls.record(account, result, seconds)
