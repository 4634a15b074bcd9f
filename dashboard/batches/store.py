"""The store: writing what was seen upstream, and reading it back as the providers' Batch type.

The poller (and a cancel's answer) write here; pages read here. A batch's row keeps its latest
state, with SQL-filterable columns and the provider's JSON (keys redacted); a history row is added
whenever its status or counts change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from ..accounts import configured_secrets
from ..models import BatchChange, BatchTokens, StoredBatch
from ..providers import module
from ..providers.base import Batch
from ..redaction import redact, redactor

COUNT_FIELDS = ("total", "processing", "succeeded", "errored", "canceled", "expired")


def redacted_json(value: Any, secrets: list[str]) -> Any:
    """`value` with every configured key removed from its strings, dictionary keys included."""
    redact_text = redactor(secrets)

    def redacted(value: Any) -> Any:
        if isinstance(value, str):
            return redact_text(value)
        if isinstance(value, dict):
            return {redact_text(str(key)): redacted(item) for key, item in value.items()}
        if isinstance(value, list):
            return [redacted(item) for item in value]
        return value

    return redacted(value)


def _values(value: Any) -> Iterable[str]:
    """Every value in `value` (a JSON document) as text, keys left out."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _values(item)
    elif isinstance(value, str):
        yield value
    elif value is not None:
        yield json.dumps(value)


def search_text(batch_id: str, metadata: Any) -> str:
    """What the list's search looks in: the batch id and its (already redacted) metadata values,
    one a line, lowercased, so that a plain LIKE finds them case-insensitively on any database."""
    return "\n".join([batch_id, *_values(metadata)]).lower()


def _columns(batch: Batch, secrets: list[str]) -> dict[str, Any]:
    metadata = redacted_json(dict(batch.metadata), secrets)
    return {
        "provider": batch.provider,
        "status": batch.status,
        "is_ended": batch.is_ended,
        **{name: getattr(batch.counts, name) for name in COUNT_FIELDS},
        "counts_known": batch.counts.known,
        "created_at": batch.created_at,
        "expires_at": batch.expires_at,
        "ended_at": batch.ended_at,
        "cancel_initiated_at": batch.cancel_initiated_at,
        "timestamps": {name: value.isoformat() if value else None for name, value in batch.timestamps.items()},
        "metadata": metadata,
        "raw": redacted_json(dict(batch.raw), secrets),
        "search_text": search_text(batch.id, metadata),
        "gone_at": None,  # seen upstream: it exists (again)
    }


def _state(row: StoredBatch) -> tuple:
    return (row.status, row.counts_known, *(getattr(row, name) for name in COUNT_FIELDS))


def record(batch: Batch, *, fetched_at: datetime) -> tuple[StoredBatch, bool]:
    """Store what upstream said of `batch` at `fetched_at`; True when its status or counts changed."""
    secrets = configured_secrets()
    columns = _columns(batch, secrets)
    for _attempt in range(2):
        try:
            with transaction.atomic():
                row = StoredBatch.objects.select_for_update().filter(account=batch.account, batch_id=batch.id).first()
                if row is None:
                    row = StoredBatch.objects.create(
                        account=batch.account,
                        batch_id=batch.id,
                        first_seen_at=fetched_at,
                        seen_running=not batch.is_ended,
                        last_fetched_at=fetched_at,
                        last_changed_at=fetched_at,
                        **columns,
                    )
                    _record_change(row, fetched_at)
                    _record_tokens(row, batch, secrets)
                    return row, True
                if fetched_at < row.last_fetched_at:
                    return row, False  # an older answer arriving late must not undo a newer one
                before = _state(row)
                for name, value in columns.items():
                    setattr(row, name, value)
                row.seen_running = row.seen_running or not batch.is_ended
                row.last_fetched_at = fetched_at
                changed = _state(row) != before
                if changed:
                    row.last_changed_at = fetched_at
                    _record_change(row, fetched_at)
                row.save()
                _record_tokens(row, batch, secrets)
                return row, changed
        except IntegrityError:
            continue  # another writer created it first: update that row instead
    raise RuntimeError(f"could not store {batch.account}/{batch.id}")


def record_many(batches: Iterable[Batch], *, fetched_at: datetime) -> int:
    """Store each batch; how many changed.

    Most answers of a poll say what the store already holds: those only move `last_fetched_at`,
    all in one UPDATE, instead of a locked read and a write each. The others go through `record`.
    """
    batches = list(batches)
    if not batches:
        return 0
    secrets = configured_secrets()
    wanted = {(batch.account, batch.id): _columns(batch, secrets) for batch in batches}
    stored = StoredBatch.objects.filter(
        account__in={account for account, _ in wanted}, batch_id__in={batch_id for _, batch_id in wanted}
    ).values("pk", "account", "batch_id", "last_fetched_at", *COMPARED)
    unchanged: list[int] = []
    for row in stored:
        columns = wanted.get((row["account"], row["batch_id"]))
        if columns is not None and row["last_fetched_at"] <= fetched_at and _same(row, columns):
            unchanged.append(row["pk"])
            del wanted[(row["account"], row["batch_id"])]
    if unchanged:
        StoredBatch.objects.filter(pk__in=unchanged, last_fetched_at__lt=fetched_at).update(last_fetched_at=fetched_at)
    by_key = {(batch.account, batch.id): batch for batch in batches}
    return sum(record(by_key[key], fetched_at=fetched_at)[1] for key in wanted)


# What `record_many` compares to decide an answer says nothing new (every stored column of it).
COMPARED = (
    "provider",
    "status",
    "is_ended",
    *COUNT_FIELDS,
    "counts_known",
    "created_at",
    "expires_at",
    "ended_at",
    "cancel_initiated_at",
    "timestamps",
    "metadata",
    "raw",
    "search_text",
    "gone_at",
)


def _same(row: dict[str, Any], columns: dict[str, Any]) -> bool:
    return all(row[name] == columns[name] for name in COMPARED)


def mark_gone(*, account_key: str, batch_id: str, at: datetime) -> bool:
    """The provider answers 404 for this batch: deleted upstream (Anthropic lets ended batches be
    deleted) or never there. Definite: nothing about it will change, so it is no longer polled.
    Its last known state stays. True if it was not marked before."""
    return bool(
        StoredBatch.objects.filter(account=account_key, batch_id=batch_id, gone_at__isnull=True).update(
            gone_at=at, is_ended=True, last_fetched_at=at
        )
    )


def _record_tokens(row: StoredBatch, batch: Batch, secrets: list[str]) -> None:
    """The tokens the batch object reports (OpenAI's usage, as the batch runs): the batch's tokens,
    under its model. A batch object without usage leaves the tokens as they are (summed from the
    results once it has ended, by services.error_summary)."""
    if batch.usage is None:
        return
    model = redact(batch.model, secrets)
    BatchTokens.objects.update_or_create(
        batch=row, model=model, defaults={"requests": batch.counts.succeeded, **batch.usage._asdict()}
    )
    BatchTokens.objects.filter(batch=row).exclude(model=model).delete()
    if (row.tokens_source, row.tokens_note) != (StoredBatch.TokensSource.BATCH, ""):
        row.tokens_source, row.tokens_note = StoredBatch.TokensSource.BATCH, ""
        StoredBatch.objects.filter(pk=row.pk).update(tokens_source=row.tokens_source, tokens_note="")


def _record_change(row: StoredBatch, observed_at: datetime) -> None:
    BatchChange.objects.create(
        batch=row, observed_at=observed_at, status=row.status, **{name: getattr(row, name) for name in COUNT_FIELDS}
    )


def as_batch(row: StoredBatch) -> Batch:
    """The stored batch as its provider module reads it (the same Batch a live answer gives)."""
    return module(row.provider).parse_batch(row.raw, account=row.account)
