"""What both simulated APIs share on the wire: auth, request ids, error envelopes, faults.

Each provider is a `Dialect`: how it authenticates, names its request-id header and shapes its
error body. `endpoint(dialect, ...)` wraps a view so that every answer, including errors, crashes
and unknown routes, comes out in that provider's shape with its request-id header.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import wraps

import ijson
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ijson.common import ObjectBuilder

from .models import Fault, SimAccount, SimBatch, key_digest, random_base62

logger = logging.getLogger(__name__)

MAX_LATENCY_MS = 60_000
MAX_PROCESSING_SECONDS = 30 * 24 * 3600


@dataclass
class ApiError(Exception):
    status: int
    kind: str
    message: str
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Dialect:
    name: str
    request_id_header: str

    def new_request_id(self) -> str:
        raise NotImplementedError

    def authenticate(self, request: HttpRequest) -> SimAccount:
        raise NotImplementedError

    def error_body(self, error: ApiError, request_id: str) -> dict:
        raise NotImplementedError

    def fault_error(self, fault: str, account: SimAccount | None) -> ApiError:
        raise NotImplementedError

    def not_found(self, message: str) -> ApiError:
        raise NotImplementedError

    def bad_request(self, message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
        return ApiError(400, "invalid_request_error", message, param=param, code=code)

    def error_response(self, error: ApiError, request_id: str) -> JsonResponse:
        response = JsonResponse(self.error_body(error, request_id), status=error.status)
        for name, value in error.headers.items():
            response[name] = value
        return response

    def account_for_key(self, api_key: str) -> SimAccount | None:
        return SimAccount.objects.filter(provider=self.name, key_sha256=key_digest(api_key)).first()


def requested_fault(request: HttpRequest, account: SimAccount) -> str:
    return request.headers.get("x-sim-fault", "").strip().lower() or account.fault


def requested_latency_ms(request: HttpRequest, account: SimAccount) -> int:
    try:
        per_request = int(request.headers.get("x-sim-latency-ms", "0"))
    except ValueError:
        per_request = 0
    return min(MAX_LATENCY_MS, max(0, per_request) + account.latency_ms)


def non_json_response() -> HttpResponse:
    return HttpResponse(
        "<html><head><title>502 Bad Gateway</title></head><body>upstream connect error</body></html>",
        status=200,
        content_type="text/html; charset=utf-8",
    )


MAX_BODY_BYTES = 256 * 1024 * 1024  # the Message Batches API takes create bodies up to 256 MB
MAX_SMALL_BODY_BYTES = 1024 * 1024  # bodies that only carry a few fields


def too_large(limit: int) -> ApiError:
    return ApiError(413, "request_too_large", f"Request exceeds the maximum allowed number of bytes ({limit}).")


class BoundedBody:
    """The request body as a stream that refuses to go past `limit` bytes, whatever Content-Length says."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise too_large(limit)
        self.request = request
        self.limit = limit
        self.seen = 0

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson's probe for bytes or text
            return b""
        chunk = self.request.read(size if size > 0 else 64 * 1024)
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise too_large(self.limit)
        return chunk


def parse_json_body(request: HttpRequest, dialect: Dialect, *, limit: int = MAX_SMALL_BODY_BYTES) -> dict:
    """A small JSON object body. Not request.body: the dashboard's upload limits are not the API's."""
    body = BoundedBody(request, limit)
    raw = b"".join(iter(lambda: body.read(64 * 1024), b""))
    try:
        parsed = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise dialect.bad_request("The request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise dialect.bad_request("The request body must be a JSON object.")
    return parsed


class Missing(Exception):
    """The streamed object had no such key."""


class NotAList(Exception):
    """The streamed object's key held something else than a list."""


def stream_json_list(request: HttpRequest, dialect: Dialect, *, key: str, limit: int = MAX_BODY_BYTES) -> Iterator:
    """The items of the list at `key` of a JSON object body, one at a time, parsed as the bytes arrive.

    A 256 MB create body is never held whole, neither as bytes nor as text nor as one parsed
    object: only the item being yielded is. Raises Missing / NotAList after the body is read.
    """
    body = BoundedBody(request, limit)
    events = ijson.parse(body, use_float=True)
    try:
        first = next(events, None)
        if first is None:
            raise dialect.bad_request("The request body is not valid JSON.")
        if first[1] != "start_map":
            raise dialect.bad_request("The request body must be a JSON object.")
        found = False
        item_prefix = f"{key}.item"
        for prefix, event, value in events:
            if prefix == key and event != "map_key":
                if event == "null":
                    raise Missing
                if event not in ("start_array", "end_array"):
                    raise NotAList
                found = True
            elif prefix == item_prefix and event in ("start_map", "start_array"):
                builder = ObjectBuilder()
                builder.event(event, value)
                depth = 1
                for _prefix, inner, inner_value in events:
                    builder.event(inner, inner_value)
                    depth += inner in ("start_map", "start_array")
                    depth -= inner in ("end_map", "end_array")
                    if depth == 0:
                        break
                yield builder.value
            elif prefix == item_prefix and event != "end_array":
                yield value
        if not found:
            raise Missing
    except ijson.JSONError:
        raise dialect.bad_request("The request body is not valid JSON.") from None


def endpoint(dialect: Dialect, *methods: str) -> Callable:
    """Wrap a simulator view: method check, auth, injected latency and faults, provider errors."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        # An API authenticates by key, not by session: no login redirect, no CSRF cookie.
        @login_not_required
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            request_id = dialect.new_request_id()
            try:
                account = dialect.authenticate(request)
                if request.method not in methods:
                    raise ApiError(
                        405, "invalid_request_error", f"Method {request.method} is not allowed on this path."
                    )
                latency_ms = requested_latency_ms(request, account)
                if latency_ms:
                    time.sleep(latency_ms / 1000)
                fault = requested_fault(request, account)
                if fault == Fault.HANG:
                    time.sleep(settings.SIMULATOR_HANG_SECONDS)
                elif fault == Fault.NON_JSON:
                    response = non_json_response()
                    response[dialect.request_id_header] = request_id
                    return response
                elif fault:
                    raise dialect.fault_error(fault, account)
                response = view(request, account, *args, **kwargs)
            except ApiError as error:
                response = dialect.error_response(error, request_id)
            except Exception:
                logger.exception("simulator %s: unexpected error on %s", dialect.name, request.path)
                response = dialect.error_response(dialect.fault_error(Fault.SERVER_ERROR, None), request_id)
            response[dialect.request_id_header] = request_id
            return response

        return wrapper

    return decorate


def unknown_route(dialect: Dialect) -> Callable:
    @login_not_required
    @csrf_exempt
    def view(request: HttpRequest, rest: str = "") -> HttpResponse:
        request_id = dialect.new_request_id()
        response = dialect.error_response(dialect.not_found(f"Not found: {request.method} {request.path}"), request_id)
        response[dialect.request_id_header] = request_id
        return response

    return view


def short_id(length: int = 24) -> str:
    return random_base62(length)


def hex_id(nbytes: int = 16) -> str:
    return secrets.token_hex(nbytes)


def processing_seconds_override(request: HttpRequest, dialect: Dialect) -> dict:
    """Simulator-only header to make one batch faster or slower than the configured default."""
    raw = request.headers.get("x-sim-processing-seconds")
    if raw is None:
        return {}
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_PROCESSING_SECONDS:
        raise dialect.bad_request(
            f"x-sim-processing-seconds must be a number of seconds from 0 to {MAX_PROCESSING_SECONDS}"
        )
    return {"processing_seconds": seconds}


def page_limit(request: HttpRequest, *, default: int, maximum: int, dialect: Dialect) -> int:
    raw = request.GET.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise dialect.bad_request("limit: Input should be a valid integer", param="limit") from None
    if not 1 <= limit <= maximum:
        raise dialect.bad_request(f"limit: Input should be between 1 and {maximum}", param="limit")
    return limit


def newer_than(cursor: SimBatch) -> Q:
    return Q(created_at__gt=cursor.created_at) | Q(created_at=cursor.created_at, id__gt=cursor.id)


def older_than(cursor: SimBatch) -> Q:
    return Q(created_at__lt=cursor.created_at) | Q(created_at=cursor.created_at, id__lt=cursor.id)


def cursor_batch(account: SimAccount, name: str, value: str, dialect: Dialect) -> SimBatch:
    cursor = account.batches.filter(public_id=value).first()
    if cursor is None:
        raise dialect.bad_request(f"{name}: no object with id {value!r}", param=name)
    return cursor
