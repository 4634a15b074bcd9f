"""Signing in: an htmx request that is not signed in sends the whole page to the login page; and text
the database cannot hold refused at the door."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.contrib.auth.views import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.utils.http import url_has_allowed_host_and_scheme


def page_the_user_was_on(request: HttpRequest) -> str:
    """The path and query of the page that sent this htmx request (its HX-Current-URL), if it is
    one of ours; else "/". A row poll's own URL is no page to come back to."""
    htmx = getattr(request, "htmx", None)
    path = htmx.current_url_abs_path if htmx else None
    if not path or not path.startswith("/") or path.startswith(resolve_url(settings.LOGIN_URL)):
        return "/"
    ours = url_has_allowed_host_and_scheme(path, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return path if ours else "/"


def htmx_login_redirect(request: HttpRequest, login_url: str | None = None) -> HttpResponse:
    """401 with HX-Redirect to the login page, whose `next` is the page the user was on.

    htmx 2 follows HX-Redirect before it looks at the status (handleAjaxResponse), so a 401 works;
    a 302 would not: the browser's XHR follows it itself and htmx would swap the login page into
    the element that asked (every live row, a sign-in form each).
    """
    url = resolve_url(login_url or settings.LOGIN_URL)
    target = f"{url}?{urlencode({REDIRECT_FIELD_NAME: page_the_user_was_on(request)})}"
    response = HttpResponse(
        "You are not signed in (any more): sign in again.\n", status=401, content_type="text/plain; charset=utf-8"
    )
    response["HX-Redirect"] = target
    return response


class HtmxAwareLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Django's LoginRequiredMiddleware, but an htmx request gets a 401 that moves the whole page."""

    def handle_no_permission(self, request, view_func):
        if request.headers.get("HX-Request") == "true":
            return htmx_login_redirect(request, self.get_login_url(view_func))
        return super().handle_no_permission(request, view_func)


# Characters the database cannot hold: PostgreSQL's text refuses NUL, and a lone surrogate cannot
# be encoded to send it. SQLite takes both, so only PostgreSQL would answer such a request with a 500.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_parameter(request: HttpRequest) -> str | None:
    """Where this request carries text the database cannot hold: "the address", "parameter 'q'",
    "form field 'note'"; None when it carries none."""
    if UNSTORABLE.search(request.path_info):
        return "the address"
    for where, params in (("parameter", request.GET), ("form field", request.POST)):
        for name, values in params.lists():
            if UNSTORABLE.search(name) or any(UNSTORABLE.search(value) for value in values):
                return f"{where} {UNSTORABLE.sub('?', name)!r}"
    return None


class RefuseUnstorableTextMiddleware:
    """A NUL (or lone surrogate) in the address, a parameter or a form field is refused with a 400
    that names where it was, before any view reads it; a cookie holding one is dropped (the
    session's would otherwise be looked up in the database).

    The embedded simulator's API is left to answer such requests itself, as the provider it stands
    for would (dashboard/simulator: not found, or the provider's own 400, and its upload limits
    checked before any body is read)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(f"/{settings.SIMULATOR_URL_PREFIX}"):
            return self.get_response(request)
        for name in [name for name, value in request.COOKIES.items() if UNSTORABLE.search(name + value)]:
            del request.COOKIES[name]
        where = unstorable_parameter(request)
        if where:
            return HttpResponse(
                f"Refused: {where} holds a NUL character (or another the dashboard cannot store). "
                "Remove it and try again.\n",
                status=400,
                content_type="text/plain; charset=utf-8",
            )
        return self.get_response(request)
