"""A batch's row (templates/batches/list.html, partial "row"), rendered once per process and state.

A list page shows 25 rows. Rendering them with a `date` filter, an inclusion tag, a `url` tag and a
number to localize for every value was three quarters of the page's time (issue 19). Now:
- a row's display values are prepared once in Python (`row_display`), so its template is plain lookups;
- the HTML of a row is kept per process (`FRAMES`), keyed by what it shows (the row's fingerprint,
  selectors.row_fingerprint, and what the viewer's rights and the page change in it), with its
  relative times ("3 min ago", "running 2 hours") left as slots filled in as of each request: a
  row that did not change is not rendered again, for any viewer, and never shows a stale "ago".
"""

from __future__ import annotations

import html
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.template.defaultfilters import capfirst
from django.template.loader import render_to_string
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from .. import providers
from ..batches.selectors import StoredView
from ..templatetags.batches import (
    NONE_YET,
    _counted,
    ago_text,
    ago_time_html,
    clipped,
    counts_problem,
    no_time_html,
    progress_segments,
    relative_text,
    short_id,
    since_text,
    stamp,
    time_html,
    until_text,
)

ROW_TEMPLATE = "batches/list.html#row"
# What the row's template reads from its page's context besides the row.
ROW_CONTEXT = ("cancel_accounts", "oob", "notice", "refresh_seconds", "poll_seconds", "row_account", "row_batch_id")
ROW_CONTEXT += ("row_error",)
UNKNOWN, WAITING, BAR = "unknown", "waiting", "bar"  # what a row's Requests cell shows


class Clock:
    """How far moments are from `now`, in a row's words."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def moment(self, value: datetime) -> str:
        return relative_text(value, self.now, compact=True)

    def ago(self, value: datetime) -> str:
        return ago_text(value, self.now)

    def since(self, value: datetime) -> str:
        return since_text(value, self.now)

    def until(self, value: datetime) -> str:
        return until_text(value, self.now)


@dataclass(frozen=True)
class Frame:
    """A row's HTML with a slot for each relative time: `parts` around the slots, and what each slot
    says (a Clock's method and its moment), in the order they appear."""

    parts: tuple[str, ...]
    slots: tuple[tuple[str, datetime], ...]

    def html(self, clock: Clock) -> SafeString:
        pieces = [self.parts[0]]
        for (kind, value), part in zip(self.slots, self.parts[1:], strict=True):
            pieces += [html.escape(getattr(clock, kind)(value)), part]
        return mark_safe("".join(pieces))  # noqa: S308 (our template's output, each slot escaped)


# A row's placeholders: NUL, a token drawn for this process, which no upstream value can know, and
# the slot's number.
_SLOT_TOKEN = secrets.token_hex(16)
_SLOT = re.compile(f"\x00{_SLOT_TOKEN}:(\\d+)\x00")


class _Recording(Clock):
    """A clock that writes a placeholder for each relative time, to be filled in as of each request."""

    def __init__(self) -> None:
        self.slots: list[tuple[str, datetime]] = []

    def _slot(self, kind: str, value: datetime) -> str:
        self.slots.append((kind, value))
        return f"\x00{_SLOT_TOKEN}:{len(self.slots) - 1}\x00"

    def moment(self, value: datetime) -> str:
        return self._slot("moment", value)

    def ago(self, value: datetime) -> str:
        return self._slot("ago", value)

    def since(self, value: datetime) -> str:
        return self._slot("since", value)

    def until(self, value: datetime) -> str:
        return self._slot("until", value)

    def frame(self, rendered: str) -> Frame:
        pieces = _SLOT.split(rendered)
        return Frame(parts=tuple(pieces[0::2]), slots=tuple(self.slots[int(index)] for index in pieces[1::2]))


class _Frames:
    """The latest rows' frames of this process, least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._frames: OrderedDict[tuple, Frame] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Frame | None:
        with self._lock:
            frame = self._frames.get(key)
            if frame is not None:
                self._frames.move_to_end(key)
            return frame

    def put(self, key: tuple, frame: Frame) -> None:
        with self._lock:
            self._frames[key] = frame
            while len(self._frames) > self.size:
                self._frames.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()


FRAMES = _Frames(size=4096)  # ~4 KB a row: some 16 MB at most, 160 pages of 25 rows


def row_html(view: StoredView | None, context: Mapping[str, Any], *, now: datetime | None = None) -> SafeString:
    """The row of `view` (or, for None, of a batch not stored: `row_account`, `row_batch_id`,
    `row_error`) with the page's `context` (ROW_CONTEXT), relative times as of `now`."""
    clock = Clock(now or timezone.now())
    values = {name: context.get(name) for name in ROW_CONTEXT}
    if view is None:
        return mark_safe(render_to_string(ROW_TEMPLATE, {**values, "row": None}))  # noqa: S308
    batch = view.batch
    may_cancel = batch.account in (values["cancel_accounts"] or ())
    if not view.fingerprint or values["notice"]:  # a cancel's answer says what it did: that row once
        display = row_display(view, clock=clock, may_cancel=may_cancel)
        return mark_safe(render_to_string(ROW_TEMPLATE, {**values, "row": view, "d": display}))  # noqa: S308
    key = (
        view.pk,
        view.fingerprint,
        # What the fingerprint leaves out: what a batch keeps from its making (feed.UNWATCHED).
        batch.account,
        batch.id,
        batch.created_at,
        repr(batch.metadata.get("job")),
        may_cancel,
        bool(values["oob"]),
        values["refresh_seconds"],
        timezone.get_current_timezone_name(),
        get_script_prefix(),
    )
    frame = FRAMES.get(key)
    if frame is None:
        recording = _Recording()
        display = row_display(view, clock=recording, may_cancel=may_cancel)
        frame = recording.frame(render_to_string(ROW_TEMPLATE, {**values, "row": view, "d": display}))
        FRAMES.put(key, frame)
    return frame.html(clock)


@dataclass(frozen=True)
class Segment:
    name: str
    count: str
    x: str
    width: str


@dataclass(frozen=True)
class RowDisplay:
    """What a stored batch's row shows, as text (escaped by the template) or as HTML made here."""

    provider_label: str
    detail_url: str
    short_id: SafeString
    job: SafeString | str  # the metadata's "job", clipped; "" for none
    # The freshness note and the flags: each "" unless the row shows it.
    fetched_stamp: str
    fetched_ago: SafeString | str
    accepted_stamp: str
    accepted_ago: SafeString | str
    gone_stamp: str
    gone_ago: SafeString | str
    open_alarms: str
    # The time cells (HTML); `asked_here`: the cancel asked is this dashboard's, the provider does not say.
    created: SafeString
    expires: SafeString
    ended: SafeString
    cancel_asked: SafeString
    asked_here: bool
    # The Requests cell: which of UNKNOWN, WAITING (outcomes only at the end) or BAR, and its texts.
    progress: str
    progress_detail: str  # UNKNOWN and WAITING: what follows "counts unknown" / "N requests processing"
    processing: str
    total: str
    finished: str
    errored: str  # "" when none
    segments: tuple[Segment, ...]
    segments_text: str  # "succeeded 97, errored 3"
    problem: str  # "Counts do not add up: …, as Anthropic reported them." or ""
    show_fraction: bool  # done/total (a batch still processing, or nothing counted) rather than each outcome
    cancel_url: str  # "" when the viewer may not cancel it (or it cannot be canceled)


def row_display(view: StoredView, *, clock: Clock, may_cancel: bool) -> RowDisplay:
    """`view`'s display values, relative times as `clock` says them; `may_cancel`: the viewer may
    cancel on its account (it gets a Cancel button if the batch can still be canceled)."""
    batch = view.batch
    label = providers.label(batch.provider)
    counts = batch.counts

    def cell(value: datetime | None) -> SafeString:
        return no_time_html(NONE_YET) if value is None else time_html(value, clock.moment(value), compact=True)

    def ago(value: datetime | None) -> SafeString | str:
        return "" if value is None else ago_time_html(value, clock.ago(value))

    if not counts.known:
        progress, running = UNKNOWN, ""
        if not batch.is_ended:
            running = f" · running {clock.since(batch.created_at)}"
            if batch.expires_at:
                running += f", {clock.until(batch.expires_at)} left before expiry"
        detail = f"{running}. {label} has not reported request counts for this batch."
    elif batch.counts_are_final_only and not batch.is_ended:
        progress = WAITING
        left = clock.until(batch.expires_at) if batch.expires_at else ""
        detail = (
            f" · running {clock.since(batch.created_at)}, {left} left before expiry."
            f" {label} reports outcomes only when the whole batch ends."
        )
    else:
        progress, detail = BAR, ""
    segments = (
        tuple(
            Segment(name=s["name"], count=str(s["count"]), x=s["x"], width=s["width"]) for s in progress_segments(batch)
        )
        if progress == BAR
        else ()
    )
    problem = counts_problem(batch) if progress == BAR else ""
    cancelable = may_cancel and batch.can_cancel and not view.gone_at and not view.cancel_pending
    asked_here = not batch.cancel_initiated_at and bool(view.cancel_accepted_at)
    # When it was fetched shows on a row that lags, and in the freshness note of a final or stale row.
    fetched_shown = view.lagging or (view.gone_at is None and (batch.is_ended or view.is_stale))
    job = batch.metadata.get("job")
    return RowDisplay(
        provider_label=label,
        detail_url=reverse("batch-detail", args=[batch.account, batch.id]),
        short_id=short_id(batch.id),
        job=clipped(job, 80) if job else "",
        fetched_stamp=stamp(view.fetched_at) if fetched_shown else "",
        fetched_ago=ago(view.fetched_at) if fetched_shown else "",
        accepted_stamp=stamp(view.cancel_accepted_at) if view.cancel_pending else "",
        accepted_ago=ago(view.cancel_accepted_at) if view.cancel_pending else "",
        gone_stamp=stamp(view.gone_at),
        gone_ago=ago(view.gone_at),
        open_alarms=str(view.open_alarms),
        created=cell(batch.created_at),
        expires=cell(batch.expires_at),
        ended=cell(batch.ended_at),
        cancel_asked=cell(view.cancel_accepted_at if asked_here else batch.cancel_initiated_at),
        asked_here=asked_here,
        progress=progress,
        progress_detail=detail,
        processing=str(counts.processing),
        total=str(counts.total),
        finished=str(_counted(batch)[0]),
        errored=str(counts.errored) if counts.errored else "",
        segments=segments,
        segments_text=", ".join(f"{s.name} {s.count}" for s in segments),
        problem=f"{capfirst(problem)}, as {label} reported them." if problem else "",
        show_fraction=bool(counts.processing) or not segments,
        cancel_url=reverse("batch-cancel", args=[batch.account, batch.id]) if cancelable else "",
    )
