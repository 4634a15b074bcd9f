"""How long a running batch has left, in words that claim no more precision than they have.

Two providers, two kinds of evidence (asked of the batch, `Batch.counts_are_final_only`, never of
the provider's name):

- counts reported as the batch runs (OpenAI): the recent throughput. Over the last WINDOW of its
  history, requests finished per second, overall and in each of PARTS equal sub-windows; the
  slowest and fastest of those (never closer than MIN_SPREAD either side of the overall rate) give
  a range of times for the requests left. Too little history (less than MIN_SPAN of counted
  history, or fewer than MIN_MOVES moves of the counts in it) says so instead of guessing.
- outcomes reported only at the end (Anthropic): nothing to extrapolate. The time it has run is set
  against how long this account's ended batches took (those of a similar size when there are
  MIN_TYPICAL of them, compared as the stuck alarm compares them: run_times.py), in their usual
  range (10th to 90th percentile) and median.

Both say when the batch expires. Every function here but `run_times_for` (one query) is pure: the
history, the moment the counts were last read (`as_of`) and `now` come in, words come out; tests
give any clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from .. import providers
from ..durations import in_words
from ..providers.base import Batch
from .charts import Point
from .run_times import RunTime, ended_run_times, failed_statuses, of_similar_size, percentile, similar_size_range

WINDOW = timedelta(minutes=30)  # the recent history whose throughput is extrapolated
MIN_SPAN = timedelta(minutes=2)  # counted history needed before any estimate
MIN_MOVES = 3  # and moves of the finished count within it
PARTS = 3  # sub-windows whose rates give the range
MIN_SPREAD = 0.15  # the range is never narrower than this either side of the overall rate
MIN_TYPICAL = 5  # ended batches needed to say what is usual
LOW_RANK, HIGH_RANK = 10, 90  # "usually": between these percentiles


@dataclass(frozen=True)
class Estimate:
    headline: str  # "about 20–35 min left", "running 2 h 10 min", "not enough history yet"
    detail: str = ""  # how it was worked out
    warning: str = ""  # what the operator should notice (will not finish before it expires, ...)
    low: timedelta | None = None  # time left, at the soonest (counts as they go)
    high: timedelta | None = None  # time left, at the latest (None: no upper bound)


# --- durations in words ---------------------------------------------------------------------------


def _unit(seconds: float) -> int:
    """The rounding unit for a duration of about `seconds`: coarser as it grows."""
    if seconds < 10 * 60:
        return 60
    if seconds < 3600:
        return 5 * 60
    if seconds < 10 * 3600:
        return 10 * 60
    if seconds < 48 * 3600:
        return 30 * 60
    return 3600


def rounded(seconds: float) -> int:
    """`seconds` to the nearest unit of its size (a minute under 10 min, 5 min under an hour, ...)."""
    unit = _unit(seconds)
    return max(60, round(seconds / unit) * unit) if seconds >= 30 else 0


def about(seconds: float) -> str:
    """One duration, rounded to its unit: "about 2 h 10 min"."""
    return "under a minute" if seconds < 30 else f"about {in_words(rounded(seconds))}"


def span(low: float, high: float) -> str:
    """A range of durations, the low end rounded down and the high end up, in the high end's unit:
    "about 20–35 min", "about 2–3 h", "about 1 h 40 min – 3 h", "under 5 min"."""
    low, high = min(low, high), max(low, high)
    if high < 60:
        return "under a minute"
    unit = _unit(high)
    low_r = math.floor(low / unit) * unit
    high_r = math.ceil(high / unit) * unit
    if low_r < 60:
        return f"under {in_words(high_r)}"
    if low_r == high_r:
        return f"about {in_words(low_r)}"
    if high_r < 3600:
        return f"about {low_r // 60}–{high_r // 60} min"
    if low_r % 3600 == 0 and high_r % 3600 == 0:
        return f"about {low_r // 3600}–{high_r // 3600} h"
    return f"about {in_words(low_r)} – {in_words(high_r)}"


def at_least(seconds: float) -> str:
    """A lower bound, rounded down in its unit: "1 h 20 min" ("a minute" at the least)."""
    return in_words(max(60, math.floor(seconds / _unit(seconds)) * _unit(seconds)))


def _to_unit(moment: datetime, unit: int, *, up: bool) -> datetime:
    """`moment` rounded down (or up) to a whole `unit` of seconds, as a clock shows it."""
    seconds = moment.timestamp()
    whole = (math.ceil if up else math.floor)(seconds / unit) * unit
    return datetime.fromtimestamp(whole, UTC)


def clock(moment: datetime, now: datetime) -> str:
    """A moment in UTC to the minute, with its date when that is not today's."""
    moment, today = moment.astimezone(UTC), now.astimezone(UTC).date()
    return f"{moment:%H:%M} UTC" if moment.date() == today else f"{moment:%Y-%m-%d %H:%M} UTC"


def between(first: datetime, second: datetime, now: datetime) -> str:
    """Two moments to the minute: "13:29 and 13:54 UTC" (dates given when not today's)."""
    one, two = clock(first, now), clock(second, now)
    if one.endswith(" UTC") and len(one) == len(two) == len("00:00 UTC"):
        return f"{one.removesuffix(' UTC')} and {two}"
    return f"{one} and {two}"


def significant(value: float) -> str:
    """Two significant figures, no more: 0.42, 9.5, 14, 230, 1,200."""
    if value <= 0:
        return "0"
    digits = 1 - math.floor(math.log10(value))
    said = f"{round(value, digits):,.{max(0, digits)}f}"
    return said.rstrip("0").rstrip(".") if "." in said else said


def rates(low: float, high: float) -> str:
    """Requests per second as a range a minute (or an hour, when slower than one a minute)."""
    per, factor = ("a minute", 60) if high * 60 >= 1 else ("an hour", 3600)
    low_words, high_words = significant(low * factor), significant(high * factor)
    if low_words == high_words:
        return f"about {low_words} requests {per}"
    return f"{low_words}–{high_words} requests {per}"


# --- expiry ---------------------------------------------------------------------------------------


def expiry(expires_at: datetime | None, now: datetime) -> str:
    """When an unfinished batch expires, in words; "" if it has no expiry."""
    if expires_at is None:
        return ""
    left = (expires_at - now).total_seconds()
    if left <= 0:
        return f"Its 24-hour window ended at {clock(expires_at, now)}."
    return f"Expires in {about(left)} ({clock(expires_at, now)})."


# --- counts reported as the batch runs: recent throughput --------------------------------------------


def finished(point: Point) -> int:
    return point.succeeded + point.errored + point.canceled + point.expired


def _finished_at(points: Sequence[Point], moment: datetime) -> int:
    """The finished count as last read at or before `moment` (points oldest first)."""
    value = finished(points[0])
    for point in points:
        if point.at > moment:
            break
        value = finished(point)
    return value


def throughput(
    points: Sequence[Point],
    *,
    total: int,
    done: int,
    as_of: datetime,
    now: datetime,
    expires_at: datetime | None = None,
) -> Estimate:
    """Time left from the recent throughput: `points` the history (oldest first), `total` and
    `done` the latest counts (requests, and those with an outcome), `as_of` when they were read."""
    counted = [point for point in points if point.total > 0 and point.at <= as_of]
    if total <= 0 or not counted:
        return Estimate("not enough history yet", "No request counts yet: the batch has not started processing.")
    remaining = total - done
    if remaining <= 0:
        return Estimate("every request has an outcome", "The batch is finishing: its results come once it has ended.")
    begin = max(as_of - WINDOW, counted[0].at)
    history = (as_of - begin).total_seconds()
    read = [point for point in counted if point.at <= begin][-1:] + [point for point in counted if point.at > begin]
    moves = sum(1 for before, after in pairwise(read) if finished(after) > finished(before))
    not_enough = Estimate(
        "not enough history yet",
        f"An estimate needs {in_words(MIN_SPAN.total_seconds())} of counts with at least {MIN_MOVES} moves; "
        f"so far {in_words(history)} with {moves}.",
    )
    if history < MIN_SPAN.total_seconds():
        return not_enough
    moved = done - _finished_at(counted, begin)
    window_words = in_words(history)
    if moved <= 0:
        return Estimate(
            "no estimate: no progress recently",
            f"No request finished in the last {window_words} ({done:,} of {total:,} have an outcome).",
        )
    if moves < MIN_MOVES:
        return not_enough
    rate = moved / history
    part = history / PARTS
    marks = [begin + timedelta(seconds=part * index) for index in range(PARTS)] + [as_of]
    values = [_finished_at(counted, mark) for mark in marks[:-1]] + [done]
    parts = [(later - earlier) / part for earlier, later in pairwise(values)]
    slow = min(min(parts), rate * (1 - MIN_SPREAD))
    fast = max(max(parts), rate * (1 + MIN_SPREAD))
    soonest = as_of + timedelta(seconds=remaining / fast)
    latest = as_of + timedelta(seconds=remaining / slow) if slow > 0 else None
    low = max(timedelta(0), soonest - now)
    high = max(timedelta(0), latest - now) if latest else None
    how = (
        f"From the last {window_words}: {rates(slow, fast)} finished ({done:,} of {total:,} have an outcome, "
        f"{remaining:,} to go)."
    )
    if high is None:
        headline = f"at least {at_least(low.total_seconds())} left"
        how += " Progress stopped for part of that time: no upper bound."
    else:
        headline = f"{span(low.total_seconds(), high.total_seconds())} left"
        unit = _unit(high.total_seconds())
        how += (
            f" Finishing between {between(_to_unit(soonest, unit, up=False), _to_unit(latest, unit, up=True), now)}, "
            "if the rate holds."
        )
    warning = ""
    if expires_at is not None and soonest > expires_at:
        warning = (
            f"At this rate it will not finish before it expires ({clock(expires_at, now)}): "
            "the requests left then expire."
        )
    elif expires_at is not None and (latest is None or latest > expires_at):
        warning = f"At the slower rates it would not finish before it expires ({clock(expires_at, now)})."
    return Estimate(headline, how, warning, low=low, high=high)


# --- outcomes reported only at the end: how long this account's batches usually take -----------------


def typical(
    *,
    total: int,
    created_at: datetime,
    as_of: datetime,
    run_times: Sequence[RunTime],
) -> Estimate:
    """The time the batch has run against how long this account's ended batches took (`run_times`,
    as run_times_for gives them)."""
    ran = max(0.0, (as_of - created_at).total_seconds())
    headline = f"running {in_words(ran)}"
    low_size, high_size = similar_size_range(total)
    similar = of_similar_size(total, run_times)
    if len(similar) >= MIN_TYPICAL:
        seconds, which = similar, f"this account's batches of about this size ({low_size:,}–{high_size:,} requests)"
    elif len(run_times) >= MIN_TYPICAL:
        seconds = [duration for _, duration in run_times]
        which = f"this account's batches (of any size: {len(similar)} of about this size are too few)"
    elif run_times:
        took = sorted(duration for _, duration in run_times)
        range_words = about(took[0]) if len(took) == 1 else span(took[0], took[-1])
        count = f"{len(took)} ended batch{'es' if len(took) > 1 else ''}"
        return Estimate(
            headline,
            f"This account has only {count} to compare with (it took {range_words}); "
            f"at least {MIN_TYPICAL} are needed to say what is usual.",
        )
    else:
        return Estimate(headline, "No ended batch of this account to compare with yet.")
    low, middle, high = (percentile(seconds, rank) for rank in (LOW_RANK, 50, HIGH_RANK))
    detail = (
        f"{which[0].upper()}{which[1:]} usually take {span(low, high).removeprefix('about ')} "
        f"(median {about(middle).removeprefix('about ')}, {len(seconds)} batches)."
    )
    warning = ""
    if ran > max(seconds):
        warning = f"Already running longer than any of these {len(seconds)} batches took."
    elif ran > high:
        warning = f"Already running longer than {HIGH_RANK}% of these batches took."
    else:
        detail += f" If it takes as long as they usually do, it ends {_within(ran, low, high)}."
    return Estimate(headline, detail, warning)


def _within(ran: float, low: float, high: float) -> str:
    if ran >= low:
        return f"within {about(high - ran)}"
    return f"in {span(low - ran, high - ran)}"


def ended_after(batch: Batch) -> Estimate:
    ended = batch.ended_at
    if ended is None:
        return Estimate("ended")
    return Estimate(f"ended after {in_words((ended - batch.created_at).total_seconds())}")


def estimate(
    batch: Batch,
    *,
    points: Sequence[Point],
    run_times: Sequence[RunTime],
    as_of: datetime,
    now: datetime,
) -> Estimate:
    """The estimate for `batch` read at `as_of`: by its recent throughput if its counts move as it
    runs, else by how long this account's ended batches took (`run_times`, read only for those)."""
    if batch.is_ended:
        return ended_after(batch)
    counts = batch.counts
    if batch.progress_is_unseen:
        return typical(total=counts.total, created_at=batch.created_at, as_of=as_of, run_times=run_times)
    done = counts.succeeded + counts.errored + counts.canceled + counts.expired
    return throughput(points, total=counts.total, done=done, as_of=as_of, now=now, expires_at=batch.expires_at)


# --- reading the store ------------------------------------------------------------------------------


def run_times_for(*, account_key: str, provider: str) -> list[RunTime]:
    """How long this account's newest ended batches took, newest first: the very run times the stuck
    alarm reads (run_times.py). One query."""
    module = providers.PROVIDERS.get(provider)
    failed = failed_statuses(module) if module is not None else frozenset()
    return ended_run_times(account=account_key, failed=failed)
