"""Alarms: conditions the poller looks for after each cycle (rules.py, evaluation.py)."""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from ..batches.models import StoredBatch


class AlarmRule(models.TextChoices):
    STUCK = "stuck", "stuck"
    EXPIRING = "expiring", "expiring"
    ERROR_RATE = "error_rate", "error rate"
    ENDED_BADLY = "ended_badly", "ended badly"
    ACCOUNT_FAILING = "account_failing", "account failing"
    # Spend (dashboard/spend): the budget is the `value` of an account's (or "*", all accounts together)
    # *_over threshold row, in US dollars; a *_near row's `value` is the share that warns, in percent.
    BUDGET_DAY_NEAR = "budget_day_near", "daily budget nearly spent"
    BUDGET_DAY_OVER = "budget_day_over", "daily budget spent"
    BUDGET_MONTH_NEAR = "budget_month_near", "monthly budget nearly spent"
    BUDGET_MONTH_OVER = "budget_month_over", "monthly budget spent"


class Alarm(models.Model):
    """One episode of a rule's condition holding for one subject: a batch, or an account (no batch).

    Opened when an evaluation first finds the condition, `last_seen_at` moved on by every evaluation
    that still finds it, `resolved_at` set by the first that does not; the next episode is a new row.
    A rule has at most one open alarm per subject (the two partial unique constraints below).
    """

    rule = models.CharField(max_length=32, choices=AlarmRule.choices)
    account = models.CharField(max_length=100, help_text="The account's key, e.g. openai-ops.")
    batch = models.ForeignKey(
        StoredBatch,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alarms",
        help_text="None: the account.",
    )
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(help_text="The last evaluation that found the condition still true.")
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="Empty while open.")
    detail = models.TextField(blank=True, help_text="What holds, in the operator's words (redacted).")
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledge_note = models.TextField(blank=True, help_text="Redacted.")

    class Meta:
        ordering = ["-opened_at", "-id"]
        permissions = [("acknowledge_alarm", "Can acknowledge alarms")]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "batch"],
                condition=models.Q(resolved_at__isnull=True, batch__isnull=False),
                name="one_open_alarm_per_rule_and_batch",
            ),
            # NULLs are distinct in a unique index: account alarms (no batch) need their own.
            models.UniqueConstraint(
                fields=["rule", "account"],
                condition=models.Q(resolved_at__isnull=True, batch__isnull=True),
                name="one_open_alarm_per_rule_and_account",
            ),
        ]
        indexes = [
            models.Index(fields=["-opened_at"], condition=models.Q(resolved_at__isnull=True), name="alarm_open_newest"),
            models.Index(fields=["account", "-opened_at"], name="alarm_account_newest"),
        ]

    def __str__(self) -> str:
        subject = self.account if self.batch_id is None else f"{self.account} batch #{self.batch_id}"
        return f"{self.get_rule_display()}: {subject}" + ("" if self.resolved_at is None else " (resolved)")

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class AlarmThreshold(models.Model):
    """One account's own thresholds for one rule, instead of the ALARM_* settings; edited in the admin."""

    account = models.CharField(
        max_length=100,
        help_text="The account's key, as in the URLs: e.g. openai-ops; for a budget, * is every account together.",
    )
    rule = models.CharField(max_length=32, choices=AlarmRule.choices)
    enabled = models.BooleanField(default=True, help_text="Off: this rule never alarms for this account.")
    value = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Minutes (stuck, account failing), hours (expiring), percent (error rate, ended badly, a budget "
        "nearly spent: the share that warns), US dollars (a budget spent: the budget itself; no row, no budget). "
        "Empty: the setting's default.",
    )
    min_outcomes = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Error rate only: how many requests need an outcome before the rate counts. Empty: the default.",
    )

    class Meta:
        ordering = ["account", "rule"]
        constraints = [models.UniqueConstraint(fields=["account", "rule"], name="one_alarm_threshold_per_rule")]

    def __str__(self) -> str:
        return f"{self.account}: {self.get_rule_display()}"


EVALUATOR_PK = 1  # AlarmEvaluator's single row


class AlarmEvaluator(models.Model):
    """A single row (EVALUATOR_PK): the poller that evaluates alarms (its lease, renewed every cycle)
    and how the last evaluation went. Several pollers may run; one evaluates at a time
    (evaluation.claim_evaluator)."""

    lease_owner = models.CharField(max_length=120, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_seconds = models.FloatField(null=True, blank=True, help_text="How long the last evaluation took.")
    last_error = models.TextField(blank=True, help_text="Why the last evaluation failed, if it did (redacted).")

    def __str__(self) -> str:
        return f"alarm evaluator {self.lease_owner or '(none)'}"
