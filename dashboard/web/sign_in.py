"""The pages around signing in: the sign-in page (password, single sign-on, or both), and those
settings name: django-axes' lockout (AXES_LOCKOUT_CALLABLE) and a refused CSRF check (CSRF_FAILURE_VIEW)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .middleware import htmx_login_redirect

CSRF_REFUSED = (
    "The dashboard refused this (your session changed — signed in again in another tab?). "
    "Reload the page and try again."
)


class SignInView(LoginView):
    """Django's sign-in page, offering single sign-on where it is configured; with SSO_ONLY, a
    password is never taken (the form is not shown and a posted one is refused)."""

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "sso": settings.SSO_ENABLED, "sso_only": settings.SSO_ONLY}

    def post(self, request, *args, **kwargs):
        if settings.SSO_ONLY:
            return HttpResponse(
                "Password sign-in is off: sign in with single sign-on.\n",
                status=403,
                content_type="text/plain; charset=utf-8",
            )
        return super().post(request, *args, **kwargs)


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
