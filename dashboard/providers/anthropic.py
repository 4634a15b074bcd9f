"""Anthropic Message Batches API (/v1/messages/batches)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx

from .base import BadResponse, Batch, Counts, UpstreamError, jsonl_lines, refused_cancel
from .http import BatchAPI

API_VERSION = "2023-06-01"
BATCH_ID = re.compile(r"^msgbatch_[A-Za-z0-9]{1,100}$")
LABEL = "Anthropic"
REQUEST_ID_HEADER = "request-id"
TIMESTAMPS = ("created_at", "expires_at", "ended_at", "cancel_initiated_at", "archived_at")


def auth_headers(api_key: str) -> dict[str, str]:
    return {"x-api-key": api_key, "anthropic-version": API_VERSION}


def parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return moment


def parse_batch(data: Any, *, account: str) -> Batch:
    try:
        counts = data["request_counts"]
        outcomes = {name: int(counts[name]) for name in ("processing", "succeeded", "errored", "canceled", "expired")}
        timestamps = {name: parse_time(data.get(name)) for name in TIMESTAMPS}
        status = str(data["processing_status"])
        batch_id = str(data["id"])
        if not BATCH_ID.fullmatch(batch_id):
            # It would go into our URLs and back into upstream ones: refuse it rather than guess.
            raise ValueError(f"id {batch_id[:80]!r} is not a message batch id")
        if timestamps["created_at"] is None:
            raise ValueError("created_at is missing")
    except (KeyError, TypeError, ValueError) as error:
        raise BadResponse(f"{LABEL} sent a message batch we cannot read ({error}).") from None
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
