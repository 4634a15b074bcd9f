"""The audit trail of cancels, and the store: what the poller last saw of every batch, how it got
there, its results' summary, and each account's health (and the poller's lease on it)."""

from django.conf import settings
from django.db import models


class CancelAttempt(models.Model):
    """The audit trail: written before the upstream cancel call, completed after it."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "pending (no answer recorded)"
        ACCEPTED = "accepted", "accepted"
        ALREADY_ENDED = "already_ended", "already ended"
        UPSTREAM_ERROR = "upstream_error", "upstream error"
        REFUSED = "refused", "refused (not an operator)"

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
    reconciled_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set when the process making it died before recording upstream's answer: its outcome was "
        "settled later from what upstream then said of the batch.",
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        permissions = [("cancel_batch", "Can cancel upstream batches")]

    def __str__(self) -> str:
        return f"{self.actor} cancel {self.account}/{self.batch_id}: {self.outcome}"


# --- The store: what the poller last saw of every batch, and how it got there ------------------


class StoredBatch(models.Model):
    """The latest known state of one upstream batch; pages read this, never upstream."""

    account = models.CharField(max_length=100)
    provider = models.CharField(max_length=32)
    batch_id = models.CharField(max_length=120)
    status = models.CharField(max_length=32)
    is_ended = models.BooleanField()
    total = models.PositiveBigIntegerField(default=0)
    processing = models.PositiveBigIntegerField(default=0)
    succeeded = models.PositiveBigIntegerField(default=0)
    errored = models.PositiveBigIntegerField(default=0)
    canceled = models.PositiveBigIntegerField(default=0)
    expired = models.PositiveBigIntegerField(default=0)
    counts_known = models.BooleanField(
        default=True, help_text="False when the provider did not report request counts: the counts above are zeros."
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    cancel_initiated_at = models.DateTimeField(null=True, blank=True)
    timestamps = models.JSONField(default=dict, help_text="Every timestamp the provider sent, by its own name.")
    metadata = models.JSONField(default=dict)
    raw = models.JSONField(help_text="The provider's JSON for this batch, keys redacted.")
    search_text = models.TextField(
        default="", help_text="What the list's search matches: the id and the metadata values, lowercased, redacted."
    )
    first_seen_at = models.DateTimeField()
    seen_running = models.BooleanField(
        default=True, help_text="The dashboard has seen it not ended (false: it had ended when first seen)."
    )
    last_fetched_at = models.DateTimeField()
    last_changed_at = models.DateTimeField()
    gone_at = models.DateTimeField(
        null=True, blank=True, help_text="Since when the provider answers 404 for it: deleted upstream, or never there."
    )

    class TokensSource(models.TextChoices):
        NOT_KNOWN_YET = "", "not known yet"
        BATCH = "batch", "the batch object's usage (updated as it runs)"
        RESULTS = "results", "summed from the results once ended"
        UNAVAILABLE = "unavailable", "unavailable"

    tokens_source = models.CharField(
        max_length=16,
        blank=True,
        default="",
        choices=TokensSource.choices,
        help_text="Where the batch's tokens (its BatchTokens rows) were read.",
    )
    tokens_note = models.TextField(
        blank=True,
        default="",
        help_text="A plain sentence saying why the tokens are unknown or partial (e.g. results without usage).",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "batch_id"], name="one_stored_batch_per_account_id")]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="stored_batch_newest"),
            # The list reads a page by walking these in its order (newest first, then by id), one
            # account at a time (dashboard/batches/selectors.py: _page_keys), unfiltered or by status
            # or by whether ended; then only the page's rows are read whole.
            models.Index(fields=["account", "-created_at", "-id"], name="stored_batch_account_list"),
            models.Index(fields=["account", "is_ended", "-created_at", "-id"], name="stored_batch_active_list"),
            models.Index(fields=["account", "status", "-created_at", "-id"], name="stored_batch_status_list"),
            # The list's header (dashboard/batches/header_figures.py) adds these up from the index alone (is_ended
            # included, so that SQLite reads no row); led by the account, which SQLite's planner
            # then prefers, with or without ANALYZE's statistics.
            models.Index(
                fields=["account", "processing", "is_ended"],
                condition=models.Q(is_ended=False),
                name="stored_batch_running_counts",
            ),
            models.Index(
                fields=["account", "ended_at", "status", "cancel_initiated_at", "succeeded", "errored", "is_ended"],
                condition=models.Q(is_ended=True),
                name="stored_batch_ended_outcomes",
            ),
            # The poller's next ended batches to count the results (and tokens) of, newest ended first.
            models.Index(
                fields=["account", "-ended_at"],
                condition=models.Q(is_ended=True, tokens_source=""),
                name="stored_batch_tokens_to_count",
            ),
            # Ended without an end time (gone while running): no day of the spend rollup holds their
            # tokens, so /metrics reads them here (dashboard/spend/selectors.py: stored_tokens). Led by
            # ended_at (always null here) so that SQLite seeks it rather than walk every ended batch's.
            models.Index(
                fields=["ended_at", "account", "provider"],
                condition=models.Q(is_ended=True, ended_at=None),
                name="stored_batch_ended_undated",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account}/{self.batch_id} {self.status}"


class BatchChange(models.Model):
    """One row per observed change of a batch's status or counts: its history, for charts and ETAs."""

    batch = models.ForeignKey(StoredBatch, on_delete=models.CASCADE, related_name="changes")
    observed_at = models.DateTimeField()
    status = models.CharField(max_length=32)
    total = models.PositiveBigIntegerField(default=0)
    processing = models.PositiveBigIntegerField(default=0)
    succeeded = models.PositiveBigIntegerField(default=0)
    errored = models.PositiveBigIntegerField(default=0)
    canceled = models.PositiveBigIntegerField(default=0)
    expired = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["observed_at", "id"]
        indexes = [models.Index(fields=["batch", "observed_at"], name="batch_change_by_time")]

    def __str__(self) -> str:
        return f"{self.batch_id} {self.status} at {self.observed_at:%Y-%m-%d %H:%M:%S}"


class ResultsSummary(models.Model):
    """The error summary of an ended batch's results, counted once from upstream and served from here
    after: an ended batch's results never change. One row per batch and set of result sources (a
    batch whose sources are not those counted, say an OpenAI error file named later, is counted anew).
    Written once, never updated: of concurrent first counts, the first insert wins (the constraint)."""

    batch = models.ForeignKey(StoredBatch, on_delete=models.CASCADE, related_name="results_summaries")
    sources = models.CharField(
        max_length=200, help_text="The result sources counted, in the order read, comma-separated: e.g. output,error."
    )
    total = models.PositiveBigIntegerField(help_text="Result lines counted.")
    by_type = models.JSONField(help_text="[result type, lines] pairs, in result-type order.")
    errors = models.JSONField(help_text="[error type, message, lines], most frequent first; keys redacted.")
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "results summaries"
        constraints = [
            models.UniqueConstraint(fields=["batch", "sources"], name="one_results_summary_per_batch_and_sources")
        ]

    def __str__(self) -> str:
        return f"{self.batch_id} ({self.sources or 'no sources'}): {self.total} lines"

    def summary(self):
        """As `results.summarize` made it (lists from JSON made tuples again)."""
        from .results import ErrorSummary

        return ErrorSummary(
            by_type=[tuple(pair) for pair in self.by_type],
            errors=[tuple(error) for error in self.errors],
            total=self.total,
        )


class BatchTokens(models.Model):
    """A batch's tokens of one model, by kind. The kinds are disjoint and add up to what is billed:
    `input` is fresh (uncached) input, `cache_read` input read from a cache, `cache_write` input
    written to one, `output` output not counted as reasoning, `reasoning` reasoning (thinking)
    tokens reported apart (billed as output). Cost is computed when read, never stored."""

    batch = models.ForeignKey(StoredBatch, on_delete=models.CASCADE, related_name="tokens")
    model = models.CharField(max_length=200, blank=True, default="", help_text='"" when no model is known.')
    input = models.PositiveBigIntegerField(default=0, help_text="Fresh (uncached) input tokens.")
    cache_read = models.PositiveBigIntegerField(default=0, help_text="Input tokens read from a cache.")
    cache_write = models.PositiveBigIntegerField(default=0, help_text="Input tokens written to a cache.")
    output = models.PositiveBigIntegerField(default=0, help_text="Output tokens, reasoning excluded.")
    reasoning = models.PositiveBigIntegerField(default=0, help_text="Reasoning tokens reported apart from output.")
    requests = models.PositiveBigIntegerField(default=0, help_text="Requests (result lines) whose usage was counted.")

    class Meta:
        verbose_name_plural = "batch tokens"
        constraints = [models.UniqueConstraint(fields=["batch", "model"], name="one_batch_tokens_per_batch_and_model")]

    def __str__(self) -> str:
        return f"{self.batch_id} {self.model or '(model unknown)'}"

    @property
    def total(self) -> int:
        return self.input + self.cache_read + self.cache_write + self.output + self.reasoning


class AccountState(models.Model):
    """One row per configured account: its health as the poller sees it, and the poller's lease."""

    account = models.CharField(max_length=100, unique=True)
    provider = models.CharField(max_length=32)
    last_success_at = models.DateTimeField(null=True, blank=True)
    first_success_at = models.DateTimeField(
        null=True, blank=True, help_text="The first successful poll: what ended before it is history, not an alarm."
    )
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, help_text="Redacted.")
    consecutive_failures = models.PositiveIntegerField(default=0)
    backoff_until = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True, help_text="Idle accounts are polled less often.")
    warnings = models.JSONField(default=list, help_text="Batches that could not be read: id and reason, redacted.")
    lease_owner = models.CharField(max_length=120, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # Text: a provider's page token (Bedrock's nextToken, Gemini's pageToken) can be long.
    backfill_after = models.TextField(
        blank=True, help_text="Where the backfill reads on: the oldest batch id listed, or the provider's page token."
    )
    backfill_done = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.account


class PollerHeartbeat(models.Model):
    """A poller that is running: it beats (moves `beat_at` on) every few seconds, and deletes its row
    when it stops cleanly. A poller whose last beat is older than POLL_HEARTBEAT_SECONDS is dead: the
    others count it out of the shares and take its accounts (dashboard/batches/poller.py)."""

    owner = models.CharField(max_length=120, unique=True)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True, help_text="The database's clock, as every lease time.")

    def __str__(self) -> str:
        return self.owner
