from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

from .. import providers
from ..providers.base import Batch

register = template.Library()

SEGMENTS = ("succeeded", "errored", "canceled", "expired", "processing")


@register.filter
def provider_label(name: str) -> str:
    """A provider's name as operators see it, e.g. "anthropic" -> "Anthropic"."""
    return providers.label(name)


@register.inclusion_tag("batches/_time.html")
def moment(value: datetime | None, empty: str = "—"):
    """A timestamp shown relative to now, absolute (UTC, then the viewer's zone by JS) on hover."""
    if value is None:
        return {"value": None, "empty": empty}
    now = timezone.now()
    relative = f"{timesince(value, now)} ago" if value <= now else f"in {timeuntil(value, now)}"
    return {"value": value, "relative": relative.replace("\xa0", " ")}


@register.filter
def ago(value: datetime | None) -> str:
    """How long ago, in the words of a freshness note: "just now", "4 s ago", "3 min ago"."""
    if value is None:
        return "never"
    seconds = int((timezone.now() - value).total_seconds())
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{timesince(value, timezone.now()).split(',')[0]} ago".replace("\xa0", " ")


@register.simple_tag
def progress_segments(batch: Batch) -> list[dict]:
    """Stacked bar segments of the request counts: offset and width in percent of the total.

    Drawn as SVG rectangles, whose geometry attributes need no inline style (the CSP forbids it).
    """
    counts = batch.counts
    segments, offset = [], 0.0
    for name in SEGMENTS:
        count = getattr(counts, name)
        if count:
            width = counts.percent(count)
            segments.append({"name": name, "count": count, "x": f"{offset:.2f}", "width": f"{width:.2f}"})
            offset += width
    return segments


@register.filter
def duration_since(value: datetime | None) -> str:
    return timesince(value, timezone.now()).split(",")[0].replace("\xa0", " ") if value else ""


@register.filter
def duration_until(value: datetime | None) -> str:
    if value is None:
        return ""
    if value <= timezone.now():
        return "0 minutes"
    return timeuntil(value, timezone.now()).split(",")[0].replace("\xa0", " ")


@register.filter
def split_words(value: str) -> list[str]:
    return value.split()


@register.filter
def get_item(mapping, key: str):
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def seconds_text(value) -> str:
    seconds = int(value.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return " ".join(
        part for part in (f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{seconds} s") if part
    )
