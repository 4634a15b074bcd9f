"""Stored batches as a poller would have recorded them, for the alarm tests: what OpenAI or Anthropic
would say of a batch at an instant, stored as read since its creation (tests/factories.stored_batch)
by a poller that has watched the account since long before T0; and an evaluation at an instant of
the accounts they belong to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard.alarms import evaluation
from dashboard.models import AccountState, StoredBatch
from tests.factories import iso, stored_batch

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEYS = ["anthropic-ops", "openai-ops"]
WATCHED_SINCE = T0 - timedelta(days=30)


def watched(account: str, provider: str) -> None:
    """The account's first successful poll long before T0: what ends after it is not history."""
    AccountState.objects.get_or_create(
        account=account, defaults={"provider": provider, "first_success_at": WATCHED_SINCE}
    )


def anthropic_row(
    number: int, *, created: datetime, at: datetime, ended_after: timedelta | None = None, **counts
) -> StoredBatch:
    """Store what Anthropic would say of batch `number` at `at` (ended `ended_after` its creation),
    as a poller that has read it since its creation."""
    is_ended = ended_after is not None
    watched("anthropic-ops", "anthropic")
    return stored_batch(
        "anthropic-ops",
        f"msgbatch_{number:024d}",
        created=created,
        first_seen_at=created,
        fetched_at=at,
        processing_status="ended" if is_ended else "in_progress",
        request_counts={
            "processing": 0 if is_ended else 100,
            "succeeded": 100 if is_ended else 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
            **counts,
        },
        ended_at=iso(created + ended_after) if is_ended else None,
    )


def openai_row(number: int, *, created: datetime, at: datetime, status: str = "in_progress", **counts) -> StoredBatch:
    """Store what OpenAI would say of batch `number` at `at`, as a poller that has read it since its creation."""
    watched("openai-ops", "openai")
    return stored_batch(
        "openai-ops",
        f"batch_{number:032d}",
        created=created,
        first_seen_at=created,
        fetched_at=at,
        status=status,
        failed_at=int(at.timestamp()) if status == "failed" else None,
        completed_at=int(at.timestamp()) if status == "completed" else None,
        request_counts={"total": 100, "completed": 0, "failed": 0, **counts},
    )


def evaluate(at: datetime) -> evaluation.Evaluation:
    return evaluation.evaluate(at, accounts=KEYS)
