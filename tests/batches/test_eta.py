"""Estimates of what a running batch has left (dashboard/batches/eta.py): pure functions, a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard.batches import eta
from dashboard.batches.charts import Point
from dashboard.providers.base import Batch, Counts

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def steady(minutes: int, *, per_minute: int = 10, total: int = 1000, start: int = 0) -> list[Point]:
    """Counts read every minute, `per_minute` more requests finishing each (9 in 10 succeed)."""
    points = []
    for minute in range(minutes + 1):
        done = start + per_minute * minute
        points.append(
            Point(
                at=at(60 * minute),
                total=total,
                processing=total - done,
                succeeded=done - done // 10,
                errored=done // 10,
            )
        )
    return points


def throughput(points: list[Point], *, now: datetime | None = None, expires_at: datetime | None = None, **kwargs):
    last = points[-1]
    as_of = kwargs.pop("as_of", last.at)
    return eta.throughput(
        points,
        total=last.total,
        done=eta.finished(last),
        as_of=as_of,
        now=now or as_of,
        expires_at=expires_at,
        **kwargs,
    )


# --- words ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "said"),
    [
        (20, 50, "under a minute"),
        (30, 230, "under 4 min"),
        (100, 100, "about 1–2 min"),
        (300, 300, "about 5 min"),
        (1200, 2100, "about 20–35 min"),
        (1230, 2040, "about 20–35 min"),
        (7200, 10800, "about 2–3 h"),
        (6000, 10800, "about 1 h 40 min – 3 h"),
        (5000, 9000, "about 1 h 20 min – 2 h 30 min"),
        (40 * 3600, 50 * 3600, "about 40–50 h"),
    ],
)
def test_ranges_are_rounded_outwards_in_units_that_fit_their_size(low, high, said):
    assert eta.span(low, high) == said


def test_single_durations_are_rounded_to_their_unit():
    assert eta.about(10) == "under a minute"
    assert eta.about(7 * 60 + 20) == "about 7 min"
    assert eta.about(2 * 3600 + 4 * 60) == "about 2 h"
    assert eta.about(2 * 3600 + 6 * 60) == "about 2 h 10 min"


def test_rates_have_two_significant_figures():
    assert eta.rates(9.5 / 60, 14.2 / 60) == "9.5–14 requests a minute"
    assert eta.rates(0.2 / 60, 0.4 / 60) == "12–24 requests an hour"
    assert eta.rates(1234 / 60, 1240 / 60) == "about 1,200 requests a minute"


def test_expiry_in_words():
    assert eta.expiry(None, T0) == ""
    assert eta.expiry(T0 + DAY, T0 + timedelta(hours=2, minutes=10)) == "Expires in about 22 h (2026-11-26 12:00 UTC)."
    assert eta.expiry(T0 + timedelta(minutes=40), T0) == "Expires in about 40 min (12:40 UTC)."
    assert eta.expiry(T0, T0 + timedelta(minutes=1)) == "Its 24-hour window ended at 12:00 UTC."


# --- counts as they go (OpenAI): recent throughput ----------------------------------------------------


def test_a_steady_batch_gets_a_range_around_its_rate_never_a_single_number():
    points = steady(20, per_minute=10)  # 200 done, 800 to go at 10 a minute: 80 min
    estimate = throughput(points, expires_at=T0 + DAY)
    assert estimate.headline == "about 1 h – 1 h 40 min left"
    assert estimate.low < timedelta(minutes=80) < estimate.high
    assert "From the last 20 min: 8.5–12 requests a minute finished" in estimate.detail
    assert "200 of 1,000 have an outcome, 800 to go" in estimate.detail
    assert "Finishing between 13:20 and 14:00 UTC, if the rate holds." in estimate.detail
    assert estimate.warning == ""


def test_only_the_recent_window_counts():
    fast_then_slow = steady(60, per_minute=20)[:31] + [
        Point(at=at(60 * m), total=2000, processing=2000 - 600 - 4 * (m - 30), succeeded=600 + 4 * (m - 30))
        for m in range(31, 61)
    ]
    fast_then_slow = [
        Point(at=p.at, total=2000, processing=2000 - eta.finished(p), succeeded=eta.finished(p)) for p in fast_then_slow
    ]
    estimate = throughput(fast_then_slow)
    assert "From the last 30 min: 3.4–4.6 requests a minute finished" in estimate.detail
    assert estimate.headline == "about 4 h 30 min – 6 h 20 min left"


def test_uneven_progress_widens_the_range():
    points, done = [], 0
    for minute in range(31):
        done += 30 if minute <= 10 else 5  # a fast first third, then slow
        points.append(Point(at=at(60 * minute), total=5000, processing=5000 - done, succeeded=done))
    estimate = throughput(points)
    assert "From the last 30 min: 5–30 requests a minute finished" in estimate.detail
    assert estimate.high > 4 * estimate.low


def test_too_little_history_says_so():
    estimate = throughput(steady(1))
    assert estimate.headline == "not enough history yet"
    assert "so far 1 min with 1" in estimate.detail
    assert estimate.low is None and estimate.high is None
    few_moves = [*steady(2), Point(at=at(600), total=1000, processing=980, succeeded=18, errored=2)]
    assert throughput(few_moves[:3], as_of=at(600)).headline == "not enough history yet"


def test_no_counts_yet_is_not_enough_history():
    points = [Point(at=at(0)), Point(at=at(600))]
    estimate = eta.throughput(points, total=0, done=0, as_of=at(600), now=at(600))
    assert estimate.headline == "not enough history yet"
    assert "not started processing" in estimate.detail


def test_validating_time_before_the_counts_does_not_slow_the_estimate():
    validating = [Point(at=at(-60 * m)) for m in range(20, 0, -1)]
    estimate = throughput(validating + steady(10))
    assert "From the last 10 min: 8.5–12 requests a minute" in estimate.detail


def test_a_batch_that_stopped_moving_gets_no_estimate():
    points = steady(10)
    estimate = throughput(points, as_of=at(60 * 45))  # read again and again, no change for 35 min
    assert estimate.headline == "no estimate: no progress recently"
    assert "No request finished in the last 30 min" in estimate.detail


def test_a_pause_within_the_window_leaves_no_upper_bound():
    points = steady(20)
    estimate = throughput(points, as_of=at(60 * 32))  # the last of three 10-minute parts: no change
    assert estimate.headline == "at least 1 h 20 min left"
    assert estimate.high is None and "no upper bound" in estimate.detail


def test_every_request_done_is_said_plainly():
    points = steady(10, per_minute=100)
    estimate = throughput(points)
    assert estimate.headline == "every request has an outcome"


def test_time_left_counts_from_now_when_the_last_read_is_older():
    points = steady(20)
    fresh = throughput(points)
    later = throughput(points, now=at(60 * 20 + 600))
    assert later.low == fresh.low - timedelta(minutes=10)


def test_a_batch_too_slow_for_its_expiry_is_warned_about():
    points = steady(20, per_minute=1, total=5000)
    estimate = throughput(points, expires_at=T0 + DAY)
    assert "will not finish before it expires (2026-11-26 12:00 UTC)" in estimate.warning
    borderline = throughput(steady(20, per_minute=3, total=4000), expires_at=T0 + DAY)
    assert "At the slower rates it would not finish before it expires" in borderline.warning


# --- outcomes only at the end (Anthropic): the account's usual durations -------------------------------


def run_times(minutes: list[float], size: int = 100) -> list[tuple[int, float]]:
    return [(size, 60 * m) for m in minutes]


FOURTEEN = run_times([100, 105, 110, 115, 120, 120, 120, 125, 130, 140, 150, 160, 170, 180])


def test_elapsed_against_the_usual_durations_of_batches_of_about_this_size():
    estimate = eta.typical(total=100, created_at=T0, as_of=at(130 * 60), run_times=FOURTEEN)
    assert estimate.headline == "running 2 h 10 min"
    assert estimate.detail.startswith(
        "This account's batches of about this size (50–200 requests) usually take 1 h 40 min – 2 h 50 min "
        "(median 2 h, 14 batches)."
    )
    assert "If it takes as long as they usually do, it ends within about 40 min." in estimate.detail
    assert estimate.warning == ""


def test_a_young_batch_gets_the_usual_range_of_what_is_left():
    estimate = eta.typical(total=100, created_at=T0, as_of=at(30 * 60), run_times=FOURTEEN)
    assert "it ends in about 1 h 10 min – 2 h 20 min." in estimate.detail


def test_running_past_the_usual_is_warned_about():
    past_most = eta.typical(total=100, created_at=T0, as_of=at(175 * 60), run_times=FOURTEEN)
    assert past_most.warning == "Already running longer than 90% of these batches took."
    past_all = eta.typical(total=100, created_at=T0, as_of=at(200 * 60), run_times=FOURTEEN)
    assert past_all.warning == "Already running longer than any of these 14 batches took."


def test_batches_of_other_sizes_are_used_only_when_too_few_are_of_this_size():
    mixed = run_times([60, 70, 80, 90, 100], size=10_000) + run_times([10], size=100)
    estimate = eta.typical(total=100, created_at=T0, as_of=at(600), run_times=mixed)
    assert "this account's batches (of any size: 1 of about this size are too few)" in estimate.detail.lower()
    assert "6 batches" in estimate.detail


def test_too_few_ended_batches_are_shown_but_not_called_usual():
    estimate = eta.typical(total=100, created_at=T0, as_of=at(600), run_times=run_times([100, 130]))
    assert estimate.detail == (
        "This account has only 2 ended batches to compare with (it took about 1 h 40 min – 2 h 10 min); "
        "at least 5 are needed to say what is usual."
    )
    none = eta.typical(total=100, created_at=T0, as_of=at(600), run_times=[])
    assert none.detail == "No ended batch of this account to compare with yet."


# --- choosing by what the batch reports, never by the provider's name ---------------------------------


def batch(*, final_only: bool, ended: bool = False, **counts) -> Batch:
    values = {"total": 100, "processing": 100, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0, **counts}
    return Batch(
        provider="whichever",
        account="acct",
        id="b1",
        status="done" if ended else "running",
        is_ended=ended,
        can_cancel=not ended,
        counts=Counts(**values),
        counts_are_final_only=final_only,
        created_at=T0,
        expires_at=T0 + DAY,
        ended_at=at(5400) if ended else None,
        cancel_initiated_at=None,
        timestamps={},
        raw={},
    )


def test_estimate_picks_throughput_or_usual_durations_by_what_the_batch_reports():
    points = steady(20, total=100, per_minute=2)
    moving = eta.estimate(
        batch(final_only=False, processing=60, succeeded=36, errored=4),
        points=points,
        run_times=[],
        as_of=at(1200),
        now=at(1200),
    )
    assert moving.headline.endswith("left")
    final = eta.estimate(batch(final_only=True), points=points, run_times=FOURTEEN, as_of=at(1200), now=at(1200))
    assert final.headline == "running 20 min" and "usually take" in final.detail
    ended = eta.estimate(batch(final_only=True, ended=True), points=points, run_times=[], as_of=at(9000), now=at(9000))
    assert ended.headline == "ended after 1 h 30 min"
