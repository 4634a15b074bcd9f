from __future__ import annotations

import json
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any

from django import template
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince, timeuntil

from .. import providers
from ..durations import in_words
from ..providers.base import Batch

register = template.Library()

SEGMENTS = ("succeeded", "errored", "canceled", "expired", "processing")


@register.filter
def provider_label(name: str) -> str:
    """A provider's name as operators see it, e.g. "anthropic" -> "Anthropic"."""
    return providers.label(name)


@lru_cache(maxsize=8192)
def _stamps(value: datetime, zone: tzinfo) -> tuple[str, str]:
    local = value.astimezone(zone)
    return local.isoformat(), f"{local.year:04d}-{local:%m-%d %H:%M:%S} {local.tzname() or ''}".rstrip()


def stamps(value: datetime) -> tuple[str, str]:
    """`value` in the current time zone as the `date` filter writes it with "c" (ISO 8601) and with
    "Y-m-d H:i:s T" (what a title shows): a list page writes some 170 of them, and the filter's
    general format machinery cost more than the rest of a row."""
    if timezone.is_naive(value):
        return date_format(value, "c"), date_format(value, "Y-m-d H:i:s T")
    return _stamps(value, timezone.get_current_timezone())


@register.filter
def stamp(value: datetime | None) -> str:
    """`value|date:"Y-m-d H:i:s T"`, cheaper (see `stamps`); "" for None."""
    return "" if value is None else stamps(value)[1]


def relative_text(value: datetime, now: datetime, *, compact: bool = False) -> str:
    """How far `value` is from `now`, as a `moment` says it: "3 minutes ago", "in 1 d 23 h" (compact)."""
    if abs((value - now).total_seconds()) < 60:
        # timesince's smallest unit is the minute: it would say "0 minutes ago".
        relative = "just now" if value <= now else "in a moment"
    elif compact:
        span = compact_span(abs((value - now).total_seconds()))
        relative = f"{span} ago" if value <= now else f"in {span}"
    else:
        relative = f"{timesince(value, now)} ago" if value <= now else f"in {timeuntil(value, now)}"
    return relative.replace("\xa0", " ")


def time_html(value: datetime, relative: str, *, compact: bool = False) -> SafeString:
    """A timestamp shown as `relative` (how far it is from now), absolute (the current time zone, then
    the viewer's by JS) on hover; `compact` for a list cell: "3 min ago", "in 1 d 23 h"."""
    iso, title = stamps(value)
    return format_html(
        '<time datetime="{}" data-moment{} title="{}">{}</time>', iso, COMPACT if compact else "", title, relative
    )


COMPACT = mark_safe(" data-compact")
NONE_YET = "—"


def no_time_html(empty: str = NONE_YET) -> SafeString:
    return format_html('<span class="muted">{}</span>', empty)


@register.simple_tag
def moment(value: datetime | None, empty: str = NONE_YET, compact: bool = False) -> SafeString:
    """A timestamp relative to now (`time_html`), or `empty` for None."""
    if value is None:
        return no_time_html(empty)
    return time_html(value, relative_text(value, timezone.now(), compact=compact), compact=compact)


def compact_span(seconds: float) -> str:
    """A span of a minute or more in at most two short units: "4 min", "5 h 20 min", "1 d 23 h"."""
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes and hours < 10 else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours and days < 10 else f"{days} d"


@register.filter
def ago(value: datetime | None) -> str:
    """How long ago, in the words of a freshness note: "just now", "4 s ago", "3 min ago"."""
    return "never" if value is None else ago_text(value, timezone.now())


def ago_text(value: datetime, now: datetime) -> str:
    seconds = int((now - value).total_seconds())
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{timesince(value, now, depth=1)} ago".replace("\xa0", " ")


@register.simple_tag
def ago_time(value: datetime | None) -> str:
    """`ago` in a <time> element (`ago_time_html`)."""
    return ago(value) if value is None else ago_time_html(value, ago(value))


def ago_time_html(value: datetime, text: str) -> SafeString:
    """`text` (how long ago `value` was) in a <time> element, which dashboard.js keeps counting in the
    browser: a row is sent again only when what it shows changes, not as seconds pass."""
    return format_html(
        '<time datetime="{}" data-ago title="{}">{}</time>',
        value.isoformat(),
        value.strftime("%Y-%m-%d %H:%M:%S UTC") if value.utcoffset() == timedelta(0) else value.isoformat(),
        text,
    )


def _counted(batch: Batch) -> tuple[int, int]:
    """(finished outcomes, all counted) of a batch's counts."""
    counts = batch.counts
    outcomes = counts.succeeded + counts.errored + counts.canceled + counts.expired
    return outcomes, outcomes + counts.processing


@register.simple_tag
def progress_segments(batch: Batch) -> list[dict]:
    """Stacked bar segments of the request counts: offset and width in percent of the total.

    Drawn as SVG rectangles, whose geometry attributes need no inline style (the CSP forbids it).
    Counts that add up to more than the total (see `counts_problem`) are drawn against their sum,
    so the bar never runs past its end.
    """
    counts = batch.counts
    whole = max(counts.total, _counted(batch)[1])
    segments, offset = [], 0.0
    for name in SEGMENTS:
        count = getattr(counts, name)
        if count:
            width = 100 * count / whole
            segments.append({"name": name, "count": count, "x": f"{offset:.2f}", "width": f"{width:.2f}"})
            offset += width
    return segments


@register.filter
def finished_count(batch: Batch) -> int:
    """Requests of a batch with an outcome (succeeded, errored, canceled or expired)."""
    return _counted(batch)[0]


@register.filter
def counts_problem(batch: Batch) -> str:
    """What is impossible about a batch's counts, in an operator's words, or "".

    The providers' parsers refuse negative and out-of-range counts; what can still arrive is parts
    that add up to more than the total (e.g. OpenAI's completed + failed above total)."""
    counts = batch.counts
    outcomes, counted = _counted(batch)
    if counted <= counts.total:
        return ""
    said = f"{outcomes} outcome{pluralize(outcomes)}"
    if counts.processing:
        said += f" and {counts.processing} processing"
    return f"counts do not add up: {said} for {counts.total} request{pluralize(counts.total)}"


@register.filter
def duration_since(value: datetime | None) -> str:
    return since_text(value, timezone.now()) if value else ""


def since_text(value: datetime, now: datetime) -> str:
    if (now - value).total_seconds() < 60:
        return "less than a minute"
    return timesince(value, now, depth=1).replace("\xa0", " ")


@register.filter
def duration_until(value: datetime | None) -> str:
    return "" if value is None else until_text(value, timezone.now())


def until_text(value: datetime, now: datetime) -> str:
    seconds = (value - now).total_seconds()
    if seconds <= 0:
        return "no time"
    if seconds < 60:
        return "less than a minute"
    return timeuntil(value, now, depth=1).replace("\xa0", " ")


# --- long values -------------------------------------------------------------------------------
# Upstream text has no length we can count on (a 512-character metadata value is allowed, a
# custom_id or model name may run to tens of thousands): cells show its start, hover a longer part.
HOVER_LIMIT = 1000


def shown_text(value: Any) -> str:
    """A value as an operator reads it: a string as it is, anything else as JSON (never Python's repr)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return ""


@register.simple_tag
def clipped(value: Any, limit: int = 300, hover: int = HOVER_LIMIT):
    """`value`'s first `limit` characters and an ellipsis; on hover its first `hover` characters
    and its length. Short values are shown whole."""
    text = shown_text(value)
    if len(text) <= limit:
        return text
    title = text[:hover] + (f"… ({len(text):,} characters in all)" if len(text) > hover else "")
    return format_html('<span class="clipped" title="{}">{}…</span>', title, text[:limit])


@register.simple_tag
def capped(text: str, limit: int = 200_000) -> dict:
    """A long text (the raw JSON block) cut at `limit` characters: {"text", "cut", "size"}."""
    return {"text": text[:limit], "cut": len(text) > limit, "size": f"{len(text):,}", "limit": f"{limit:,}"}


ID_TAIL = 6  # characters of an id kept after the ellipsis when its cell is too narrow for all of it


@register.simple_tag
def short_id(value: str):
    """An id that its cell shortens in the middle (CSS ellipsis on its head, the tail always
    shown): its text is still the whole id, for copying, searching and screen readers."""
    text = shown_text(value)
    if len(text) <= ID_TAIL * 2:
        return format_html('<code class="batch-id"><span class="id-head">{}</span></code>', text)
    return format_html(
        '<code class="batch-id"><span class="id-head">{}</span><span class="id-tail">{}</span></code>',
        text[:-ID_TAIL],
        text[-ID_TAIL:],
    )


@register.filter
def split_words(value: str) -> list[str]:
    return value.split()


@register.filter
def batch_errors(batch: Batch) -> list[dict]:
    """The errors a batch's JSON lists under errors.data (OpenAI: a list of objects; Azure's GA spec:
    one object), each an object; anything else there is left to the raw JSON."""
    errors = batch.raw.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else None
    items = [data] if isinstance(data, dict) else data if isinstance(data, list) else []
    return [item for item in items if isinstance(item, dict)]


@register.filter
def detail_fields(batch: Batch) -> list[tuple[str, Any]]:
    """The fields of the provider's JSON its module names for the detail page (DETAIL_FIELDS, dotted
    paths into nested objects), each that the batch has: (path, value)."""
    provider = providers.PROVIDERS.get(batch.provider)
    fields = []
    for path in getattr(provider, "DETAIL_FIELDS", ()):
        value: Any = batch.raw
        for name in path.split("."):
            value = value.get(name) if isinstance(value, dict) else None
        if value not in (None, "", [], {}):
            fields.append((path, value if isinstance(value, str) else json.dumps(value)))
    return fields


@register.filter
def get_item(mapping, key: str):
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def seconds_text(value: timedelta) -> str:
    """A measured time to the second: "8 s", "1 min 5 s"."""
    return in_words(value.total_seconds(), to_the_second=True)


# --- alarms -----------------------------------------------------------------------------------


@register.simple_tag(takes_context=True)
def alarm_counts(context) -> dict:
    """The header badge's context (one query): the count of open alarms nobody has acknowledged,
    which base.html shows twice, in the page's title and in the badge (templates/alarms/_badge.html,
    which polls itself: alarm_views.alarm_badge); on a live page, what its view read already
    (`badge`), which says the badge does not poll: the page's feed brings it (web/live.py)."""
    from ..web.alarm_badge import badge_context

    return context.get("badge") or badge_context(context["request"])
