"""Amazon Bedrock batch inference (model invocation jobs) on the control plane, bedrock.{region}.amazonaws.com.

Requests are signed with AWS Signature Version 4 by botocore's own signer, with credentials from
botocore's credential chain (environment, profile, role...) or an account's explicit access key;
httpx stays the transport, so every deadline and stream guard holds. The job's records are in the
customer's S3 bucket: the detail page names where, and nothing here reads them.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from ..redaction import redact
from .base import AccountSpec, BadResponse, Batch, Connection, Counts, NotFound, ProviderError, finished_count
from .errors import (
    Secrets,
    Unreadable,
    as_object,
    checked_json,
    count,
    depth_within,
    epoch_time,
    iso_time,
    status_word,
    unreadable_batch,
)
from .http import BatchAPI
from .lines import EMPTY, ResultLine, as_text, token_count
from .usage import bedrock_usage, model_name

if TYPE_CHECKING:
    from botocore.credentials import Credentials

# botocore is imported where it signs or finds credentials: it adds 0.1 CPU-s to a Django process's
# 0.7 s start, and most processes (migrate, shell, a web server reading the store) never sign.

NAME = "bedrock"  # in account keys, the store and URLs
LABEL = "Amazon Bedrock"  # shown to operators
SERVICE = "bedrock"  # SigV4's signing name
DEFAULT_REGION = "us-east-1"
SIMULATOR_PATH = "/bedrock"  # where the embedded simulator speaks this API
# Its demo accounts: the secret access key by name, and the access key id and region by name.
SIMULATOR_KEYS = {"ops": "sim-secret-ops", "research": "sim-secret-research"}
SIMULATOR_OPTIONS = {
    "ops": {"access_key_id": "AKIASIMULATOROPS", "region": "us-east-1"},
    "research": {"access_key_id": "AKIASIMULATORRESEARCH", "region": "us-east-1"},
}
# Its own fields in a BATCH_ACCOUNTS_FILE entry (the secret access key comes by api_key_env).
ACCOUNT_OPTIONS = ("region", "profile", "access_key_id")
KEY_IS_OPTIONAL = True  # without a secret access key, botocore's credential chain signs
REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}$")
# The job id: the last part of its ARN, which the jobIdentifier of every job path accepts.
BATCH_ID = re.compile(r"^[a-z0-9]{12}$")
JOB_ARN = re.compile(
    r"^arn:aws(?:-[a-z]{1,10}){0,3}:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/([a-z0-9]{12})$"
)
PAGE_TOKEN = re.compile(r"^\S{1,2048}$")
REQUEST_ID_HEADER = "x-amzn-RequestId"
ERROR_TYPE_HEADER = "x-amzn-ErrorType"
MAX_PAGE_LIMIT = 1000  # ListModelInvocationJobs' maxResults goes up to 1,000
STATUSES = (
    "Submitted",
    "Validating",
    "Scheduled",
    "InProgress",
    "Stopping",
    "Stopped",
    "Completed",
    "PartiallyCompleted",
    "Failed",
    "Expired",
)
ENDED = frozenset({"Stopped", "Completed", "PartiallyCompleted", "Failed", "Expired"})
CANCELABLE = frozenset({"Submitted", "Validating", "Scheduled", "InProgress"})
# PartiallyCompleted: the job timed out with records left; Expired: it never started before its timeout.
ENDED_BADLY = frozenset({"Failed", "Expired", "PartiallyCompleted"})
CANCELED = frozenset({"Stopped"})  # ended statuses that say a cancel (a stop) took effect
COUNTS_ARE_FINAL_ONLY = False  # the record counts move as records are processed
# The records are JSONL objects under the job's S3 output prefix: named on the detail page, not read here.
RESULT_SOURCES = ("s3",)
DEFAULT_RESULT_SOURCE = "s3"
LINES_NAME_SOURCE = False
# Shown on the detail page (dotted paths into its JSON): where its records are first.
DETAIL_FIELDS = (
    "jobName",
    "outputDataConfig.s3OutputDataConfig.s3Uri",
    "inputDataConfig.s3InputDataConfig.s3Uri",
    "modelId",
    "modelInvocationType",
    "timeoutDurationInHours",
    "message",
    "roleArn",
    "jobArn",
)
TIMESTAMPS = ("submitTime", "lastModifiedTime", "endTime", "jobExpirationTime")
STATUS = re.compile(r"[A-Z][A-Za-z]{0,39}")  # its status words are UpperCamelCase
COUNTS = ("totalRecordCount", "processedRecordCount", "successRecordCount", "errorRecordCount")
MAX_TIMEOUT_HOURS = 168  # timeoutDurationInHours is 24..168


# --- accounts ----------------------------------------------------------------------------------------------------


def base_url_for(options: Mapping[str, str]) -> str:
    """The control plane of the account's region (an accounts-file entry must name one)."""
    region = options.get("region", "")
    if not REGION.fullmatch(region):
        raise ValueError(f"a {LABEL} account needs its AWS region (e.g. us-east-1), not {region[:40]!r}")
    return f"https://bedrock.{region}.amazonaws.com"


DEFAULT_BASE_URL = base_url_for({"region": DEFAULT_REGION})


def from_environment(environ: Mapping[str, str]) -> list[AccountSpec]:
    """AWS_BEDROCK_REGION opts in: one account in that region, signed by botocore's credential chain
    (which reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, roles...).

    AWS_REGION and AWS credentials alone do not make one: deployments hold them for other services
    (S3, RDS), and watching Bedrock there would only show access errors. AWS_ENDPOINT_URL_BEDROCK
    (botocore's own variable) is its address, if set; AWS_BEDROCK_ACCOUNT_NAME its name."""
    region = environ.get("AWS_BEDROCK_REGION", "")
    if not region:
        return []
    options = {"region": region}
    return [
        AccountSpec(
            name=environ.get("AWS_BEDROCK_ACCOUNT_NAME") or "default",
            base_url=environ.get("AWS_ENDPOINT_URL_BEDROCK") or base_url_for(options),
            api_key="",
            options=options,
        )
    ]


class SigV4(httpx.Auth):
    """Each request signed by botocore's SigV4Auth (method, full URL, headers, body), with credentials
    frozen per request: those from a role or SSO refresh themselves."""

    requires_request_body = True

    def __init__(self, *, credentials: Credentials | None, region: str, problem: str = ""):
        self.credentials = credentials
        self.region = region
        self.problem = problem  # why there are no credentials, in an operator's words

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.credentials is None:
            raise ProviderError(self.problem or f"{LABEL}: no AWS credentials were found.", kind="credentials")
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.utils import percent_encode_sequence

        if request.url.query:
            # Sent as AWS canonicalizes it (RFC 3986: a space is %20, not httpx's "+"), so that what is
            # signed is what the service reads.
            query = percent_encode_sequence(request.url.params.multi_items())
            request.url = request.url.copy_with(query=query.encode("ascii"))
        signed = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={name: request.headers[name] for name in SIGNED_HEADERS if name in request.headers},
        )
        SigV4Auth(self.credentials.get_frozen_credentials(), SERVICE, self.region).add_auth(signed)
        for name, value in signed.headers.items():
            request.headers[name] = value
        yield request


# What the signature covers besides the host: headers no proxy or server rewrites.
SIGNED_HEADERS = ("content-type",)


def chain_credentials(profile: str) -> tuple[Credentials | None, str]:
    """botocore's credential chain (for `profile`, else its default): (credentials, or None and why not)."""
    from botocore.exceptions import BotoCoreError
    from botocore.session import Session

    try:
        credentials = Session(profile=profile or None).get_credentials()
    except BotoCoreError as error:
        return None, f"{LABEL}: the AWS credentials cannot be loaded ({type(error).__name__})."
    if credentials is None:
        return None, f"{LABEL}: no AWS credentials were found (environment, profile or role)."
    return credentials, ""


def region_of(account: AccountSpec) -> str:
    """The signing region: the account's own, else the one its control-plane address names."""
    region = account.options.get("region", "")
    if region:
        return region
    found = re.match(r"^https://bedrock\.([a-z0-9-]+)\.amazonaws\.com", account.base_url)
    return found.group(1) if found else DEFAULT_REGION


def connect(account: AccountSpec) -> Connection:
    """An explicit access key id with its secret (the api_key), else the credential chain (for the
    account's profile, if it names one). Secrets: the secret access key and session token it signs with."""
    from botocore.credentials import Credentials

    if account.api_key and account.options.get("access_key_id"):
        credentials: Credentials | None = Credentials(account.options["access_key_id"], account.api_key)
        problem = ""
    else:
        credentials, problem = chain_credentials(account.options.get("profile", ""))
    frozen = credentials.get_frozen_credentials() if credentials is not None else None
    secrets = (frozen.secret_key, frozen.token) if frozen is not None else ()
    return Connection(
        auth=SigV4(credentials=credentials, region=region_of(account), problem=problem),
        secrets=tuple(dict.fromkeys(secret for secret in (*secrets, account.api_key) if secret)),
    )


# --- one job -----------------------------------------------------------------------------------------------------


def job_id(data: Any, secrets: Secrets = ()) -> str:
    """The job's id, from its ARN, if the ARN has the documented shape (and holds none of `secrets`), else ""."""
    arn = data.get("jobArn") if isinstance(data, dict) else None
    found = JOB_ARN.fullmatch(arn) if isinstance(arn, str) else None
    if found is None or redact(arn, secrets) != arn:
        return ""
    return found.group(1)


def parse_time(value: Any, field: str = "timestamp") -> datetime | None:
    """An ISO 8601 timestamp (as the service sends them), or epoch seconds (botocore reads either)."""
    if isinstance(value, str):
        return iso_time(value, field)
    return epoch_time(value, field)


def record_counts(data: dict[str, Any]) -> dict[str, int] | None:
    """The four record counts, or None while the job does not report them (they are recent, and optional)."""
    values = {name: data.get(name) for name in COUNTS}
    if any(value is None for value in values.values()):
        return None
    return {name: count(value, name) for name, value in values.items()}


def counts_of(status: str, records: dict[str, int] | None) -> Counts:
    if records is None:
        return Counts(total=0, processing=0, succeeded=0, errored=0, canceled=0, expired=0, known=False)
    total = records["totalRecordCount"]
    succeeded, errored = records["successRecordCount"], records["errorRecordCount"]
    done = max(records["processedRecordCount"], succeeded + errored)
    unfinished = max(0, total - done)
    is_ended = status in ENDED
    return Counts(
        total=total,
        processing=0 if is_ended else unfinished,
        succeeded=succeeded,
        errored=errored,
        canceled=unfinished if status == "Stopped" else 0,
        expired=unfinished if status in ("PartiallyCompleted", "Expired") else 0,
    )


def output_uri(data: Any) -> str:
    """Where the job writes its records (outputDataConfig.s3OutputDataConfig.s3Uri), or ""."""
    config = data.get("outputDataConfig") if isinstance(data, dict) else None
    s3 = config.get("s3OutputDataConfig") if isinstance(config, dict) else None
    uri = s3.get("s3Uri") if isinstance(s3, dict) else None
    return uri if isinstance(uri, str) and uri.startswith("s3://") and len(uri) <= 1024 else ""


def parse_batch(data: Any, *, account: str, secrets: Secrets = ()) -> Batch:
    """A Batch from a job summary or a GetModelInvocationJob answer, which are untrusted: anything odd
    raises UnreadableBatch (an ARN holding one of `secrets`, the configured keys, is no ARN).

    A status word we do not know (one the API may add) is kept as is: not ended, not cancelable.
    """
    batch_id = job_id(data, secrets)
    try:
        data = as_object(data, "the job")
        if not batch_id:
            # It would go into our URLs and back into upstream ones: refuse it rather than guess.
            raise Unreadable("jobArn", "is missing or not a model invocation job ARN")
        status = status_word(data, "status", pattern=STATUS)
        records = record_counts(data)
        timeout = data.get("timeoutDurationInHours")
        if timeout is not None and not 0 <= count(timeout, "timeoutDurationInHours") <= MAX_TIMEOUT_HOURS:
            raise Unreadable("timeoutDurationInHours", f"is outside 0..{MAX_TIMEOUT_HOURS}")
        timestamps = {name: parse_time(data.get(name), name) for name in TIMESTAMPS}
        if timestamps["submitTime"] is None:
            raise Unreadable("submitTime", "is missing")
        if not depth_within(data):
            raise Unreadable("the job", "nests deeper than we read")
    except Unreadable as problem:
        raise unreadable_batch(LABEL, "batch inference job", batch_id, problem) from None
    is_ended = status in ENDED
    return Batch(
        provider=NAME,
        account=account,
        id=batch_id,
        status=status,
        is_ended=is_ended,
        can_cancel=status in CANCELABLE,
        counts=counts_of(status, records),
        counts_are_final_only=COUNTS_ARE_FINAL_ONLY,
        created_at=timestamps["submitTime"],
        expires_at=timestamps["jobExpirationTime"],
        ended_at=(timestamps["endTime"] or timestamps["lastModifiedTime"]) if is_ended else None,
        cancel_initiated_at=stop_requested_at(status, timestamps),
        timestamps=timestamps,
        raw=data,
        # Its name is what its owner calls it: shown and searched as its labels (a job has no metadata).
        labels={"jobName": data["jobName"]} if isinstance(data.get("jobName"), str) and data["jobName"] else {},
        model=model_name(data.get("modelId")),
    )


def stop_requested_at(status: str, timestamps: Mapping[str, datetime | None]) -> datetime | None:
    """Bedrock does not say when a stop was asked for: while Stopping, the job's last change is the
    stop; once Stopped, its end is the latest the stop can have been asked for."""
    if status == "Stopping":
        return timestamps["lastModifiedTime"]
    if status == "Stopped":
        return timestamps["endTime"] or timestamps["lastModifiedTime"]
    return None


def parse_result_line(number: int, data: dict, raw: str, source: str = "") -> ResultLine:
    """One record of the job's output (.jsonl.out): recordId, modelInput, and modelOutput or error.

    Untrusted: odd fields become empty. Not read by this dashboard today (see RESULT_SOURCES); kept so
    that a download from S3, done elsewhere, reads the same way."""
    output = data.get("modelOutput")
    if not isinstance(output, dict):
        output = EMPTY
    usage = output.get("usage")
    if not isinstance(usage, dict):
        usage = EMPTY
    error = data.get("error")
    if isinstance(error, dict):
        kind, code, message = "errored", error.get("errorCode"), error.get("errorMessage")
    elif output is not EMPTY:
        kind, code, message = "succeeded", None, None
    else:
        kind, code, message = "errored", "no_output", "This record has neither a model output nor an error."
    return ResultLine(
        number,
        as_text(data.get("recordId")),
        kind,
        source,
        as_text(output.get("model")),
        as_text(output.get("stop_reason")),
        token_count(usage.get("input_tokens")),
        token_count(usage.get("output_tokens")),
        as_text(code),
        as_text(message),
        raw,
        bedrock_usage(output) if output is not EMPTY else None,
    )


def counts_at_cancel(batch: Batch) -> dict | None:
    """What the audit trail keeps of the job as its stop was accepted: its record counts, read right
    after the stop (which answers an empty body); None when the job did not report them."""
    return {name: batch.raw.get(name) for name in COUNTS} if batch.counts.known else None


def after_cancel(batch: Batch, counts_at_cancel: dict | None) -> tuple[int | None, str]:
    """For the cancel story: how many records finished after the stop (None: unknown), and why."""
    when = (
        f"{LABEL} does not say when a stop was requested: the time shown is when the job last changed "
        "while stopping, or when it stopped. Records processed before the stop are counted as succeeded "
        "or errored; the rest as canceled."
    )
    done_then = finished_count(counts_at_cancel, ("successRecordCount", "errorRecordCount"))
    if done_then is None:
        return None, f"{LABEL} answers a stop without the job's counts. {when}"
    finished_after = max(0, batch.counts.succeeded + batch.counts.errored - done_then)
    return finished_after, (
        f"{done_then} records had finished when the stop was accepted (read right after it, recorded in "
        f"our audit trail). {when}"
    )


# --- the API -----------------------------------------------------------------------------------------------------


def aws_error(response: httpx.Response, body: Any) -> tuple[Any, Any]:
    """An AWS REST-JSON error's (code, message): the code from x-amzn-ErrorType ("Code:namespace") or
    the body's __type or code, the message from the body's message (or Message)."""
    fields = body if isinstance(body, dict) else {}
    code = response.headers.get(ERROR_TYPE_HEADER, "").split(":", 1)[0] or fields.get("__type") or fields.get("code")
    if isinstance(code, str):
        code = code.rsplit("#", 1)[-1]  # "com.amazon.coral.service#ValidationException"
    message = fields.get("message", fields.get("Message"))
    if message is None:
        message = "" if code or isinstance(body, dict) else None
    return code or "", message


class BedrockProvider(BatchAPI):
    """A refused stop is a 400 (ValidationException or ConflictException) for a job that cannot be stopped now."""

    name = NAME
    label = LABEL
    request_id_header = REQUEST_ID_HEADER
    batch_id = BATCH_ID
    batches_path = "/model-invocation-job"
    cancel_suffix = "/stop"
    pages_by_id = False
    answers_cancel_with_batch = False  # the stop answers {}: the job is read after
    parse = staticmethod(parse_batch)

    @property
    def list_path(self) -> str:
        return "/model-invocation-jobs"

    def list_params(self, *, limit: int, after: str | None) -> dict[str, Any]:
        params = {"maxResults": limit, "sortBy": "CreationTime", "sortOrder": "Descending"}
        return {**params, **({"nextToken": after} if after else {})}

    def list_answer(self, body: dict[str, Any]) -> tuple[Any, bool, str | None]:
        token = body.get("nextToken")
        if token is None or token == "":
            return body.get("invocationJobSummaries"), False, None
        if not (isinstance(token, str) and PAGE_TOKEN.fullmatch(token)):
            raise BadResponse(f"{LABEL} sent a job list whose nextToken is not a page token.")
        return body.get("invocationJobSummaries"), True, token

    def _checked(self, response: httpx.Response) -> dict[str, Any]:
        return checked_json(
            response,
            provider_label=self.label,
            request_id_header=self.request_id_header,
            secrets=self.secrets,
            read_error=aws_error,
        )

    def result_sources(self, batch: Batch) -> list[str]:
        return []  # the records are in S3, which this dashboard does not read

    def results_elsewhere(self, batch: Batch) -> str:
        return results_note(batch)

    @contextmanager
    def open_results(
        self, batch_id: str, source: str = DEFAULT_RESULT_SOURCE, *, known: Batch | None = None
    ) -> Iterator[httpx.Response]:
        batch = known if known is not None and known.id == batch_id else self.retrieve(batch_id)
        raise NotFound(results_note(batch), status=404)
        yield  # pragma: no cover (a generator, for contextmanager)

    def stream_results(self, batch_id: str) -> Iterator[bytes]:
        raise NotFound(results_note(self.retrieve(batch_id)), status=404)
        yield b""  # pragma: no cover


def results_note(batch: Batch) -> str:
    """Where a job's records are, in an operator's words: this dashboard does not read S3."""
    uri = output_uri(batch.raw)
    where = f"under {uri}" if uri else "in the S3 output location the job was created with"
    return (
        f"{LABEL} writes this job's records to S3, {where}, as it processes them (a .jsonl.out file per "
        "input file, and a manifest.json.out with the counts). This dashboard does not read S3: open them "
        "with your AWS tools."
    )


API = BedrockProvider  # what accounts.provider_for makes for an account of this provider
