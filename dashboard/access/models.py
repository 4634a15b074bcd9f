"""Grants: a role on the accounts a pattern matches, given to a Django group; and their audit trail."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models


class Role(models.TextChoices):
    # viewer: the batches of those accounts, their rows, detail, history, alarms and header figures;
    # operator: also cancel, bulk cancel and acknowledge alarms; results: also the result lines,
    # error summary, downloads and CSV (the model's outputs), granted on its own: reading customer
    # data and stopping production work are separate powers.
    VIEWER = "viewer", "viewer"
    OPERATOR = "operator", "operator"
    RESULTS = "results", "results reader"


class AccessGrant(models.Model):
    """One role on the accounts whose key matches `accounts` (`*` and `?` as in a shell: `prod-*`),
    given to everyone in `group`."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="access_grants")
    accounts = models.CharField(
        max_length=100, help_text="An account key or a pattern of them: prod-*, anthropic-research, *."
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    granted_at = models.DateTimeField()
    granted_by = models.CharField(max_length=150, help_text="A web user's username or the OS user of the CLI.")

    class Meta:
        ordering = ["group__name", "accounts", "role"]
        constraints = [
            models.UniqueConstraint(fields=["group", "accounts", "role"], name="one_grant_per_group_pattern_role")
        ]

    def __str__(self) -> str:
        return f"{self.group.name}: {self.get_role_display()} on {self.accounts}"


class AccessChange(models.Model):
    """The audit trail of grants: every grant given, changed or revoked, by whom and when."""

    class Action(models.TextChoices):
        GRANTED = "granted", "granted"
        REVOKED = "revoked", "revoked"

    at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150)
    via = models.CharField(max_length=8, help_text="web (the admin) or cli.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=8, choices=Action.choices)
    group = models.CharField(max_length=150)
    accounts = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=Role.choices)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.role} on {self.accounts} to {self.group}"
