"""Amazon Bedrock batch inference (model invocation jobs), as served under /simulator/bedrock.

Requests are checked for an AWS Signature Version 4 by botocore's signer (sigv4.verify), for the
simulator's region, us-east-1; its demo access keys are its IAM. A job reads no S3: its size is the
`simulator:records` tag of the create request (default 500), and a `simulator:fail-validation` tag
of "true" makes it fail validation. Answers, errors included, are AWS's REST-JSON shapes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse

from ..providers import bedrock
from . import clock, sigv4
from .models import Fault, Provider, SimAccount, SimBatch, bedrock_job_id
from .progression import BEDROCK_STOPPABLE, BedrockState, bedrock_state
from .wire import (
    MAX_SMALL_BODY_BYTES,
    ApiError,
    Dialect,
    by_public_id,
    endpoint,
    parse_json_body,
    processing_seconds_override,
    too_large,
)

REGION = "us-east-1"
DEFAULT_RECORDS = 500
MAX_RECORDS = 50_000  # Bedrock's default quota of records per job
RECORDS_TAG = "simulator:records"
FAIL_TAG = "simulator:fail-validation"
DEFAULT_TIMEOUT_HOURS = 168
JOB_IDENTIFIER = re.compile(
    r"((arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?[a-z0-9]{12})"
)
JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
S3_URI = re.compile(r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?")
TOKEN = re.compile(r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}")
JOB_PATH = "/model-invocation-job/"
VALIDATION_FAILURE = "The input data failed validation: a record is not valid JSON."


def secret_for(access_key_id: str) -> str | None:
    """The demo secret of an access key id: the simulator's IAM is the provider module's demo accounts."""
    for name, options in bedrock.SIMULATOR_OPTIONS.items():
        if options.get("access_key_id") == access_key_id and name in bedrock.SIMULATOR_KEYS:
            return bedrock.SIMULATOR_KEYS[name]
    return None


def sent_path(path: str) -> str:
    """The path as the SDK sent it: a job identifier (an ARN holds ':' and '/') percent-encoded as a URI label."""
    head, marker, rest = path.partition(JOB_PATH)
    if not marker:
        return path
    label, stop, _ = rest.rpartition("/stop") if rest.endswith("/stop") else (rest, "", "")
    from botocore.utils import percent_encode  # imported when a Bedrock job is asked for (bedrock.py says why)

    return f"{head}{marker}{percent_encode(label)}{stop}"


class BedrockDialect(Dialect):
    name = Provider.BEDROCK
    request_id_header = "x-amzn-RequestId"

    def new_request_id(self) -> str:
        return str(uuid.uuid4())

    def authenticate(self, request: HttpRequest) -> SimAccount:
        headers = {name.lower(): value for name, value in request.headers.items()}
        secret = secret_for(sigv4.access_key_id(headers.get("authorization", "")))
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > MAX_SMALL_BODY_BYTES:
            raise too_large(MAX_SMALL_BODY_BYTES)
        try:
            sigv4.verify(
                method=request.method,
                scheme=request.scheme,
                path=sent_path(request.path),
                query=request.META.get("QUERY_STRING", ""),
                headers=headers,
                body=request.body,
                secret=secret,
                service=bedrock.SERVICE,
                region=REGION,
                now=datetime.now(UTC),  # the signer's clock is the real one, whatever the simulator's
            )
        except sigv4.Refusal as refusal:
            raise ApiError(403, refusal.code, refusal.message) from None
        account = self.account_for_key(secret or "")
        if account is None:  # a demo key whose account is not seeded
            raise ApiError(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        return account

    def error_body(self, error: ApiError, request_id: str) -> dict:
        return {"message": error.message}

    def error_response(self, error: ApiError, request_id: str) -> JsonResponse:
        code = (
            error.kind if error.kind.endswith("Exception") else GENERIC_CODES.get(error.status, "ValidationException")
        )
        response = super().error_response(error, request_id)
        response["x-amzn-ErrorType"] = f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
        return response

    def not_found(self, message: str) -> ApiError:
        return ApiError(404, "ResourceNotFoundException", message)

    def bad_request(self, message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
        return ApiError(400, "ValidationException", message, param=param, code=code)

    def fault_error(self, fault: str, account: SimAccount | None) -> ApiError:
        if fault == Fault.RATE_LIMIT:
            return ApiError(429, "ThrottlingException", "Too many requests, please wait before trying again.")
        if fault == Fault.OVERLOADED:
            return ApiError(503, "ServiceUnavailableException", "Service is temporarily unavailable. Try again.")
        return ApiError(500, "InternalServerException", "The server encountered an internal error.")


GENERIC_CODES = defaultdict(
    lambda: "ValidationException", {404: "UnknownOperationException", 405: "UnknownOperationException"}
)
DIALECT = BedrockDialect()


def invalid(value: object, member: str, constraint: str) -> ApiError:
    shown = str(value)[:100]
    return DIALECT.bad_request(
        f"1 validation error detected: Value '{shown}' at '{member}' failed to satisfy constraint: {constraint}"
    )


def pattern_error(value: object, member: str, pattern: re.Pattern[str]) -> ApiError:
    return invalid(value, member, f"Member must satisfy regular expression pattern: {pattern.pattern}")


# --- jobs on the wire ----------------------------------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def aws_account_number(account: SimAccount) -> str:
    return str(int(hashlib.sha256(f"{account.provider}/{account.name}".encode()).hexdigest(), 16))[:12].rjust(12, "0")


def job_arn(batch: SimBatch) -> str:
    return f"arn:aws:bedrock:{REGION}:{aws_account_number(batch.account)}:model-invocation-job/{batch.public_id}"


def job_json(batch: SimBatch, state: BedrockState) -> dict:
    config = batch.job_config or {}
    body = {
        "jobArn": job_arn(batch),
        "jobName": config.get("jobName", batch.public_id),
        "modelId": batch.model,
        "clientRequestToken": config.get("clientRequestToken"),
        "roleArn": config.get("roleArn", ""),
        "status": state.status,
        "message": "The input data failed validation: a record is not valid JSON."
        if state.status == "Failed"
        else None,
        "submitTime": iso(batch.created_at),
        "lastModifiedTime": iso(state.last_modified_at),
        "endTime": iso(state.ended_at),
        "inputDataConfig": config.get("inputDataConfig"),
        "outputDataConfig": config.get("outputDataConfig"),
        "vpcConfig": config.get("vpcConfig"),
        "timeoutDurationInHours": batch.timeout_hours,
        "jobExpirationTime": iso(batch.plan().expires_at),
        "modelInvocationType": config.get("modelInvocationType"),
    }
    if state.records is not None:
        names = ("totalRecordCount", "processedRecordCount", "successRecordCount", "errorRecordCount")
        body.update(zip(names, state.records, strict=True))
    return {name: value for name, value in body.items() if value is not None}


def state_of(batch: SimBatch) -> BedrockState:
    return bedrock_state(batch.plan(), clock.now())


def find_job(account: SimAccount, identifier: str) -> SimBatch:
    if not JOB_IDENTIFIER.fullmatch(identifier):
        raise pattern_error(identifier, "jobIdentifier", JOB_IDENTIFIER)
    job_id = identifier[-12:]
    batch = by_public_id(account.batches, job_id)
    if batch is None or (identifier != job_id and identifier != job_arn(batch)):
        raise DIALECT.not_found(f"The specified model invocation job {identifier} was not found.")
    return batch


# --- the operations ------------------------------------------------------------------------------------------------


@endpoint(DIALECT, "GET")
def get_job(request: HttpRequest, account: SimAccount, job: str) -> JsonResponse:
    batch = find_job(account, job)
    return JsonResponse(job_json(batch, state_of(batch)))


@endpoint(DIALECT, "POST")
def stop_job(request: HttpRequest, account: SimAccount, job: str) -> JsonResponse:
    with transaction.atomic():
        batch = find_job(account, job)
        batch = SimBatch.objects.select_for_update().get(pk=batch.pk)
        state = state_of(batch)
        if state.status not in BEDROCK_STOPPABLE:
            raise ApiError(400, "ConflictException", f"The job cannot be stopped because it is {state.status}.")
        batch.cancel_initiated_at = clock.now()
        batch.save(update_fields=["cancel_initiated_at"])
    return JsonResponse({})


@endpoint(DIALECT, "GET")
def list_jobs(request: HttpRequest, account: SimAccount) -> JsonResponse:
    limit = whole_number(request.GET.get("maxResults", "1000"), "maxResults", 1, 1000)
    order = request.GET.get("sortOrder", "Descending")
    if order not in ("Ascending", "Descending"):
        raise invalid(order, "sortOrder", "Member must satisfy enum value set: [Ascending, Descending]")
    if request.GET.get("sortBy", "CreationTime") != "CreationTime":
        raise invalid(request.GET["sortBy"], "sortBy", "Member must satisfy enum value set: [CreationTime]")
    status = request.GET.get("statusEquals")
    name = request.GET.get("nameContains")
    jobs = list(account.batches.order_by(*(("-created_at", "-id") if order == "Descending" else ("created_at", "id"))))
    after = page_cursor(request.GET.get("nextToken"), order)
    if after is not None:
        ids = [job.public_id for job in jobs]
        jobs = jobs[ids.index(after) + 1 :] if after in ids else []  # a job gone since: nothing after it
    summaries: list[dict] = []
    more = False
    for batch in jobs:
        state = state_of(batch)
        if (status and state.status != status) or (name and name not in job_json(batch, state)["jobName"]):
            continue
        if len(summaries) == limit:
            more = True
            break
        summaries.append(job_json(batch, state))
    answer: dict = {"invocationJobSummaries": summaries}
    if more:
        answer["nextToken"] = next_token(summaries[-1]["jobArn"][-12:], order)
    return JsonResponse(answer)


def whole_number(raw: str, member: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise invalid(raw, member, "Member must be a whole number") from None
    if not low <= value <= high:
        raise invalid(value, member, f"Member must have value between {low} and {high}")
    return value


def next_token(last_id: str, order: str) -> str:
    return base64.b64encode(json.dumps({"after": last_id, "order": order}).encode()).decode()


def page_cursor(token: str | None, order: str) -> str | None:
    if token is None:
        return None
    try:
        cursor = json.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError):
        cursor = None
    if not isinstance(cursor, dict) or cursor.get("order") != order or not isinstance(cursor.get("after"), str):
        raise DIALECT.bad_request("The pagination token is invalid.")
    return cursor["after"]


@endpoint(DIALECT, "POST")
def create_job(request: HttpRequest, account: SimAccount) -> JsonResponse:
    body = parse_json_body(request, DIALECT)
    config = validated_create(body)
    tags = {tag["key"]: tag["value"] for tag in config.get("tags", [])}
    records = tags.get(RECORDS_TAG, str(DEFAULT_RECORDS))
    total = whole_number(records, f"tags.{RECORDS_TAG}", 1, MAX_RECORDS)
    token = config.get("clientRequestToken")
    with transaction.atomic():
        same = account.batches.filter(job_config__clientRequestToken=token).first() if token else None
        if same is not None:  # the same request again: Bedrock ignores it and answers the same job
            return JsonResponse({"jobArn": job_arn(same)})
        if account.batches.filter(job_config__jobName=config["jobName"]).exists():
            raise ApiError(400, "ConflictException", f"A job named {config['jobName']} already exists.")
        batch = SimBatch.planned(
            account=account,
            public_id=bedrock_job_id(),
            total=total,
            model=config["modelId"],
            validating_seconds=settings.SIMULATOR_VALIDATING_SECONDS,
            timeout_hours=config.get("timeoutDurationInHours", DEFAULT_TIMEOUT_HOURS),
            job_config={name: value for name, value in config.items() if name != "timeoutDurationInHours"},
            validation_errors={"tag": FAIL_TAG} if tags.get(FAIL_TAG, "").lower() == "true" else None,
            output_file_id="",
            error_file_id="",
            **processing_seconds_override(request, DIALECT),
        )
        try:
            batch.save()
        except IntegrityError:  # a job id drawn twice: one in 36^12
            raise DIALECT.fault_error(Fault.SERVER_ERROR, account) from None
    return JsonResponse({"jobArn": job_arn(batch)})


def validated_create(body: dict) -> dict:
    """The create request's fields, checked as the service model constrains them."""
    for member in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig"):
        if body.get(member) is None:
            raise invalid("null", member, "Member must not be null")
    checks = (("jobName", JOB_NAME, 63), ("roleArn", ROLE_ARN, 2048), ("modelId", re.compile(r".+"), 2048))
    for member, pattern, longest in checks:
        value = body[member]
        if not isinstance(value, str) or len(value) > longest or not pattern.fullmatch(value):
            raise pattern_error(value, member, pattern)
    for member, union, inner in (
        ("inputDataConfig", "s3InputDataConfig", "s3Uri"),
        ("outputDataConfig", "s3OutputDataConfig", "s3Uri"),
    ):
        config = body[member]
        s3 = config.get(union) if isinstance(config, dict) else None
        uri = s3.get(inner) if isinstance(s3, dict) else None
        if not isinstance(uri, str) or len(uri) > 1024 or not S3_URI.fullmatch(uri):
            raise pattern_error(uri, f"{member}.{union}.{inner}", S3_URI)
    timeout = body.get("timeoutDurationInHours")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or not 24 <= timeout <= 168):
        raise invalid(timeout, "timeoutDurationInHours", "Member must have value between 24 and 168")
    token = body.get("clientRequestToken")
    if token is not None and (not isinstance(token, str) or not TOKEN.fullmatch(token)):
        raise pattern_error(token, "clientRequestToken", TOKEN)
    tags = body.get("tags", [])
    if not isinstance(tags, list) or len(tags) > 200 or not all(is_tag(tag) for tag in tags):
        raise invalid("tags", "tags", "Member must be a list of at most 200 {key, value} tags")
    known = (
        "jobName roleArn modelId inputDataConfig outputDataConfig timeoutDurationInHours clientRequestToken "
        "tags vpcConfig modelInvocationType"
    ).split()
    return {name: body[name] for name in known if body.get(name) is not None}


def is_tag(tag: object) -> bool:
    return (
        isinstance(tag, dict)
        and isinstance(tag.get("key"), str)
        and isinstance(tag.get("value"), str)
        and 1 <= len(tag["key"]) <= 128
        and len(tag["value"]) <= 256
        and "\x00" not in tag["key"] + tag["value"]
    )
