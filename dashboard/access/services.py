"""Granting and revoking roles: each change written with its audit row in one transaction."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import AccessChange, AccessGrant, Role

PATTERN = re.compile(r"[a-z0-9*?][a-z0-9*?-]{0,99}")


def account_patterns(text: str) -> list[str]:
    """`prod-*,azure-*` as a list of patterns; a clear error for anything that cannot match a key
    (account keys are lowercase letters, digits and dashes: anthropic-ops, azure-openai-prod)."""
    patterns = [part.strip() for part in text.split(",") if part.strip()]
    if not patterns:
        raise ValidationError("Name at least one account or pattern, e.g. 'prod-*' or 'anthropic-research'.")
    for pattern in patterns:
        if not PATTERN.fullmatch(pattern):
            raise ValidationError(
                f"{pattern[:120]!r} is not an account pattern: use lowercase letters, digits, '-', and '*' or '?' "
                "(e.g. 'prod-*', 'anthropic-research', '*')."
            )
    return list(dict.fromkeys(patterns))


def role_named(name: str) -> Role:
    try:
        return Role(name)
    except ValueError:
        raise ValidationError(f"No role {name[:40]!r}: one of {', '.join(Role.values)}.") from None


@transaction.atomic
def grant(
    *, group_name: str, patterns: list[str], role: Role, actor: str, via: str, user: Any = None
) -> list[AccessGrant]:
    """Give `group_name` (made if it does not exist yet: an identity provider's group may not have
    signed in yet) `role` on each pattern; the grants made (those it had already are left as they are)."""
    group, _ = Group.objects.get_or_create(name=group_name)
    now = timezone.now()
    made = []
    for pattern in patterns:
        row, created = AccessGrant.objects.get_or_create(
            group=group, accounts=pattern, role=role, defaults={"granted_at": now, "granted_by": actor}
        )
        if created:
            made.append(row)
            _audit(AccessChange.Action.GRANTED, row, actor=actor, via=via, user=user, at=now)
    return made


@transaction.atomic
def revoke(*, group_name: str, patterns: list[str], role: Role, actor: str, via: str, user: Any = None) -> int:
    """Take `role` on each pattern away from `group_name`; how many grants there were to take."""
    rows = list(
        AccessGrant.objects.select_related("group").filter(group__name=group_name, accounts__in=patterns, role=role)
    )
    revoke_grants(rows, actor=actor, via=via, user=user)
    return len(rows)


@transaction.atomic
def revoke_grants(grants: list[AccessGrant], *, actor: str, via: str, user: Any = None) -> None:
    now = timezone.now()
    for row in grants:
        _audit(AccessChange.Action.REVOKED, row, actor=actor, via=via, user=user, at=now)
        row.delete()


def _audit(action: str, row: AccessGrant, *, actor: str, via: str, user: Any, at) -> None:
    AccessChange.objects.create(
        at=at,
        actor=actor,
        via=via,
        user=user if user is not None and getattr(user, "pk", None) else None,
        action=action,
        group=row.group.name,
        accounts=row.accounts,
        role=row.role,
    )
