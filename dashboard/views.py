"""Thin views: read the request, call a service, render the page or, for htmx, just the row."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from . import services
from .accounts import PROVIDER_LABELS, Account, configured_accounts
from .providers.base import ProviderError

STATUS_CHOICES = [
    (services.ACTIVE, "not ended yet"),
    *[(status, f"{status} (Anthropic)") for status in ("in_progress", "canceling", "ended")],
    *[(status, f"{status} (OpenAI)") for status in (
        "validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")],
]
KNOWN_STATUSES = {value for value, _ in STATUS_CHOICES}
CANCEL_PERMISSION = "dashboard.cancel_batch"


def encode_cursor(cursor: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(token: str) -> dict[str, str] | None:
    """A cursor from the query string; anything unreadable starts from the first page."""
    if not token:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return value


def account_or_404(account_key: str, batch_id: str) -> Account:
    try:
        return services.resolve(account_key=account_key, batch_id=batch_id)
    except services.UnknownBatch:
        raise Http404("No such batch.") from None


def row_context(request: HttpRequest, *, account_key: str, batch_id: str, view: services.BatchView | None,
                error: str = "", notice: str = "") -> dict:
    return {
        "row": view,
        "row_account": account_key,
        "row_batch_id": batch_id,
        "row_error": error,
        "notice": notice,
        "can_cancel": request.user.has_perm(CANCEL_PERMISSION),
        "poll_seconds": settings.ROW_POLL_SECONDS,
    }


def render_row(request: HttpRequest, context: dict) -> HttpResponse:
    response = render(request, "batches/list.html#row", context)
    view = context["row"]
    if view is not None and view.batch.is_ended and not view.is_stale:
        # The swapped-in row has no trigger already; 286 also tells htmx to stop polling.
        stop = HttpResponseStopPolling(response.content)
        stop["Content-Type"] = response["Content-Type"]
        return stop
    return response


@require_GET
def batch_list(request: HttpRequest) -> HttpResponse:
    accounts = configured_accounts()
    provider = request.GET.get("provider", "")
    provider = provider if provider in PROVIDER_LABELS else ""
    account_key = request.GET.get("account", "")
    account_key = account_key if any(a.key == account_key for a in accounts) else ""
    status = request.GET.get("status", "")
    status = status if status in KNOWN_STATUSES else ""
    token = request.GET.get("cursor", "")
    history = [part for part in request.GET.get("history", "").split(".") if part][:200]

    listing = services.list_batches(
        cursor=decode_cursor(token), provider=provider, account_key=account_key, status=status,
    )
    filters = {key: value for key, value in (("provider", provider), ("account", account_key), ("status", status)) if value}

    def page_url(cursor_token: str, page_history: list[str]) -> str:
        query = {**filters, **({"cursor": cursor_token} if cursor_token else {}),
                 **({"history": ".".join(page_history)} if page_history else {})}
        return "?" + urlencode(query) if query else request.path

    next_url = page_url(encode_cursor(listing.next_cursor), [*history, token or "~"]) if listing.next_cursor else ""
    previous_url = ""
    if token:
        previous_token = history[-1] if history else "~"
        previous_url = page_url("" if previous_token == "~" else previous_token, history[:-1])

    return render(request, "batches/list.html", {
        "rows": [services.BatchView(batch=batch) for batch in listing.batches],
        "failures": listing.failures,
        "accounts": accounts,
        "providers": PROVIDER_LABELS,
        "status_choices": STATUS_CHOICES,
        "selected": {"provider": provider, "account": account_key, "status": status},
        "next_url": next_url,
        "previous_url": previous_url,
        "can_cancel": request.user.has_perm(CANCEL_PERMISSION),
        "poll_seconds": settings.ROW_POLL_SECONDS,
    })


@require_GET
def batch_row(request: HttpRequest, account_key: str, batch_id: str) -> HttpResponse:
    account = account_or_404(account_key, batch_id)
    try:
        view = services.get_batch(account=account, batch_id=batch_id)
    except ProviderError as error:
        return render_row(request, row_context(request, account_key=account_key, batch_id=batch_id, view=None,
                                               error=error.message))
    return render_row(request, row_context(request, account_key=account_key, batch_id=batch_id, view=view))


@require_POST
def batch_cancel(request: HttpRequest, account_key: str, batch_id: str) -> HttpResponse:
    if not request.user.has_perm(CANCEL_PERMISSION):
        raise PermissionDenied("You do not have permission to cancel batches.")
    account = account_or_404(account_key, batch_id)
    result = services.cancel_batch(account=account, batch_id=batch_id, actor=request.user.get_username(),
                                   user=request.user)
    if not request.htmx:
        level = messages.SUCCESS if result.outcome == "accepted" else messages.WARNING
        messages.add_message(request, level, f"{batch_id}: {result.message}")
        return redirect("batch-list")
    return render_row(request, row_context(
        request, account_key=account_key, batch_id=batch_id, view=result.view,
        error="" if result.view else result.message, notice=result.message,
    ))

