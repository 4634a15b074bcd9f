"""The pages around signing in that settings name: django-axes' lockout (AXES_LOCKOUT_CALLABLE) and a
refused CSRF check (CSRF_FAILURE_VIEW)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .middleware import htmx_login_redirect

CSRF_REFUSED = (
    "The dashboard refused this (your session changed — signed in again in another tab?). "
    "Reload the page and try again."
)


def locked_out(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a sign-in while its user name and address are locked out."""
    return render(
        request,
        "registration/locked_out.html",
        {
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "lockout_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
        },
        status=429,
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a POST whose token is stale, most often because the user signed in again
    (in another tab), which gives the session a new token. For htmx, a short plain message the row
    shows (or the move to the login page if the session is gone too); otherwise a page saying it."""
    if request.headers.get("HX-Request") == "true":
        if not request.user.is_authenticated:
            return htmx_login_redirect(request)
        return HttpResponse(CSRF_REFUSED + "\n", status=403, content_type="text/plain; charset=utf-8")
    return render(request, "registration/csrf_failure.html", {"explanation": CSRF_REFUSED}, status=403)
