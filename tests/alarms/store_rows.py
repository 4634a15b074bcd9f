"""Stored batches as a poller would have recorded them, for the alarm tests: what OpenAI or Anthropic
would say of a batch at an instant, stored as read since its creation; and an evaluation at an
instant of the accounts they belong to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard.alarms import evaluation
from dashboard.batches import store
from dashboard.models import StoredBatch

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEYS = ["anthropic-ops", "openai-ops"]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def anthropic_row(number: int, *, created: datetime, at: datetime, ended_after: timedelta | None = None, **counts):
    """Store what Anthropic would say of batch `number` at `at` (ended `ended_after` its creation),
    as a poller that has read it since its creation."""
    from dashboard.providers import anthropic

    is_ended = ended_after is not None
    data = {
        "id": f"msgbatch_{number:024d}",
        "type": "message_batch",
        "processing_status": "ended" if is_ended else "in_progress",
        "request_counts": {
            "processing": 0 if is_ended else 100,
            "succeeded": 100 if is_ended else 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
            **counts,
        },
        "ended_at": iso(created + ended_after) if is_ended else None,
        "created_at": iso(created),
        "expires_at": iso(created + timedelta(hours=24)),
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": None,
    }
    return seen(anthropic.parse_batch(data, account="anthropic-ops"), created, at)


def openai_row(number: int, *, created: datetime, at: datetime, status: str = "in_progress", **counts):
    """Store what OpenAI would say of batch `number` at `at`, as a poller that has read it since its creation."""
    from dashboard.providers import openai

    counts = {"total": 100, "completed": 0, "failed": 0, **counts}
    data = {
        "id": f"batch_{number:032d}",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-abc",
        "completion_window": "24h",
        "status": status,
        "created_at": int(created.timestamp()),
        "expires_at": int((created + timedelta(hours=24)).timestamp()),
        "failed_at": int(at.timestamp()) if status == "failed" else None,
        "completed_at": int(at.timestamp()) if status == "completed" else None,
        "request_counts": counts,
        "metadata": None,
    }
    return seen(openai.parse_batch(data, account="openai-ops"), created, at)


def seen(batch, created: datetime, at: datetime) -> StoredBatch:
    """Recorded at its creation (unless it is stored already), then at `at`."""
    store.record(batch, fetched_at=created)
    return store.record(batch, fetched_at=at)[0]


def evaluate(at: datetime) -> evaluation.Evaluation:
    return evaluation.evaluate(at, accounts=KEYS)
