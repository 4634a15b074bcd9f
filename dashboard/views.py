from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    base = request.build_absolute_uri("/simulator/")
    return render(request, "home.html", {
        "anthropic_base_url": base + "anthropic",
        "openai_base_url": base + "openai/v1",
        "processing_seconds": settings.SIMULATOR_PROCESSING_SECONDS,
    })
