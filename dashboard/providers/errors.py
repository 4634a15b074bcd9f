"""Turning an upstream HTTP answer into data or a ProviderError, for both providers.

Everything a provider sends is untrusted: the helpers here read one field of a batch each and
either return a value the rest of the dashboard can use as is, or raise `Unreadable`, which the
parsers turn into `UnreadableBatch` naming the field and the batch, never quoting the value (it
may be huge, or echo a key).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from ..redaction import REDACTED, redact
from .base import BadResponse, NotFound, Overloaded, RateLimited, UpstreamError, json_body, parse_retry_after

Secrets = tuple[str, ...]  # the keys an answer must never show: every configured account's, passed in

MAX_MESSAGE = 300
MAX_KIND = 80

CREDENTIAL_HEADERS = ("x-api-key", "api-key", "authorization", "x-goog-api-key", "x-amz-security-token")


class UnreadableBatch(BadResponse):
    """A 2xx answer held a batch we cannot read. `batch_id` is its id if that much was readable, else ""."""

    def __init__(self, message: str, *, batch_id: str = "", field: str = "", **kwargs):
        super().__init__(message, **kwargs)
        self.batch_id = batch_id
        self.field = field

    def __reduce__(self):
        # Errors are shared through the cache (pickled); keep the keyword-only attributes.
        return (_rebuild_unreadable, (self.message, self.batch_id, self.field, self.status, self.request_id))


def _rebuild_unreadable(message, batch_id, field, status, request_id) -> UnreadableBatch:
    return UnreadableBatch(message, batch_id=batch_id, field=field, status=status, request_id=request_id)


# --- reading one field of an untrusted batch ---------------------------------------------------------------------

# Bounds on what a batch can plausibly hold; anything outside is a broken or hostile answer, not data.
MAX_COUNT = 10**9  # requests in one batch: both providers cap a batch at far fewer (100k / 50k)
# Timestamps: both batch APIs date from 2024, and nothing is scheduled two centuries ahead. Year 2000
# keeps clear of clock-at-zero mistakes (1970) and of datetime's own limits (years 1 and 9999), where
# arithmetic on an aware datetime overflows.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
EARLIEST_EPOCH = int(EARLIEST.timestamp())
LATEST_EPOCH = int(LATEST.timestamp())
MAX_TIME_TEXT = 64  # an ISO 8601 timestamp with microseconds and an offset is 32 characters
# A status is shown as is and put into CSS class names: a lower-case word, known to us or not.
STATUS_WORD = re.compile(r"[a-z][a-z_]{0,39}")
# Real batches are a few levels deep (metadata is a flat map); deeper nesting would break the raw view.
MAX_DEPTH = 32


class Unreadable(Exception):  # internal: caught by the parsers, never escapes them
    """One field of a batch cannot be read: `field` and `reason` are ours, never upstream text."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field} {reason}")
        self.field = field
        self.reason = reason


def known_id(data: Any, pattern: re.Pattern[str], secrets: Secrets = ()) -> str:
    """The batch's id if it has the provider's id shape (and holds none of `secrets`), else ""."""
    value = data.get("id") if isinstance(data, dict) else None
    if not (isinstance(value, str) and pattern.fullmatch(value)):
        return ""
    # An OpenAI id may hold dashes, so an upstream echoing a key as "batch_<key>" fits the shape.
    return value if redact(value, secrets) == value else ""


def unreadable_batch(label: str, noun: str, batch_id: str, problem: Unreadable) -> UnreadableBatch:
    which = f"batch {batch_id}" if batch_id else "a batch whose id is missing or malformed"
    message = f"{label} sent a {noun} we cannot read: {problem.field} {problem.reason} ({which})."
    # Only our own words and an id known_id let through: nothing here can hold a key.
    return UnreadableBatch(message, batch_id=batch_id, field=problem.field)


def as_object(data: Any, field: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise Unreadable(field, "is not a JSON object")
    return data


def status_word(data: dict[str, Any], field: str, *, pattern: re.Pattern[str] = STATUS_WORD) -> str:
    """The batch's status word, of the provider's own `pattern` (by default lower-case words)."""
    value = data.get(field)
    if value is None:
        raise Unreadable(field, "is missing")
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Unreadable(field, "is not a status word")
    return value


def count(value: Any, field: str, *, missing_is_zero: bool = False) -> int:
    """A request count: a JSON integer (not a bool, not a float) in 0..MAX_COUNT."""
    if value is None:
        if missing_is_zero:
            return 0
        raise Unreadable(field, "is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unreadable(field, "is not a whole number")
    if not 0 <= value <= MAX_COUNT:  # int comparison: safe for a 400-digit integer
        raise Unreadable(field, f"is outside 0..{MAX_COUNT}")
    return value


def _plausible(moment: datetime, field: str) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise Unreadable(field, f"is not between {EARLIEST.year} and {LATEST.year}")
    return moment


def iso_time(value: Any, field: str) -> datetime | None:
    """An ISO 8601 timestamp with a time zone (Anthropic), or None for null/absent."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TIME_TEXT:
        raise Unreadable(field, "is not an ISO 8601 timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Unreadable(field, "is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise Unreadable(field, "has no time zone")
    # Checked on the wall-clock year first: comparing year 1 or 9999 across offsets is where overflow lurks.
    if not EARLIEST.year - 1 <= moment.year <= LATEST.year:
        raise Unreadable(field, f"is not between {EARLIEST.year} and {LATEST.year}")
    return _plausible(moment, field)


def epoch_time(value: Any, field: str) -> datetime | None:
    """Unix seconds (OpenAI), or None for null/absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unreadable(field, "is not a number of seconds")
    if isinstance(value, float) and not math.isfinite(value):
        raise Unreadable(field, "is not a finite number")
    if not EARLIEST_EPOCH <= value < LATEST_EPOCH:  # before any float conversion: 400-digit ints stay ints
        raise Unreadable(field, f"is not between {EARLIEST.year} and {LATEST.year}")
    return _plausible(datetime.fromtimestamp(value, tz=UTC), field)


def depth_within(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON `value` nests no deeper than `limit` (iteratively: no recursion to exhaust)."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return False
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return True


# --- error answers -----------------------------------------------------------------------------------------------


def sent_secrets(response: httpx.Response) -> list[str]:
    """The credentials the request carried (an x-api-key value, or a bearer token)."""
    try:
        sent = response.request.headers
    except RuntimeError:  # a response built by hand has no request
        return []
    secrets = []
    for name in CREDENTIAL_HEADERS:
        value = sent.get(name, "")
        secret = value.split(" ", 1)[-1].strip()
        if secret:
            secrets.append(secret)
    return secrets


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scrub_credentials(text: str, response: httpx.Response, *, secrets: Secrets = (), limit: int = MAX_MESSAGE) -> str:
    """`text`, cut to `limit` characters, without the key that was sent nor any of `secrets`.

    Redacted before cutting (so the cut cannot leave a key's prefix behind) and again after, both
    with `redact`: any letter case, any prefix of 16 characters or more (see dashboard.redaction).
    """
    every_secret = (*sent_secrets(response), *secrets)
    redacted = shorten(redact(text, every_secret), limit)
    redacted = redact(redacted, every_secret)  # nothing the cut put together
    # A cut through "[redacted]" reads badly: drop what is left of it rather than show "[reda".
    for size in range(len(REDACTED) - 1, 0, -1):
        if redacted.endswith(REDACTED[:size] + "…"):
            return redacted[: -size - 1] + "…"
    return redacted


def error_fields(response: httpx.Response, body: Any) -> tuple[Any, Any]:
    """An error answer's (kind, message) as Anthropic, OpenAI and Google send them:
    {"error": {"type"/"code"/"status", "message"}}.

    Either is None when the body does not hold it; both untrusted."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", None
    # The first word naming it: Anthropic's and OpenAI's type or code, Google's status (its code is a number).
    kind = next((word for word in map(error.get, ("type", "code", "status")) if isinstance(word, str) and word), "")
    return kind, error.get("message") or ""


def checked_json(
    response: httpx.Response,
    *,
    provider_label: str,
    request_id_header: str,
    secrets: Secrets = (),
    read_error: Callable[[httpx.Response, Any], tuple[Any, Any]] = error_fields,
) -> dict[str, Any]:
    """The JSON object of a 2xx answer; raises the matching ProviderError otherwise, its kind and
    message as `read_error` finds them in the error answer (message None: the body holds none)."""
    request_id = response.headers.get(request_id_header)
    try:
        body = json_body(response)
    except (ValueError, RecursionError):  # a 5000-digit number, or nesting deeper than Python recurses
        body = None
    if response.is_success:
        if not isinstance(body, dict):
            raise BadResponse(
                f"{provider_label} answered HTTP {response.status_code} with a body that is not a JSON object.",
                status=response.status_code,
                request_id=request_id,
            )
        return body
    kind, detail = read_error(response, body)
    if detail is not None:
        kind = scrub_credentials(kind, response, secrets=secrets, limit=MAX_KIND) if isinstance(kind, str) else ""
        detail = detail if isinstance(detail, str) else "the error message is not text"
    else:
        kind, detail = "", "the error body is not JSON"
    status = response.status_code
    message = scrub_credentials(
        f"{provider_label} HTTP {status}{f' {kind}' if kind else ''}: {detail}", response, secrets=secrets
    )
    options = dict(status=status, kind=kind, request_id=request_id)
    if status == 404:
        raise NotFound(message, **options)
    if status == 429:
        retry_after = parse_retry_after(response)
        suffix = f" (retry after {retry_after:g} s)" if retry_after is not None else ""
        raise RateLimited(message + suffix, retry_after=retry_after, **options)
    if status in (503, 529) or kind == "overloaded_error":
        raise Overloaded(message, **options)
    raise UpstreamError(message, **options)
