"""Anthropic Message Batches API (/v1/messages/batches)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx

from .base import AccountSpec, Batch, Connection, Counts
from .config import key_account
from .errors import (
    Secrets,
    Unreadable,
    as_object,
    count,
    depth_within,
    iso_time,
    known_id,
    status_word,
    unreadable_batch,
)
from .http import BatchAPI
from .lines import EMPTY, RESULT_TYPES, ResultLine, as_text, token_count
from .transport import jsonl_lines
from .usage import QUICK_MAX, counted

NAME = "anthropic"  # in account keys, the store and URLs
LABEL = "Anthropic"  # shown to operators
DEFAULT_BASE_URL = "https://api.anthropic.com"
SIMULATOR_PATH = "/anthropic"  # where the embedded simulator speaks this API
SIMULATOR_KEYS = {"ops": "sk-ant-sim-ops", "research": "sk-ant-sim-research"}  # its demo accounts
SIMULATOR_OPTIONS: dict[str, dict[str, str]] = {}  # its demo accounts need nothing but a key
ACCOUNT_OPTIONS: tuple[str, ...] = ()  # no fields of its own in BATCH_ACCOUNTS_FILE
KEY_IS_OPTIONAL = False  # an account without an API key is a configuration error
API_VERSION = "2023-06-01"
BATCH_ID = re.compile(r"^msgbatch_[A-Za-z0-9]{1,100}$")
REQUEST_ID_HEADER = "request-id"
MAX_PAGE_LIMIT = 1000  # the list endpoint serves up to 1,000 batches a page
STATUSES = ("in_progress", "canceling", "ended")  # processing_status, in the order a batch goes through them
ENDED = frozenset({"ended"})
CANCELABLE = frozenset({"in_progress"})
# An Anthropic batch's status never says it went badly: its request counts do (errored, expired).
ENDED_BADLY: frozenset[str] = frozenset()
CANCELED: frozenset[str] = frozenset()  # "ended" says nothing of a cancel: cancel_initiated_at does
COUNTS_ARE_FINAL_ONLY = True  # outcomes stay zero until the whole batch has ended
RESULT_SOURCES = ("results",)  # one results file per batch
DEFAULT_RESULT_SOURCE = "results"
LINES_NAME_SOURCE = False  # one source: a result line need not say which it came from
DETAIL_FIELDS = ("results_url", "type")  # shown on the detail page, dotted paths into its JSON
TIMESTAMPS = ("created_at", "expires_at", "ended_at", "cancel_initiated_at", "archived_at")


def auth_headers(api_key: str) -> dict[str, str]:
    return {"x-api-key": api_key, "anthropic-version": API_VERSION}


def from_environment(environ: Mapping[str, str]) -> list[AccountSpec]:
    """ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL (no /v1) and ANTHROPIC_ACCOUNT_NAME: one account, as the SDK reads them."""
    return key_account(
        environ,
        keys=("ANTHROPIC_API_KEY",),
        base_url="ANTHROPIC_BASE_URL",
        name="ANTHROPIC_ACCOUNT_NAME",
        default_base_url=DEFAULT_BASE_URL,
    )


def base_url_for(options: Mapping[str, str]) -> str:
    """An accounts-file entry without a base_url: the public API."""
    return DEFAULT_BASE_URL


def connect(account: AccountSpec) -> Connection:
    return Connection(headers=auth_headers(account.api_key), secrets=(account.api_key,))


OUTCOMES = ("processing", "succeeded", "errored", "canceled", "expired")


def parse_time(value: Any, field: str = "timestamp") -> datetime | None:
    """An ISO 8601 timestamp with a time zone between 2000 and 2200, or None; raises Unreadable."""
    return iso_time(value, field)


def parse_batch(data: Any, *, account: str, secrets: Secrets = ()) -> Batch:
    """A Batch from the provider's JSON, which is untrusted: anything odd raises UnreadableBatch
    (an id holding one of `secrets`, the configured keys, is no id).

    A status word we do not know (one the API may add) is kept as is: not ended, not cancelable.
    """
    batch_id = known_id(data, BATCH_ID, secrets)
    try:
        data = as_object(data, "the batch")
        if not batch_id:
            # It would go into our URLs and back into upstream ones: refuse it rather than guess.
            raise Unreadable("id", "is missing or not a message batch id")
        status = status_word(data, "processing_status")
        counts = as_object(data.get("request_counts"), "request_counts")
        outcomes = {name: count(counts.get(name), f"request_counts.{name}") for name in OUTCOMES}
        timestamps = {name: parse_time(data.get(name), name) for name in TIMESTAMPS}
        if timestamps["created_at"] is None:
            raise Unreadable("created_at", "is missing")
        if not depth_within(data):
            raise Unreadable("the batch", "nests deeper than we read")
    except Unreadable as problem:
        raise unreadable_batch(LABEL, "message batch", batch_id, problem) from None
    return Batch(
        provider=NAME,
        account=account,
        id=batch_id,
        status=status,
        is_ended=status in ENDED,
        can_cancel=status in CANCELABLE,
        counts=Counts(total=sum(outcomes.values()), **outcomes),
        counts_are_final_only=COUNTS_ARE_FINAL_ONLY,
        created_at=timestamps["created_at"],
        expires_at=timestamps["expires_at"],
        ended_at=timestamps["ended_at"],
        cancel_initiated_at=timestamps["cancel_initiated_at"],
        timestamps=timestamps,
        raw=data,
    )


def parse_result_line(number: int, data: dict, raw: str, source: str = "") -> ResultLine:
    """One line of the results file, already a JSON object (untrusted: odd fields become empty).

    Read once per line of a whole batch (summaries, CSV exports): plain lookups, no helper per field."""
    result = data.get("result")
    if not isinstance(result, dict):
        result = EMPTY
    kind = result.get("type")
    message = result.get("message")
    if not isinstance(message, dict):
        message = EMPTY
    usage = message.get("usage")
    if usage.__class__ is dict:
        # Each count read once, for the line's own figures and its usage by kind. The block as the API
        # writes it (every count present, whole numbers in range) is checked here in a few operations,
        # as this runs for every line of a whole batch; any other block by usage.counted.
        try:
            fresh, output = usage["input_tokens"], usage["output_tokens"]
            read, written = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
        except KeyError:
            fresh, output = usage.get("input_tokens"), usage.get("output_tokens")
            read, written = usage.get("cache_read_input_tokens"), usage.get("cache_creation_input_tokens")
        if (
            fresh.__class__ is int
            and output.__class__ is int
            and read.__class__ is int
            and written.__class__ is int
            and 0 <= fresh
            and fresh <= QUICK_MAX
            and 0 <= output
            and output <= QUICK_MAX
            and 0 <= read
            and read <= QUICK_MAX
            and 0 <= written
            and written <= QUICK_MAX
        ):
            tokens = (fresh, read, written, output, 0)
        else:
            tokens = counted(fresh, read, written, output)
            fresh, output = token_count(fresh), token_count(output)
    else:
        fresh = output = tokens = None
    error = result.get("error")  # {"type": "error", "error": {"type": ..., "message": ...}}
    error = error.get("error") if isinstance(error, dict) else None
    if not isinstance(error, dict):
        error = EMPTY
    if kind.__class__ is str and kind in RESULT_TYPES:
        error_type, error_message = as_text(error.get("type")), as_text(error.get("message"))
    else:
        kind = "invalid"
        error_type, error_message = _unreadable_result(data.get("result"))
    return ResultLine(
        number,
        as_text(data.get("custom_id")),
        kind,
        "",
        as_text(message.get("model")),
        as_text(message.get("stop_reason")),
        fresh,
        output,
        error_type,
        error_message,
        raw,
        tokens,
    )


def _unreadable_result(result: Any) -> tuple[str, str]:
    """Why a line's result cannot be read, in an operator's words."""
    if not isinstance(result, dict):
        return "no_result", "This line has no result object."
    kind = result.get("type")
    if kind is None:
        return "no_result_type", "This line's result does not say its type."
    return "unknown_result_type", f"This line's result type is not one {LABEL} documents: {as_text(kind)[:60]}"


def counts_at_cancel(batch: Batch) -> dict | None:
    """What the audit trail keeps of the batch as its cancel was accepted: the answer's request_counts."""
    return batch.raw.get("request_counts")


def after_cancel(batch: Batch, counts_at_cancel: dict | None) -> tuple[int | None, str]:
    """For the cancel story: how many requests finished after the cancel (None: unknown), and why we know."""
    return None, (
        f"{LABEL} reports outcomes only once a batch has ended, so it does not say which requests "
        "finished after the cancel; succeeded and errored include those that finished before it."
    )


class AnthropicProvider(BatchAPI):
    """A refused cancel is a 400 invalid_request_error (for a batch that has already ended)."""

    name = NAME
    label = LABEL
    request_id_header = REQUEST_ID_HEADER
    batch_id = BATCH_ID
    batches_path = "/v1/messages/batches"
    after_param = "after_id"
    parse = staticmethod(parse_batch)

    def result_sources(self, batch: Batch) -> list[str]:
        return list(RESULT_SOURCES) if batch.is_ended else []

    @contextmanager
    def open_results(
        self, batch_id: str, source: str = DEFAULT_RESULT_SOURCE, *, known: Batch | None = None
    ) -> Iterator[httpx.Response]:
        """The streaming results response, its status already checked; the body is not read yet."""
        with self._stream(self._batch_path(batch_id, "/results")) as response:
            yield response

    def stream_results(self, batch_id: str) -> Iterator[bytes]:
        """The results JSONL, line by line, never holding more than one line in memory."""
        with self.open_results(batch_id) as response:
            yield from jsonl_lines(response)


API = AnthropicProvider  # what accounts.provider_for makes for an account of this provider
