"""Notifications: alarm changes sent to Slack, webhooks and email (dashboard/notifications/)."""

import uuid

from django.core.validators import RegexValidator
from django.db import models

from ..alarms.models import Alarm, AlarmRule

# What a channel may name in `target_env` / `secret_env`: only variables meant for it, so that no
# one editing a channel in the admin can make the poller read an API key or SECRET_KEY into a request.
NOTIFY_ENV_NAME = RegexValidator(
    r"^NOTIFY_[A-Z0-9_]+$", "The name of an environment variable starting with NOTIFY_ (e.g. NOTIFY_OPS_SECRET)."
)


class NotificationEvent(models.TextChoices):
    OPENED = "opened", "opened"
    RESOLVED = "resolved", "resolved"


def every_notification_event() -> list[str]:
    return [event.value for event in NotificationEvent]


class NotificationChannel(models.Model):
    """Where alarm changes are sent: a Slack-compatible incoming webhook, a JSON webhook signed with
    HMAC-SHA256, or email. Made in the admin, or from the environment (`from_environment`: kept in
    step with the NOTIFY_* variables by the poller, read-only in the admin).

    No secret is stored here: a webhook's signing secret is read from the environment variable that
    `secret_env` names, and a URL that is itself a credential (a Slack webhook's) can be read from
    the one `target_env` names instead of being typed into `target`.
    """

    class Kind(models.TextChoices):
        SLACK = "slack", "Slack-compatible incoming webhook"
        WEBHOOK = "webhook", "JSON webhook, signed (HMAC-SHA256)"
        EMAIL = "email", "email"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    target = models.CharField(
        max_length=2000,
        blank=True,
        help_text="The URL (Slack, webhook) or the email addresses, comma-separated. "
        "Leave empty to read it from the variable named below.",
    )
    target_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[NOTIFY_ENV_NAME],
        help_text="The environment variable that holds the URL or addresses instead: for a Slack webhook, "
        "whose URL is its own credential, better than typing it above.",
    )
    secret_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[NOTIFY_ENV_NAME],
        help_text="Webhook only: the environment variable that holds the signing secret (32+ random characters). "
        "The secret itself is never stored.",
    )
    rules = models.JSONField(default=list, blank=True, help_text="The alarm rules sent; empty: every rule.")
    accounts = models.JSONField(default=list, blank=True, help_text="The account keys sent; empty: every account.")
    events = models.JSONField(default=every_notification_event, blank=True, help_text="opened, resolved; empty: both.")
    enabled = models.BooleanField(
        default=True, help_text="Off: nothing is written for it, and what waits for it is not sent."
    )
    from_environment = models.BooleanField(
        default=False, editable=False, help_text="Made from the NOTIFY_* variables: change those instead."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError
        from django.core.validators import URLValidator, validate_email

        from .destinations import DestinationRefused, check_url

        errors: dict[str, str] = {}
        secret_field = "secret_env"  # noqa: S105 (a field name)
        target = self.target.strip()
        if bool(target) == bool(self.target_env):
            errors["target"] = "Give the target, or the variable that holds it (one of the two)."
        elif target and self.kind in (self.Kind.SLACK, self.Kind.WEBHOOK):
            try:
                URLValidator(schemes=["http", "https"])(target)
                check_url(target)
            except ValidationError:
                errors["target"] = "An http:// or https:// URL."
            except DestinationRefused as refusal:
                errors["target"] = f"Refused: {refusal}."
        elif target and self.kind == self.Kind.EMAIL:
            try:
                for address in target.split(","):
                    validate_email(address.strip())
            except ValidationError:
                errors["target"] = "Email addresses, comma-separated."
        if self.kind == self.Kind.WEBHOOK and not self.secret_env:
            errors[secret_field] = "A webhook is always signed: name the variable that holds its secret."
        if self.kind != self.Kind.WEBHOOK and self.secret_env:
            errors[secret_field] = "Only webhooks are signed."
        for name, allowed in (
            ("rules", set(AlarmRule.values)),
            ("events", set(NotificationEvent.values)),
        ):
            values = getattr(self, name)
            if not isinstance(values, list) or not set(values) <= allowed:
                errors[name] = f"A list of: {', '.join(sorted(allowed))}."
        if not isinstance(self.accounts, list) or not all(isinstance(key, str) for key in self.accounts):
            errors["accounts"] = "A list of account keys."
        if errors:
            raise ValidationError(errors)

    def wants(self, rule: str, account: str, event: str) -> bool:
        """Whether an alarm of `rule` for `account` that `event` (opened, resolved) is sent here."""
        return (
            self.enabled
            and (not self.rules or rule in self.rules)
            and (not self.accounts or account in self.accounts)
            and (not self.events or event in self.events)
        )


class Delivery(models.Model):
    """The notification outbox: one alarm change for one channel, written in the transaction that
    changed the alarm, sent by a worker's task (at least once), retried with backoff until sent or given up.

    `payload` is what the alarm was at that change (rule, account, batch, redacted detail): never a
    secret. `next_attempt_at` is when it is due; while a worker sends it, it is moved past the send's
    time limit (the claim), so that no other worker sends it at the same moment, and a worker killed
    mid-send leaves it due again once that moment has passed.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENT = "sent", "sent"
        FAILING = "failing", "failing (will retry)"
        GIVEN_UP = "given_up", "given up"

    key = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, help_text="Sent as X-Dashboard-Delivery: the same on retries."
    )
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    alarm = models.ForeignKey(Alarm, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    event = models.CharField(max_length=16, choices=NotificationEvent.choices)
    payload = models.JSONField(help_text="The alarm as it was at the change (redacted); no secret.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Empty once sent or given up.")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, help_text="Why the last attempt failed (redacted).")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    claimed_by = models.CharField(max_length=64, blank=True, help_text="The send that last claimed it.")
    task_id = models.UUIDField(
        null=True, blank=True, editable=False, help_text="The background task of its latest attempt."
    )

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at", "-id"]
        permissions = [("retry_delivery", "Can retry notification deliveries")]
        constraints = [
            models.UniqueConstraint(fields=["channel", "alarm", "event"], name="one_delivery_per_channel_alarm_event")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["pending", "failing"]),
                name="delivery_due",
            )
        ]

    def __str__(self) -> str:
        return f"delivery {self.key} ({self.event}): {self.status}"
