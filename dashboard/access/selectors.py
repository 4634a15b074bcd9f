"""What a user may do where: read once per request from the grants of the user's groups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache

from .models import AccessGrant, Role

if TYPE_CHECKING:
    from ..accounts import Account

# The grants that give each role: every grant lets one see the accounts it names.
GIVEN_BY: Mapping[str, tuple[str, ...]] = {
    Role.VIEWER: (Role.VIEWER, Role.OPERATOR, Role.RESULTS),
    Role.OPERATOR: (Role.OPERATOR,),
    Role.RESULTS: (Role.RESULTS,),
}


@dataclass(frozen=True)
class Access:
    """A user's roles: for each role granted, the account patterns it covers; `everything` for a
    superuser (and the CLI, which acts as an operator of the machine)."""

    patterns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    everything: bool = False

    def may(self, role: str, account_key: str) -> bool:
        if self.everything:
            return True
        return any(
            fnmatchcase(account_key, pattern) for given in GIVEN_BY[role] for pattern in self.patterns.get(given, ())
        )

    def accounts(self, role: str, accounts: Iterable[Account]) -> list[Account]:
        """Those of `accounts` where this user has `role`, in their order."""
        return [account for account in accounts if self.may(role, account.key)]

    @property
    def has_any(self) -> bool:
        return self.everything or any(self.patterns.values())


EVERYTHING = Access(everything=True)
NOTHING = Access()


def cache_key(user_id: Any) -> str:
    return f"access:{user_id}"


def access_for(*, user: Any) -> Access:
    """The roles `user` holds through its groups' grants. Kept on the user object for the rest of
    the request, and in the cache beside the user's permissions (dashboard/web/auth.py), dropped
    as soon as a grant or the user's groups change through Django: a live row's poll asks the
    database nothing for it."""
    if user is None or not user.is_authenticated or not user.is_active:
        return NOTHING
    if user.is_superuser:
        return EVERYTHING
    kept = getattr(user, "_dashboard_access", None)
    if kept is not None:
        return kept
    key = cache_key(user.pk)
    access = cache.get(key)
    if access is None:
        patterns: dict[str, list[str]] = {}
        for role, pattern in AccessGrant.objects.filter(group__user=user).values_list("role", "accounts").distinct():
            patterns.setdefault(role, []).append(pattern)
        access = Access(patterns={role: tuple(sorted(found)) for role, found in patterns.items()})
        cache.set(key, access, settings.PERMISSIONS_CACHE_SECONDS)
    user._dashboard_access = access
    return access
