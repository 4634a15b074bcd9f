"""The header's alarms badge, which every page shows (base.html, through the `alarm_counts`
template tag, with the same count leading the page's title): on a live page (web/live.py) its feed
brings the badge when its counts move; elsewhere it polls itself
(alarm_views.alarm_badge)."""

from __future__ import annotations

from django.conf import settings

from ..alarms import selectors as alarm_selectors

CHANGED_EVENT = "alarms-changed"  # what every alarm fragment also polls on


def badge_context(request, *, live: bool = False, counts: alarm_selectors.OpenCounts | None = None) -> dict:
    """The header's badge: open alarms of the accounts the user may see and how many nobody has
    acknowledged (one query, unless `counts` are known already). `live`: the page's feed keeps it
    current, so it does not poll itself."""
    from .common import alarm_accounts

    if counts is None:
        counts = alarm_selectors.open_alarm_counts(accounts=alarm_accounts(request))
    return {
        "live": live,
        "counts": counts,
        "poll_seconds": settings.ROW_POLL_SECONDS,
        "changed_event": CHANGED_EVENT,
    }
