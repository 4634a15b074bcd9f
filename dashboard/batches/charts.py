"""The detail page's history chart: a batch's request counts over time, from its stored history.

The geometry is worked out here, in Python, and the template only writes it out as SVG: no
JavaScript is needed to read the chart, and nothing in it needs a style attribute (the CSP allows
none): the areas are paths whose colours come from classes, the rest is SVG geometry.

What is drawn is what the poller saw: each change of status or counts (`BatchChange`) holds until
the next one, up to the batch's last read (or its end). Nothing is drawn between the batch's
creation and the first change the dashboard saw, and no line is smoothed between two changes: the
counts are known at the moments they were read, not in between.

`chart()` is pure (points and the time span in, a `Chart` out); `history_points()` reads the store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import F, Window
from django.db.models.functions import RowNumber

from ..models import BatchChange

# The stack, bottom to top, as the list's progress bar draws it.
SERIES = ("succeeded", "errored", "canceled", "expired", "processing")
ALWAYS_LISTED = ("succeeded", "errored", "processing")  # in the legend even when zero throughout
MAX_POINTS = 500  # changes drawn at most: a longer history is sampled evenly (first and last kept)
TABLE_ROWS = 12  # moments in the text alternative's table
END_MARGIN = 0.04  # an ended batch's final counts are drawn this share of the span past its last change

WIDTH, HEIGHT = 720, 240
# Margins around the plot, in the viewBox's units; the y axis's title sits above the plot.
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 26, 36

TIME_STEPS = (  # seconds between the time axis' ticks: the first giving at most MAX_TIME_TICKS
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
)
MAX_TIME_TICKS = 6
LABEL_CHARACTER = 6.5  # about how wide a character of an axis label is, in the viewBox's units
COUNT_TICKS = 4  # intervals on the count axis, about


@dataclass(frozen=True)
class Point:
    """The batch's counts as read at one moment."""

    at: datetime
    total: int = 0
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0

    @property
    def counted(self) -> int:
        """Every request in the counts: what the stack reaches (at least the total, normally)."""
        return sum(getattr(self, name) for name in SERIES)


@dataclass(frozen=True)
class Area:
    name: str
    path: str  # an SVG path's `d`, in the viewBox's units
    latest: int  # the count at the chart's end


@dataclass(frozen=True)
class Tick:
    at: float  # x (time axis) or y (count axis) in the viewBox
    label: str
    anchor: str = "middle"  # the label's text-anchor: a label near the plot's end does not run past it

    @property
    def pos(self) -> str:
        """`at` as the SVG attribute says it (never localized by the template)."""
        return _fmt(self.at)


@dataclass(frozen=True)
class Chart:
    areas: list[Area]  # bottom to top; only series that are not zero throughout
    legend: list[Area]  # what the legend lists: the drawn series and those always listed
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    markers: list[Tick]  # moments marked by a vertical line: cancel requested, ended
    start: datetime
    end: datetime
    top: int  # the count at the top of the count axis
    table: list[Point]  # a few moments for the text alternative, oldest first
    description: str  # the chart in words (the SVG's <desc>)
    drawn: int  # changes drawn
    of: int  # changes stored
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top_y: int = TOP
    bottom_y: int = HEIGHT - BOTTOM

    @property
    def sampled(self) -> bool:
        return self.drawn < self.of


# --- numbers and times for the axes ---------------------------------------------------------------


def nice_ceiling(value: float) -> int:
    """The smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten, a whole
    number) that is at least `value`: the top of the count axis (1 for nothing)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if factor * power >= value and float(factor * power).is_integer():
            return int(factor * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def count_step(top: int, intervals: int = COUNT_TICKS) -> int:
    """A round step (1, 2, 5 times a power of ten, at least 1) giving about `intervals` up to `top`."""
    raw = max(1.0, top / intervals)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return max(1, int(factor * power))
    return int(10 * power)  # pragma: no cover


def count_label(value: int) -> str:
    if value >= 1_000_000 and value % 100_000 == 0:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000 and value % 1000 == 0:
        return f"{value // 1000:,}k"
    return f"{value:,}"


def time_step(span: float) -> int:
    """Seconds between time ticks: the smallest round step giving at most MAX_TIME_TICKS ticks."""
    for step in TIME_STEPS:
        if span / step <= MAX_TIME_TICKS:
            return step
    return TIME_STEPS[-1] * math.ceil(span / (TIME_STEPS[-1] * MAX_TIME_TICKS))


def time_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Round moments (UTC) between `start` and `end`, with labels: the time of day, and the date
    on the first tick and where the day changes."""
    span = (end - start).total_seconds()
    step = time_step(span)
    epoch = start.astimezone(UTC).timestamp()
    first = math.ceil(epoch / step) * step
    ticks, previous_day = [], None
    seconds = first
    while seconds <= end.timestamp() + 1e-6:
        moment = datetime.fromtimestamp(seconds, UTC)
        clock = f"{moment:%H:%M:%S}" if step < 60 else f"{moment:%H:%M}"
        day = moment.date()
        label = clock if day == previous_day else f"{moment:%b} {moment.day} {clock}"
        if step >= 86400:
            label = f"{moment:%b} {moment.day}"
        ticks.append((moment, label))
        previous_day = day
        seconds += step
    return ticks


# --- the chart ----------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def sample(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
    """At most `limit` of `points`, evenly by position, the first and the last always kept."""
    return [points[i] for i in sample_indices(len(points), limit)]


def sample_indices(count: int, limit: int = MAX_POINTS) -> list[int]:
    """`limit` positions (or all) out of `count`, evenly spread, first and last included."""
    if count <= limit:
        return list(range(count))
    if limit <= 1:
        return [count - 1]
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def chart(
    points: Sequence[Point],
    *,
    start: datetime,
    end: datetime,
    stored: int | None = None,
    final_only: bool = False,
    ended: bool = False,
    markers: Sequence[tuple[datetime | None, str]] = (),
) -> Chart | None:
    """The chart of `points` (oldest first) from `start` (the batch's creation) to `end` (its last
    read); None with no point to draw. Each point's counts hold until the next point, the last
    one's until `end`. `stored`: how many changes the store holds (when `points` is a sample of
    them). `final_only`: its provider reports outcomes only at the end. `ended`: the last counts
    are final, and are drawn a little past the last point (else a final state seen at the last
    read would have no width). `markers`: moments to mark, (moment or None, label)."""
    if not points:
        return None
    start = min(start, points[0].at)
    end = max(end, points[-1].at)
    if ended:
        end += max(timedelta(seconds=1), (end - start) * END_MARGIN)
    if end <= start:
        end = start + timedelta(minutes=1)
    span = (end - start).total_seconds()
    top = nice_ceiling(max(max(point.counted, point.total) for point in points))
    plot_left, plot_right = LEFT, WIDTH - RIGHT
    plot_top, plot_bottom = TOP, HEIGHT - BOTTOM

    def x(moment: datetime) -> float:
        return plot_left + (plot_right - plot_left) * (moment - start).total_seconds() / span

    def y(count: float) -> float:
        return plot_bottom - (plot_bottom - plot_top) * count / top

    xs = [x(point.at) for point in points] + [x(end)]
    drawn = [name for name in SERIES if any(getattr(point, name) for point in points)]
    areas = []
    below = [0] * len(points)
    for name in drawn:
        above = [low + getattr(point, name) for low, point in zip(below, points, strict=True)]
        areas.append(
            Area(
                name=name,
                path=_step_area(xs, [y(v) for v in below], [y(v) for v in above]),
                latest=getattr(points[-1], name),
            )
        )
        below = above
    latest = points[-1]
    legend = [
        next((area for area in areas if area.name == name), None)
        or Area(name=name, path="", latest=getattr(latest, name))
        for name in SERIES
        if name in drawn or name in ALWAYS_LISTED
    ]
    step = count_step(top)
    y_ticks = [Tick(at=round(y(value), 1), label=count_label(value)) for value in range(0, top + 1, step)]
    x_ticks = [
        Tick(at=round(x(moment), 1), label=label, anchor=_anchor(x(moment), len(label)))
        for moment, label in time_ticks(start, end)
    ]
    marked = [
        Tick(at=round(x(moment), 1), label=label) for moment, label in markers if moment and start <= moment <= end
    ]
    return Chart(
        areas=areas,
        legend=legend,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        markers=marked,
        start=start,
        end=end,
        top=top,
        table=sample(points, TABLE_ROWS),
        description=describe(points, start=start, end=end, final_only=final_only),
        drawn=len(points),
        of=max(stored or 0, len(points)),
    )


def _anchor(position: float, characters: int) -> str:
    """Where a time label hangs from its tick: centred, unless half of it would pass the viewBox's
    right edge (then it ends at the tick)."""
    return "end" if position + characters * LABEL_CHARACTER / 2 > WIDTH else "middle"


def _step_area(xs: Sequence[float], lower: Sequence[float], upper: Sequence[float]) -> str:
    """A closed path between two step lines: value k holds from xs[k] to xs[k+1] (xs has one more
    entry than the values: the end)."""
    top_line = []
    for k, value in enumerate(upper):
        top_line += [(xs[k], value), (xs[k + 1], value)]
    bottom_line = []
    for k in range(len(lower) - 1, -1, -1):
        bottom_line += [(xs[k + 1], lower[k]), (xs[k], lower[k])]
    corners = _without_repeats(top_line + bottom_line)
    return "M" + " L".join(f"{_fmt(px)} {_fmt(py)}" for px, py in corners) + " Z"


def _without_repeats(corners: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The corners (rounded to a tenth) without repeats, nor the middle one of three on one level
    or one vertical: a long flat stretch is one line, whatever the changes of other series on it."""
    kept: list[tuple[float, float]] = []
    for corner in corners:
        rounded = (round(corner[0], 1), round(corner[1], 1))
        if kept and kept[-1] == rounded:
            continue
        if len(kept) >= 2 and any(kept[-2][axis] == kept[-1][axis] == rounded[axis] for axis in (0, 1)):
            kept[-1] = rounded
        else:
            kept.append(rounded)
    return kept


def describe(points: Sequence[Point], *, start: datetime, end: datetime, final_only: bool = False) -> str:
    """The chart in a sentence or two, for screen readers and anyone without the picture."""
    first, last = points[0], points[-1]
    words = (
        f"From {first.at:%Y-%m-%d %H:%M} UTC to {end.astimezone(UTC):%Y-%m-%d %H:%M} UTC: "
        f"succeeded {first.succeeded:,} to {last.succeeded:,}, errored {first.errored:,} to {last.errored:,}, "
        f"processing {first.processing:,} to {last.processing:,}"
    )
    if last.canceled or last.expired:
        words += f"; canceled {last.canceled:,}, expired {last.expired:,} at the end"
    words += f", of {last.total:,} requests."
    if (first.at - start) > timedelta(minutes=1):
        words += f" The dashboard first saw it at {first.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC."
    if final_only:
        words += " Its provider reports outcomes only when the whole batch ends."
    return words


# --- reading the store ----------------------------------------------------------------------------

FIELDS = ("observed_at", "total", "processing", "succeeded", "errored", "canceled", "expired")


def history_points(*, account_key: str, batch_id: str, limit: int = MAX_POINTS) -> tuple[list[Point], int]:
    """The batch's changes, oldest first, as chart points: all of them, or `limit` evenly sampled
    (first and last kept) when there are more; and how many there are. Two queries: the sampling
    is done by the database (row numbers), so a day of changes read every few seconds is not
    read whole."""
    rows = BatchChange.objects.filter(batch__account=account_key, batch__batch_id=batch_id)
    stored = rows.count()
    order = (F("observed_at").asc(), F("id").asc())
    if stored <= limit:
        found = rows.order_by(*order).values_list(*FIELDS)
    else:
        numbered = rows.annotate(position=Window(RowNumber(), order_by=order))
        wanted = [index + 1 for index in sample_indices(stored, limit)]
        found = numbered.filter(position__in=wanted).order_by(*order).values_list(*FIELDS)
    return [Point(*row) for row in found], stored
