import uuid

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

import dashboard.models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0009_results_summary"),
    ]

    operations = [
        migrations.CreateModel(
            name="NotificationChannel",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("slack", "Slack-compatible incoming webhook"),
                            ("webhook", "JSON webhook, signed (HMAC-SHA256)"),
                            ("email", "email"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "target",
                    models.CharField(
                        blank=True,
                        help_text="The URL (Slack, webhook) or the email addresses, comma-separated. Leave empty to read it from the variable named below.",
                        max_length=2000,
                    ),
                ),
                (
                    "target_env",
                    models.CharField(
                        blank=True,
                        help_text="The environment variable that holds the URL or addresses instead: for a Slack webhook, whose URL is its own credential, better than typing it above.",
                        max_length=100,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^NOTIFY_[A-Z0-9_]+$",
                                "The name of an environment variable starting with NOTIFY_ (e.g. NOTIFY_OPS_SECRET).",
                            )
                        ],
                    ),
                ),
                (
                    "secret_env",
                    models.CharField(
                        blank=True,
                        help_text="Webhook only: the environment variable that holds the signing secret (32+ random characters). The secret itself is never stored.",
                        max_length=100,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^NOTIFY_[A-Z0-9_]+$",
                                "The name of an environment variable starting with NOTIFY_ (e.g. NOTIFY_OPS_SECRET).",
                            )
                        ],
                    ),
                ),
                (
                    "rules",
                    models.JSONField(blank=True, default=list, help_text="The alarm rules sent; empty: every rule."),
                ),
                (
                    "accounts",
                    models.JSONField(
                        blank=True, default=list, help_text="The account keys sent; empty: every account."
                    ),
                ),
                (
                    "events",
                    models.JSONField(
                        blank=True,
                        default=dashboard.models.every_notification_event,
                        help_text="opened, resolved; empty: both.",
                    ),
                ),
                (
                    "enabled",
                    models.BooleanField(
                        default=True, help_text="Off: nothing is written for it, and what waits for it is not sent."
                    ),
                ),
                (
                    "from_environment",
                    models.BooleanField(
                        default=False,
                        editable=False,
                        help_text="Made from the NOTIFY_* variables: change those instead.",
                    ),
                ),
            ],
            options={
                "ordering": ["name"],
            },
        ),
        migrations.CreateModel(
            name="Delivery",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "key",
                    models.UUIDField(
                        default=uuid.uuid4,
                        editable=False,
                        help_text="Sent as X-Dashboard-Delivery: the same on retries.",
                        unique=True,
                    ),
                ),
                ("event", models.CharField(choices=[("opened", "opened"), ("resolved", "resolved")], max_length=16)),
                ("payload", models.JSONField(help_text="The alarm as it was at the change (redacted); no secret.")),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "pending"),
                            ("sent", "sent"),
                            ("failing", "failing (will retry)"),
                            ("given_up", "given up"),
                        ],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("attempts", models.PositiveIntegerField(default=0)),
                (
                    "next_attempt_at",
                    models.DateTimeField(blank=True, help_text="Empty once sent or given up.", null=True),
                ),
                ("last_attempt_at", models.DateTimeField(blank=True, null=True)),
                (
                    "last_error",
                    models.CharField(blank=True, help_text="Why the last attempt failed (redacted).", max_length=500),
                ),
                ("sent_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField()),
                ("claimed_by", models.CharField(blank=True, help_text="The send that last claimed it.", max_length=64)),
                (
                    "alarm",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="deliveries",
                        to="dashboard.alarm",
                    ),
                ),
                (
                    "channel",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="dashboard.notificationchannel",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "deliveries",
                "ordering": ["-created_at", "-id"],
                "permissions": [("retry_delivery", "Can retry notification deliveries")],
                "indexes": [
                    models.Index(
                        condition=models.Q(("status__in", ["pending", "failing"])),
                        fields=["next_attempt_at"],
                        name="delivery_due",
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("channel", "alarm", "event"), name="one_delivery_per_channel_alarm_event"
                    )
                ],
            },
        ),
    ]
