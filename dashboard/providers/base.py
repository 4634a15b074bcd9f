"""What every provider module returns and raises. No Django imports here."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from .usage import Usage


@dataclass(frozen=True)
class Counts:
    """Request counts in one shape for both providers.

    `processing` is what has not finished; the other four are final outcomes. For OpenAI,
    `succeeded` is `completed`, `errored` is `failed`, and requests never run count as `canceled`
    (after a cancel) or `expired` (after expiry) once the batch has ended.
    """

    total: int
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int
    # False when the provider did not say (Bedrock's record counts are optional): the numbers are
    # then zeros standing in for "unknown", and pages say so instead of showing them.
    known: bool = True

    @property
    def finished(self) -> int:
        return self.total - self.processing

    def percent(self, value: int) -> float:
        return 100 * value / self.total if self.total else 0.0


@dataclass(frozen=True)
class Batch:
    provider: str
    account: str
    id: str
    status: str  # the provider's own status word
    is_ended: bool
    can_cancel: bool
    counts: Counts
    counts_are_final_only: bool  # Anthropic: outcomes stay zero until the whole batch has ended
    created_at: datetime
    expires_at: datetime | None
    ended_at: datetime | None
    cancel_initiated_at: datetime | None
    timestamps: Mapping[str, datetime | None]  # every timestamp the provider sent, by its own name
    raw: Mapping[str, Any] = field(compare=False, repr=False)
    # The batch's own labels as its owner set them (shown and searched as its metadata), for a provider
    # whose JSON means something else by "metadata" (Gemini: the batch itself); None: raw["metadata"].
    labels: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    # The model the batch runs, where the batch object says it (OpenAI, Gemini, Bedrock); "" otherwise.
    model: str = ""
    # Its tokens so far, where the batch object reports them (OpenAI's usage); None: not reported or not trusted.
    usage: Usage | None = None

    @property
    def progress_is_unseen(self) -> bool:
        """No counts that move while it runs (outcomes reported only at its end, or no counts at
        all): how far along it is can be judged only by how long it has run."""
        return self.counts_are_final_only or not self.counts.known

    @property
    def metadata(self) -> Mapping[str, Any]:
        value = self.raw.get("metadata") if self.labels is None else self.labels
        return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Page:
    batches: list[Batch]
    has_more: bool
    # Where the next page starts, passed back as list_page(after=...): the last batch id for APIs
    # that page by id (Anthropic, OpenAI), the provider's page token for those that page by token.
    next_cursor: str | None
    # Batches left out because we cannot read them: (their id, or "" if unreadable too; our message).
    unreadable: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AccountSpec:
    """One upstream account as configured: what a provider module's `connect` needs.

    `api_key` is the account's secret (an API key; for AWS, the secret access key, or "" to use the
    credential chain); `options` are the provider's own non-secret fields (endpoint, region, profile...).
    """

    name: str
    base_url: str
    api_key: str = field(repr=False)
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Connection:
    """What every request to one account carries, as a provider module's `connect` makes it."""

    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)  # query parameters on every request
    auth: httpx.Auth | None = None  # signs each request (AWS SigV4), when headers alone are not enough
    secrets: tuple[str, ...] = field(default=(), repr=False)  # never shown, logged or stored: redacted


class ProviderError(Exception):
    """Anything that went wrong talking to a provider; `message` is safe to show an operator."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        kind: str = "",
        retry_after: float | None = None,
        request_id: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
        self.retry_after = retry_after
        self.request_id = request_id
        self.current: Batch | None = None  # set when the error came with the batch as it is now


class UpstreamError(ProviderError):
    """The provider answered with an error status (4xx/5xx)."""


class NotFound(UpstreamError):
    pass


class RateLimited(UpstreamError):
    pass


class Overloaded(UpstreamError):
    pass


class AlreadyEnded(UpstreamError):
    """Cancel of a batch that has already ended."""


class UpstreamTimeout(ProviderError):
    pass


class UpstreamUnreachable(ProviderError):
    pass


class BadResponse(ProviderError):
    """The provider answered 2xx with a body we cannot read (not JSON, or not the expected shape)."""


class Provider(Protocol):
    name: str

    def list_page(self, *, limit: int, after: str | None = None) -> Page: ...
    def retrieve(self, batch_id: str) -> Batch: ...
    def cancel(self, batch_id: str) -> Batch: ...
    def stream_results(self, batch_id: str) -> Iterator[bytes]: ...
    def result_sources(self, batch: Batch) -> list[str]: ...
    def results_elsewhere(self, batch: Batch) -> str: ...
    def open_results(
        self, batch_id: str, source: str, *, known: Batch | None = None
    ) -> AbstractContextManager[httpx.Response]: ...
    def is_valid_id(self, batch_id: str) -> bool: ...


def parse_retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def finished_count(counts: Any, names: tuple[str, ...]) -> int | None:
    """The sum of `names` in counts the audit trail kept (whole numbers, or int64 strings as Google
    sends them; an absent one is 0); None if there are none or one is not a count."""
    if not isinstance(counts, Mapping):
        return None
    total = 0
    for name in names:
        value = counts.get(name) or 0
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return None
        total += value
    return total


REFUSAL_STATUSES = (400, 409)


def refused_cancel(error: UpstreamError, retrieve, batch_id: str) -> UpstreamError:
    """What a refused cancel means: AlreadyEnded only if the batch has really ended.

    Providers refuse a cancel with 400 (Anthropic) or 409 (OpenAI) and a message meant for
    people; rather than parse it, look at the batch.
    """
    if error.status not in REFUSAL_STATUSES:
        return error
    try:
        current = retrieve(batch_id)
    except ProviderError:
        return error
    if current.is_ended:
        refusal: UpstreamError = AlreadyEnded(
            f"Batch {batch_id} had already ended; nothing was canceled. ({error.message})",
            status=error.status,
            kind=error.kind,
            request_id=error.request_id,
        )
    else:
        refusal = UpstreamError(
            f"{error.message} (the batch is {current.status}, which cannot be canceled now)",
            status=error.status,
            kind=error.kind,
            request_id=error.request_id,
        )
    refusal.current = current  # what the batch is now: the caller stores it
    return refusal
