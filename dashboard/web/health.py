"""`/healthz`, for load balancers: is this process able to serve? Database and cache only, no
upstream call, no login, no secret; whatever Host header the load balancer sends."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET


@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers: is this process able to serve? Database and cache only, no upstream."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"unreachable ({type(error).__name__})"
    try:
        cache.set("healthz", "ok", 10)
        checks["cache"] = "ok" if cache.get("healthz") == "ok" else "not storing"
    except Exception as error:
        checks["cache"] = f"unreachable ({type(error).__name__})"
    healthy = all(value == "ok" for value in checks.values())
    response = JsonResponse({"status": "ok" if healthy else "failing", **checks}, status=200 if healthy else 503)
    response["Cache-Control"] = "no-store"
    return response


class HealthzForAnyHostMiddleware:
    """`/healthz` answers whatever Host a load balancer sends: Django checks the Host against
    ALLOWED_HOSTS when something reads it (CommonMiddleware does, on every request), so this
    answers before that. The health check reads nothing of the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == "/healthz":
            return healthz(request)
        return self.get_response(request)
