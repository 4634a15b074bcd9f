"""Bulk cancel's pages: preview, confirmation, progress (dashboard/bulk/operations.py)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from ..access.models import Role
from ..accounts import Account
from ..batches.selectors import ListFilters
from ..bulk import operations as bulk
from ..models import BulkCancel, BulkCancelItem
from .common import ROLE_REFUSALS, list_filters, status_choices, visible_accounts

PROGRESS_POLL_SECONDS = 1
RECENT_OPERATIONS = 20


def operated_accounts(request: HttpRequest) -> list[Account]:
    """The accounts the user may cancel on; a 403 when there are none."""
    accounts = visible_accounts(request, Role.OPERATOR)
    if not accounts:
        raise PermissionDenied(ROLE_REFUSALS[Role.OPERATOR])
    return accounts


def visible_operations(request: HttpRequest):
    """Bulk cancels whose every batch is of an account the user may see (others are not theirs to read)."""
    keys = [account.key for account in visible_accounts(request)]
    return BulkCancel.objects.exclude(items__in=BulkCancelItem.objects.exclude(account__in=keys))


def _scope(filters: ListFilters) -> list[tuple[str, str]]:
    """The filters in words, for the preview and the progress page."""
    statuses = dict(status_choices())
    words = [
        ("provider", filters.provider),
        ("account", filters.account_key),
        ("status", statuses.get(filters.status, filters.status)),
        ("search", filters.search),
    ]
    return [(name, value) for name, value in words if value]


@require_GET
def preview(request: HttpRequest) -> HttpResponse:
    """Exactly the batches a confirmation will cancel: the list's filters' cancelable ones."""
    accounts = operated_accounts(request)
    filters = list_filters(request, accounts=accounts)
    shown = bulk.preview(user=request.user, accounts=accounts, filters=filters)
    return render(request, "bulk/preview.html", _preview_context(shown, filters=filters))


def _preview_context(shown: bulk.Preview, *, filters: ListFilters, **extra) -> dict:
    return {
        "preview": shown,
        "scope": _scope(filters),
        "filter_query": filters.query(),
        "typed_above": shown.typed_above,
        "typed_limit": bulk.TYPED_ABOVE,
        "typed_window_minutes": int(bulk.TYPED_WINDOW.total_seconds() // 60),
        "max_batches": bulk.MAX_BATCHES,
        "checked": None,  # every batch: the preview's first showing
        **extra,
    }


@require_POST
def confirm(request: HttpRequest) -> HttpResponse:
    """The operation, its items and its task, made at once: a worker runs the task."""
    accounts = operated_accounts(request)
    token = request.POST.get("token", "")
    try:
        operation, _ = bulk.create(
            user=request.user,
            accounts=accounts,
            token=token,
            selected=request.POST.getlist("batch"),
            typed=request.POST.get("typed", ""),
        )
    except bulk.Refused as refusal:
        return _refused(request, token, refusal.message)
    # A preview confirmed again (a second click, another tab) gets the operation it made, nothing more.
    return redirect("bulk-cancel-progress", operation_id=operation.pk)


def _refused(request: HttpRequest, token: str, message: str) -> HttpResponse:
    """The preview again, with why its confirmation was refused (nothing was canceled)."""
    try:
        shown = bulk.preview_again(token=token, user=request.user)
        filters = bulk.read_token(token, user=request.user).filters
    except bulk.Refused as refusal:
        return render(request, "bulk/refused.html", {"error": refusal.message}, status=400)
    context = _preview_context(
        shown, filters=filters, error=message, checked=set(request.POST.getlist("batch")), typed=""
    )
    return render(request, "bulk/preview.html", context, status=400)


@require_GET
def progress(request: HttpRequest, operation_id: int) -> HttpResponse:
    """Each batch's outcome as the work goes; htmx polls it until the operation has finished (286)."""
    operation = get_object_or_404(visible_operations(request).select_related("user"), pk=operation_id)
    state = bulk.progress(operation)
    if state.finished and operation.finished_at is None:
        bulk.finish_if_done(operation.pk)
    context = {
        "progress": state,
        "operation": operation,
        "scope": _scope(ListFilters.from_fields(operation.source.get("filters", {}))),
        "poll_seconds": PROGRESS_POLL_SECONDS,
        "states": bulk.State,
    }
    if request.htmx:
        content = render_to_string("bulk/progress.html#progress", context, request)
        return HttpResponseStopPolling(content) if state.finished else HttpResponse(content)
    return render(request, "bulk/progress.html", context)


@require_GET
def operations(request: HttpRequest) -> HttpResponse:
    """The latest bulk cancels, each with its progress page."""
    recent = list(visible_operations(request).select_related("user")[:RECENT_OPERATIONS])
    return render(request, "bulk/operations.html", {"operations": recent})
