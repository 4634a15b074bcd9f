"""Anthropic Message Batches API (/v1/messages/batches)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx

from .base import Batch, Counts, UpstreamError, jsonl_lines, refused_cancel
from .errors import (
    Unreadable,
    as_object,
    count,
    depth_within,
    iso_time,
    known_id,
    status_word,
    unreadable_batch,
)
from .http import BatchAPI

API_VERSION = "2023-06-01"
BATCH_ID = re.compile(r"^msgbatch_[A-Za-z0-9]{1,100}$")
LABEL = "Anthropic"
REQUEST_ID_HEADER = "request-id"
TIMESTAMPS = ("created_at", "expires_at", "ended_at", "cancel_initiated_at", "archived_at")


def auth_headers(api_key: str) -> dict[str, str]:
    return {"x-api-key": api_key, "anthropic-version": API_VERSION}


OUTCOMES = ("processing", "succeeded", "errored", "canceled", "expired")


def parse_time(value: Any, field: str = "timestamp") -> datetime | None:
    """An ISO 8601 timestamp with a time zone between 2000 and 2200, or None; raises Unreadable."""
    return iso_time(value, field)


def parse_batch(data: Any, *, account: str) -> Batch:
    """A Batch from the provider's JSON, which is untrusted: anything odd raises UnreadableBatch.

    A status word we do not know (one the API may add) is kept as is: not ended, not cancelable.
    """
    batch_id = known_id(data, BATCH_ID)
    try:
        data = as_object(data, "the batch")
        if not batch_id:
            # It would go into our URLs and back into upstream ones: refuse it rather than guess.
            raise Unreadable("id", "is missing or not a message batch id")
        status = status_word(data, "processing_status")
        counts = as_object(data.get("request_counts"), "request_counts")
        outcomes = {name: count(counts.get(name), f"request_counts.{name}") for name in OUTCOMES}
        timestamps = {name: parse_time(data.get(name), name) for name in TIMESTAMPS}
        if timestamps["created_at"] is None:
            raise Unreadable("created_at", "is missing")
        if not depth_within(data):
            raise Unreadable("the batch", "nests deeper than we read")
    except Unreadable as problem:
        raise unreadable_batch(LABEL, "message batch", batch_id, problem) from None
    return Batch(
        provider="anthropic",
        account=account,
        id=batch_id,
        status=status,
        is_ended=status == "ended",
        can_cancel=status == "in_progress",
        counts=Counts(total=sum(outcomes.values()), **outcomes),
        counts_are_final_only=True,
        created_at=timestamps["created_at"],
        expires_at=timestamps["expires_at"],
        ended_at=timestamps["ended_at"],
        cancel_initiated_at=timestamps["cancel_initiated_at"],
        timestamps=timestamps,
        raw=data,
    )


class AnthropicProvider(BatchAPI):
    name = "anthropic"
    label = LABEL
    request_id_header = REQUEST_ID_HEADER
    batch_id = BATCH_ID
    batches_path = "/v1/messages/batches"
    after_param = "after_id"
    parse = staticmethod(parse_batch)

    def cancel(self, batch_id: str) -> Batch:
        try:
            return self._batch(self._json("POST", self._batch_path(batch_id, "/cancel")))
        except UpstreamError as error:
            # The API answers 400 invalid_request_error for a batch that has already ended.
            raise refused_cancel(error, self.retrieve, batch_id) from None

    def result_sources(self, batch: Batch) -> list[str]:
        return ["results"] if batch.is_ended else []

    @contextmanager
    def open_results(
        self, batch_id: str, source: str = "results", *, known: Batch | None = None
    ) -> Iterator[httpx.Response]:
        """The streaming results response, its status already checked; the body is not read yet."""
        with self._stream(self._batch_path(batch_id, "/results")) as response:
            yield response

    def stream_results(self, batch_id: str) -> Iterator[bytes]:
        """The results JSONL, line by line, never holding more than one line in memory."""
        with self.open_results(batch_id) as response:
            yield from jsonl_lines(response)
