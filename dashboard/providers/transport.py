"""Every upstream HTTP call's plumbing: a wall-clock deadline on the whole call (a per-read timeout
alone never ends an upstream that trickles), transport failures turned into ProviderErrors, the
streamed body split into JSON lines, and each call counted through a recorder the app installs
(`record_calls_with`, called from AppConfig.ready). No Django here: the deadlines are passed in.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from .base import BadResponse, ProviderError, UpstreamTimeout, UpstreamUnreachable, json_body


@dataclass(frozen=True)
class Deadlines:
    """How long a whole call may take, connect to last byte (the defaults of UPSTREAM_DEADLINE_SECONDS
    and UPSTREAM_DOWNLOAD_DEADLINE_SECONDS, which settings.py reads from here)."""

    call: float = 15.0  # a JSON answer, or an error answer's body
    download: float = 900.0  # a whole streamed result file


DEFAULT_DEADLINES = Deadlines()
_DEADLINE_SLACK = 0.1  # a timeout this close to the deadline is the deadline's


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


# --- Counting: every call by account, result and duration (AppConfig.ready installs metrics/call_counter.py's)
# ok, 4xx (but 429), 429, 5xx, timeout, transport_error, and bad_response: an answer that is
# neither an error status nor (for a JSON call) a JSON object: 1xx/3xx, or a 2xx we cannot read.
UPSTREAM_RESULTS = ("ok", "4xx", "429", "5xx", "timeout", "transport_error", "bad_response")

_recorder: Callable[[str, str, float], None] | None = None


def record_calls_with(recorder: Callable[[str, str, float], None] | None) -> None:
    """Install what counts each call: recorder(account, result, seconds); None counts nothing."""
    global _recorder
    _recorder = recorder


def _count(account: str | None, result: str, seconds: float) -> None:
    """Never raises: whatever goes wrong with counting must not break the call."""
    recorder = _recorder
    if recorder is not None:
        try:
            recorder(account or "unknown", result, seconds)
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
    deadline: float = Deadlines.download,
    error_deadline: float = Deadlines.call,
    account: str | None = None,
    **kwargs,
) -> Iterator[httpx.Response]:
    """client.stream with transport failures, on open or mid-body, turned into ProviderErrors.

    The whole call, connect to last byte, must end within `deadline` seconds, else UpstreamTimeout
    while the body is read; an error answer's body is held to `error_deadline`, as any JSON answer is.

    Counted once for `account` when it ends: its status class, or timeout / transport_error if it
    failed (mid-body too); its duration is the time to the response's headers (a download's length
    follows the file's size, not the upstream's speed).
    """
    clock = _Deadline(deadline, label)
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
                clock = clock.tightened(error_deadline)
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
            _count(account, result, time.monotonic() - clock.started if answered_after is None else answered_after)


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
    deadline: float = Deadlines.call,
    account: str | None = None,
    **kwargs,
) -> httpx.Response:
    """One request, its body read, with transport failures turned into ProviderErrors.

    The whole call, connect to last byte, must end within `deadline` seconds, else UpstreamTimeout.
    The body is read as a stream so that the clock is checked between chunks: client.request would
    bound each read only.

    Counted for `account` (its result and its duration, connect to last byte) however it ends.
    """
    clock = _Deadline(deadline, label)

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
            _count(account, result, time.monotonic() - clock.started)
