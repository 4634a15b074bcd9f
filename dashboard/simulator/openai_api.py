"""The OpenAI Batch and Files APIs, as served under /simulator/openai/v1.

The views speak through a dialect (`OpenAIDialect`): another provider that serves these APIs (Azure
OpenAI, azure_openai_api.py) subclasses it and says only what differs; `routes` mounts them."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import URLPattern, path

from . import clock, results_cache
from .anthropic_api import in_chunks, stable_token
from .models import (
    Fault,
    Provider,
    SimAccount,
    SimBatch,
    SimFile,
    SimRequest,
    add_requests,
    openai_batch_id,
    openai_file_id,
)
from .progression import OPENAI_CANCELABLE, OpenAIState, Outcome, openai_state, reasons
from .wire import (
    ApiError,
    BoundedBody,
    Dialect,
    SurrogateCheck,
    by_public_id,
    cursor_batch,
    endpoint,
    hex_id,
    older_than,
    page_limit,
    parse_json_body,
    processing_seconds_override,
    storable,
    too_large,
)

ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data")
MAX_INPUT_LINES = 50_000
FAILED_RESPONSE = {
    "message": "This model's maximum context length was exceeded by the request.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}


class OpenAIDialect(Dialect):
    name = Provider.OPENAI
    request_id_header = "x-request-id"
    endpoints = ENDPOINTS  # what a batch may be created for
    file_purposes = FILE_PURPOSES
    batches_expire = True  # a batch not done within its 24 hours expires
    upload_status = 200  # the status of an uploaded file's answer

    def new_batch_id(self) -> str:
        return openai_batch_id()

    def new_file_id(self) -> str:
        return openai_file_id()

    def same_endpoint(self, url: str, endpoint_path: str) -> bool:
        """Whether an input line's url is the batch's endpoint."""
        return url == endpoint_path

    def file_object(self, fields: dict) -> dict:
        """A file object as this API sends it."""
        return fields

    def new_request_id(self) -> str:
        return "req_" + hex_id(16)

    def authenticate(self, request: HttpRequest) -> SimAccount:
        header = request.headers.get("authorization", "")
        scheme, _, api_key = header.partition(" ")
        if scheme.lower() != "bearer" or not api_key.strip():
            raise ApiError(
                401,
                "invalid_request_error",
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        api_key = api_key.strip()
        account = self.account_for_key(api_key)
        if account is None:
            raise ApiError(
                401, "invalid_request_error", f"Incorrect API key provided: {masked(api_key)}.", code="invalid_api_key"
            )
        return account

    def error_body(self, error: ApiError, request_id: str) -> dict:
        return {"error": {"message": error.message, "type": error.kind, "param": error.param, "code": error.code}}

    def not_found(self, message: str) -> ApiError:
        return ApiError(404, "invalid_request_error", message)

    def fault_error(self, fault: str, account: SimAccount | None) -> ApiError:
        if fault == Fault.RATE_LIMIT:
            retry_after = str(account.retry_after_seconds if account else 2)
            return ApiError(
                429,
                "requests",
                "Rate limit reached for requests. Please try again later.",
                code="rate_limit_exceeded",
                headers={"retry-after": retry_after},
            )
        if fault == Fault.OVERLOADED:
            return ApiError(503, "server_error", "The engine is currently overloaded, please try again later.")
        return ApiError(500, "server_error", "The server had an error while processing your request. Sorry about that!")


DIALECT = OpenAIDialect()


def masked(api_key: str) -> str:
    if len(api_key) <= 8:
        return "*" * len(api_key)
    return api_key[:3] + "*" * (len(api_key) - 7) + api_key[-4:]


def unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


# --- files ---------------------------------------------------------------------------------


def file_json(file: SimFile) -> dict:
    return {
        "id": file.public_id,
        "object": "file",
        "bytes": len(file.content),
        "created_at": unix(file.created_at),
        "expires_at": None,
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
        "status_details": None,
    }


MAX_FILE_BYTES = 512 * 1024 * 1024  # the Files API's limit for one file
MAX_BATCH_INPUT_BYTES = 200 * 1024 * 1024  # the Batch API's limit for an input file
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


def files(request: HttpRequest, account: SimAccount, *, dialect: OpenAIDialect) -> JsonResponse:
    # Checked before Django parses the multipart body (which streams files to disk past 2.5 MB).
    BoundedBody(request, MAX_FILE_BYTES + MULTIPART_OVERHEAD_BYTES)
    purpose = request.POST.get("purpose")
    upload = request.FILES.get("file")
    if not purpose:
        raise dialect.bad_request(
            "Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter"
        )
    if purpose not in dialect.file_purposes:
        raise dialect.bad_request(f"Invalid value for 'purpose': {purpose!r}.", param="purpose", code="invalid_value")
    if upload is None:
        raise dialect.bad_request(
            "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
        )
    if upload.size > MAX_FILE_BYTES:
        raise too_large(MAX_FILE_BYTES)
    if purpose == "batch" and not upload.name.endswith(".jsonl"):
        raise dialect.bad_request("Invalid file format for Batch API. Must be .jsonl", param="file")
    if purpose == "batch" and upload.size > MAX_BATCH_INPUT_BYTES:
        raise dialect.bad_request(
            f"File is too large for the Batch API: {upload.size} bytes; the limit is {MAX_BATCH_INPUT_BYTES}.",
            param="file",
            code="file_too_large",
        )
    content = upload.read()  # the one copy in memory, for the database
    file = SimFile.objects.create(
        account=account,
        public_id=dialect.new_file_id(),
        purpose=purpose,
        filename=upload.name,
        content=content,
        created_at=clock.now(),
    )
    return JsonResponse(dialect.file_object(file_json(file)), status=dialect.upload_status)


def batch_file(account: SimAccount, file_id: str, dialect: OpenAIDialect) -> tuple[SimBatch, OpenAIState, bool]:
    """The ended batch whose output (errors=False) or error file (errors=True) this is."""
    if not storable(file_id):
        raise dialect.not_found(f"No such File object: {file_id}")
    now = clock.now()
    for batch in account.batches.filter(output_file_id=file_id) | account.batches.filter(error_file_id=file_id):
        state = openai_state(batch.plan(), now)
        if file_id == batch.output_file_id and state.has_output_file:
            return batch, state, False
        if file_id == batch.error_file_id and state.has_error_file:
            return batch, state, True
    raise dialect.not_found(f"No such File object: {file_id}")


def file_detail(request: HttpRequest, account: SimAccount, file_id: str, *, dialect: OpenAIDialect) -> JsonResponse:
    file = by_public_id(account.files, file_id)
    if file is not None:
        return JsonResponse(dialect.file_object(file_json(file)))
    # Output and error files of ended batches are files like any other, with purpose batch_output.
    batch, state, errors = batch_file(account, file_id, dialect)
    return JsonResponse(
        dialect.file_object(
            {
                "id": file_id,
                "object": "file",
                "bytes": results_cache.results_size(
                    batch,
                    "errors" if errors else "output",
                    final=results_cache.is_final(batch, state.is_ended),
                    render=lambda: in_chunks(output_lines(batch, state, errors=errors)),
                ),
                "created_at": unix(state.finalizing_at or state.cancelled_at or state.expired_at),
                "expires_at": None,
                "filename": f"{batch.public_id}_{'error' if errors else 'output'}.jsonl",
                "purpose": "batch_output",
                "status": "processed",
                "status_details": None,
            }
        )
    )


def file_content(request: HttpRequest, account: SimAccount, file_id: str, *, dialect: OpenAIDialect) -> HttpResponse:
    file = by_public_id(account.files, file_id)
    if file is not None:
        return HttpResponse(bytes(file.content), content_type="application/octet-stream")
    batch, state, errors = batch_file(account, file_id, dialect)
    chunks = results_cache.results_chunks(
        batch,
        "errors" if errors else "output",
        final=results_cache.is_final(batch, state.is_ended),
        render=lambda: in_chunks(output_lines(batch, state, errors=errors)),
    )
    return StreamingHttpResponse(chunks, content_type="application/octet-stream")


# --- batches -------------------------------------------------------------------------------


def is_embeddings(batch: SimBatch) -> bool:
    return batch.endpoint.removeprefix("/v1") == "/embeddings"  # Azure's endpoints may go without /v1


def batch_json(batch: SimBatch, state: OpenAIState) -> dict:
    """The Batch object; its usage is the sum of its output file's (requests that succeeded so far)."""
    cached = 0 if is_embeddings(batch) else state.cached_tokens
    reasoning = state.reasoning_tokens if reasons(batch.model) and not is_embeddings(batch) else 0
    output = 0 if is_embeddings(batch) else state.output_tokens + reasoning
    return {
        "id": batch.public_id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.model or None,
        # Problems found while validating are only reported once they have failed the batch.
        "errors": (batch.validation_errors or None) if state.status == "failed" else None,
        "input_file_id": batch.input_file_public_id,
        "completion_window": batch.completion_window,
        "status": state.status,
        "output_file_id": batch.output_file_id if state.has_output_file else None,
        "error_file_id": batch.error_file_id if state.has_error_file else None,
        "created_at": unix(batch.created_at),
        "in_progress_at": unix(state.in_progress_at),
        "expires_at": unix(batch.plan().expires_at),
        "finalizing_at": unix(state.finalizing_at),
        "completed_at": unix(state.completed_at),
        "failed_at": unix(state.failed_at),
        "expired_at": unix(state.expired_at),
        "cancelling_at": unix(state.cancelling_at),
        "cancelled_at": unix(state.cancelled_at),
        "request_counts": {"total": state.total, "completed": state.completed, "failed": state.failed},
        "usage": {
            "input_tokens": state.input_tokens + cached,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": state.input_tokens + cached + output,
        },
        "metadata": batch.metadata,
    }


def present(batch: SimBatch) -> JsonResponse:
    return JsonResponse(batch_json(batch, openai_state(batch.plan(), clock.now())))


def find_batch(account: SimAccount, batch_id: str, dialect: OpenAIDialect) -> SimBatch:
    batch = by_public_id(account.batches, batch_id)
    if batch is None:
        raise dialect.not_found(f"No batch found with id '{batch_id}'.")
    return batch


def batches(request: HttpRequest, account: SimAccount, *, dialect: OpenAIDialect) -> JsonResponse:
    if request.method == "POST":
        return create_batch(request, account, dialect)
    return list_batches(request, account, dialect)


def json_type(value: object) -> str:
    """How OpenAI's errors name a JSON value's type."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else "null"


def validated_metadata(metadata: object, dialect: OpenAIDialect) -> dict | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise dialect.bad_request(
            "Invalid type for 'metadata': expected an object.", param="metadata", code="invalid_type"
        )
    if len(metadata) > 16:
        raise dialect.bad_request(
            "Invalid 'metadata': too many properties. Expected an object with at most 16 properties.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        if not storable(key) or (isinstance(value, str) and not storable(value)):
            raise dialect.bad_request(
                "Invalid 'metadata': keys and values cannot contain the NUL character (U+0000).",
                param="metadata",
                code="invalid_value",
            )
        if len(key) > 64:
            raise dialect.bad_request(
                f"Invalid 'metadata': key {key[:20]!r}... is longer than 64 characters.",
                param="metadata",
                code="invalid_value",
            )
        if not isinstance(value, str) or len(value) > 512:
            raise dialect.bad_request(
                f"Invalid 'metadata.{key}': expected a string of at most 512 characters.",
                param=f"metadata.{key}",
                code="invalid_value",
            )
    return metadata


def not_json(literal: str) -> float:
    raise ValueError(f"{literal} is not JSON")


def finite(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"{literal} is too large")
    return number


def json_line(raw: bytes, text: str) -> object:
    """One line of an input file as JSON, strictly: no NaN or Infinity, no number past a float's range,
    no escape of a lone surrogate (legal JSON syntax, but no text: such a string could not be stored).
    Nesting too deep for the decoder raises RecursionError."""
    SurrogateCheck().feed(raw, final=True)
    return json.loads(text, parse_constant=not_json, parse_float=finite)


def input_problems(
    content: bytes, endpoint_path: str, dialect: OpenAIDialect | None = None
) -> tuple[list[tuple[str, str]], list[dict]]:
    """The requests of an input file ((custom_id, model) each) and what `validating` finds wrong."""
    requests: list[tuple[str, str]] = []
    problems: list[dict] = []
    seen: set[str] = set()

    def problem(code: str, message: str, line: int | None, param: str | None = None) -> None:
        problems.append({"code": code, "message": message, "param": param, "line": line})

    # Line by line over the stored bytes (BytesIO shares them): the file is never copied whole.
    # Blank lines are skipped, but problems name the line's number in the file as uploaded.
    count = 0
    for number, raw in enumerate(io.BytesIO(content), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return [], [
                {
                    "code": "invalid_file_format",
                    "message": "The input file is not valid UTF-8 text.",
                    "param": None,
                    "line": None,
                }
            ]
        if not text.strip():
            continue
        count += 1
        try:
            line = json_line(raw, text)
        except (ValueError, RecursionError):
            problem("invalid_json_line", "This line is not parseable as valid JSON.", number)
            continue
        if not isinstance(line, dict):
            problem("invalid_json_line", "Each line must be a JSON object.", number)
            continue
        missing = [name for name in ("custom_id", "method", "url", "body") if name not in line]
        if missing:
            problem("missing_required_parameter", f"Missing required parameter: '{missing[0]}'.", number, missing[0])
            continue
        custom_id = str(line["custom_id"])
        body = line["body"] if isinstance(line["body"], dict) else {}
        model = str(body.get("model", ""))
        if not storable(custom_id) or not storable(model):
            name = "custom_id" if not storable(custom_id) else "body.model"
            problem("invalid_value", f"Invalid '{name}': the NUL character (U+0000) is not supported.", number, name)
            continue
        if custom_id in seen:
            problem(
                "duplicate_custom_id",
                f"The custom_id '{custom_id}' is not unique within the input file.",
                number,
                "custom_id",
            )
        seen.add(custom_id)
        if line["method"] != "POST":
            problem("invalid_method", "The only supported method is POST.", number, "method")
        if not (dialect or DIALECT).same_endpoint(line["url"], endpoint_path):
            problem(
                "mismatched_url",
                f"The URL provided for this request does not match the batch endpoint {endpoint_path}.",
                number,
                "url",
            )
        requests.append((custom_id, model))
    if not count:
        problem("empty_file", "The batch input file is empty. Please upload a file with at least one request.", None)
    if count > MAX_INPUT_LINES:
        problems.insert(
            0,
            {
                "code": "too_many_requests",
                "param": None,
                "line": None,
                "message": f"The batch input file has {count} requests; the limit is {MAX_INPUT_LINES}.",
            },
        )
    return requests, problems


def create_batch(request: HttpRequest, account: SimAccount, dialect: OpenAIDialect) -> JsonResponse:
    body = parse_json_body(request, dialect)
    for name in ("input_file_id", "endpoint", "completion_window"):
        if body.get(name) in (None, ""):
            raise dialect.bad_request(
                f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
            )
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body[name], str):
            raise dialect.bad_request(
                f"Invalid type for '{name}': expected a string, but got {json_type(body[name])} instead.",
                param=name,
                code="invalid_type",
            )
    endpoint_path = body["endpoint"]
    if endpoint_path not in dialect.endpoints:
        supported = ", ".join(repr(e) for e in dialect.endpoints)
        raise dialect.bad_request(
            f"Invalid value: '{endpoint_path}'. Supported values are: {supported}.",
            param="endpoint",
            code="invalid_value",
        )
    if body["completion_window"] != "24h":
        raise dialect.bad_request(
            f"Invalid value: '{body['completion_window']}'. Supported values are: '24h'.",
            param="completion_window",
            code="invalid_value",
        )
    metadata = validated_metadata(body.get("metadata"), dialect)
    input_file = by_public_id(account.files, body["input_file_id"])
    if input_file is None:
        raise dialect.bad_request(
            f"Invalid 'input_file_id': '{body['input_file_id']}'. File not found.", param="input_file_id"
        )
    if input_file.purpose != "batch":
        raise dialect.bad_request(
            f"The file {input_file.public_id} has purpose '{input_file.purpose}'; "
            "batch input files must have purpose 'batch'.",
            param="input_file_id",
        )
    content = input_file.content
    requests, problems = input_problems(
        content if isinstance(content, bytes) else bytes(content), endpoint_path, dialect
    )
    with transaction.atomic():
        batch = SimBatch.planned(
            account=account,
            public_id=dialect.new_batch_id(),
            created_at=clock.now(),
            total=0 if problems else len(requests),
            endpoint=endpoint_path,
            completion_window="24h",
            input_file=input_file,
            input_file_public_id=input_file.public_id,
            metadata=metadata,
            model=next((model for _, model in requests if model), ""),
            validation_errors={"object": "list", "data": problems} if problems else None,
            validating_seconds=settings.SIMULATOR_VALIDATING_SECONDS,
            finalizing_seconds=settings.SIMULATOR_FINALIZING_SECONDS,
            expires=dialect.batches_expire,
            output_file_id=dialect.new_file_id(),
            error_file_id=dialect.new_file_id(),
            **processing_seconds_override(request, dialect),
        )
        batch.save()
        if not problems:
            add_requests(batch, requests)
    return present(batch)


def list_batches(request: HttpRequest, account: SimAccount, dialect: OpenAIDialect) -> JsonResponse:
    limit = page_limit(request, default=20, maximum=100, dialect=dialect)
    rows = account.batches.all()
    if request.GET.get("after"):
        rows = rows.filter(older_than(cursor_batch(account, "after", request.GET["after"], dialect)))
    page = list(rows.order_by("-created_at", "-id")[: limit + 1])
    has_more = len(page) > limit
    page = page[:limit]
    now = clock.now()
    return JsonResponse(
        {
            "object": "list",
            "data": [batch_json(batch, openai_state(batch.plan(), now)) for batch in page],
            "first_id": page[0].public_id if page else None,
            "last_id": page[-1].public_id if page else None,
            "has_more": has_more,
        }
    )


def batch_detail(request: HttpRequest, account: SimAccount, batch_id: str, *, dialect: OpenAIDialect) -> JsonResponse:
    return present(find_batch(account, batch_id, dialect))


def cancel_batch(request: HttpRequest, account: SimAccount, batch_id: str, *, dialect: OpenAIDialect) -> JsonResponse:
    batch = find_batch(account, batch_id, dialect)
    now = clock.now()
    status = openai_state(batch.plan(), now).status
    if status not in OPENAI_CANCELABLE and status != "cancelling":
        raise ApiError(409, "invalid_request_error", f"Cannot cancel a batch with status '{status}'.")
    SimBatch.objects.filter(pk=batch.pk, cancel_initiated_at__isnull=True).update(cancel_initiated_at=now)
    batch.refresh_from_db()
    return present(batch)


# --- output and error files ----------------------------------------------------------------


def is_responses(batch: SimBatch) -> bool:
    return batch.endpoint.removeprefix("/v1") == "/responses"


def response_body(batch: SimBatch, plan, index: int, rank: int, model: str) -> dict:
    tokens_in, tokens_out = plan.input_tokens(rank), plan.output_tokens(rank)
    if is_responses(batch):
        return responses_body(batch, plan, index, rank, model, tokens_in, tokens_out)
    if is_embeddings(batch):
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.1, 0.2]}],
            "model": model,
            "usage": {"prompt_tokens": tokens_in, "total_tokens": tokens_in},
        }
    return {
        "id": "chatcmpl-" + stable_token(batch.public_id, index, length=29),
        "object": "chat.completion",
        "created": unix(batch.created_at),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": f"Simulated answer #{index} for {batch.public_id}.",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop" if rank % 10 else "length",
            }
        ],
        "usage": chat_usage(batch, plan, rank, tokens_in, tokens_out),
        "service_tier": "default",
        "system_fingerprint": None,
    }


def responses_body(batch: SimBatch, plan, index: int, rank: int, model: str, fresh: int, output: int) -> dict:
    """A Responses API `response` (a /v1/responses batch): its usage names the same counts as a chat
    completion's under other keys (input_tokens and its cached_tokens, output_tokens and its reasoning_tokens)."""
    chat = chat_usage(batch, plan, rank, fresh, output)
    finished = rank % 10 != 0
    return {
        "id": "resp_" + stable_token(batch.public_id, index, length=40),
        "object": "response",
        "created_at": unix(batch.created_at),
        "status": "completed" if finished else "incomplete",
        "background": False,
        "error": None,
        "incomplete_details": None if finished else {"reason": "max_output_tokens"},
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_" + stable_token(batch.public_id, index, "message", length=40),
                "status": "completed" if finished else "incomplete",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": f"Simulated answer #{index} for {batch.public_id}.",
                        "annotations": [],
                    }
                ],
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": "medium" if reasons(batch.model) else None, "summary": None},
        "service_tier": "default",
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": chat["prompt_tokens"],
            # The SDK (openai 3.57) requires cache_write_tokens; a batch writes nothing to the cache here.
            "input_tokens_details": {
                "cached_tokens": chat["prompt_tokens_details"]["cached_tokens"],
                "cache_write_tokens": 0,
            },
            "output_tokens": chat["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": chat["completion_tokens_details"]["reasoning_tokens"]},
            "total_tokens": chat["total_tokens"],
        },
        "user": None,
        "metadata": {},
    }


def chat_usage(batch: SimBatch, plan, rank: int, fresh: int, output: int) -> dict:
    """A chat completion's usage: the prompt counts its cached tokens and the completion its reasoning
    tokens (the batch's model decides whether it reasons, so that the Batch object's usage is the sum)."""
    cached = plan.cache_read_tokens(rank)
    reasoning = plan.reasoning_tokens(rank) if reasons(batch.model) else 0
    prompt, completion = fresh + cached, output + reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def output_lines(batch: SimBatch, state: OpenAIState, *, errors: bool) -> Iterator[bytes]:
    plan = batch.plan()
    rows = SimRequest.objects.filter(batch=batch).order_by("index").values_list("index", "custom_id", "model")
    for index, custom_id, model in rows.iterator(chunk_size=2000):
        rank = plan.rank_of(index)
        line_id = "batch_req_" + stable_token(batch.public_id, index, "line", length=32)
        request_id = "req_" + stable_token(batch.public_id, index, "request", length=32)
        if rank < state.finished:
            fate = plan.fate(rank)
            if fate is Outcome.SUCCEEDED and not errors:
                line = {
                    "id": line_id,
                    "custom_id": custom_id,
                    "error": None,
                    "response": {
                        "status_code": 200,
                        "request_id": request_id,
                        "body": response_body(batch, plan, index, rank, model),
                    },
                }
            elif fate is not Outcome.SUCCEEDED and errors:
                line = {
                    "id": line_id,
                    "custom_id": custom_id,
                    "error": None,
                    "response": {"status_code": 400, "request_id": request_id, "body": {"error": FAILED_RESPONSE}},
                }
            else:
                continue
        elif errors and state.status == "expired":
            line = {
                "id": line_id,
                "custom_id": custom_id,
                "response": None,
                "error": {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion window expired.",
                },
            }
        else:
            continue
        yield (json.dumps(line, separators=(",", ":")) + "\n").encode()


# --- routes --------------------------------------------------------------------------------


def routes(dialect: OpenAIDialect, prefix: str, name: str) -> list[URLPattern]:
    """The Batch and Files APIs under `prefix` (e.g. "openai/v1"), spoken in `dialect`; URL names start with `name`."""

    def view(handler: Callable[..., HttpResponse], *methods: str) -> Callable[..., HttpResponse]:
        return endpoint(dialect, *methods)(partial(handler, dialect=dialect))

    return [
        path(f"{prefix}/files", view(files, "POST"), name=f"{name}-files"),
        path(f"{prefix}/files/<str:file_id>", view(file_detail, "GET"), name=f"{name}-file"),
        path(f"{prefix}/files/<str:file_id>/content", view(file_content, "GET"), name=f"{name}-file-content"),
        path(f"{prefix}/batches", view(batches, "GET", "POST"), name=f"{name}-batches"),
        path(f"{prefix}/batches/<str:batch_id>", view(batch_detail, "GET"), name=f"{name}-batch"),
        path(f"{prefix}/batches/<str:batch_id>/cancel", view(cancel_batch, "POST"), name=f"{name}-cancel"),
    ]
