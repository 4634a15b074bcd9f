"""The spend page's chart: estimated dollars per day as bars, worked out here and written out by the template
as SVG (no JavaScript, no style attribute: the CSP allows none; bars are rects coloured by class)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 16, 32
MAX_DAY_LABELS = 8
Y_TICKS = 4


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class BarChart:
    bars: tuple[Bar, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    description: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    bottom_y: int = HEIGHT - BOTTOM


def _dollars(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def _nice_top(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 × 10^n at or above `value` (at least one cent)."""
    value = max(value, Decimal("0.01"))
    exponent = value.adjusted()
    for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        candidate = step.scaleb(exponent)
        if candidate >= value:
            return candidate
    return Decimal(10).scaleb(exponent)  # not reached: 10 × 10^n ≥ any value of exponent n


def daily_bars(days: Sequence[tuple[dt.date, Decimal]]) -> BarChart | None:
    """Bars of each day's estimated spend; None when there are no days."""
    if not days:
        return None
    top = _nice_top(max(amount for _, amount in days))
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / len(days)
    gap = min(2.0, slot / 4)
    bars = []
    for index, (day, amount) in enumerate(days):
        height = float(amount / top) * plot_height
        bars.append(
            Bar(
                x=round(LEFT + index * slot + gap / 2, 2),
                y=round(TOP + plot_height - height, 2),
                width=round(slot - gap, 2),
                height=round(height, 2),
                title=f"{day:%a %-d %b %Y}: {_dollars(amount)}",
            )
        )
    y_ticks = tuple(
        Tick(pos=round(TOP + plot_height - plot_height * step / Y_TICKS, 2), label=_dollars(top * step / Y_TICKS))
        for step in range(Y_TICKS + 1)
    )
    every = max(1, -(-len(days) // MAX_DAY_LABELS))
    x_ticks = tuple(
        Tick(pos=round(LEFT + (index + 0.5) * slot, 2), label=f"{day:%-d %b}")
        for index, (day, _) in enumerate(days)
        if index % every == 0
    )
    busiest_day, busiest = max(days, key=lambda item: item[1])
    total = sum((amount for _, amount in days), Decimal(0))
    description = (
        f"Estimated spend per day from {days[0][0]:%-d %b %Y} to {days[-1][0]:%-d %b %Y}: {_dollars(total)} in all"
        + (f", most on {busiest_day:%-d %b} ({_dollars(busiest)})." if busiest else ", nothing on any day.")
    )
    return BarChart(bars=tuple(bars), y_ticks=y_ticks, x_ticks=x_ticks, description=description)
