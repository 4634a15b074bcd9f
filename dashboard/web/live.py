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

import hashlib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString, mark_safe

from ..accounts import Account
from ..batches import feed
from . import rows

FEED_PARAMETER = "feed"
_SALT = "dashboard.web.live"
MAX_CURSOR_CHARACTERS = 20_000
# How long a changed row's HTML is kept for the other viewers it is sent to: relative times in it
# ("5 minutes ago") are counted on by dashboard.js as soon as it is swapped in.
ROW_HTML_SECONDS = 30


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


def shared_answer(request: HttpRequest, answer: Callable[[], HttpResponse], **made_from: Any) -> HttpResponse:
    """The feed's answer to this request, made by `answer()` from what `made_from` names (with the
    request's path and query: the page, its filters and its cursor) and shared by every request that
    asks the same of the same store: the viewers of a page ask the same question every interval,
    each from the cursor the last answer gave them, so after a change one answer is made and sent
    to all of them. Kept for two poll intervals: the viewers of one question ask it within one."""
    made_from = {"path": request.get_full_path(), **made_from}
    key = "live-answer:" + hashlib.blake2b(repr(sorted(made_from.items())).encode(), digest_size=16).hexdigest()
    content = cache.get(key)
    if content is not None:
        return HttpResponse(content)
    response = answer()
    if response.status_code == 200:
        cache.set(key, response.content, 2 * settings.ROW_POLL_SECONDS)
    return response


def changed_rows_html(
    *, accounts: list[Account], changed: list[feed.Changed], context: dict, watching: dict[int, str]
) -> list[SafeString]:
    """Each changed row's HTML as an out-of-band swap. Every viewer of a row that changed is sent
    the same HTML (but for the Cancel button, by where the viewer may cancel): rendered once per process (or per
    cache) and kept for ROW_HTML_SECONDS, so a change costs one render, not one per viewer.
    `watching` is updated with what was sent (a row read anew may have changed again meanwhile)."""

    # Where the viewer may cancel decides the Cancel buttons: viewers with the same accounts share rows.
    scope = hashlib.blake2b(context["cancel_scope"].encode(), digest_size=8).hexdigest()

    def key(pk: int, fingerprint: str) -> str:
        return f"live-row:{pk}:{fingerprint}:{scope}:{context['poll_seconds']}:{context['refresh_seconds']}"

    keys = {row.pk: key(row.pk, row.fingerprint) for row in changed}
    found = cache.get_many(list(keys.values())) if keys else {}
    missing = [row.pk for row in changed if keys[row.pk] not in found]
    views = feed.stored_views(accounts=accounts, pks=missing) if missing else {}
    sent = []
    for row in changed:
        text = found.get(keys[row.pk])
        if text is None:
            view = views.get(row.pk)
            if view is None:  # gone since
                watching.pop(row.pk, None)
                continue
            text = rows.row_html(view, {**context, "oob": True})
            cache.set(key(row.pk, view.fingerprint), text, ROW_HTML_SECONDS)
            if view.is_final:
                watching.pop(row.pk, None)
            else:
                watching[row.pk] = view.fingerprint
        sent.append(mark_safe(text))  # noqa: S308 (rendered from our template, escaped there)
    return sent
