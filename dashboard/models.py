from django.conf import settings
from django.db import models


class CancelAttempt(models.Model):
    """The audit trail: written before the upstream cancel call, completed after it."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "pending (no answer recorded)"
        ACCEPTED = "accepted", "accepted"
        ALREADY_ENDED = "already_ended", "already ended"
        UPSTREAM_ERROR = "upstream_error", "upstream error"

    requested_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor = models.CharField(max_length=150, help_text="Who asked: the web user's username or the OS user of the CLI.")
    via = models.CharField(max_length=8, default="web")
    account = models.CharField(max_length=100)
    batch_id = models.CharField(max_length=120, db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING)
    status_after = models.CharField(max_length=32, blank=True)
    message = models.TextField(blank=True)
    counts_at_cancel = models.JSONField(
        null=True, blank=True, help_text="request_counts as the provider reported them in its answer to the cancel."
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        permissions = [("cancel_batch", "Can cancel upstream batches")]

    def __str__(self) -> str:
        return f"{self.actor} cancel {self.account}/{self.batch_id}: {self.outcome}"
