"""The detail page's history chart (dashboard/batches/charts.py): geometry from points, pure; the sampling
of a long history in the database."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.batches import charts
from dashboard.batches.charts import Point
from tests.factories import iso, stored_batch
from tests.services import ACCOUNT_ENVIRONMENT

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def running(count: int = 11, *, total: int = 1000, every: float = 60, per_step: int = 50) -> list[Point]:
    """An OpenAI-like batch: `per_step` more requests succeed every `every` seconds."""
    return [
        Point(at=at(every * i), total=total, processing=total - per_step * i, succeeded=per_step * i)
        for i in range(count)
    ]


def corners(path: str) -> list[tuple[float, float]]:
    assert path.startswith("M") and path.endswith(" Z")
    return [(float(x), float(y)) for x, y in re.findall(r"(-?[\d.]+) (-?[\d.]+)", path)]


# --- axes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "top"),
    [(0, 1), (1, 1), (3, 3), (7, 8), (11, 12), (100, 100), (101, 120), (1001, 1200), (2600, 3000), (99_999, 100_000)],
)
def test_the_count_axis_ends_at_a_round_number_at_least_the_largest_count(value, top):
    assert charts.nice_ceiling(value) == top


def test_count_ticks_are_round_and_few():
    assert charts.count_step(1000) == 500
    assert charts.count_step(1200) == 500
    assert charts.count_step(3) == 1
    assert charts.count_step(100_000) == 50_000
    assert [charts.count_label(v) for v in (0, 500, 1500, 20_000, 2_500_000)] == ["0", "500", "1,500", "20k", "2.5M"]


def test_time_ticks_are_round_utc_moments_with_the_date_where_the_day_changes():
    ticks = charts.time_ticks(datetime(2026, 11, 25, 21, 7, tzinfo=UTC), datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    assert [label for _, label in ticks] == ["Nov 25 22:00", "Nov 26 00:00", "02:00", "04:00", "06:00", "08:00"]
    assert all(moment.tzinfo == UTC for moment, _ in ticks)


def test_a_time_label_at_the_plot_s_end_does_not_run_past_it():
    chart = charts.chart(running(3), start=at(0), end=at(120))
    assert [(tick.label, tick.anchor) for tick in chart.x_ticks][-2:] == [("12:01:30", "middle"), ("12:02:00", "end")]


def test_time_ticks_of_a_short_span_show_seconds():
    ticks = charts.time_ticks(at(0), at(40))
    assert [label for _, label in ticks] == ["Nov 25 12:00:00", "12:00:10", "12:00:20", "12:00:30", "12:00:40"]
    assert len(charts.time_ticks(at(0), at(3 * 86400))) <= charts.MAX_TIME_TICKS + 1


# --- the chart ----------------------------------------------------------------------------------


def test_no_points_no_chart():
    assert charts.chart([], start=T0, end=at(60)) is None


def test_areas_stack_bottom_to_top_and_the_top_is_the_total():
    points = [
        Point(at=at(0), total=100, processing=100),
        Point(at=at(60), total=100, processing=50, succeeded=40, errored=10),
        Point(at=at(120), total=100, processing=0, succeeded=80, errored=20),
    ]
    chart = charts.chart(points, start=at(0), end=at(180))
    assert [area.name for area in chart.areas] == ["succeeded", "errored", "processing"]
    assert chart.top == 100
    # The processing area's upper edge is the total all along: the plot's top.
    upper = min(y for _, y in corners(chart.areas[-1].path))
    assert upper == chart.top_y
    # The succeeded area starts at the bottom and ends at 80% of the height.
    succeeded = corners(chart.areas[0].path)
    height = chart.bottom_y - chart.top_y
    assert max(y for _, y in succeeded) == chart.bottom_y
    assert min(y for _, y in succeeded) == pytest.approx(chart.bottom_y - 0.8 * height, abs=0.1)
    assert [area.latest for area in chart.areas] == [80, 20, 0]


def test_each_change_holds_until_the_next_then_until_the_last_read_no_line_between_changes():
    chart = charts.chart(running(3), start=at(0), end=at(180))
    points = corners(chart.areas[0].path)
    xs = sorted({x for x, _ in points})
    # Corners only at the changes (0, 60, 120 s) and at the last read (180 s): steps, not slopes.
    width = chart.right - chart.left
    assert xs == pytest.approx([chart.left + width * s / 180 for s in (0, 60, 120, 180)], abs=0.1)
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        assert x1 == x2 or y1 == y2, "every edge is horizontal or vertical"


def test_the_chart_runs_from_the_creation_to_the_last_read_and_says_when_first_seen():
    points = running(3)
    chart = charts.chart(points, start=at(-600), end=at(300))
    assert (chart.start, chart.end) == (at(-600), at(300))
    assert min(x for x, _ in corners(chart.areas[0].path)) > chart.left, "nothing drawn before it was seen"
    assert "first saw it at 2026-11-25 12:00 UTC" in chart.description


def test_a_point_seen_after_the_end_given_moves_the_end():
    chart = charts.chart(running(3), start=at(0), end=at(60))
    assert chart.end == at(120)


def test_an_ended_batch_s_final_counts_are_drawn_past_its_last_change():
    points = [Point(at=at(0), total=10, processing=10), Point(at=at(3600), total=10, succeeded=9, errored=1)]
    chart = charts.chart(points, start=at(0), end=at(3600), ended=True, markers=[(at(3590), "ended"), (None, "x")])
    assert chart.end > at(3600)
    succeeded = corners(chart.areas[0].path)
    assert max(x for x, _ in succeeded) - min(x for x, _ in succeeded) > 10, "the final state has a width"
    assert [marker.label for marker in chart.markers] == ["ended"]


def test_series_that_are_zero_throughout_are_not_drawn_but_the_main_ones_are_listed():
    chart = charts.chart(running(3), start=at(0), end=at(180))
    assert [area.name for area in chart.areas] == ["succeeded", "processing"]
    assert [(entry.name, entry.latest) for entry in chart.legend] == [
        ("succeeded", 100),
        ("errored", 0),
        ("processing", 900),
    ]
    assert chart.legend[1].path == ""


def test_counts_above_the_total_stay_inside_the_plot():
    points = [Point(at=at(0), total=10, processing=5, succeeded=9, errored=3)]
    chart = charts.chart(points, start=at(0), end=at(60))
    assert chart.top >= 17
    assert all(y >= chart.top_y for area in chart.areas for _, y in corners(area.path))


def test_an_anthropic_like_batch_says_outcomes_come_at_the_end():
    points = [Point(at=at(0), total=5, processing=5)]
    chart = charts.chart(points, start=at(0), end=at(600), final_only=True)
    assert [area.name for area in chart.areas] == ["processing"]
    assert "reports outcomes only when the whole batch ends" in chart.description


def test_the_text_alternative_has_a_few_moments_the_first_and_the_latest():
    points = running(100, every=10, per_step=10)
    chart = charts.chart(points, start=at(0), end=at(1000))
    assert len(chart.table) == charts.TABLE_ROWS
    assert chart.table[0] == points[0] and chart.table[-1] == points[-1]
    assert "succeeded 0 to 990" in chart.description and "processing 1,000 to 10" in chart.description


def test_geometry_is_plain_numbers_for_svg_attributes():
    chart = charts.chart(running(5), start=at(0), end=at(300))
    for area in chart.areas:
        assert re.fullmatch(r"M[\d. L]+ Z", area.path)
    for tick in [*chart.x_ticks, *chart.y_ticks]:
        assert re.fullmatch(r"\d+(\.\d)?", tick.pos)


def test_a_flat_stretch_is_one_line_whatever_its_length():
    flat = [Point(at=at(i), total=10, processing=10) for i in range(400)]
    chart = charts.chart(flat, start=at(0), end=at(400))
    assert len(corners(chart.areas[0].path)) == 4


# --- sampling ---------------------------------------------------------------------------------------


def test_sampling_keeps_the_first_and_the_last_and_spreads_evenly():
    assert charts.sample_indices(5, 10) == [0, 1, 2, 3, 4]
    picked = charts.sample_indices(10_001, 500)
    assert len(picked) == 500 and picked[0] == 0 and picked[-1] == 10_000
    gaps = {b - a for a, b in itertools.pairwise(picked)}
    assert gaps <= {20, 21}


def test_history_points_reads_every_change_or_an_even_sample_of_a_long_history(db):
    from dashboard.models import BatchChange

    # Stored at T0 with nothing done yet (its first change, succeeded 0), then 29 changes a second apart.
    row = stored_batch(
        "openai-ops",
        "batch_chart",
        created=T0,
        fetched_at=T0,
        request_counts={"total": 1000, "completed": 0, "failed": 0},
    )
    BatchChange.objects.bulk_create(
        BatchChange(batch=row, observed_at=at(i), status="in_progress", total=1000, succeeded=i, processing=1000 - i)
        for i in range(1, 30)
    )
    points, stored = charts.history_points(account_key="openai-ops", batch_id="batch_chart")
    assert stored == 30 and [p.succeeded for p in points] == list(range(30))
    sampled, stored = charts.history_points(account_key="openai-ops", batch_id="batch_chart", limit=5)
    assert stored == 30
    assert [p.succeeded for p in sampled] == [0, 7, 14, 22, 29]
    assert sampled[0].at == at(0) and sampled[-1].total == 1000
    assert charts.history_points(account_key="openai-ops", batch_id="nothing") == ([], 0)


# --- on the detail page ---------------------------------------------------------------------------------


@pytest.fixture
def demo_accounts_only(monkeypatch):
    for name in ACCOUNT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def record_openai(number: int, *, created: datetime, at: datetime, status: str = "in_progress", **counts):
    return stored_batch(
        "openai-ops",
        f"batch_{number:032d}",
        created=created,
        fetched_at=at,
        status=status,
        request_counts={"total": 1000, "completed": 0, "failed": 0, **counts},
    )


def record_anthropic(number: int, *, created: datetime, at: datetime, took: timedelta | None = None, size: int = 100):
    ended = took is not None
    return stored_batch(
        "anthropic-ops",
        f"msgbatch_{number:024d}",
        created=created,
        fetched_at=at,
        processing_status="ended" if ended else "in_progress",
        request_counts={
            "processing": 0 if ended else size,
            "succeeded": size if ended else 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        ended_at=iso(created + took) if ended else None,
    )


def svg_of(body: str) -> str:
    return re.search(r'<svg class="chart".*?</svg>', body, re.S).group(0)


def test_the_detail_page_draws_the_history_and_estimates_what_is_left(operator_client, demo_accounts_only):
    from django.utils import timezone

    from tests.factories import text

    now = timezone.now()
    created = now - timedelta(minutes=40)
    for minute in range(0, 41, 2):
        record_openai(
            1, created=created, at=created + timedelta(minutes=minute), completed=20 * minute, failed=2 * minute
        )
    body = text(operator_client.get(f"/batches/openai-ops/batch_{1:032d}/"))
    svg = svg_of(body)
    assert 'role="img" aria-labelledby="chart-title chart-desc"' in svg
    assert f'<title id="chart-title">Requests of batch batch_{1:032d} over time</title>' in svg
    assert "succeeded 0 to 800, errored 0 to 80, processing 1,000 to 120, of 1,000 requests." in svg
    assert [name for name in re.findall(r'<path class="area seg-(\w+)"', svg)] == ["succeeded", "errored", "processing"]
    assert "style=" not in svg and "<script" not in svg, "the CSP allows no inline style or script"
    assert ">time (UTC)</text>" in svg and re.search(r'text-anchor="middle">\w{3} \d+ \d\d:\d\d</text>', svg)
    legend = re.search(r'<ul class="chart-legend">.*?</ul>', body, re.S).group(0)
    assert re.findall(r"</svg> (\w+) <strong>(\d+)</strong>", legend) == [
        ("succeeded", "800"),
        ("errored", "80"),
        ("processing", "120"),
    ]
    table = re.search(r'<details class="chart-table">.*?</details>', body, re.S).group(0)
    assert table.count("<tr>") == 1 + charts.TABLE_ROWS
    # The estimate: a range in words, from the recent rate, and the expiry.
    assert re.search(r'<strong class="eta-headline">About \d+–\d+ min left</strong>', body)
    assert "requests a minute finished (880 of 1,000 have an outcome, 120 to go)" in body
    assert "Expires in about 23 h 30 min" in body


def test_a_batch_too_young_for_an_estimate_says_so(operator_client, demo_accounts_only):
    from django.utils import timezone

    from tests.factories import text

    now = timezone.now()
    record_openai(2, created=now - timedelta(seconds=40), at=now - timedelta(seconds=40))
    record_openai(2, created=now - timedelta(seconds=40), at=now, completed=5)
    body = text(operator_client.get(f"/batches/openai-ops/batch_{2:032d}/"))
    assert "Not enough history yet</strong>" in body
    assert svg_of(body)


def test_an_anthropic_batch_is_set_against_the_account_s_ended_batches(operator_client, demo_accounts_only):
    from django.utils import timezone

    from tests.factories import text

    now = timezone.now()
    for number, minutes in enumerate([100, 110, 120, 120, 130, 140, 150], start=10):
        created = now - timedelta(days=1, minutes=number)
        record_anthropic(
            number, created=created, at=created + timedelta(minutes=minutes), took=timedelta(minutes=minutes)
        )
    record_anthropic(
        10_000, created=now - timedelta(days=2), at=now - timedelta(days=1), took=timedelta(minutes=5), size=50_000
    )
    created = now - timedelta(minutes=130)
    record_anthropic(1, created=created, at=now)
    body = text(operator_client.get(f"/batches/anthropic-ops/msgbatch_{1:024d}/"))
    assert '<strong class="eta-headline">Running 2 h 10 min</strong>' in body
    assert "This account&#x27;s batches of about this size (50–200 requests) usually take" in body
    assert "(median 2 h, 7 batches)" in body
    assert "Anthropic reports outcomes only when the whole batch ends" in body
    assert [name for name in re.findall(r'<path class="area seg-(\w+)"', svg_of(body))] == ["processing"]


def test_an_ended_batch_is_drawn_to_its_end_with_the_end_marked(operator_client, demo_accounts_only):
    from django.utils import timezone

    from tests.factories import text

    now = timezone.now()
    created = now - timedelta(hours=3)
    record_anthropic(3, created=created, at=created)
    record_anthropic(3, created=created, at=created + timedelta(hours=2, minutes=1), took=timedelta(hours=2))
    body = text(operator_client.get(f"/batches/anthropic-ops/msgbatch_{3:024d}/"))
    svg = svg_of(body)
    assert '<strong class="eta-headline">Ended after 2 h</strong>' in body
    assert [name for name in re.findall(r'<path class="area seg-(\w+)"', svg)] == ["succeeded", "processing"]
    assert 'text-anchor="end">ended</text>' in svg
    assert "Expires in" not in body
