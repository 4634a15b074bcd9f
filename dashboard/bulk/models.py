"""Bulk cancel: one audited operation over many batches (dashboard/bulk/operations.py)."""

from django.conf import settings
from django.db import models

from ..batches.models import CancelAttempt


class BulkCancel(models.Model):
    """One bulk cancel: who asked, from which filter, and the batches previewed and confirmed (its
    items). Each item is canceled like a single cancel (a CancelAttempt, via "bulk") by its task, in a
    worker; if that worker died, the task runs again once its claims expire."""

    created_at = models.DateTimeField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(max_length=150, help_text="The web user's username.")
    source = models.JSONField(
        default=dict,
        help_text="Where the batches came from: the list's filters, how many were previewed and those left out.",
    )
    total = models.PositiveIntegerField(help_text="Batches confirmed: one item each.")
    confirmed = models.BooleanField(
        default=False, help_text="The user typed the number of batches (asked above a few batches)."
    )
    note = models.TextField(blank=True, help_text="What changed between the preview and the confirmation.")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="Empty while an item is pending.")
    preview_digest = models.CharField(
        max_length=64,
        unique=True,
        null=True,
        blank=True,
        help_text="SHA-256 of the confirmed preview's token: a preview makes one operation, however often confirmed.",
    )
    task_id = models.UUIDField(
        null=True, blank=True, editable=False, help_text="The background task that works through its items."
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"bulk cancel #{self.pk} by {self.actor}: {self.total} batches"


class BulkCancelItem(models.Model):
    """One batch of a bulk cancel. Claimed by a conditional UPDATE (claimed_by, claimed_until) before
    its cancel, so that no two workers cancel it at once; a claim left by a process that died
    expires, and the operation's task runs again to resume the item."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        CANCELED = "canceled", "canceled"
        ALREADY_ENDED = "already_ended", "already ended"
        FAILED = "failed", "failed"
        SKIPPED = "skipped", "skipped"

    operation = models.ForeignKey(BulkCancel, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField(help_text="Its place in the preview (newest first).")
    account = models.CharField(max_length=100)
    batch_id = models.CharField(max_length=120)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    message = models.TextField(blank=True)
    attempt = models.ForeignKey(
        CancelAttempt, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="Its cancel."
    )
    claimed_by = models.CharField(max_length=200, blank=True, help_text="The worker that holds (or held) it.")
    claimed_until = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["operation", "position"]
        constraints = [
            models.UniqueConstraint(fields=["operation", "account", "batch_id"], name="one_bulk_item_per_batch")
        ]
        indexes = [
            models.Index(fields=["claimed_until"], condition=models.Q(state="pending"), name="bulk_item_pending_claims")
        ]

    def __str__(self) -> str:
        return f"{self.account}/{self.batch_id}: {self.state}"
