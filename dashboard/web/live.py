"""How the live pages (the list, a batch's detail, the alarms) stay current: one request per page
per interval, whatever the number of rows.

A page holds a cursor the server gave it, in its feed element's `hx-get` (`?feed=…`): what the page
shows, as fingerprints (each watched row's, the alarms', the header badge's). Every
ROW_POLL_SECONDS the element asks the page's own view "what changed since": the view reads the
current fingerprints (an indexed lookup or two, nothing rendered) and answers 204 when they are
all the same. Otherwise it renders only what changed, as htmx out-of-band swaps (by element id),
new batches at the top of the list, and the feed element again with the new cursor.

The cursor is signed (SECRET_KEY): the feed answers only about rows the server put in it, and its
view checks login and the page's permissions like the page.
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.http import HttpRequest, HttpResponse

FEED_PARAMETER = "feed"
_SALT = "dashboard.web.live"
MAX_CURSOR_CHARACTERS = 20_000


def cursor(**parts: Any) -> str:
    """A signed cursor holding `parts` (JSON values)."""
    return signing.dumps(parts, salt=_SALT, compress=True)


def read_cursor(request: HttpRequest) -> dict[str, Any] | None:
    """The parts of the request's feed cursor; None when it is unreadable or was not made here."""
    token = request.GET.get(FEED_PARAMETER, "")
    if not token or len(token) > MAX_CURSOR_CHARACTERS:
        return None
    try:
        parts = signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        return None
    return parts if isinstance(parts, dict) else None


def is_feed(request: HttpRequest) -> bool:
    return bool(request.htmx) and FEED_PARAMETER in request.GET


def unchanged() -> HttpResponse:
    """Nothing changed: htmx swaps nothing and the page keeps its cursor."""
    return HttpResponse(status=204)


def unreadable() -> HttpResponse:
    """A cursor this server did not make (or cannot read any more): only a reload gives a new one.
    Plain text, which dashboard.js shows in the page's notice."""
    return HttpResponse(
        "This page's live updates stopped (its cursor could not be read): reload the page.\n",
        status=400,
        content_type="text/plain; charset=utf-8",
    )


def watched_rows(parts: dict[str, Any]) -> dict[int, str]:
    """A cursor's watched rows (store key: fingerprint), whatever JSON made its keys strings."""
    rows = parts.get("rows")
    if not isinstance(rows, dict):
        return {}
    watched = {}
    for key, fingerprint in rows.items():
        try:
            watched[int(key)] = str(fingerprint)
        except (TypeError, ValueError):
            continue
    return watched
