"""What the web views share: the list's filters read from the query string, the cancel permission
asked of a request, and a batch URL's account."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from .. import providers
from ..accounts import Account
from ..batches import selectors, services


def status_choices() -> list[tuple[str, str]]:
    """The list's status filter: not ended yet, then each provider's own status words."""
    return [(selectors.ACTIVE, "not ended yet"), *providers.status_choices()]


def list_filters(request: HttpRequest, *, accounts: list[Account]) -> selectors.ListFilters:
    """The list's filters from the query string; a value that names nothing is dropped."""
    provider = request.GET.get("provider", "")
    account_key = request.GET.get("account", "")
    status = request.GET.get("status", "")
    return selectors.ListFilters(
        provider=provider if provider in providers.PROVIDERS else "",
        account_key=account_key if any(a.key == account_key for a in accounts) else "",
        status=status if any(value == status for value, _ in status_choices()) else "",
        search=request.GET.get("q", "").strip()[: selectors.MAX_SEARCH],
    )


def require_cancel_permission(request: HttpRequest) -> None:
    if not services.may_cancel(request.user):
        raise PermissionDenied("You do not have permission to cancel batches.")


def account_or_404(account_key: str, batch_id: str) -> Account:
    """The account of a batch URL; 404 for an unknown account or an id of the wrong shape."""
    try:
        return services.resolve(account_key=account_key, batch_id=batch_id)
    except services.UnknownBatch:
        raise Http404("No such batch.") from None
