"""A duration in words, the one way the dashboard says one: "45 min", "2 h", "2 h 10 min". Pure."""

from __future__ import annotations


def in_words(seconds: float, *, to_the_second: bool = False) -> str:
    """`seconds` in hours and minutes ("2 h 10 min"; "under a minute" for less than half of one),
    or, `to_the_second`, in hours, minutes and seconds ("1 min 5 s", "8 s"). Parts that are zero
    are left out. An estimate claims no more than the minute; a time measured or a threshold an
    alarm fires at to the second may say its seconds."""
    if to_the_second:
        minutes, rest = divmod(max(0, round(seconds)), 60)
        hours, minutes = divmod(minutes, 60)
        parts = (f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{rest} s" if rest else "")
        return " ".join(part for part in parts if part) or "0 s"
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {minutes} min" if minutes else "")
