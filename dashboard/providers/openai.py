"""OpenAI Batch API (/v1/batches) and the Files API for its output and error files."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx

from .base import AccountSpec, BadResponse, Batch, Connection, Counts, NotFound
from .config import key_account
from .errors import (
    Secrets,
    Unreadable,
    as_object,
    count,
    depth_within,
    epoch_time,
    known_id,
    status_word,
    unreadable_batch,
)
from .http import BatchAPI
from .lines import EMPTY, ResultLine, as_text, token_count
from .transport import jsonl_lines
from .usage import QUICK_MAX, model_name, openai_usage

NAME = "openai"  # in account keys, the store and URLs
LABEL = "OpenAI"  # shown to operators
DEFAULT_BASE_URL = "https://api.openai.com/v1"
SIMULATOR_PATH = "/openai/v1"  # where the embedded simulator speaks this API
SIMULATOR_KEYS = {"ops": "sk-sim-ops", "research": "sk-sim-research"}  # its demo accounts
SIMULATOR_OPTIONS: dict[str, dict[str, str]] = {}  # its demo accounts need nothing but a key
ACCOUNT_OPTIONS: tuple[str, ...] = ()  # no fields of its own in BATCH_ACCOUNTS_FILE
KEY_IS_OPTIONAL = False  # an account without an API key is a configuration error
BATCH_ID = re.compile(r"^batch_[A-Za-z0-9_-]{1,100}$")
FILE_ID = re.compile(r"^file[-_][A-Za-z0-9_-]{1,100}$")  # OpenAI: file-…; Groq and other compatible APIs: file_…
REQUEST_ID_HEADER = "x-request-id"
MAX_PAGE_LIMIT = 100  # the list endpoint serves up to 100 batches a page
STATUSES = (
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
)
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
CANCELABLE = frozenset({"validating", "in_progress"})
ENDED_BADLY = frozenset({"failed", "expired"})  # ended statuses that are failures in themselves
CANCELED = frozenset({"cancelled"})  # ended statuses that say a cancel took effect
COUNTS_ARE_FINAL_ONLY = False  # request_counts move as requests finish
RESULT_SOURCES = ("output", "error")  # the batch's output file and error file
DEFAULT_RESULT_SOURCE = "output"
LINES_NAME_SOURCE = True  # two files: each result line says which it came from
# Shown on the detail page (dotted paths into its JSON).
DETAIL_FIELDS = (
    "endpoint",
    "model",
    "completion_window",
    "input_file_id",
    "output_file_id",
    "error_file_id",
    "object",
)
TIMESTAMPS = (
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def from_environment(environ: Mapping[str, str]) -> list[AccountSpec]:
    """OPENAI_API_KEY, OPENAI_BASE_URL (ending in /v1) and OPENAI_ACCOUNT_NAME: one account, as the SDK reads them."""
    return key_account(
        environ,
        keys=("OPENAI_API_KEY",),
        base_url="OPENAI_BASE_URL",
        name="OPENAI_ACCOUNT_NAME",
        default_base_url=DEFAULT_BASE_URL,
    )


def base_url_for(options: Mapping[str, str]) -> str:
    """An accounts-file entry without a base_url: the public API."""
    return DEFAULT_BASE_URL


def connect(account: AccountSpec) -> Connection:
    return Connection(headers=auth_headers(account.api_key), secrets=(account.api_key,))


def parse_time(value: Any, field: str = "timestamp") -> datetime | None:
    """Unix seconds between 2000 and 2200, or None; raises Unreadable."""
    return epoch_time(value, field)


def parse_batch(data: Any, *, account: str, secrets: Secrets = (), provider: str = NAME, label: str = LABEL) -> Batch:
    """A Batch from the provider's JSON, which is untrusted: anything odd raises UnreadableBatch
    (an id holding one of `secrets`, the configured keys, is no id).

    A status word we do not know (one the API may add) is kept as is: not ended, not cancelable.
    `provider` and `label`: another provider speaking this wire (Azure OpenAI) names itself.
    """
    batch_id = known_id(data, BATCH_ID, secrets)
    try:
        data = as_object(data, "the batch")
        if not batch_id:
            # It would go into our URLs and back into upstream ones: refuse it rather than guess.
            raise Unreadable("id", "is missing or not a batch id")
        status = status_word(data, "status")
        # A batch still validating may have no counts yet: absent or null counts are zero.
        counts = data.get("request_counts")
        counts = {} if counts is None else as_object(counts, "request_counts")
        total, completed, failed = (
            count(counts.get(name), f"request_counts.{name}", missing_is_zero=True)
            for name in ("total", "completed", "failed")
        )
        timestamps = {name: parse_time(data.get(name), name) for name in TIMESTAMPS}
        if timestamps["created_at"] is None:
            raise Unreadable("created_at", "is missing")
        if not depth_within(data):
            raise Unreadable("the batch", "nests deeper than we read")
    except Unreadable as problem:
        raise unreadable_batch(label, "batch", batch_id, problem) from None
    is_ended = status in ENDED
    unfinished = max(0, total - completed - failed)
    return Batch(
        provider=provider,
        account=account,
        id=batch_id,
        status=status,
        is_ended=is_ended,
        can_cancel=status in CANCELABLE,
        counts=Counts(
            total=total,
            processing=0 if is_ended else unfinished,
            succeeded=completed,
            errored=failed,
            canceled=unfinished if status == "cancelled" else 0,
            expired=unfinished if status == "expired" else 0,
        ),
        counts_are_final_only=COUNTS_ARE_FINAL_ONLY,
        created_at=timestamps["created_at"],
        expires_at=timestamps["expires_at"],
        ended_at=next(
            (
                timestamps[name]
                for name in ("completed_at", "failed_at", "expired_at", "cancelled_at")
                if timestamps[name] is not None
            ),
            None,
        )
        if is_ended
        else None,
        cancel_initiated_at=timestamps["cancelling_at"],
        timestamps=timestamps,
        raw=data,
        model=model_name(data.get("model")),
        usage=openai_usage(data.get("usage")),
    )


def parse_result_line(number: int, data: dict, raw: str, source: str = "") -> ResultLine:
    """One line of the output or error file, already a JSON object (untrusted: odd fields become empty).

    Read once per line of a whole batch (summaries, CSV exports): plain lookups, no helper per field."""
    response = data.get("response")
    if not isinstance(response, dict):
        response = EMPTY
    body = response.get("body")
    if not isinstance(body, dict):
        body = EMPTY
    status_code = response.get("status_code")
    line_error = data.get("error")
    body_error = body.get("error")
    if not isinstance(body_error, dict):
        body_error = None
    usage = body.get("usage")
    if usage.__class__ is dict:
        # A chat completion's usage as the API writes it (every count present, whole numbers that add
        # up) is read and checked here in a few operations, as this runs for every line of a whole
        # batch; any other block (a response's, an embedding's, an odd one) by usage.openai_usage.
        try:
            given_in, given_out, total = usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]
            prompt_details = usage["prompt_tokens_details"]
            cached = prompt_details["cached_tokens"]
            reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
        except (KeyError, TypeError):  # a count or details object missing, or details not an object
            given_in = None
        if (
            given_in.__class__ is int
            and given_out.__class__ is int
            and cached.__class__ is int
            and reasoning.__class__ is int
            and total.__class__ is int
            # None below zero and a total in range that is their sum: none beyond it either.
            and 0 <= cached
            and cached <= given_in
            and 0 <= reasoning
            and reasoning <= given_out
            and total <= QUICK_MAX
            and total == given_in + given_out
            and "cache_write_tokens" not in prompt_details  # cache writes: read by usage.openai_usage
        ):
            tokens = (given_in - cached, cached, 0, given_out - reasoning, reasoning)
        else:
            tokens = openai_usage(usage)
            given_in = token_count(usage.get("prompt_tokens", usage.get("input_tokens")))
            given_out = token_count(usage.get("completion_tokens", usage.get("output_tokens")))
    else:
        given_in = given_out = tokens = None
    choices = body.get("choices")
    first_choice = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first_choice, dict):
        first_choice = EMPTY
    if isinstance(line_error, dict):
        kind = "expired" if line_error.get("code") == "batch_expired" else "errored"
        error = line_error
    elif status_code == 200 and body_error is None:
        kind, error = "succeeded", EMPTY
    elif body_error is not None:
        kind, error = "errored", body_error
    elif isinstance(status_code, int) and not isinstance(status_code, bool):
        message = f"The request was answered HTTP {status_code}, without an error message."
        kind, error = "errored", {"code": f"http_{status_code}", "message": message}
    else:
        message = "This line has neither a response status nor an error."
        kind, error = "errored", {"code": "no_status", "message": message}
    return ResultLine(
        number,
        as_text(data.get("custom_id")),
        kind,
        source,
        as_text(body.get("model")),
        as_text(first_choice.get("finish_reason")),
        given_in,
        given_out,
        as_text(error.get("type") or error.get("code")),
        as_text(error.get("message")),
        raw,
        tokens,
    )


def counts_at_cancel(batch: Batch) -> dict | None:
    """What the audit trail keeps of the batch as its cancel was accepted: the answer's request_counts."""
    return batch.raw.get("request_counts")


def after_cancel(batch: Batch, counts_at_cancel: dict | None) -> tuple[int | None, str]:
    """For the cancel story: how many requests finished after the cancel (None: unknown), and why we know.

    `counts_at_cancel` is request_counts as the API answered the cancel, recorded in our audit trail.
    """
    if counts_at_cancel is None:
        return None, "The cancel was not made through this dashboard, so the counts at that moment are unknown."
    done_then = int(counts_at_cancel.get("completed") or 0) + int(counts_at_cancel.get("failed") or 0)
    finished_after = max(0, batch.counts.succeeded + batch.counts.errored - done_then)
    return finished_after, (
        f"{done_then} requests had finished when the cancel was accepted (recorded in our audit trail)."
    )


class OpenAIProvider(BatchAPI):
    """A refused cancel is a 409 "Cannot cancel a batch with status '…'": ended, or finalizing (not ended,
    yet not cancelable)."""

    name = NAME
    label = LABEL
    request_id_header = REQUEST_ID_HEADER
    batch_id = BATCH_ID
    batches_path = "/batches"
    after_param = "after"
    parse = staticmethod(parse_batch)

    def result_sources(self, batch: Batch) -> list[str]:
        return [source for source in RESULT_SOURCES if batch.raw.get(f"{source}_file_id")]

    @contextmanager
    def open_file(self, file_id: str) -> Iterator[httpx.Response]:
        if not FILE_ID.fullmatch(file_id):
            raise BadResponse(f"{self.label} named a file with an unexpected id: {file_id[:80]!r}.")
        with self._stream(f"/files/{file_id}/content") as response:
            yield response

    @contextmanager
    def open_results(
        self, batch_id: str, source: str = DEFAULT_RESULT_SOURCE, *, known: Batch | None = None
    ) -> Iterator[httpx.Response]:
        """The output or error file of a batch as a streaming response, status already checked.

        The file ids come from `known` when the caller already holds the ended batch, else from a retrieve.
        """
        if source not in RESULT_SOURCES:
            raise ValueError(f"unknown result source {source!r}")
        batch = known if known is not None and known.id == batch_id else self.retrieve(batch_id)
        file_id = batch.raw.get(f"{source}_file_id")
        if not file_id:
            raise NotFound(f"{self.label} batch {batch_id} has no {source} file.", status=404)
        with self.open_file(str(file_id)) as response:
            yield response

    def stream_file(self, file_id: str) -> Iterator[bytes]:
        with self.open_file(file_id) as response:
            yield from jsonl_lines(response)

    def stream_results(self, batch_id: str) -> Iterator[bytes]:
        """Output file lines, then error file lines, of an ended batch."""
        batch = self.retrieve(batch_id)
        for source in self.result_sources(batch):
            yield from self.stream_file(str(batch.raw[f"{source}_file_id"]))


API = OpenAIProvider  # what accounts.provider_for makes for an account of this provider
