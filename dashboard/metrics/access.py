"""Who may read /metrics: a bearer token (METRICS_TOKEN), an allowed address (METRICS_ALLOWED_IPS),
both when both are set, or a signed-in staff user. With neither set, metrics are off: /metrics
answers 404 and no upstream call is counted.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from ..web.client_address import parse_address, parse_networks


def metrics_enabled() -> bool:
    return bool(settings.METRICS_TOKEN or settings.METRICS_ALLOWED_IPS)


def address_allowed(remote_addr: str) -> bool:
    address = parse_address(remote_addr)
    networks = parse_networks(tuple(settings.METRICS_ALLOWED_IPS), setting="METRICS_ALLOWED_IPS")
    return address is not None and any(address in network for network in networks)


def token_matches(request: HttpRequest) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.METRICS_TOKEN
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and secrets.compare_digest(token.strip().encode(), expected.encode())
    )


def refusal(request: HttpRequest) -> HttpResponse | None:
    """Why this request may not read the metrics (403: address; 401: token), or None if it may.

    A signed-in superuser may (the metrics name every account: grants do not scope them); a scraper
    needs what is configured: the token, an allowed address, or both when both are set."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_superuser:
        return None
    if settings.METRICS_ALLOWED_IPS and not address_allowed(request.META.get("REMOTE_ADDR", "")):
        return HttpResponse("Not from this address.\n", status=403, content_type="text/plain; charset=utf-8")
    if settings.METRICS_TOKEN and not token_matches(request):
        response = HttpResponse(
            "A bearer token is needed: Authorization: Bearer <METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return None
