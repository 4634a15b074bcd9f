"""What the web views share: what the signed-in user may see and do (their grants, dashboard/access/),
the list's filters read from the query string, and a batch URL's account.

Every view asks here, never a template alone: a partial can be requested directly. A batch of an
account the user may not see is a 404, exactly as one that does not exist; on an account they may
see, what their role does not allow is a 403 that says which role it takes."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from .. import providers
from ..access.models import Role
from ..access.selectors import Access, access_for
from ..accounts import Account, configured_accounts
from ..alarms.rules import ALL_ACCOUNTS
from ..batches import selectors, services

ROLE_REFUSALS = {
    Role.OPERATOR: "Cancelling and acknowledging on this account takes the operator role: ask whoever manages "
    "the dashboard's grants.",
    Role.RESULTS: "Reading this account's results takes the results reader role: ask whoever manages the "
    "dashboard's grants.",
}


def access(request: HttpRequest) -> Access:
    return access_for(user=request.user)


def configured(request: HttpRequest) -> list[Account]:
    """The configured accounts, read once per request (a live page's feed asks for them twice)."""
    accounts = getattr(request, "_configured_accounts", None)
    if accounts is None:
        accounts = request._configured_accounts = configured_accounts()
    return accounts


def visible_accounts(request: HttpRequest, role: str = Role.VIEWER) -> list[Account]:
    """The configured accounts where the signed-in user holds `role` (viewer: may see at all)."""
    return access(request).accounts(role, configured(request))


def alarm_accounts(request: HttpRequest, role: str = Role.VIEWER) -> list[str]:
    """The account keys of the alarms the signed-in user sees (viewer) or acknowledges (operator): those of
    the configured accounts where they hold `role`, and ALL_ACCOUNTS (budget alarms of every account
    together) when that is every configured account."""
    every = configured(request)
    keys = [account.key for account in access(request).accounts(role, every)]
    if every and len(keys) == len(every):
        keys.append(ALL_ACCOUNTS)
    return keys


def may_on_alarm(request: HttpRequest, role: str, account_key: str) -> bool:
    """Whether the user holds `role` on an alarm's account; on ALL_ACCOUNTS, on every configured account (a
    grant's pattern is never matched against the name "*" itself)."""
    if account_key == ALL_ACCOUNTS:
        return ALL_ACCOUNTS in alarm_accounts(request, role)
    return access(request).may(role, account_key)


def require_role(request: HttpRequest, account: Account, role: str) -> None:
    if not access(request).may(role, account.key):
        raise PermissionDenied(ROLE_REFUSALS[role])


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


def account_or_404(request: HttpRequest, account_key: str, batch_id: str) -> Account:
    """The account of a batch URL; 404 for an unknown account, an id of the wrong shape, or an
    account the signed-in user may not see."""
    try:
        account = services.resolve(account_key=account_key, batch_id=batch_id)
    except services.UnknownBatch:
        raise Http404("No such batch.") from None
    if not access(request).may(Role.VIEWER, account.key):
        raise Http404("No such batch.")
    return account
