"""Stored state of the simulator: accounts, batches (their plans), requests and uploaded files.

Statuses and counts are never stored: they are computed from the plan by `progression`.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Iterable
from datetime import datetime
from itertools import islice

from django.conf import settings
from django.db import connections, models, router
from django.utils import timezone

from .progression import Plan, processing_start

BASE62 = string.digits + string.ascii_letters


def random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def anthropic_batch_id() -> str:
    return "msgbatch_01" + random_base62(22)


def openai_batch_id() -> str:
    return "batch_" + secrets.token_hex(16)


def openai_file_id() -> str:
    return "file-" + random_base62(22)


def bedrock_job_id() -> str:
    return "".join(secrets.choice(string.digits + string.ascii_lowercase) for _ in range(12))


def gemini_batch_id() -> str:
    """What follows "batches/": 36 lower-case letters and digits, as the API's ids are."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(36))


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class Provider(models.TextChoices):
    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI = "openai", "OpenAI"
    AZURE_OPENAI = "azure-openai", "Azure OpenAI"
    BEDROCK = "bedrock", "Amazon Bedrock"
    GEMINI = "gemini", "Gemini"


class Fault(models.TextChoices):
    NONE = "", "none"
    RATE_LIMIT = "429", "429 rate limited, with retry-after"
    SERVER_ERROR = "500", "500 internal server error"
    OVERLOADED = "529", "529 overloaded (503 on OpenAI)"
    HANG = "hang", "hang past any client timeout"
    NON_JSON = "non-json", "200 with a body that is not JSON"


class SimAccount(models.Model):
    """A simulated workspace (Anthropic) or project (OpenAI), with its own key and batches."""

    provider = models.CharField(max_length=16, choices=Provider.choices)
    name = models.SlugField(max_length=64)
    key_sha256 = models.CharField(
        max_length=64, unique=True, help_text="SHA-256 of the API key; the key itself is not stored."
    )
    fault = models.CharField(max_length=16, choices=Fault.choices, blank=True, default=Fault.NONE)
    latency_ms = models.PositiveIntegerField(default=0)
    retry_after_seconds = models.PositiveIntegerField(default=2)

    class Meta:
        unique_together = [("provider", "name")]

    def __str__(self) -> str:
        return f"{self.provider}/{self.name}"


class SimFile(models.Model):
    """An uploaded OpenAI file (batch input)."""

    account = models.ForeignKey(SimAccount, on_delete=models.CASCADE, related_name="files")
    public_id = models.CharField(max_length=64, unique=True, default=openai_file_id)
    purpose = models.CharField(max_length=32)
    filename = models.CharField(max_length=255)
    content = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.public_id


class SimBatch(models.Model):
    account = models.ForeignKey(SimAccount, on_delete=models.CASCADE, related_name="batches")
    public_id = models.CharField(max_length=80, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    total = models.PositiveIntegerField()
    seed = models.PositiveIntegerField(default=0)
    processing_seconds = models.FloatField()
    cancel_grace_seconds = models.FloatField()
    error_percent = models.PositiveSmallIntegerField()
    expire_percent = models.PositiveSmallIntegerField(default=0)
    cancel_initiated_at = models.DateTimeField(null=True, blank=True)
    is_demo = models.BooleanField(default=False, help_text="Created by seed_demo; replaced on every reseed.")
    # A stall (fault injection): processing stopped since `stalled_at` until released; the
    # processing time lost to stalls already released is `stalled_seconds` (see progression).
    stalled_at = models.DateTimeField(null=True, blank=True, help_text="Stalled since: its counts stop moving.")
    stalled_seconds = models.FloatField(default=0, help_text="Processing time lost to stalls already released.")
    expires = models.BooleanField(default=True, help_text="Expires 24 hours after creation (Azure's batches do not).")

    # OpenAI (and Gemini: validating is its pending, input_file its file source, metadata its displayName)
    validating_seconds = models.FloatField(default=0)
    finalizing_seconds = models.FloatField(default=0)
    endpoint = models.CharField(max_length=64, blank=True)
    completion_window = models.CharField(max_length=8, blank=True)
    input_file = models.ForeignKey(SimFile, null=True, blank=True, on_delete=models.SET_NULL)
    input_file_public_id = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    model = models.TextField(blank=True)  # as the caller wrote it, however long
    validation_errors = models.JSONField(null=True, blank=True)
    output_file_id = models.CharField(max_length=64, blank=True, default=openai_file_id)
    error_file_id = models.CharField(max_length=64, blank=True, default=openai_file_id)

    # Bedrock only
    # Bedrock's timeoutDurationInHours; Gemini's 48 hours
    timeout_hours = models.PositiveSmallIntegerField(default=24, help_text="Bedrock's timeoutDurationInHours.")
    job_config = models.JSONField(
        null=True, blank=True, help_text="Bedrock: the create request's fields, answered back (jobName, roleArn...)."
    )

    class Meta:
        indexes = [models.Index(fields=["account", "-created_at", "-id"])]

    def __str__(self) -> str:
        return self.public_id

    @property
    def provider(self) -> str:
        return self.account.provider

    def plan(self) -> Plan:
        return Plan(
            total=self.total,
            created_at=self.created_at,
            seed=self.seed,
            processing_seconds=self.processing_seconds,
            cancel_grace_seconds=self.cancel_grace_seconds,
            error_percent=self.error_percent,
            expire_percent=self.expire_percent,
            cancel_initiated_at=self.cancel_initiated_at,
            validating_seconds=self.validating_seconds,
            finalizing_seconds=self.finalizing_seconds,
            input_is_valid=not self.validation_errors,
            stalled_at=self.stalled_at,
            stalled_seconds=self.stalled_seconds,
            expires=self.expires,
            window_hours=self.timeout_hours,
        )

    def stall(self, now: datetime) -> bool:
        """Stop its processing from `now` (counts freeze) until `release`; False if already stalled."""
        if self.stalled_at is not None:
            return False
        self.stalled_at = now
        self.save(update_fields=["stalled_at"])
        return True

    def release(self, now: datetime) -> bool:
        """Resume processing where it stopped; False if it was not stalled."""
        if self.stalled_at is None:
            return False
        plan = self.plan()
        self.stalled_seconds = plan.stalled_seconds_after_release(processing_start(plan, self.provider), now)
        self.stalled_at = None
        self.save(update_fields=["stalled_at", "stalled_seconds"])
        return True

    @classmethod
    def planned(cls, **fields) -> SimBatch:
        """A new batch with the configured default durations, unless given."""
        defaults = {
            "seed": secrets.randbelow(2**31),
            "processing_seconds": settings.SIMULATOR_PROCESSING_SECONDS,
            "cancel_grace_seconds": settings.SIMULATOR_CANCEL_SECONDS,
            "error_percent": settings.SIMULATOR_ERROR_PERCENT,
        }
        return cls(**{**defaults, **fields})


class SimRequest(models.Model):
    batch = models.ForeignKey(SimBatch, on_delete=models.CASCADE, related_name="requests")
    index = models.PositiveIntegerField()
    # Text, not a bounded column: OpenAI sets no length on either; Anthropic's custom_id is checked at create.
    custom_id = models.TextField()
    model = models.TextField(blank=True)

    class Meta:
        unique_together = [("batch", "index")]
        ordering = ["index"]

    def __str__(self) -> str:
        return f"{self.batch_id}#{self.index} {self.custom_id}"


INSERT_CHUNK = 5000  # rows per executemany: a create of 100,000 requests holds no more than this many at once


def add_requests(batch: SimBatch, requests: Iterable[tuple[str, str]]) -> None:
    """Store a batch's requests, (custom_id, model) in order, as rows of SimRequest.

    One INSERT run over each chunk of rows, not bulk_create: for rows this plain the ORM spent some
    35 µs a row building and preparing model instances (3.5 s for 100,000 requests) against 3 µs in
    the database."""
    connection = connections[router.db_for_write(SimRequest)]
    quote = connection.ops.quote_name
    meta = SimRequest._meta
    columns = ", ".join(quote(meta.get_field(name).column) for name in ("batch", "index", "custom_id", "model"))
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES (%s, %s, %s, %s)"  # noqa: S608 (names from the model)
    rows = ((batch.pk, index, custom_id, model) for index, (custom_id, model) in enumerate(requests))
    with connection.cursor() as cursor:
        while chunk := list(islice(rows, INSERT_CHUNK)):
            cursor.executemany(sql, chunk)
