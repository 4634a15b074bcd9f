"""The Gemini API's Batch Mode (and the Files API's upload and download), as served under /simulator/gemini.

google-genai reaches it with `http_options=types.HttpOptions(base_url=".../simulator/gemini")`:
`POST /v1beta/models/{model}:batchGenerateContent`, `GET /v1beta/batches`, `GET|DELETE
/v1beta/batches/{id}`, `POST /v1beta/batches/{id}:cancel`, the resumable `POST /upload/v1beta/files`,
`GET /v1beta/files/{id}` and `GET /v1beta/files/{id}:download?alt=media` (also under /download/).
A batch is a long-running Operation whose metadata is the batch; errors are Google's
`{"error": {"code", "message", "status"}}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import secrets
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from . import clock, results_cache
from .anthropic_api import in_chunks, stable_token
from .models import Fault, Provider, SimAccount, SimBatch, SimFile, SimRequest, add_requests, gemini_batch_id
from .progression import GEMINI_WINDOW_HOURS, GeminiState, Outcome, gemini_state, reasons
from .wire import (
    ApiError,
    BoundedBody,
    Dialect,
    by_public_id,
    endpoint,
    hex_id,
    older_than,
    parse_json_body,
    processing_seconds_override,
    storable,
)

BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
ID = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")  # a batch's or a file's id, after "batches/" or "files/"
MODEL = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}")
MAX_INLINE_BYTES = 20 * 1024 * 1024  # inline requests: the whole create body stays under 20 MB
MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024  # an uploaded file: up to 2 GB
MAX_FILE_REQUESTS = 100_000  # the simulator's own bound on a file batch's requests
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100  # a larger pageSize is coerced down to it (AIP-158)
# Google's status for an HTTP status, where a view raises an error named otherwise (wire's 405, 413).
STATUS_OF = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
}
FAILED_RESPONSES = (
    (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    (
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    ),
    (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
)


class GeminiDialect(Dialect):
    name = Provider.GEMINI
    request_id_header = "x-request-id"  # Google sends none; kept for the simulator's own logs and tests

    def new_request_id(self) -> str:
        return hex_id(16)

    def authenticate(self, request: HttpRequest) -> SimAccount:
        api_key = (request.headers.get("x-goog-api-key") or request.GET.get("key") or "").strip()
        if not api_key:
            raise ApiError(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        account = self.account_for_key(api_key)
        if account is None:
            raise ApiError(
                400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", code="API_KEY_INVALID"
            )
        return account

    def error_body(self, error: ApiError, request_id: str) -> dict:
        status = error.kind if error.kind.isupper() else STATUS_OF.get(error.status, "UNKNOWN")
        body: dict = {"code": error.status, "message": error.message, "status": status}
        if error.code:  # the reason of an ErrorInfo, as Google adds to a wrong key's answer
            body["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": error.code,
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ]
        return {"error": body}

    def bad_request(self, message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
        return ApiError(400, "INVALID_ARGUMENT", message, param=param, code=code)

    def not_found(self, message: str) -> ApiError:
        return ApiError(404, "NOT_FOUND", message)

    def fault_error(self, fault: str, account: SimAccount | None) -> ApiError:
        if fault == Fault.RATE_LIMIT:
            retry_after = str(account.retry_after_seconds if account else 2)
            return ApiError(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                headers={"retry-after": retry_after},
            )
        if fault == Fault.OVERLOADED:
            return ApiError(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        return ApiError(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        )


DIALECT = GeminiDialect()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def int64(value: int) -> str:
    return str(value)


def lower_id(length: int = 12) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))


# --- batches --------------------------------------------------------------------------------


def responses_file(batch: SimBatch) -> str:
    return f"files/batch-{batch.public_id}"


def batch_json(batch: SimBatch, state: GeminiState) -> dict:
    """The Operation, as proto3 JSON writes it: counts that are 0 and fields not set are left out."""
    name = f"batches/{batch.public_id}"
    stats = {
        "requestCount": state.total,
        "successfulRequestCount": state.succeeded,
        "failedRequestCount": state.failed,
        "pendingRequestCount": state.pending,
    }
    metadata: dict = {"@type": BATCH_TYPE, "model": batch.model}
    display_name = (batch.metadata or {}).get("displayName")
    if display_name:
        metadata["displayName"] = display_name
    if batch.input_file_public_id:
        metadata["inputConfig"] = {"fileName": f"files/{batch.input_file_public_id}"}
    output = output_json(batch, state) if state.is_ended and state.finished else None
    if output is not None:
        metadata["output"] = output
    metadata["createTime"] = rfc3339(batch.created_at)
    if state.ended_at is not None:
        metadata["endTime"] = rfc3339(state.ended_at)
    metadata["updateTime"] = rfc3339(state.updated_at)
    metadata["batchStats"] = {key: int64(value) for key, value in stats.items() if value}
    metadata["state"] = state.state
    metadata["name"] = name
    operation: dict = {"name": name, "metadata": metadata}
    if state.is_ended:
        operation["done"] = True
        error = operation_error(batch, state)
        if error is not None:
            operation["error"] = error
        elif output is not None:
            operation["response"] = {"@type": OUTPUT_TYPE, **output}
    return operation


def operation_error(batch: SimBatch, state: GeminiState) -> dict | None:
    """Why an ended batch has no response: it failed, was cancelled or expired (google.rpc.Status)."""
    if state.state == "BATCH_STATE_FAILED":
        problems = (batch.validation_errors or {}).get("data") or [{"message": "The batch input could not be read."}]
        return {"code": 3, "message": problems[0]["message"]}
    if state.state == "BATCH_STATE_CANCELLED":
        return {"code": 1, "message": "The batch was cancelled."}
    if state.state == "BATCH_STATE_EXPIRED":
        return {"code": 4, "message": "The batch expired before all of its requests ran."}
    return None


def output_json(batch: SimBatch, state: GeminiState) -> dict:
    if batch.input_file_public_id:
        return {"responsesFile": responses_file(batch)}
    return {"inlinedResponses": {"inlinedResponses": list(inlined_responses(batch, state))}}


def present(batch: SimBatch) -> JsonResponse:
    return JsonResponse(batch_json(batch, gemini_state(batch.plan(), clock.now())))


def checked_id(batch_id: str) -> str:
    if not ID.fullmatch(batch_id):
        raise DIALECT.bad_request(
            f"Invalid batch name: batches/{batch_id[:200]}. A batch id is lower-case letters, digits and dashes."
        )
    return batch_id


def find_batch(account: SimAccount, batch_id: str) -> SimBatch:
    batch = by_public_id(account.batches, checked_id(batch_id))
    if batch is None:
        raise DIALECT.not_found("Requested entity was not found.")
    return batch


def page_token(batch: SimBatch) -> str:
    return base64.urlsafe_b64encode(f"{batch.created_at.timestamp()!r}|{batch.public_id}".encode()).decode()


def after_token(account: SimAccount, token: str) -> SimBatch:
    try:
        public_id = base64.urlsafe_b64decode(token.encode()).decode().rpartition("|")[2]
    except (binascii.Error, UnicodeError, ValueError):
        public_id = ""
    batch = by_public_id(account.batches, public_id) if public_id else None
    if batch is None:
        raise DIALECT.bad_request("Invalid page token.")
    return batch


def page_size(request: HttpRequest) -> int:
    raw = request.GET.get("pageSize")
    if raw in (None, "", "0"):
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise DIALECT.bad_request(f"Invalid value at 'page_size' (TYPE_INT32), \"{raw[:40]}\"") from None
    if size < 0:
        raise DIALECT.bad_request("page_size must not be negative.")
    return min(size, MAX_PAGE_SIZE)


@endpoint(DIALECT, "GET")
def batches(request: HttpRequest, account: SimAccount) -> JsonResponse:
    size = page_size(request)
    rows = account.batches.all()
    token = request.GET.get("pageToken")
    if token:
        rows = rows.filter(older_than(after_token(account, token)))
    page = list(rows.order_by("-created_at", "-id")[: size + 1])
    more = len(page) > size
    page = page[:size]
    now = clock.now()
    body: dict = {}
    if page:
        body["operations"] = [batch_json(batch, gemini_state(batch.plan(), now)) for batch in page]
    if more:
        body["nextPageToken"] = page_token(page[-1])
    return JsonResponse(body)


@endpoint(DIALECT, "GET", "DELETE")
def batch_detail(request: HttpRequest, account: SimAccount, batch_id: str) -> JsonResponse:
    batch = find_batch(account, batch_id)
    if request.method == "GET":
        return present(batch)
    if not gemini_state(batch.plan(), clock.now()).is_ended:
        raise ApiError(400, "FAILED_PRECONDITION", f"Batch batches/{batch_id} is still running: cancel it first.")
    gone = (batch.account_id, batch.pk)
    batch.delete()
    results_cache.forget([gone])
    return JsonResponse({})


@endpoint(DIALECT, "POST")
def cancel_batch(request: HttpRequest, account: SimAccount, batch_id: str) -> JsonResponse:
    batch = find_batch(account, batch_id)
    now = clock.now()
    state = gemini_state(batch.plan(), now)
    if state.is_ended:
        raise ApiError(
            400,
            "FAILED_PRECONDITION",
            f"Batch batches/{batch_id} has already ended ({state.state}) and cannot be cancelled.",
        )
    # A second cancel while the first takes effect keeps the first time: the update only fills an empty field.
    SimBatch.objects.filter(pk=batch.pk, cancel_initiated_at__isnull=True).update(cancel_initiated_at=now)
    return JsonResponse({})  # google.protobuf.Empty


# --- create ---------------------------------------------------------------------------------


def inline_requests(config: dict) -> list[tuple[str, str]]:
    """(the request's metadata as JSON text, "") of each inlined request, or the API's 400."""
    holder = config.get("requests")
    listed = holder.get("requests") if isinstance(holder, dict) else None
    if not isinstance(listed, list) or not listed:
        raise DIALECT.bad_request("batch.input_config.requests.requests: at least one request is required.")
    requests = []
    for position, item in enumerate(listed):
        where = f"batch.input_config.requests.requests[{position}]"
        if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
            raise DIALECT.bad_request(f"{where}.request: a GenerateContentRequest is required.")
        if not isinstance(item["request"].get("contents"), list) or not item["request"]["contents"]:
            raise DIALECT.bad_request(f"{where}.request.contents: at least one content is required.")
        metadata = item.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise DIALECT.bad_request(f"{where}.metadata: a JSON object is expected.")
        text = json.dumps(metadata, separators=(",", ":")) if metadata is not None else ""
        if not storable(text):
            raise DIALECT.bad_request(f"{where}.metadata: the NUL character (U+0000) is not supported.")
        requests.append((text, ""))
    return requests


def file_requests(content: bytes) -> tuple[list[tuple[str, str]], list[dict]]:
    """(key, "") of each line of an input file ({"key", "request"}), and what is wrong with the file."""
    requests: list[tuple[str, str]] = []
    for number, raw in enumerate(io.BytesIO(content), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except (ValueError, RecursionError):
            return [], [{"message": f"Line {number} of the input file is not valid JSON."}]
        if not isinstance(line, dict) or not isinstance(line.get("request"), dict):
            return [], [{"message": f"Line {number} of the input file has no request object."}]
        key = line.get("key")
        key = key if isinstance(key, str) and storable(key) else ""
        requests.append((key, ""))
        if len(requests) > MAX_FILE_REQUESTS:
            return [], [{"message": f"The input file has more than {MAX_FILE_REQUESTS} requests."}]
    if not requests:
        return [], [{"message": "The input file holds no requests."}]
    return requests, []


@endpoint(DIALECT, "POST")
def create_batch(request: HttpRequest, account: SimAccount, model: str) -> JsonResponse:
    if not MODEL.fullmatch(model):
        raise DIALECT.not_found(f"models/{model[:100]} is not found for API version v1beta.")
    body = parse_json_body(request, DIALECT, limit=MAX_INLINE_BYTES)
    batch = body.get("batch")
    if not isinstance(batch, dict):
        raise DIALECT.bad_request("batch: a GenerateContentBatch is required.")
    config = batch.get("inputConfig", batch.get("input_config"))
    if not isinstance(config, dict):
        raise DIALECT.bad_request("batch.input_config: required.")
    display_name = batch.get("displayName", batch.get("display_name"))
    if display_name is not None and not (isinstance(display_name, str) and storable(display_name)):
        raise DIALECT.bad_request("batch.display_name: a string is expected.")
    file_name = config.get("fileName", config.get("file_name"))
    if ("requests" in config) == (file_name is not None):
        raise DIALECT.bad_request("batch.input_config: exactly one of requests and file_name must be set.")
    problems: list[dict] = []
    input_file = None
    if file_name is not None:
        file_id = file_name[len("files/") :] if isinstance(file_name, str) and file_name.startswith("files/") else ""
        input_file = by_public_id(account.files, file_id) if ID.fullmatch(file_id) else None
        if input_file is None:
            raise DIALECT.bad_request(f"batch.input_config.file_name: file {str(file_name)[:100]} was not found.")
        requests, problems = file_requests(bytes(input_file.content))
    else:
        requests = inline_requests(config)
    with transaction.atomic():
        created = SimBatch.planned(
            account=account,
            public_id=gemini_batch_id(),
            created_at=clock.now(),
            total=len(requests),
            model=f"models/{model}",
            metadata={"displayName": display_name} if display_name else None,
            input_file=input_file,
            input_file_public_id=input_file.public_id if input_file else "",
            validation_errors={"data": problems} if problems else None,
            validating_seconds=settings.SIMULATOR_VALIDATING_SECONDS,
            timeout_hours=GEMINI_WINDOW_HOURS,
            output_file_id="",
            error_file_id="",
            **processing_seconds_override(request, DIALECT),
        )
        created.save()
        add_requests(created, requests)
        return present(created)


# --- files ----------------------------------------------------------------------------------

UPLOAD_PURPOSE = "gemini-upload"  # a file whose upload has started, not finished
UPLOADED_PURPOSE = "gemini"


def file_json(file: SimFile) -> dict:
    created = rfc3339(file.created_at)
    return {
        "name": f"files/{file.public_id}",
        "displayName": file.filename,
        "mimeType": "application/jsonl",
        "sizeBytes": int64(len(file.content)),
        "createTime": created,
        "updateTime": created,
        "expirationTime": rfc3339(file.created_at + timedelta(hours=48)),
        "sha256Hash": base64.b64encode(hashlib.sha256(bytes(file.content)).hexdigest().encode()).decode(),
        "uri": f"https://generativelanguage.googleapis.com/v1beta/files/{file.public_id}",
        "state": "ACTIVE",
        "source": "UPLOADED",
    }


def generated_file_json(batch: SimBatch, state: GeminiState, size: int) -> dict:
    created = rfc3339(state.ended_at or batch.created_at)
    name = responses_file(batch)
    return {
        "name": name,
        "mimeType": "application/jsonl",
        "sizeBytes": int64(size),
        "createTime": created,
        "updateTime": created,
        "uri": f"https://generativelanguage.googleapis.com/v1beta/{name}",
        "downloadUri": f"https://generativelanguage.googleapis.com/download/v1beta/{name}:download?alt=media",
        "state": "ACTIVE",
        "source": "GENERATED",
    }


@login_not_required
@csrf_exempt
def upload_files(request: HttpRequest) -> HttpResponse:
    """`upload/v1beta/files`: the start of a resumable upload (with a key), or its bytes (with the
    upload_id the start answered: the upload URL is the capability, as Google's is, so no key)."""
    if "upload_id" in request.GET:
        return receive_upload(request)
    return start_upload(request)


@endpoint(DIALECT, "POST")
def start_upload(request: HttpRequest, account: SimAccount) -> HttpResponse:
    """The file's metadata; answered with where to send its bytes (`x-goog-upload-url`)."""
    if request.headers.get("x-goog-upload-protocol", "").lower() != "resumable":
        raise DIALECT.bad_request("Only the resumable upload protocol is served here.")
    body = parse_json_body(request, DIALECT)
    meta = body.get("file") if isinstance(body.get("file"), dict) else {}
    display = meta.get("displayName", meta.get("display_name"))  # proto3 JSON takes either spelling
    token = secrets.token_urlsafe(24)
    file = SimFile.objects.create(
        account=account,
        public_id=lower_id(),
        purpose=UPLOAD_PURPOSE + token_digest(token),
        filename=display[:255] if isinstance(display, str) and storable(display) else "",
        content=b"",
        created_at=clock.now(),
    )
    url = request.build_absolute_uri(reverse("simulator:gemini-upload"))
    response = HttpResponse(b"", content_type="text/plain")
    response["x-goog-upload-url"] = f"{url}?upload_id={file.public_id}.{token}&upload_protocol=resumable"
    response["x-goog-upload-status"] = "active"
    return response


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def receive_upload(request: HttpRequest) -> HttpResponse:
    """The bytes of an upload begun by `start_upload`, in one "upload, finalize" request (or several)."""
    request_id = DIALECT.new_request_id()
    try:
        public_id, _, token = request.GET["upload_id"].partition(".")
        file = SimFile.objects.filter(public_id=public_id, purpose=UPLOAD_PURPOSE + token_digest(token)).first()
        if request.method != "POST" or file is None or not storable(public_id):
            raise DIALECT.not_found("No such upload.")
        try:
            offset = int(request.headers.get("x-goog-upload-offset", "0"))
        except ValueError:
            offset = -1
        if offset != len(file.content):
            raise DIALECT.bad_request(f"X-Goog-Upload-Offset must be {len(file.content)}.")
        body = BoundedBody(request, MAX_FILE_BYTES - offset)
        chunk = b"".join(iter(lambda: body.read(1024 * 1024), b""))
        commands = {part.strip() for part in request.headers.get("x-goog-upload-command", "").lower().split(",")}
        file.content = bytes(file.content) + chunk
        final = "finalize" in commands
        if final:
            file.purpose = UPLOADED_PURPOSE
        file.save(update_fields=["content", "purpose"])
        response = JsonResponse({"file": file_json(file)}) if final else HttpResponse(b"")
        response["x-goog-upload-status"] = "final" if final else "active"
    except ApiError as error:
        response = DIALECT.error_response(error, request_id)
    response[DIALECT.request_id_header] = request_id
    return response


def uploaded(account: SimAccount, file_id: str) -> SimFile | None:
    return account.files.filter(public_id=file_id, purpose=UPLOADED_PURPOSE).first() if ID.fullmatch(file_id) else None


def generated(account: SimAccount, file_id: str) -> tuple[SimBatch, GeminiState]:
    """The ended file batch whose responses file this is, or the API's 404."""
    public_id = file_id.removeprefix("batch-")
    batch = (
        by_public_id(account.batches, public_id) if file_id.startswith("batch-") and ID.fullmatch(public_id) else None
    )
    if batch is not None and batch.input_file_public_id:
        state = gemini_state(batch.plan(), clock.now())
        if state.is_ended and state.finished:
            return batch, state
    raise DIALECT.not_found(f"File files/{file_id[:100]} does not exist.")


@endpoint(DIALECT, "GET")
def file_detail(request: HttpRequest, account: SimAccount, file_id: str) -> JsonResponse:
    file = uploaded(account, file_id)
    if file is not None:
        return JsonResponse(file_json(file))
    batch, state = generated(account, file_id)
    size = results_cache.results_size(
        batch,
        "responses",
        final=results_cache.is_final(batch, True),
        render=lambda: in_chunks(file_lines(batch, state)),
    )
    return JsonResponse(generated_file_json(batch, state, size))


@endpoint(DIALECT, "GET")
def file_download(request: HttpRequest, account: SimAccount, file_id: str) -> HttpResponse:
    if request.GET.get("alt") != "media":
        raise DIALECT.bad_request("Downloads need alt=media.")
    file = uploaded(account, file_id)
    if file is not None:
        return HttpResponse(bytes(file.content), content_type="application/octet-stream")
    batch, state = generated(account, file_id)
    chunks = results_cache.results_chunks(
        batch,
        "responses",
        final=results_cache.is_final(batch, True),
        render=lambda: in_chunks(file_lines(batch, state)),
    )
    return StreamingHttpResponse(chunks, content_type="application/octet-stream")


# --- responses ------------------------------------------------------------------------------


def usage_metadata(batch: SimBatch, plan, rank: int) -> dict:
    """promptTokenCount counts the cached content too; thoughts (of a model that thinks) are apart from
    the candidates. Counts that are zero are left out, as Gemini leaves them out. The prompt's and the
    cache's counts come again by modality (all text here), as Gemini writes them."""
    fresh, cached, output = plan.input_tokens(rank), plan.cache_read_tokens(rank), plan.output_tokens(rank)
    thoughts = plan.reasoning_tokens(rank) if reasons(batch.model) else 0
    usage = {"promptTokenCount": fresh + cached, "candidatesTokenCount": output}
    if cached:
        usage["cachedContentTokenCount"] = cached
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    usage["totalTokenCount"] = fresh + cached + output + thoughts
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": fresh + cached}]
    if cached:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    return usage


def generate_content_response(batch: SimBatch, plan, index: int, rank: int) -> dict:
    return {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": f"Simulated answer #{index} for batches/{batch.public_id}."}],
                    "role": "model",
                },
                "finishReason": "STOP" if rank % 10 else "MAX_TOKENS",
                "index": 0,
            }
        ],
        "usageMetadata": usage_metadata(batch, plan, rank),
        "modelVersion": batch.model.removeprefix("models/"),
        "responseId": stable_token(batch.public_id, index, "response", length=22),
    }


def failed_response(rank: int) -> dict:
    code, status, message = FAILED_RESPONSES[rank % len(FAILED_RESPONSES)]
    return {"code": code, "message": message, "status": status}


def responses(batch: SimBatch, state: GeminiState) -> Iterator[tuple[str, str, dict]]:
    """(the request's key or metadata text, "response" or "error", its body) of every request that ran."""
    plan = batch.plan()
    rows = SimRequest.objects.filter(batch=batch).order_by("index").values_list("index", "custom_id")
    for index, custom_id in rows.iterator(chunk_size=2000):
        rank = plan.rank_of(index)
        if rank >= state.finished:
            continue  # never ran: cancelled or expired first
        if plan.fate(rank) is Outcome.ERRORED:
            yield custom_id, "error", failed_response(rank)
        else:
            yield custom_id, "response", generate_content_response(batch, plan, index, rank)


def file_lines(batch: SimBatch, state: GeminiState) -> Iterator[bytes]:
    for key, kind, body in responses(batch, state):
        yield (json.dumps({"key": key, kind: body}, separators=(",", ":")) + "\n").encode()


def inlined_responses(batch: SimBatch, state: GeminiState) -> Iterator[dict]:
    for metadata, kind, body in responses(batch, state):
        yield {kind: body, **({"metadata": json.loads(metadata)} if metadata else {})}
