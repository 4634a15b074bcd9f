"""What both simulated APIs share on the wire: auth, request ids, error envelopes, faults.

Each provider is a `Dialect`: how it authenticates, names its request-id header and shapes its
error body. `endpoint(dialect, ...)` wraps a view so that every answer, including errors, crashes
and unknown routes, comes out in that provider's shape with its request-id header.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import wraps

import ijson
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

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


KNOWN_FAULTS = tuple(value for value in Fault.values if value)


def requested_fault(request: HttpRequest, account: SimAccount, dialect: Dialect) -> str:
    """The fault asked for by the x-sim-fault header, else the account's. An unknown one is the caller's error."""
    fault = request.headers.get("x-sim-fault", "").strip().lower()
    if not fault:
        return account.fault
    if fault not in KNOWN_FAULTS:
        raise dialect.bad_request(
            f"x-sim-fault: unknown fault {fault!r}; the known faults are {', '.join(map(repr, KNOWN_FAULTS))}."
        )
    return fault


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


MAX_JSON_DEPTH = 128  # nesting of arrays and objects; RFC 8259 lets a parser set such a limit
STARTS = ("start_map", "start_array")
ENDS = ("end_map", "end_array")

# A \uXXXX escape of a UTF-16 surrogate (D800-DFFF). A high one (D800-DBFF) must be followed at once by
# the escape of a low one (DC00-DFFF): together they are one character. Anything else is legal JSON
# syntax but no Unicode text, so no string can hold it: the APIs refuse such a body.
# This pattern reads JSON text one plain run or one whole escape at a time (so an escaped backslash is
# never taken for the start of an escape) and stops at a lone surrogate's escape, or at an escape
# that the end of the text seen so far may have cut.
WITHOUT_LONE_SURROGATE = re.compile(
    rb"(?:[^\\]++"
    rb"|\\[^u]"
    rb"|\\u(?![dD][89a-fA-F])(?=[\s\S]{2})"
    rb"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb")*+"
)
SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
LONGEST_ESCAPE = 12  # a surrogate pair's two escapes


class LoneSurrogate(ValueError):
    """The JSON text escapes half of a surrogate pair alone."""


class SurrogateCheck:
    """Finds escapes of lone surrogates in JSON text fed to it in chunks of bytes.

    Needed because ijson's C backend does not refuse them: it turns a lone high surrogate into "?",
    pairs it with whatever escape follows, and hands a lone low one on as bytes that are not UTF-8.
    An escape that the end of a chunk may have cut is looked at again with the next chunk.
    """

    def __init__(self) -> None:
        self.carry = b""  # from the start of an escape not yet decided on

    def feed(self, chunk: bytes, *, final: bool = False) -> None:
        text = self.carry + chunk if self.carry else chunk
        decided = len(text) if final else len(text) - LONGEST_ESCAPE  # an escape starting before is whole
        at = 0
        while (at := WITHOUT_LONE_SURROGATE.match(text, at).end()) < decided:
            lone = SURROGATE.match(text, at)
            if lone:
                raise LoneSurrogate(lone.group().decode("ascii"))
            at += 2  # a malformed escape: the parser refuses it
        self.carry = text[at:]


class JsonBody(BoundedBody):
    """A bounded body that also refuses escapes of lone surrogates as the bytes go by."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        super().__init__(request, limit)
        self.surrogates = SurrogateCheck()

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        if size != 0:
            self.surrogates.feed(chunk, final=not chunk)
        return chunk


def lone_surrogate(escape: LoneSurrogate, dialect: Dialect) -> ApiError:
    return dialect.bad_request(
        f"The request body is not valid JSON: {escape} is a lone surrogate, which is not Unicode text."
    )


def json_events(request: HttpRequest, dialect: Dialect, *, limit: int) -> Iterator[tuple[str, object]]:
    """ijson's basic events of a JSON body, as it streams in; anything the APIs refuse is their 400.

    Refused, besides what is not JSON at all: nesting deeper than MAX_JSON_DEPTH, escapes of lone
    surrogates, text that is not UTF-8, NaN and Infinity, and numbers too large for a float or an
    int64. Duplicate keys are allowed; the last one wins, as in Python's json.
    """
    depth = 0
    body = JsonBody(request, limit)
    try:
        for event, value in ijson.basic_parse(body, use_float=True):
            if event in STARTS:
                depth += 1
                if depth > MAX_JSON_DEPTH:
                    raise dialect.bad_request(
                        f"The request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels."
                    )
            elif event in ENDS:
                depth -= 1
            yield event, value
    except LoneSurrogate as escape:
        raise lone_surrogate(escape, dialect) from None
    except UnicodeDecodeError:
        # Also how ijson hands on a lone low surrogate it read before the check saw the escape whole.
        try:
            body.surrogates.feed(b"", final=True)
        except LoneSurrogate as escape:
            raise lone_surrogate(escape, dialect) from None
        raise dialect.bad_request("The request body is not valid JSON: it is not UTF-8 text.") from None
    except ijson.JSONError as error:
        if "overflow" in str(error):
            raise dialect.bad_request("The request body is not valid JSON: a number in it is too large.") from None
        raise dialect.bad_request("The request body is not valid JSON.") from None


def built(event: str, value: object, events: Iterator[tuple[str, object]]) -> object:
    """The value that starts with (event, value), built from as many events as it takes.

    What ijson's ObjectBuilder does (a repeated key: the last one wins), inline: a create body of
    100,000 requests is some two million events, and a method call per event was most of its cost."""
    if event not in STARTS:
        return value
    root: dict | list = {} if event == "start_map" else []
    stack: list[dict | list] = [root]
    top = root
    key = None
    for inner, inner_value in events:
        if inner == "map_key":
            key = inner_value
            continue
        if inner == "end_map" or inner == "end_array":
            stack.pop()
            if not stack:
                return root
            top = stack[-1]
            continue
        if inner == "start_map":
            item = {}
        elif inner == "start_array":
            item = []
        else:
            if top.__class__ is dict:
                top[key] = inner_value
            else:
                top.append(inner_value)
            continue
        if top.__class__ is dict:
            top[key] = item
        else:
            top.append(item)
        stack.append(item)
        top = item
    return root


def skipped(event: str, events: Iterator[tuple[str, object]]) -> None:
    """Read past the value that starts with `event`."""
    if event not in STARTS:
        return
    depth = 1
    for inner, _ in events:
        depth += inner in STARTS
        depth -= inner in ENDS
        if depth == 0:
            return


def first_event(events: Iterator[tuple[str, object]], dialect: Dialect) -> tuple[str, object]:
    """The start of the body's object (ijson refuses an empty body before any event)."""
    event, value = next(events, ("", None))
    if not event:
        raise dialect.bad_request("The request body is not valid JSON.")
    if event != "start_map":
        raise dialect.bad_request("The request body must be a JSON object.")
    return event, value


def parse_json_body(request: HttpRequest, dialect: Dialect, *, limit: int = MAX_SMALL_BODY_BYTES) -> dict:
    """A small JSON object body. Not request.body: the dashboard's upload limits are not the API's."""
    events = json_events(request, dialect, limit=limit)
    event, value = first_event(events, dialect)
    parsed = built(event, value, events)
    for _ in events:  # whatever follows the object is refused by the parser
        pass
    return parsed


class Missing(Exception):
    """The streamed object had no such key."""


class NotAList(Exception):
    """The streamed object's key held something else than a list."""


KEY_AGAIN = object()


def stream_json_list(request: HttpRequest, dialect: Dialect, *, key: str, limit: int = MAX_BODY_BYTES) -> Iterator:
    """The items of the list at `key` of a JSON object body, one at a time, parsed as the bytes arrive.

    A 256 MB create body is never held whole, neither as bytes nor as text nor as one parsed
    object: only the item being yielded is. Raises Missing / NotAList after the body is read.
    If the key comes again, KEY_AGAIN is yielded: the last one wins, so what came before is void.
    """
    events = json_events(request, dialect, limit=limit)
    first_event(events, dialect)
    current: object = None
    found: str | None = None  # what the last `key` held: "list", "null" or "other"
    for event, value in events:  # the body's own keys and values; nested ones are built or skipped
        if event == "map_key":
            current = value
        elif event == "end_map":
            continue  # the body's end: anything after it is refused by the parser
        elif current != key:
            skipped(event, events)
        else:
            if found is not None:
                yield KEY_AGAIN
            if event == "start_array":
                found = "list"
                for item_event, item_value in events:
                    if item_event == "end_array":
                        break
                    yield built(item_event, item_value, events)
            elif event == "null":
                found = "null"
            else:
                found = "other"
                skipped(event, events)
    if found in (None, "null"):
        raise Missing
    if found == "other":
        raise NotAList


def request_error(error: Exception, dialect: Dialect) -> ApiError:
    """The 400 for a body Django could not take apart (a form or multipart body)."""
    if isinstance(error, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return dialect.bad_request(f"A form field other than a file is larger than {limit} bytes.")
    if isinstance(error, TooManyFieldsSent):
        return dialect.bad_request(f"The form has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields.")
    if isinstance(error, TooManyFilesSent):
        return dialect.bad_request(f"The form has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files.")
    if isinstance(error, MultiPartParserError):
        return dialect.bad_request(f"The multipart/form-data body could not be parsed: {error}")
    return dialect.bad_request("The request is malformed.")


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
                fault = requested_fault(request, account, dialect)
                latency_ms = requested_latency_ms(request, account)
                if latency_ms:
                    time.sleep(latency_ms / 1000)
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
            except (MultiPartParserError, SuspiciousOperation) as error:  # Django's 400s, in the provider's shape
                response = dialect.error_response(request_error(error, dialect), request_id)
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


def storable(text: str) -> bool:
    """Whether every database the simulator runs on can hold the text: PostgreSQL's cannot hold U+0000."""
    return "\x00" not in text


def by_public_id(rows: QuerySet, public_id: str):
    """The row with this public id, or None. An id with a NUL is none of ours (and PostgreSQL refuses it)."""
    return rows.filter(public_id=public_id).first() if storable(public_id) else None


def cursor_batch(account: SimAccount, name: str, value: str, dialect: Dialect) -> SimBatch:
    cursor = by_public_id(account.batches, value)
    if cursor is None:
        raise dialect.bad_request(f"{name}: no object with id {value!r}", param=name)
    return cursor
