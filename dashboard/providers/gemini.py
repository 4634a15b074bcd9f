"""Gemini API Batch Mode (/v1beta/batches): each batch a long-running Operation whose metadata is the batch.

Verified against the google-genai SDK (batches.py: `_BatchJob_from_mldev`, the `batches/{name}`,
`batches/{name}:cancel` and `{model}:batchGenerateContent` paths, `_ListBatchJobsResponse_from_mldev`;
files.py: `files/{name}:download?alt=media`) and answers recorded from the API (tests/fixtures/gemini/).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx

from .base import AccountSpec, BadResponse, Batch, Connection, Counts, NotFound, finished_count
from .errors import (
    MAX_COUNT,
    Secrets,
    Unreadable,
    as_object,
    count,
    depth_within,
    iso_time,
    known_id,
    unreadable_batch,
)
from .http import BatchAPI
from .lines import EMPTY, ResultLine, as_text, token_count
from .transport import jsonl_lines
from .usage import QUICK_MAX, gemini_usage, model_name

NAME = "gemini"  # in account keys, the store and URLs
LABEL = "Gemini"  # shown to operators
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"  # the paths below carry the API version
SIMULATOR_PATH = "/gemini"  # where the embedded simulator speaks this API
SIMULATOR_KEYS = {"ops": "gemini-sim-ops", "research": "gemini-sim-research"}  # its demo accounts
SIMULATOR_OPTIONS: dict[str, dict[str, str]] = {}  # its demo accounts need nothing but a key
ACCOUNT_OPTIONS: tuple[str, ...] = ()  # no fields of its own in BATCH_ACCOUNTS_FILE: a key and a base_url
KEY_IS_OPTIONAL = False  # an account without an API key is a configuration error
API_VERSION = "v1beta"
BATCH_PREFIX = "batches/"
FILE_PREFIX = "files/"
# The part after "batches/" (real ones: 36 lower-case letters and digits). Nothing that could add a
# path segment, a ":method" or a query goes into our URLs: no "/", ":", ".", "?" or "%".
BATCH_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
FILE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
REQUEST_ID_HEADER = "x-request-id"  # Google sends none on this API; whatever a proxy adds is kept
MAX_PAGE_LIMIT = 100  # pageSize: the list serves at most this many (an assumption: not documented)
# BATCH_STATE_* without its prefix, lower-cased: the status filter and CSS classes take lower-case
# words, and the SDK (JOB_STATE_*) and the API (BATCH_STATE_*) name the same states differently.
STATUSES = ("pending", "running", "succeeded", "failed", "cancelled", "expired")
ENDED = frozenset({"succeeded", "failed", "cancelled", "expired"})
CANCELABLE = frozenset({"pending", "running"})  # the SDK: "Only available for batch jobs that are running or pending"
ENDED_BADLY = frozenset({"failed", "expired"})
CANCELED = frozenset({"cancelled"})  # ended statuses that say a cancel took effect
COUNTS_ARE_FINAL_ONLY = False  # batchStats move as requests finish
RESULT_SOURCES = ("responses",)  # the responses file, or the responses inlined in the batch
DEFAULT_RESULT_SOURCE = "responses"
LINES_NAME_SOURCE = False  # one source
TIMESTAMPS = ("createTime", "updateTime", "endTime")
# Shown on the detail page (dotted paths into the Operation).
DETAIL_FIELDS = (
    "metadata.model",
    "metadata.displayName",
    "metadata.inputConfig.fileName",
    "metadata.output.responsesFile",
    "error.message",
)
# A batch pending or running for more than 48 hours expires (the Batch Mode guide); the API sends no expiry time.
EXPIRY_WINDOW = timedelta(hours=48)
STATE = re.compile(r"BATCH_STATE_([A-Z][A-Z_]{0,39})")
INT64_TEXT = re.compile(r"[0-9]{1,19}")  # proto3 JSON writes int64 as a string of digits
COUNT_FIELDS = ("requestCount", "successfulRequestCount", "failedRequestCount", "pendingRequestCount")
INLINED = ("output", "inlinedResponses", "inlinedResponses")  # under metadata; also under response


def auth_headers(api_key: str) -> dict[str, str]:
    return {"x-goog-api-key": api_key}


def from_environment(environ: Mapping[str, str]) -> list[AccountSpec]:
    """GOOGLE_API_KEY, else GEMINI_API_KEY (google-genai's order), GOOGLE_GEMINI_BASE_URL (the SDK's
    variable; no version) and GEMINI_ACCOUNT_NAME: one account, as the SDK reads them."""
    api_key = environ.get("GOOGLE_API_KEY") or environ.get("GEMINI_API_KEY") or ""
    if not api_key:
        return []
    return [
        AccountSpec(
            name=environ.get("GEMINI_ACCOUNT_NAME") or "default",
            base_url=environ.get("GOOGLE_GEMINI_BASE_URL") or DEFAULT_BASE_URL,
            api_key=api_key.strip(),  # as the SDK sends it
        )
    ]


def base_url_for(options: Mapping[str, str]) -> str:
    """An accounts-file entry without a base_url: the public API."""
    return DEFAULT_BASE_URL


def connect(account: AccountSpec) -> Connection:
    return Connection(headers=auth_headers(account.api_key), secrets=(account.api_key,))


# --- the batch ---------------------------------------------------------------------------------------------------


def batch_id_of(data: Any, secrets: Secrets = ()) -> str:
    """The id after "batches/" in the Operation's name, if it has the id shape and holds no key; else ""."""
    name = data.get("name") if isinstance(data, dict) else None
    if not (isinstance(name, str) and name.startswith(BATCH_PREFIX)):
        return ""
    return known_id({"id": name[len(BATCH_PREFIX) :]}, BATCH_ID, secrets)


def status_of(batch: dict[str, Any]) -> str:
    value = batch.get("state")
    if value is None:
        raise Unreadable("metadata.state", "is missing")
    match = STATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise Unreadable("metadata.state", "is not a batch state")
    return match.group(1).lower()


def int64_count(value: Any, field: str) -> int:
    """A count as proto3 JSON writes an int64 (a string of digits; a number is read too); absent is 0."""
    if isinstance(value, str):
        if not INT64_TEXT.fullmatch(value):
            raise Unreadable(field, "is not a whole number")
        value = int(value)
        if value > MAX_COUNT:
            raise Unreadable(field, f"is outside 0..{MAX_COUNT}")
    return count(value, field, missing_is_zero=True)


def counts_of(batch: dict[str, Any], status: str) -> Counts:
    """batchStats as our counts. proto3 JSON leaves out counts that are 0 (a pending batch sends no
    successfulRequestCount), so within batchStats an absent count is 0; without batchStats, or without
    its requestCount (no batch holds 0 requests), nothing is known yet."""
    stats = batch.get("batchStats")
    stats = {} if stats is None else as_object(stats, "metadata.batchStats")
    total, succeeded, failed, pending = (
        int64_count(stats.get(name), f"metadata.batchStats.{name}") for name in COUNT_FIELDS
    )
    if "requestCount" not in stats:
        return Counts(total=0, processing=0, succeeded=0, errored=0, canceled=0, expired=0, known=False)
    ended = status in ENDED
    # Requests an ended batch never ran: canceled after a cancel, expired after expiry. Those of a failed
    # batch are in no outcome (the status says why none ran); none count as processing once ended.
    never_ran = max(0, total - succeeded - failed)
    return Counts(
        total=total,
        processing=0 if ended else pending,
        succeeded=succeeded,
        errored=failed,
        canceled=never_ran if status == "cancelled" else 0,
        expired=never_ran if status == "expired" else 0,
    )


def without_inlined_responses(data: dict[str, Any]) -> dict[str, Any]:
    """The Operation with its inlined responses (up to tens of MB) replaced by how many there are: the
    store keeps every batch's JSON and reads it for every row; the results are read from Gemini when shown."""

    def stripped(holder: Any) -> Any:
        inner = holder.get("inlinedResponses") if isinstance(holder, dict) else None
        listed = inner.get("inlinedResponses") if isinstance(inner, dict) else None
        if not isinstance(listed, list):
            return holder
        note = f"{len(listed)} inlined responses: read from {LABEL} when the results are shown"
        return {**holder, "inlinedResponses": {**inner, "inlinedResponses": note}}

    metadata = data.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("output"), dict):
        data = {**data, "metadata": {**metadata, "output": stripped(metadata["output"])}}
    if isinstance(data.get("response"), dict):
        data = {**data, "response": stripped(data["response"])}
    return data


def parse_batch(data: Any, *, account: str, secrets: Secrets = ()) -> Batch:
    """A Batch from the Operation's JSON, which is untrusted: anything odd raises UnreadableBatch
    (an id holding one of `secrets`, the configured keys, is no id).

    A BATCH_STATE_ we do not know (one the API may add) is kept, lower-cased: not ended, not cancelable.
    """
    batch_id = batch_id_of(data, secrets)
    try:
        data = as_object(data, "the batch")
        if not batch_id:
            # It would go into our URLs and back into upstream ones: refuse it rather than guess.
            raise Unreadable("name", "is missing or not batches/ and a batch id")
        batch = as_object(data.get("metadata"), "metadata")
        status = status_of(batch)
        counts = counts_of(batch, status)
        timestamps = {name: iso_time(batch.get(name), f"metadata.{name}") for name in TIMESTAMPS}
        if timestamps["createTime"] is None:
            raise Unreadable("metadata.createTime", "is missing")
        display_name = batch.get("displayName")
        data = without_inlined_responses(data)
        if not depth_within(data):
            raise Unreadable("the batch", "nests deeper than we read")
    except Unreadable as problem:
        raise unreadable_batch(LABEL, "batch", batch_id, problem) from None
    is_ended = status in ENDED
    return Batch(
        provider=NAME,
        account=account,
        id=batch_id,
        status=status,
        is_ended=is_ended,
        can_cancel=status in CANCELABLE,
        counts=counts,
        counts_are_final_only=COUNTS_ARE_FINAL_ONLY,
        created_at=timestamps["createTime"],
        expires_at=timestamps["createTime"] + EXPIRY_WINDOW,
        ended_at=(timestamps["endTime"] or timestamps["updateTime"]) if is_ended else None,
        cancel_initiated_at=None,  # Gemini does not say when a cancel was asked for
        timestamps=timestamps,
        raw=data,
        labels={"displayName": display_name} if isinstance(display_name, str) and display_name else {},
        model=model_name(batch.get("model"), prefix="models/"),
    )


def output_of(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """The batch's output (metadata.output, as the SDK reads it; else the Operation's response)."""
    metadata = raw.get("metadata")
    output = metadata.get("output") if isinstance(metadata, Mapping) else None
    if not isinstance(output, Mapping):
        output = raw.get("response")
    return output if isinstance(output, Mapping) else EMPTY


# --- result lines ------------------------------------------------------------------------------------------------


def parse_result_line(number: int, data: dict, raw: str, source: str = "") -> ResultLine:
    """One line of the responses file ({key, response} or {key, error}) or one inlined response
    ({response or error, metadata}), already a JSON object (untrusted: odd fields become empty).

    Read once per line of a whole batch (summaries, CSV exports): plain lookups, no helper per field."""
    key = data.get("key")
    if key is None:
        metadata = data.get("metadata")
        key = metadata.get("key") if isinstance(metadata, dict) else None
    response = data.get("response")
    error = data.get("error")
    if isinstance(error, dict):
        kind = "errored"
        response = EMPTY
    elif isinstance(response, dict):
        kind, error = "succeeded", EMPTY
    else:
        kind, response = "invalid", EMPTY
        error = {"status": "no_response", "message": "This line has neither a response nor an error."}
    usage = response.get("usageMetadata")
    if usage.__class__ is dict:
        # The block as the API writes it (the counts it has whole numbers that add up to the total;
        # a zero count left out) is read and checked here in a few operations, as this runs for every
        # line of a whole batch; any other block (null counts, no total, tool-use prompt tokens, an
        # odd one) by usage.gemini_usage.
        try:
            prompt, answered, total = usage["promptTokenCount"], usage["candidatesTokenCount"], usage["totalTokenCount"]
        except KeyError:
            prompt = None
        cached = usage.get("cachedContentTokenCount", 0)
        thoughts = usage.get("thoughtsTokenCount", 0)
        if (
            prompt.__class__ is int
            and answered.__class__ is int
            and total.__class__ is int
            and cached.__class__ is int
            and thoughts.__class__ is int
            # None below zero and a total in range that is their sum: none beyond it either.
            and 0 <= cached
            and cached <= prompt
            and 0 <= answered
            and 0 <= thoughts
            and total <= QUICK_MAX
            and total == prompt + answered + thoughts
            # Tool-use prompt tokens (rare) are left to gemini_usage: none here, one count fewer to check.
            and "toolUsePromptTokenCount" not in usage
        ):
            tokens = (prompt - cached, cached, 0, answered, thoughts)
        else:
            tokens = gemini_usage(usage)
            prompt = token_count(usage.get("promptTokenCount"))
            answered = token_count(usage.get("candidatesTokenCount"))
    else:
        prompt = answered = tokens = None
    candidates = response.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    if not isinstance(first, dict):
        first = EMPTY
    feedback = response.get("promptFeedback")
    stop_reason = first.get("finishReason") or (feedback.get("blockReason") if isinstance(feedback, dict) else None)
    if error is EMPTY:  # a response: nothing to read (most lines)
        error_type = error_message = ""
    else:
        error_type, error_message = as_text(error.get("status") or error.get("code")), as_text(error.get("message"))
    return ResultLine(
        number,
        as_text(key),
        kind,
        source,
        as_text(response.get("modelVersion")),
        as_text(stop_reason),
        prompt,
        answered,
        error_type,
        error_message,
        raw,
        tokens,
    )


def counts_at_cancel(batch: Batch) -> dict | None:
    """What the audit trail keeps of the batch as its cancel was accepted: its batchStats, read right
    after the cancel (which answers {}); None when the batch did not report them."""
    if not batch.counts.known:
        return None
    stats = batch.raw.get("metadata", {}).get("batchStats")
    return dict(stats) if isinstance(stats, dict) else None


def after_cancel(batch: Batch, counts_at_cancel: dict | None) -> tuple[int | None, str]:
    """For the cancel story: how many requests finished after the cancel (None: unknown), and why we know."""
    unsaid = (
        f"{LABEL} says neither when a cancel was asked for nor when it took effect: the time it was requested "
        "is when this dashboard asked (its audit trail)"
    )
    done_then = finished_count(counts_at_cancel, ("successfulRequestCount", "failedRequestCount"))
    if done_then is None:
        return None, f"{unsaid}, and which requests finished after it is unknown."
    finished_after = max(0, batch.counts.succeeded + batch.counts.errored - done_then)
    return finished_after, (
        f"{done_then} requests had finished when the cancel was accepted (read right after it, recorded in "
        f"our audit trail). {unsaid}."
    )


# --- the API -----------------------------------------------------------------------------------------------------


class GeminiProvider(BatchAPI):
    """Batches are paged by page token; a cancel answers {} (the batch is retrieved after it); a refused
    cancel is a 400 (FAILED_PRECONDITION), asked about by retrieving the batch as for the others."""

    name = NAME
    label = LABEL
    request_id_header = REQUEST_ID_HEADER
    batch_id = BATCH_ID
    batches_path = f"/{API_VERSION}/batches"
    after_param = "pageToken"
    pages_by_id = False
    answers_cancel_with_batch = False
    cancel_suffix = ":cancel"
    parse = staticmethod(parse_batch)

    def list_params(self, *, limit: int, after: str | None) -> dict[str, Any]:
        return {"pageSize": limit, **({"pageToken": after} if after else {})}

    def list_answer(self, body: dict[str, Any]) -> tuple[Any, bool, str | None]:
        """ListOperations' answer: `operations` (left out when there are none) and `nextPageToken`."""
        token = body.get("nextPageToken")
        token = token if isinstance(token, str) and token else None
        operations = body.get("operations")
        return [] if operations is None else operations, token is not None, token  # proto3 leaves out an empty list

    def result_sources(self, batch: Batch) -> list[str]:
        output = output_of(batch.raw)
        has_output = bool(output.get("responsesFile")) or isinstance(output.get("inlinedResponses"), Mapping)
        return list(RESULT_SOURCES) if batch.is_ended and has_output else []

    @contextmanager
    def open_file(self, name: str) -> Iterator[httpx.Response]:
        """The responses file named `name` ("files/…"), as the SDK's files.download reads it."""
        file_id = name[len(FILE_PREFIX) :] if name.startswith(FILE_PREFIX) else ""
        if not FILE_ID.fullmatch(file_id):
            raise BadResponse(f"{LABEL} named a responses file with an unexpected name: {name[:80]!r}.")
        with self._stream(f"/{API_VERSION}/files/{file_id}:download?alt=media") as response:
            yield response

    @contextmanager
    def open_results(
        self, batch_id: str, source: str = DEFAULT_RESULT_SOURCE, *, known: Batch | None = None
    ) -> Iterator[httpx.Response]:
        """The responses as a JSONL response, its status already checked: the responses file streamed,
        or the inlined responses (read from a fresh retrieve: the store keeps only their number) one a line."""
        if source not in RESULT_SOURCES:
            raise ValueError(f"unknown result source {source!r}")
        batch = known if known is not None and known.id == batch_id else self.retrieve(batch_id)
        output = output_of(batch.raw)
        file_name = output.get("responsesFile")
        if isinstance(file_name, str) and file_name:
            with self.open_file(file_name) as response:
                yield response
        elif isinstance(output.get("inlinedResponses"), Mapping):
            yield self._inlined(batch_id)
        else:
            raise NotFound(f"{LABEL} batch {batch_id} has no responses.", status=404)

    def _inlined(self, batch_id: str) -> httpx.Response:
        data = self._json("GET", self._batch_path(batch_id))
        self._the_batch(batch_id, data)  # the answer must be this batch, and readable
        responses = output_of(data).get("inlinedResponses")
        listed = responses.get("inlinedResponses") if isinstance(responses, Mapping) else None
        if not isinstance(listed, list):
            raise BadResponse(f"{LABEL} sent batch {batch_id} without its inlined responses.")
        content = b"".join(json.dumps(item, separators=(",", ":")).encode() + b"\n" for item in listed)
        headers = {"content-type": "application/jsonl", "content-length": str(len(content))}
        return httpx.Response(200, stream=httpx.ByteStream(content), headers=headers)  # read like a download

    def stream_results(self, batch_id: str) -> Iterator[bytes]:
        """The responses, line by line."""
        with self.open_results(batch_id) as response:
            yield from jsonl_lines(response)


API = GeminiProvider  # what accounts.provider_for makes for an account of this provider
