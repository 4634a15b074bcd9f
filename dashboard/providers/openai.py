"""OpenAI Batch API (/v1/batches) and the Files API for its output and error files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx

from .base import BadResponse, Batch, Counts, NotFound, UpstreamError, jsonl_lines, refused_cancel
from .errors import (
    Unreadable,
    as_object,
    count,
    depth_within,
    epoch_time,
    known_id,
    status_word,
    unreadable_batch,
)
from .http import BatchAPI

BATCH_ID = re.compile(r"^batch_[A-Za-z0-9_-]{1,100}$")
FILE_ID = re.compile(r"^file-[A-Za-z0-9_-]{1,100}$")
LABEL = "OpenAI"
REQUEST_ID_HEADER = "x-request-id"
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
CANCELABLE = frozenset({"validating", "in_progress"})
TIMESTAMPS = (
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def parse_time(value: Any, field: str = "timestamp") -> datetime | None:
    """Unix seconds between 2000 and 2200, or None; raises Unreadable."""
    return epoch_time(value, field)


def parse_batch(data: Any, *, account: str) -> Batch:
    """A Batch from the provider's JSON, which is untrusted: anything odd raises UnreadableBatch.

    A status word we do not know (one the API may add) is kept as is: not ended, not cancelable.
    """
    batch_id = known_id(data, BATCH_ID)
    try:
        data = as_object(data, "the batch")
        if not batch_id:
            # It would go into our URLs and back into upstream ones: refuse it rather than guess.
            raise Unreadable("id", "is missing or not a batch id")
        status = status_word(data, "status")
        # A batch still validating may have no counts yet: absent or null counts are zero.
        counts = data.get("request_counts")
        counts = {} if counts is None else as_object(counts, "request_counts")
        total, completed, failed = (
            count(counts.get(name), f"request_counts.{name}", missing_is_zero=True)
            for name in ("total", "completed", "failed")
        )
        timestamps = {name: parse_time(data.get(name), name) for name in TIMESTAMPS}
        if timestamps["created_at"] is None:
            raise Unreadable("created_at", "is missing")
        if not depth_within(data):
            raise Unreadable("the batch", "nests deeper than we read")
    except Unreadable as problem:
        raise unreadable_batch(LABEL, "batch", batch_id, problem) from None
    is_ended = status in ENDED
    unfinished = max(0, total - completed - failed)
    return Batch(
        provider="openai",
        account=account,
        id=batch_id,
        status=status,
        is_ended=is_ended,
        can_cancel=status in CANCELABLE,
        counts=Counts(
            total=total,
            processing=0 if is_ended else unfinished,
            succeeded=completed,
            errored=failed,
            canceled=unfinished if status == "cancelled" else 0,
            expired=unfinished if status == "expired" else 0,
        ),
        counts_are_final_only=False,
        created_at=timestamps["created_at"],
        expires_at=timestamps["expires_at"],
        ended_at=next(
            (
                timestamps[name]
                for name in ("completed_at", "failed_at", "expired_at", "cancelled_at")
                if timestamps[name] is not None
            ),
            None,
        )
        if is_ended
        else None,
        cancel_initiated_at=timestamps["cancelling_at"],
        timestamps=timestamps,
        raw=data,
    )


class OpenAIProvider(BatchAPI):
    name = "openai"
    label = LABEL
    request_id_header = REQUEST_ID_HEADER
    batch_id = BATCH_ID
    batches_path = "/batches"
    after_param = "after"
    parse = staticmethod(parse_batch)

    def cancel(self, batch_id: str) -> Batch:
        try:
            return self._batch(self._json("POST", self._batch_path(batch_id, "/cancel")))
        except UpstreamError as error:
            # 409 "Cannot cancel a batch with status '…'": ended, or finalizing (not ended, yet not cancelable).
            raise refused_cancel(error, self.retrieve, batch_id) from None

    def result_sources(self, batch: Batch) -> list[str]:
        return [source for source in ("output", "error") if batch.raw.get(f"{source}_file_id")]

    @contextmanager
    def open_file(self, file_id: str) -> Iterator[httpx.Response]:
        if not FILE_ID.fullmatch(file_id):
            raise BadResponse(f"{LABEL} named a file with an unexpected id: {file_id[:80]!r}.")
        with self._stream(f"/files/{file_id}/content") as response:
            yield response

    @contextmanager
    def open_results(
        self, batch_id: str, source: str = "output", *, known: Batch | None = None
    ) -> Iterator[httpx.Response]:
        """The output or error file of a batch as a streaming response, status already checked.

        The file ids come from `known` when the caller already holds the ended batch, else from a retrieve.
        """
        if source not in ("output", "error"):
            raise ValueError(f"unknown result source {source!r}")
        batch = known if known is not None and known.id == batch_id else self.retrieve(batch_id)
        file_id = batch.raw.get(f"{source}_file_id")
        if not file_id:
            raise NotFound(f"{LABEL} batch {batch_id} has no {source} file.", status=404)
        with self.open_file(str(file_id)) as response:
            yield response

    def stream_file(self, file_id: str) -> Iterator[bytes]:
        with self.open_file(file_id) as response:
            yield from jsonl_lines(response)

    def stream_results(self, batch_id: str) -> Iterator[bytes]:
        """Output file lines, then error file lines, of an ended batch."""
        batch = self.retrieve(batch_id)
        for source in self.result_sources(batch):
            yield from self.stream_file(str(batch.raw[f"{source}_file_id"]))
