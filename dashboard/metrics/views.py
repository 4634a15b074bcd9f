"""/metrics in the Prometheus text format, for those access.py lets in."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from .access import metrics_enabled, refusal
from .collectors import exposition

# The text format every Prometheus reads (our names need none of version 1.0.0's escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@login_not_required  # scrapers authenticate with the token or their address (refusal)
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_enabled():
        raise Http404("Metrics are off: set METRICS_TOKEN or METRICS_ALLOWED_IPS.")
    refused = refusal(request)
    if refused is not None:
        refused["Cache-Control"] = "no-store"
        return refused
    response = HttpResponse(exposition(), content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response
