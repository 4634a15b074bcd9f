"""What every provider module returns and raises. No Django imports here."""

from __future__ import annotations

import codecs
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx


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

    @property
    def metadata(self) -> Mapping[str, Any]:
        value = self.raw.get("metadata")
        return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Page:
    batches: list[Batch]
    has_more: bool
    last_id: str | None
    # Batches left out because we cannot read them: (their id, or "" if unreadable too; our message).
    unreadable: tuple[tuple[str, str], ...] = ()


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


# Fallbacks outside Django; with Django configured, its settings of the same names decide.
UPSTREAM_DEADLINE_SECONDS = 15.0  # a whole JSON call, connect to last byte
UPSTREAM_DOWNLOAD_DEADLINE_SECONDS = 900.0  # a whole streamed result file
_DEADLINE_SLACK = 0.1  # a timeout this close to the deadline is the deadline's


def _setting(name: str, default: float) -> float:
    """A deadline from Django's settings when they are configured (imported late: this module runs without them)."""
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:
        return default
    try:
        return float(getattr(settings, name, default))
    except ImproperlyConfigured:
        return default


class _Deadline:
    """A wall-clock limit on a whole call: a per-read timeout alone never ends an upstream that trickles."""

    def __init__(self, seconds: float, label: str, *, started: float | None = None):
        self.seconds = seconds
        self.label = label
        self.started = time.monotonic() if started is None else started
        self.at = self.started + seconds
        self.fired = False  # set once check() has ended the call: a timeout, for the metrics

    def tightened(self, seconds: float) -> _Deadline:
        """The same call under a shorter limit (counted from the same start)."""
        return self if seconds >= self.seconds else _Deadline(seconds, self.label, started=self.started)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """`base` with no phase (connect, read, write, pool) waiting longer than what is left."""
        left = max(self.remaining(), 0.001)

        def cap(value: float | None) -> float:
            return left if value is None else min(value, left)

        return httpx.Timeout(connect=cap(base.connect), read=cap(base.read), write=cap(base.write), pool=cap(base.pool))

    def error(self) -> UpstreamTimeout:
        return UpstreamTimeout(f"{self.label} did not finish answering within {self.seconds:g} s.", kind="deadline")

    def check(self) -> None:
        if self.remaining() <= 0:
            self.fired = True
            raise self.error()


class _DeadlineStream(httpx.SyncByteStream):
    """A response body that raises the deadline's UpstreamTimeout once time is up, checked between chunks.

    A read that blocks is bounded by the read timeout set when the request was sent (see `_Deadline.timeout`).
    """

    def __init__(self, inner: httpx.SyncByteStream, deadline: _Deadline):
        self.inner = inner
        self.deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        self.deadline.check()
        for chunk in self.inner:
            self.deadline.check()
            yield chunk

    def close(self) -> None:
        self.inner.close()


def _timeout_for(client: httpx.Client, kwargs: dict[str, Any], deadline: _Deadline) -> httpx.Timeout:
    base = httpx.Timeout(kwargs.pop("timeout")) if "timeout" in kwargs else client.timeout
    return deadline.timeout(base)


# Upstream calls wait on these threads, so the caller's wait can end at the deadline even while a
# read is blocked (a per-read timeout restarts with every byte an upstream trickles).
_CALLS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="upstream-call")


def _within(
    clock: _Deadline, work: Callable[[], httpx.Response], abandon: Callable[[], None] | None = None
) -> httpx.Response:
    """`work()` (which returns a response) on a thread of its own, waited for no longer than `clock` allows.

    A call still running at the deadline is abandoned: `abandon()` closes what it has opened so far
    (which also ends a read blocked on it), the caller gets the deadline's UpstreamTimeout at once,
    and a response that still comes later is closed.
    """

    def guarded() -> httpx.Response:
        clock.check()  # queued behind stuck calls until after the deadline: do not start at all
        return work()

    def close_if_abandoned(future) -> None:
        if not future.cancelled() and future.exception() is None:
            future.result().close()

    future = _CALLS.submit(guarded)
    try:
        return future.result(timeout=max(clock.remaining(), 0.0) + _DEADLINE_SLACK)
    except FutureTimeout:
        future.add_done_callback(close_if_abandoned)
        if abandon is not None:
            try:
                abandon()
            except Exception:  # noqa: S110 (the call is being given up on; its own thread reports nothing)
                pass
        raise clock.error() from None


def _transport_failure(
    client: httpx.Client, error: httpx.TransportError, deadline: _Deadline | None = None
) -> ProviderError:
    if isinstance(error, httpx.TimeoutException):
        if deadline is not None and deadline.remaining() <= _DEADLINE_SLACK:
            return deadline.error()
        return UpstreamTimeout(f"The provider did not answer within {client.timeout.read or 'the'} seconds.")
    return UpstreamUnreachable(f"Could not reach the provider ({type(error).__name__}).")


# --- Metrics: every call counted by account, result and duration (dashboard/metrics.py) ---------
# ok, 4xx (but 429), 429, 5xx, timeout, transport_error, and bad_response: an answer that is
# neither an error status nor (for a JSON call) a JSON object: 1xx/3xx, or a 2xx we cannot read.
UPSTREAM_RESULTS = ("ok", "4xx", "429", "5xx", "timeout", "transport_error", "bad_response")

_recorder: Callable[[str, str, float], None] | None = None
_recorder_looked_up = False


def _record(account: str | None, result: str, seconds: float) -> None:
    """Count one call where the metrics live (imported late: this module runs without Django).

    Never raises: counting is in memory, and whatever goes wrong with it must not break the call."""
    global _recorder, _recorder_looked_up
    if not _recorder_looked_up:
        try:
            from ..metrics import record_upstream_call
        except Exception:  # Django or prometheus_client missing: nothing is counted
            record_upstream_call = None
        _recorder, _recorder_looked_up = record_upstream_call, True
    if _recorder is not None:
        try:
            _recorder(account or "unknown", result, seconds)
        except Exception:  # noqa: S110 (the metrics log their own trouble; the call goes on)
            pass


def _status_result(status: int) -> str:
    if status == 429:
        return "429"
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500:
        return "4xx"
    if 500 <= status < 600:
        return "5xx"
    return "bad_response"


def _failure_result(error: BaseException) -> str:
    if isinstance(error, UpstreamTimeout | httpx.TimeoutException):
        return "timeout"
    if isinstance(error, BadResponse | httpx.DecodingError):
        return "bad_response"
    return "transport_error"


def _json_call_result(response: httpx.Response) -> str:
    """A JSON call's result: its status class, or bad_response for a 2xx whose body is no JSON object.

    Looked at by its first and last characters (the full parse is the caller's); a body that does not
    look like an object is parsed to be sure, which costs only on answers that are broken anyway."""
    result = _status_result(response.status_code)
    if result != "ok":
        return result
    body = response.content.removeprefix(codecs.BOM_UTF8)
    head = body[:64].lstrip() or body.lstrip()
    tail = body[-64:].rstrip() or body.rstrip()
    if head[:1] == b"{" and tail[-1:] == b"}":
        return "ok"
    try:
        return "ok" if isinstance(json_body(response), dict) else "bad_response"
    except Exception:  # a 5000-digit number, nesting deeper than Python recurses: unreadable all the same
        return "bad_response"


@contextmanager
def stream(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    label: str = "The provider",
    deadline: float | None = None,
    account: str | None = None,
    **kwargs,
) -> Iterator[httpx.Response]:
    """client.stream with transport failures, on open or mid-body, turned into ProviderErrors.

    The whole call, connect to last byte, must end within `deadline` seconds (default
    UPSTREAM_DOWNLOAD_DEADLINE_SECONDS), else UpstreamTimeout while the body is read; an error
    answer's body is held to UPSTREAM_DEADLINE_SECONDS, as any JSON answer is.

    Counted once for `account` when it ends: its status class, or timeout / transport_error if it
    failed (mid-body too); its duration is the time to the response's headers (a download's length
    follows the file's size, not the upstream's speed).
    """
    seconds = _setting("UPSTREAM_DOWNLOAD_DEADLINE_SECONDS", UPSTREAM_DOWNLOAD_DEADLINE_SECONDS)
    clock = _Deadline(seconds if deadline is None else deadline, label)
    result: str | None = None
    answered_after: float | None = None
    try:
        request = client.build_request(method, url, timeout=_timeout_for(client, kwargs, clock), **kwargs)
        # Connect and headers on a thread of their own: headers that trickle in are cut at the deadline too.
        response = _within(clock, lambda: client.send(request, stream=True))
        answered_after = time.monotonic() - clock.started
        result = _status_result(response.status_code)
        try:
            if not response.is_success:
                clock = clock.tightened(_setting("UPSTREAM_DEADLINE_SECONDS", UPSTREAM_DEADLINE_SECONDS))
            response.stream = _DeadlineStream(response.stream, clock)
            yield response
        finally:
            response.close()
    except httpx.TransportError as error:
        failure = _transport_failure(client, error, clock)
        result = _failure_result(failure)
        raise failure from None
    except Exception as error:
        # Before the headers, the call failed; after them, only the deadline ends it (anything else
        # is the caller's own trouble with a call that went well).
        if result is None or clock.fired:
            result = _failure_result(error)
        raise
    finally:
        if result is not None:
            _record(account, result, time.monotonic() - clock.started if answered_after is None else answered_after)


def jsonl_lines(response: httpx.Response) -> Iterator[bytes]:
    """Lines split on \\n only: JSON strings may hold U+2028 and friends, which iter_lines splits on."""
    # The unfinished line is kept as parts and joined once, when its newline comes: re-joining it
    # for every chunk made a 40 MB line cost quadratic time.
    parts: list[bytes] = []
    for chunk in response.iter_bytes():
        if b"\n" not in chunk:
            parts.append(chunk)
            continue
        first, *middle, last = chunk.split(b"\n")
        parts.append(first)
        for line in (b"".join(parts), *middle):
            if line and not line.isspace():
                yield line.rstrip(b"\r")
        parts = [last] if last else []
    tail = b"".join(parts)
    if tail and not tail.isspace():
        yield tail.rstrip(b"\r")


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    label: str = "The provider",
    deadline: float | None = None,
    account: str | None = None,
    **kwargs,
) -> httpx.Response:
    """One request, its body read, with transport failures turned into ProviderErrors.

    The whole call, connect to last byte, must end within `deadline` seconds (default
    UPSTREAM_DEADLINE_SECONDS), else UpstreamTimeout. The body is read as a stream so that the
    clock is checked between chunks: client.request would bound each read only.

    Counted for `account` (its result and its duration, connect to last byte) however it ends.
    """
    seconds = _setting("UPSTREAM_DEADLINE_SECONDS", UPSTREAM_DEADLINE_SECONDS)
    clock = _Deadline(seconds if deadline is None else deadline, label)

    opened: list[httpx.Response] = []

    def call() -> httpx.Response:
        with client.stream(method, url, timeout=_timeout_for(client, kwargs, clock), **kwargs) as response:
            opened.append(response)
            response.stream = _DeadlineStream(response.stream, clock)
            response.read()
        return response

    def abandon() -> None:
        for response in opened:
            response.close()

    result: str | None = None
    try:
        response = _within(clock, call, abandon)
        result = _json_call_result(response)
        return response
    except httpx.TransportError as error:
        failure = _transport_failure(client, error, clock)
        result = _failure_result(failure)
        raise failure from None
    except Exception as error:
        result = _failure_result(error)
        raise
    finally:
        if result is not None:
            _record(account, result, time.monotonic() - clock.started)


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
