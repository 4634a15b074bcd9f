"""`manage.py access grant|revoke|show`: who may see, cancel and read the results of which accounts.

The command acts as an operator of this machine (it can read the database, so it is trusted with
everything): each change is audited under the OS user that ran it, with via "cli".
"""

from __future__ import annotations

import getpass

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ...access import selectors, services
from ...access.models import AccessGrant, Role
from ...accounts import configured_accounts


class Command(BaseCommand):
    help = (
        "Grant or revoke a role (viewer, operator, results) on accounts (keys or patterns such as 'prod-*') "
        "to a group, or show the grants. Acts as the OS user running it; every change is audited."
    )

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        for name, verb in (("grant", "Give"), ("revoke", "Take away")):
            sub = actions.add_parser(name, help=f"{verb} a group a role on accounts.")
            sub.add_argument("--group", required=True, help="A Django group (an identity provider's group).")
            sub.add_argument(
                "--accounts", required=True, help="Account keys or patterns, comma-separated: 'prod-*,azure-*'."
            )
            sub.add_argument("--role", required=True, choices=Role.values)
        show = actions.add_parser("show", help="Every grant, or what one user may do on each configured account.")
        show.add_argument("--user", help="A username.")

    def handle(self, *args, action: str, **options) -> None:
        if action == "show":
            self._show(options.get("user"))
            return
        actor = getpass.getuser()
        try:
            patterns = services.account_patterns(options["accounts"])
            role = services.role_named(options["role"])
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        group = options["group"].strip()
        if not group:
            raise CommandError("--group is empty.")
        change = services.grant if action == "grant" else services.revoke
        result = change(group_name=group, patterns=patterns, role=role, actor=actor, via="cli")
        count = len(result) if action == "grant" else result
        done = "granted" if action == "grant" else "revoked"
        self.stdout.write(
            f"{count} of {len(patterns)} {done}: {role.label} on {', '.join(patterns)} for group {group!r} "
            f"(as OS user {actor}, audited)."
        )
        unmatched = [
            p
            for p in patterns
            if not any(selectors.Access(patterns={role: (p,)}).accounts(role, configured_accounts()))
        ]
        if action == "grant" and unmatched:
            self.stdout.write(f"Note: no configured account matches {', '.join(unmatched)} yet.")

    def _show(self, username: str | None) -> None:
        if username is None:
            grants = AccessGrant.objects.select_related("group")
            if not grants:
                self.stdout.write("No grants: only superusers see anything. Grant with `manage.py access grant`.")
            for row in grants:
                self.stdout.write(f"{row.group.name}\t{row.get_role_display()}\t{row.accounts}")
            return
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        access = selectors.access_for(user=user)
        groups = ", ".join(user.groups.order_by("name").values_list("name", flat=True)) or "none"
        self.stdout.write(
            f"{username}: groups {groups}{' (superuser: every role everywhere)' if user.is_superuser else ''}"
        )
        for account in configured_accounts():
            roles = [role.label for role in Role if access.may(role, account.key)]
            self.stdout.write(f"  {account.key}\t{', '.join(roles) or '-'}")
