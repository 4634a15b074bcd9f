"""The Anthropic Message Batches API, as served under /simulator/anthropic/v1/messages/batches."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import reverse

from . import clock, results_cache
from .models import BASE62, Fault, Provider, SimAccount, SimBatch, SimRequest, add_requests, anthropic_batch_id
from .progression import AnthropicState, Outcome, anthropic_state
from .wire import (
    KEY_AGAIN,
    ApiError,
    Dialect,
    Missing,
    NotAList,
    by_public_id,
    cursor_batch,
    endpoint,
    newer_than,
    older_than,
    page_limit,
    processing_seconds_override,
    short_id,
    storable,
    stream_json_list,
)

CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # matched whole (fullmatch): "$" would let a final "\n" by
MAX_REQUESTS = 100_000
ERRORED_RESULTS = (
    ("invalid_request_error", "messages.0.content: text content blocks must be non-empty"),
    ("api_error", "Internal server error"),
    ("overloaded_error", "Overloaded"),
)


class AnthropicDialect(Dialect):
    name = Provider.ANTHROPIC
    request_id_header = "request-id"

    def new_request_id(self) -> str:
        return "req_011C" + short_id(20)

    def authenticate(self, request: HttpRequest) -> SimAccount:
        # Current SDKs send the key as a bearer token; older clients and curl examples use x-api-key.
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        api_key = request.headers.get("x-api-key", "") or (bearer.strip() if scheme.lower() == "bearer" else "")
        if not api_key:
            raise ApiError(401, "authentication_error", "x-api-key header is required")
        account = self.account_for_key(api_key)
        if account is None:
            raise ApiError(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise self.bad_request("anthropic-version: header is required")
        return account

    def error_body(self, error: ApiError, request_id: str) -> dict:
        return {"type": "error", "error": {"type": error.kind, "message": error.message}, "request_id": request_id}

    def not_found(self, message: str) -> ApiError:
        return ApiError(404, "not_found_error", message)

    def fault_error(self, fault: str, account: SimAccount | None) -> ApiError:
        if fault == Fault.RATE_LIMIT:
            retry_after = str(account.retry_after_seconds if account else 2)
            return ApiError(
                429,
                "rate_limit_error",
                "Number of requests has exceeded your rate limit.",
                headers={"retry-after": retry_after},
            )
        if fault == Fault.OVERLOADED:
            return ApiError(529, "overloaded_error", "Overloaded")
        return ApiError(500, "api_error", "Internal server error")


DIALECT = AnthropicDialect()


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def results_url(request: HttpRequest, batch: SimBatch) -> str:
    return request.build_absolute_uri(reverse("simulator:anthropic-results", args=[batch.public_id]))


def batch_json(request: HttpRequest, batch: SimBatch, state: AnthropicState) -> dict:
    return {
        "id": batch.public_id,
        "type": "message_batch",
        "processing_status": state.processing_status,
        "request_counts": {
            "processing": state.processing,
            "succeeded": state.succeeded,
            "errored": state.errored,
            "canceled": state.canceled,
            "expired": state.expired,
        },
        "ended_at": rfc3339(state.ended_at),
        "created_at": rfc3339(batch.created_at),
        "expires_at": rfc3339(batch.plan().expires_at),
        "archived_at": None,
        "cancel_initiated_at": rfc3339(state.cancel_initiated_at),
        "results_url": results_url(request, batch) if state.is_ended else None,
    }


def present(request: HttpRequest, batch: SimBatch) -> JsonResponse:
    return JsonResponse(batch_json(request, batch, anthropic_state(batch.plan(), clock.now())))


def find_batch(account: SimAccount, batch_id: str) -> SimBatch:
    batch = by_public_id(account.batches, batch_id)
    if batch is None:
        raise DIALECT.not_found(f"Message batch {batch_id} not found.")
    return batch


@endpoint(DIALECT, "GET", "POST")
def batches(request: HttpRequest, account: SimAccount) -> JsonResponse:
    if request.method == "POST":
        return create_batch(request, account)
    return list_batches(request, account)


def validated_requests(request: HttpRequest) -> list[tuple[str, str]]:
    """(custom_id, model) of each request in the create body, or the API's 400.

    The body (up to 256 MB) is parsed as it streams in; only each request's id and model are kept.
    """
    validated: list[tuple[str, str]] = []
    seen: set[str] = set()
    count = 0
    first_problem: ApiError | None = None
    try:
        for item in stream_json_list(request, DIALECT, key="requests"):
            if item is KEY_AGAIN:  # "requests" once more: the last one wins, as in any JSON object
                validated, seen, count, first_problem = [], set(), 0, None
                continue
            count += 1
            if count > MAX_REQUESTS or first_problem is not None:
                continue  # read on: a body that is not valid JSON is answered as such, as the API does
            try:
                validated.append(validated_request(count - 1, item, seen))
            except ApiError as problem:
                first_problem = problem
    except Missing:
        raise DIALECT.bad_request("requests: Field required") from None
    except NotAList:
        raise DIALECT.bad_request("requests: Input should be a valid list") from None
    if not count:
        raise DIALECT.bad_request("requests: List should have at least 1 item after validation, not 0")
    if count > MAX_REQUESTS:
        raise DIALECT.bad_request(
            f"requests: List should have at most {MAX_REQUESTS} items after validation, not {count}"
        )
    if first_problem is not None:
        raise first_problem
    return validated


def validated_request(position: int, item: object, seen: set[str]) -> tuple[str, str]:
    where = f"requests.{position}"
    if not isinstance(item, dict):
        raise DIALECT.bad_request(f"{where}: Input should be a valid dictionary")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str):
        raise DIALECT.bad_request(f"{where}.custom_id: Field required")
    if not CUSTOM_ID.fullmatch(custom_id):
        raise DIALECT.bad_request(f"{where}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
    if custom_id in seen:
        raise DIALECT.bad_request(
            f"{where}.custom_id: Duplicate custom_id '{custom_id}'; custom_id values must be unique within a batch"
        )
    seen.add(custom_id)
    params = item.get("params")
    if not isinstance(params, dict):
        raise DIALECT.bad_request(
            f"{where}.params: Field required"
            if params is None
            else f"{where}.params: Input should be a valid dictionary"
        )
    for required in ("model", "max_tokens", "messages"):
        if required not in params:
            raise DIALECT.bad_request(f"{where}.params.{required}: Field required")
    if not isinstance(params["model"], str):
        raise DIALECT.bad_request(f"{where}.params.model: Input should be a valid string")
    if not storable(params["model"]):
        raise DIALECT.bad_request(f"{where}.params.model: String should not contain the NUL character (U+0000)")
    return custom_id, params["model"]


def create_batch(request: HttpRequest, account: SimAccount) -> JsonResponse:
    requests = validated_requests(request)
    with transaction.atomic():
        batch = SimBatch.planned(
            account=account,
            public_id=anthropic_batch_id(),
            created_at=clock.now(),
            total=len(requests),
            expire_percent=settings.SIMULATOR_EXPIRE_PERCENT,
            output_file_id="",
            error_file_id="",
            **processing_seconds_override(request, DIALECT),
        )
        batch.save()
        add_requests(batch, requests)
        # Answered inside the transaction: if presenting the batch fails, the create leaves nothing behind.
        return present(request, batch)


def list_batches(request: HttpRequest, account: SimAccount) -> JsonResponse:
    limit = page_limit(request, default=20, maximum=1000, dialect=DIALECT)
    before_id, after_id = request.GET.get("before_id"), request.GET.get("after_id")
    if before_id and after_id:
        raise DIALECT.bad_request("Only one of before_id and after_id may be given.")
    rows = account.batches.all()
    if before_id:
        cursor = cursor_batch(account, "before_id", before_id, DIALECT)
        page = list(rows.filter(newer_than(cursor)).order_by("created_at", "id")[: limit + 1])
        has_more = len(page) > limit
        page = page[:limit][::-1]
    else:
        if after_id:
            rows = rows.filter(older_than(cursor_batch(account, "after_id", after_id, DIALECT)))
        page = list(rows.order_by("-created_at", "-id")[: limit + 1])
        has_more = len(page) > limit
        page = page[:limit]
    now = clock.now()
    return JsonResponse(
        {
            "data": [batch_json(request, batch, anthropic_state(batch.plan(), now)) for batch in page],
            "has_more": has_more,
            "first_id": page[0].public_id if page else None,
            "last_id": page[-1].public_id if page else None,
        }
    )


@endpoint(DIALECT, "GET", "DELETE")
def batch_detail(request: HttpRequest, account: SimAccount, batch_id: str) -> JsonResponse:
    batch = find_batch(account, batch_id)
    if request.method == "GET":
        return present(request, batch)
    if not anthropic_state(batch.plan(), clock.now()).is_ended:
        raise DIALECT.bad_request(
            f"Message batch {batch_id} cannot be deleted while it is still processing. "
            "Cancel it first and wait until it has ended."
        )
    gone = (batch.account_id, batch.pk)
    batch.delete()
    results_cache.forget([gone])
    return JsonResponse({"id": batch_id, "type": "message_batch_deleted"})


@endpoint(DIALECT, "POST")
def cancel_batch(request: HttpRequest, account: SimAccount, batch_id: str) -> JsonResponse:
    batch = find_batch(account, batch_id)
    now = clock.now()
    if anthropic_state(batch.plan(), now).is_ended:
        raise DIALECT.bad_request(f"Message batch {batch_id} has already ended and can no longer be canceled.")
    # A second cancel while canceling keeps the first time: the update only fills an empty field.
    SimBatch.objects.filter(pk=batch.pk, cancel_initiated_at__isnull=True).update(cancel_initiated_at=now)
    batch.refresh_from_db()
    return present(request, batch)


@endpoint(DIALECT, "GET")
def batch_results(request: HttpRequest, account: SimAccount, batch_id: str) -> StreamingHttpResponse:
    batch = find_batch(account, batch_id)
    state = anthropic_state(batch.plan(), clock.now())
    if not state.is_ended:
        raise DIALECT.bad_request(
            f"Message batch {batch_id} has not finished processing yet; results are available once it has ended."
        )
    chunks = results_cache.results_chunks(
        batch,
        "results",
        final=results_cache.is_final(batch, state.is_ended),
        render=lambda: in_chunks(result_lines(batch, state)),
    )
    response = StreamingHttpResponse(chunks, content_type="application/x-jsonl")
    response["Content-Disposition"] = f'attachment; filename="{batch_id}_results.jsonl"'
    return response


RESULTS_CHUNK = 64 * 1024  # result lines are sent in chunks of about this many bytes, not one line per chunk


def in_chunks(lines: Iterator[bytes], size: int = RESULTS_CHUNK) -> Iterator[bytes]:
    """Lines joined into chunks of at least `size` bytes (the last one shorter): one write per 64 KiB,
    not per line, for whoever forwards them (a WSGI server, the embedded transport, the dashboard)."""
    pending: list[bytes] = []
    held = 0
    for line in lines:
        pending.append(line)
        held += len(line)
        if held >= size:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


_PAIRS = [BASE62[pair % 62] + BASE62[pair // 62] for pair in range(62 * 62)]  # two base-62 digits, low first


def stable_token(*parts: object, length: int = 22) -> str:
    """`length` base-62 digits (least significant first) of the BLAKE2b digest of `parts`, two at a time."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=32).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length // 2):
        number, pair = divmod(number, 62 * 62)
        chars.append(_PAIRS[pair])
    if length % 2:
        chars.append(BASE62[number % 62])
    return "".join(chars)


def _template(outcome: Outcome, variant: int) -> str:
    """The line of `outcome` (its `variant`: the stop reason's or the error's) as a %-template, made
    once per batch by writing `line_json` with markers in place of the values and replacing them."""
    markers = {name: f"@@{name}@@" for name in ("custom_id", "model", "message_id", "request_id", "text")}
    numbers = {
        "input_tokens": -111_111_111_111,
        "output_tokens": -222_222_222_222,
        "cache_read": -333_333_333_333,
        "cache_write": -444_444_444_444,
    }
    body = result_body_of(
        outcome,
        model=markers["model"],
        message_id=markers["message_id"],
        text=markers["text"],
        stop_reason=("max_tokens", "end_turn")[variant % 2],
        input_tokens=numbers["input_tokens"],
        output_tokens=numbers["output_tokens"],
        cache_read=numbers["cache_read"],
        cache_write=numbers["cache_write"],
        error=ERRORED_RESULTS[variant % len(ERRORED_RESULTS)],
        request_id=markers["request_id"],
    )
    template = line_json(markers["custom_id"], body).replace("%", "%%")
    for name, marker in markers.items():
        template = template.replace(f'"{marker}"', f"%({name})s")
    for name, number in numbers.items():
        template = template.replace(str(number), f"%({name})d")
    return template


def result_lines(batch: SimBatch, state: AnthropicState) -> Iterator[bytes]:
    """The results file, line by line: each line is `line_json` of its `result_body` (tests hold the two
    to the same bytes), written from a template per outcome, which is several times faster."""
    plan = batch.plan()
    public_id = batch.public_id
    templates: dict[tuple[Outcome, int], str] = {}
    quoted_models: dict[str, str] = {}
    rows = SimRequest.objects.filter(batch=batch).order_by("index").values_list("index", "custom_id", "model")
    for index, custom_id, model in rows.iterator(chunk_size=2000):
        rank = plan.rank_of(index)
        outcome = state.outcome_of_rank(plan, rank)
        if outcome is Outcome.SUCCEEDED:
            variant = 1 if rank % 10 else 0
        elif outcome is Outcome.ERRORED:
            variant = rank % len(ERRORED_RESULTS)
        else:
            variant = 0
        template = templates.get((outcome, variant))
        if template is None:
            template = templates[(outcome, variant)] = _template(outcome, variant)
        quoted = quoted_models.get(model)
        if quoted is None:
            quoted = quoted_models[model] = _json_string(model)
        values = {"custom_id": _json_string(custom_id), "model": quoted}
        if outcome is Outcome.SUCCEEDED:
            values["message_id"] = '"msg_01' + stable_token(public_id, index) + '"'
            values["text"] = _json_string(f"Simulated answer #{index} for {public_id}.")
            values["input_tokens"] = plan.input_tokens(rank)
            values["output_tokens"] = plan.output_tokens(rank)
            values["cache_read"] = plan.cache_read_tokens(rank)
            values["cache_write"] = plan.cache_write_tokens(rank)
        elif outcome is Outcome.ERRORED:
            values["request_id"] = '"req_011C' + stable_token(public_id, index, "error", length=20) + '"'
        yield (template % values).encode()


def _json_string(text: str) -> str:
    """`text` as json.dumps writes it (ASCII only), without json.dumps' own cost."""
    return encode_basestring_ascii(text)


def line_json(custom_id: str, body: dict) -> str:
    """One line of the results file as JSON text, its newline included."""
    return json.dumps({"custom_id": custom_id, "result": body}, separators=(",", ":")) + "\n"


def result_body(batch: SimBatch, plan, outcome: Outcome, index: int, rank: int, model: str) -> dict:
    return result_body_of(
        outcome,
        model=model,
        message_id="msg_01" + stable_token(batch.public_id, index),
        text=f"Simulated answer #{index} for {batch.public_id}.",
        stop_reason="end_turn" if rank % 10 else "max_tokens",
        input_tokens=plan.input_tokens(rank),
        output_tokens=plan.output_tokens(rank),
        cache_read=plan.cache_read_tokens(rank),
        cache_write=plan.cache_write_tokens(rank),
        error=ERRORED_RESULTS[rank % len(ERRORED_RESULTS)],
        request_id="req_011C" + stable_token(batch.public_id, index, "error", length=20)
        if outcome is Outcome.ERRORED
        else "",
    )


def result_body_of(
    outcome: Outcome,
    *,
    model: str,
    message_id: str,
    text: str,
    stop_reason: str,
    input_tokens: int,
    output_tokens: int,
    error: tuple[str, str],
    cache_read: int = 0,
    cache_write: int = 0,
    request_id: str,
) -> dict:
    if outcome is Outcome.SUCCEEDED:
        return {
            "type": "succeeded",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text, "citations": None}],
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "stop_details": None,
                "container": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cache_creation_input_tokens": cache_write,
                    "cache_read_input_tokens": cache_read,
                    "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": cache_write},
                    "server_tool_use": None,
                    "service_tier": "batch",
                    "inference_geo": None,
                },
            },
        }
    if outcome is Outcome.ERRORED:
        kind, message = error
        return {
            "type": "errored",
            "error": {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id},
        }
    return {"type": outcome.value}
