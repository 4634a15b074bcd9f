"""Azure OpenAI's batches, as served under /simulator/azure-openai (an Azure resource's endpoint).

OpenAI's Batch and Files APIs (openai_api.py) in Azure's dialect, on both of its routes: the v1 route
{endpoint}/openai/v1/... and the GA route {endpoint}/openai/...?api-version=2024-10-21. What differs
is here: the key in the `api-key` header (the v1 route also takes it as a bearer token, as OpenAI's
own SDK sends it), API Management's answers to a missing or wrong key and to an unknown path, the
api-version the GA route requires, Azure's error body (a code and a message, its spec's shape), its
ids and endpoints, and batches that never expire ("we do not expire the jobs that take longer").
"""

from __future__ import annotations

import re
import secrets
import uuid

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .models import Fault, Provider, SimAccount
from .openai_api import OpenAIDialect
from .wire import ApiError

MISSING_KEY = (
    "Access denied due to missing subscription key. Make sure to include subscription key when making "
    "requests to an API."
)
INVALID_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)
RESOURCE_NOT_FOUND = "Resource not found"
# Dated api-versions with the Batch API: from 2024-07-01-preview on (GA from 2024-10-21).
DATED_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")
FIRST_BATCH_VERSION = "2024-07-01"
V1_VERSIONS = ("", "v1", "preview", "latest")  # what the v1 route takes, if anything
ENDPOINTS = (
    "/chat/completions",
    "/v1/chat/completions",
    "/responses",
    "/v1/responses",
    "/embeddings",
    "/v1/embeddings",
)
# Its spec's purposes (the batch's own output files are batch_output).
FILE_PURPOSES = ("fine-tune", "fine-tune-results", "assistants", "assistants_output", "batch", "batch_output")
# The spec's error codes, by the status an error is answered with.
CODES = {
    400: "invalidPayload",
    404: "notFound",
    405: "invalidPayload",
    409: "conflict",
    413: "invalidPayload",
    429: "tooManyRequests",
    500: "internalFailure",
    503: "serviceUnavailable",
}


class AzureOpenAIDialect(OpenAIDialect):
    name = Provider.AZURE_OPENAI
    request_id_header = "apim-request-id"
    endpoints = ENDPOINTS
    file_purposes = FILE_PURPOSES
    batches_expire = False

    def __init__(self, *, versioned: bool) -> None:
        self.versioned = versioned  # the GA route: an api-version on every request
        self.upload_status = 201 if versioned else 200  # the GA spec's Files_Upload answers 201 Created

    def new_request_id(self) -> str:
        return str(uuid.uuid4())

    def new_batch_id(self) -> str:
        return f"batch_{uuid.uuid4()}"

    def new_file_id(self) -> str:
        return "file-" + secrets.token_hex(16)

    def same_endpoint(self, url: str, endpoint_path: str) -> bool:
        """Azure reads "/chat/completions" and "/v1/chat/completions" as one endpoint."""
        return isinstance(url, str) and url.removeprefix("/v1") == endpoint_path.removeprefix("/v1")

    def file_object(self, fields: dict) -> dict:
        """Without OpenAI's nulls: Azure's File has no expires_at and a status_details only on failure."""
        return {name: value for name, value in fields.items() if value is not None}

    def authenticate(self, request: HttpRequest) -> SimAccount:
        api_key = request.headers.get("api-key", "").strip()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not api_key and not self.versioned and scheme.lower() == "bearer":
            api_key = token.strip()
        if not api_key:
            raise ApiError(401, "401", MISSING_KEY, code="401")
        account = self.account_for_key(api_key)
        if account is None:
            raise ApiError(401, "401", INVALID_KEY, code="401")
        self.check_api_version(request.GET.get("api-version"))
        return account

    def check_api_version(self, version: str | None) -> None:
        if not self.versioned:
            if (version or "") not in V1_VERSIONS:
                raise ApiError(400, "BadRequest", "API version not supported", code="BadRequest")
            return
        if version is None:
            raise self.not_found(RESOURCE_NOT_FOUND, code="404")
        dated = DATED_VERSION.fullmatch(version)
        if not dated or dated.group(1) < FIRST_BATCH_VERSION:
            raise ApiError(400, "BadRequest", "API version not supported", code="BadRequest")

    def error_body(self, error: ApiError, request_id: str) -> dict:
        body = {"code": error.code or CODES.get(error.status, error.kind), "message": error.message}
        return {"error": {**body, **({"target": error.param} if error.param else {})}}

    def not_found(self, message: str, *, code: str = "notFound") -> ApiError:
        return ApiError(404, code, message, code=code)

    def fault_error(self, fault: str, account: SimAccount | None) -> ApiError:
        if fault == Fault.RATE_LIMIT:
            retry_after = str(account.retry_after_seconds if account else 2)
            return ApiError(
                429,
                "429",
                f"Requests to the Batch API have exceeded the call rate limit of your current pricing tier. "
                f"Please retry after {retry_after} seconds.",
                code="429",
                headers={"retry-after": retry_after},
            )
        if fault == Fault.OVERLOADED:
            return ApiError(503, "serviceUnavailable", "The service is temporarily unable to process your request.")
        return ApiError(500, "internalFailure", "The server had an error while processing your request.")


V1 = AzureOpenAIDialect(versioned=False)
GA = AzureOpenAIDialect(versioned=True)


@login_not_required
@csrf_exempt
def unknown_route(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path of the resource: API Management's 404, whatever the key."""
    request_id = GA.new_request_id()
    response = GA.error_response(GA.not_found(RESOURCE_NOT_FOUND, code="404"), request_id)
    response[GA.request_id_header] = request_id
    return response
