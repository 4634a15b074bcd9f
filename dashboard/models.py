import uuid

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
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
    last_fetched_at = models.DateTimeField()
    last_changed_at = models.DateTimeField()
    gone_at = models.DateTimeField(
        null=True, blank=True, help_text="Since when the provider answers 404 for it: deleted upstream, or never there."
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "batch_id"], name="one_stored_batch_per_account_id")]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="stored_batch_newest"),
            models.Index(fields=["account", "-created_at"], name="stored_batch_account_newest"),
            # The list's active and status filters read these alone (with the id, which SQLite and
            # PostgreSQL keep in every index entry); then only the page's rows are read whole.
            models.Index(fields=["account", "is_ended", "-created_at"], name="stored_batch_active_newest"),
            models.Index(fields=["account", "status", "-created_at"], name="stored_batch_status_newest"),
            # The list's header (dashboard/summary.py) adds these up from the index alone (is_ended
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


class AccountState(models.Model):
    """One row per configured account: its health as the poller sees it, and the poller's lease."""

    account = models.CharField(max_length=100, unique=True)
    provider = models.CharField(max_length=32)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, help_text="Redacted.")
    consecutive_failures = models.PositiveIntegerField(default=0)
    backoff_until = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True, help_text="Idle accounts are polled less often.")
    warnings = models.JSONField(default=list, help_text="Batches that could not be read: id and reason, redacted.")
    lease_owner = models.CharField(max_length=120, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    backfill_after = models.CharField(max_length=120, blank=True, help_text="The oldest batch id listed so far.")
    backfill_done = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.account


# --- Metrics: upstream calls, counted by every process ------------------------------------------

# The latency histogram's upper bounds in seconds, each a column holding the calls that took at most
# that long (cumulative, as Prometheus reads them); `calls` is the +Inf bucket.
UPSTREAM_LATENCY_BUCKETS: dict[str, float] = {
    "le_0_025": 0.025,
    "le_0_05": 0.05,
    "le_0_1": 0.1,
    "le_0_25": 0.25,
    "le_0_5": 0.5,
    "le_1": 1.0,
    "le_2_5": 2.5,
    "le_5": 5.0,
    "le_10": 10.0,
    "le_15": 15.0,
    "le_30": 30.0,
    "le_60": 60.0,
}


class UpstreamCallStats(models.Model):
    """Upstream calls by account and result, added to by every web and poller process.

    Each process counts its calls in memory and adds them here about once a second (F() expressions,
    so processes flushing at once add up); /metrics reads this table (dashboard/metrics.py).
    """

    account = models.CharField(max_length=100)
    result = models.CharField(max_length=16, help_text="ok, 4xx, 429, 5xx, timeout, transport_error, bad_response")
    calls = models.PositiveBigIntegerField(default=0)
    seconds_sum = models.FloatField(default=0.0, help_text="The calls' durations added up.")
    le_0_025 = models.PositiveBigIntegerField(default=0)
    le_0_05 = models.PositiveBigIntegerField(default=0)
    le_0_1 = models.PositiveBigIntegerField(default=0)
    le_0_25 = models.PositiveBigIntegerField(default=0)
    le_0_5 = models.PositiveBigIntegerField(default=0)
    le_1 = models.PositiveBigIntegerField(default=0)
    le_2_5 = models.PositiveBigIntegerField(default=0)
    le_5 = models.PositiveBigIntegerField(default=0)
    le_10 = models.PositiveBigIntegerField(default=0)
    le_15 = models.PositiveBigIntegerField(default=0)
    le_30 = models.PositiveBigIntegerField(default=0)
    le_60 = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "upstream call stats"
        constraints = [models.UniqueConstraint(fields=["account", "result"], name="one_upstream_call_stats_per_result")]

    def __str__(self) -> str:
        return f"{self.account} {self.result}: {self.calls}"


# --- Alarms: conditions the poller looks for after each cycle (dashboard/alarms.py) ------------------


class AlarmRule(models.TextChoices):
    STUCK = "stuck", "stuck"
    EXPIRING = "expiring", "expiring"
    ERROR_RATE = "error_rate", "error rate"
    ENDED_BADLY = "ended_badly", "ended badly"
    ACCOUNT_FAILING = "account_failing", "account failing"


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

    account = models.CharField(max_length=100, help_text="The account's key, as in the URLs: e.g. openai-ops.")
    rule = models.CharField(max_length=32, choices=AlarmRule.choices)
    enabled = models.BooleanField(default=True, help_text="Off: this rule never alarms for this account.")
    value = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Minutes (stuck, account failing), hours (expiring), percent (error rate, ended badly). "
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


class AlarmEvaluator(models.Model):
    """A single row: the poller that evaluates alarms (its lease, renewed every cycle) and how the
    last evaluation went. Several pollers may run; one evaluates at a time (alarms.claim_evaluator)."""

    lease_owner = models.CharField(max_length=120, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_seconds = models.FloatField(null=True, blank=True, help_text="How long the last evaluation took.")
    last_error = models.TextField(blank=True, help_text="Why the last evaluation failed, if it did (redacted).")

    def __str__(self) -> str:
        return f"alarm evaluator {self.lease_owner or '(none)'}"


# --- Notifications: alarm changes sent to Slack, webhooks and email (dashboard/notifications.py) ----

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
    changed the alarm, sent by a poller (at least once), retried with backoff until sent or given up.

    `payload` is what the alarm was at that change (rule, account, batch, redacted detail): never a
    secret. `next_attempt_at` is when it is due; while a poller sends it, it is moved past the send's
    time limit (the claim), so that no other poller sends it at the same moment, and a poller killed
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


# --- Bulk cancel: one audited operation over many batches (dashboard/bulk.py) -------------------------


class BulkCancel(models.Model):
    """One bulk cancel: who asked, from which filter, and the batches previewed and confirmed (its
    items). Each item is canceled like a single cancel (a CancelAttempt, via "bulk") by the web
    process that took the request, or, if that process died, by a poller once its claims expire."""

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

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"bulk cancel #{self.pk} by {self.actor}: {self.total} batches"


class BulkCancelItem(models.Model):
    """One batch of a bulk cancel. Claimed by a conditional UPDATE (claimed_by, claimed_until) before
    its cancel, so that no two workers cancel it at once; a claim left by a process that died
    expires, and a poller resumes the item."""

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
