"""The provider layer against httpx.MockTransport: parsing, requests sent, errors, id checks, result streams.

No network, no database. Bodies follow the shapes in the providers' API references (/work/shared/seeds).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from dashboard.providers import anthropic, azure_openai, openai
from dashboard.providers.base import (
    AccountSpec,
    AlreadyEnded,
    BadResponse,
    Batch,
    NotFound,
    Overloaded,
    ProviderError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)

UTC = UTC
ANTHROPIC_URL = "https://api.anthropic.com"
OPENAI_URL = "https://api.openai.com/v1"
ANTHROPIC_KEY = "sk-ant-api03-SECRETanthropicKEY0123456789abcdefXYZ"
OPENAI_KEY = "sk-proj-SECRETopenaiKEY0123456789abcdefWXYZ"
AZURE_ENDPOINT = "https://aoairesource.openai.azure.com"
AZURE_KEY = "0123456789abcdefAZUREsecretKEY0123"  # an Azure key is 32 hex digits or 84 characters: any text here

# --- realistic bodies -------------------------------------------------------------------------------------------

# Anthropic MessageBatch, verbatim from the API reference example (seed 000).
ANTHROPIC_DOC_BATCH = {
    "id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
    "archived_at": "2024-08-20T18:37:24.100435Z",
    "cancel_initiated_at": "2024-08-20T18:37:24.100435Z",
    "created_at": "2024-08-20T18:37:24.100435Z",
    "ended_at": "2024-08-20T18:37:24.100435Z",
    "expires_at": "2024-08-20T18:37:24.100435Z",
    "processing_status": "in_progress",
    "request_counts": {"canceled": 10, "errored": 30, "expired": 10, "processing": 100, "succeeded": 50},
    "results_url": "https://api.anthropic.com/v1/messages/batches/msgbatch_013Zva2CMHLNnXjNJJKqJ2EF/results",
    "type": "message_batch",
}

# What a running batch really looks like: the not-yet-known timestamps are null, outcomes all zero.
ANTHROPIC_RUNNING = {
    "id": "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d",
    "type": "message_batch",
    "processing_status": "in_progress",
    "request_counts": {"processing": 120, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
    "ended_at": None,
    "created_at": "2024-09-24T18:37:24.100435Z",
    "expires_at": "2024-09-25T18:37:24.100435Z",
    "archived_at": None,
    "cancel_initiated_at": None,
    "results_url": None,
}

ANTHROPIC_CANCELING = {
    **ANTHROPIC_RUNNING,
    "processing_status": "canceling",
    "cancel_initiated_at": "2024-09-24T19:00:00Z",
}

ANTHROPIC_ENDED = {
    **ANTHROPIC_RUNNING,
    "processing_status": "ended",
    "request_counts": {"processing": 0, "succeeded": 100, "errored": 7, "canceled": 12, "expired": 1},
    "cancel_initiated_at": "2024-09-24T19:00:00Z",
    "ended_at": "2024-09-24T19:02:03.5Z",
    "results_url": "https://api.anthropic.com/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results",
}

# OpenAI Batch from the API reference example (seed 004); the trailing comma in its metadata is dropped.
OPENAI_CANCELLING = {
    "id": "batch_abc123",
    "object": "batch",
    "endpoint": "/v1/chat/completions",
    "errors": None,
    "input_file_id": "file-abc123",
    "completion_window": "24h",
    "status": "cancelling",
    "output_file_id": None,
    "error_file_id": None,
    "created_at": 1711471533,
    "in_progress_at": 1711471538,
    "expires_at": 1711557933,
    "finalizing_at": None,
    "completed_at": None,
    "failed_at": None,
    "expired_at": None,
    "cancelling_at": 1711475133,
    "cancelled_at": None,
    "request_counts": {"total": 100, "completed": 23, "failed": 1},
    "metadata": {"customer_id": "user_123456789", "batch_description": "Nightly eval job"},
}

OPENAI_IN_PROGRESS = {**OPENAI_CANCELLING, "status": "in_progress", "cancelling_at": None}
OPENAI_CANCELLED = {
    **OPENAI_CANCELLING,
    "status": "cancelled",
    "cancelled_at": 1711475400,
    "output_file_id": "file-out123",
    "error_file_id": "file-err456",
}
OPENAI_EXPIRED = {
    **OPENAI_IN_PROGRESS,
    "status": "expired",
    "expired_at": 1711557940,
    "request_counts": {"total": 100, "completed": 60, "failed": 5},
}
OPENAI_COMPLETED = {
    **OPENAI_IN_PROGRESS,
    "status": "completed",
    "finalizing_at": 1711480000,
    "completed_at": 1711480100,
    "output_file_id": "file-out123",
    "error_file_id": "file-err456",
    "request_counts": {"total": 100, "completed": 95, "failed": 5},
}


def ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# --- plumbing ---------------------------------------------------------------------------------------------------


class Upstream:
    """A MockTransport handler that records every request and answers from a function."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]):
        self.answer = answer
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        return self.answer(request)

    @property
    def routes(self) -> list[tuple[str, str]]:
        return [(request.method, request.url.path) for request in self.calls]


def reply(status: int = 200, body=None, *, text: str | None = None, headers=None) -> Callable:
    def answer(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return answer


def fails_with(error: Exception) -> Callable:
    def answer(request: httpx.Request) -> httpx.Response:
        raise error

    return answer


def make_anthropic(
    answer: Callable, *, key: str | None = ANTHROPIC_KEY, secrets: tuple[str, ...] = ()
) -> tuple[anthropic.AnthropicProvider, Upstream]:
    upstream = Upstream(answer)
    client = httpx.Client(
        base_url=ANTHROPIC_URL,
        transport=httpx.MockTransport(upstream),
        headers=anthropic.auth_headers(key) if key else None,
        timeout=12.0,
    )
    return anthropic.AnthropicProvider(client, account="anthropic-ops", secrets=secrets), upstream


def make_openai(
    answer: Callable, *, key: str | None = OPENAI_KEY, secrets: tuple[str, ...] = ()
) -> tuple[openai.OpenAIProvider, Upstream]:
    upstream = Upstream(answer)
    client = httpx.Client(
        base_url=OPENAI_URL,
        transport=httpx.MockTransport(upstream),
        headers=openai.auth_headers(key) if key else None,
        timeout=12.0,
    )
    return openai.OpenAIProvider(client, account="openai-ops", secrets=secrets), upstream


def make_azure(
    answer: Callable, *, key: str = AZURE_KEY, api_version: str = "2024-10-21", secrets: tuple[str, ...] = ()
) -> tuple[azure_openai.AzureOpenAIProvider, Upstream]:
    """An Azure OpenAI account as accounts connects it: the GA route by default (`api_version=""`: the v1 route)."""
    upstream = Upstream(answer)
    options = {"endpoint": AZURE_ENDPOINT, **({"api_version": api_version} if api_version else {})}
    account = AccountSpec(name="ops", base_url=azure_openai.base_url_for(options), api_key=key, options=options)
    connection = azure_openai.connect(account)
    client = httpx.Client(
        base_url=account.base_url,
        transport=httpx.MockTransport(upstream),
        headers=dict(connection.headers),
        params=dict(connection.params),
        timeout=12.0,
    )
    return azure_openai.AzureOpenAIProvider(client, account="azure-openai-ops", secrets=secrets), upstream


def azure_error(code: str, message: str) -> dict:
    """Azure's error body (the Microsoft REST guidelines' shape in its spec): a code, no type."""
    return {"error": {"code": code, "message": message}}


def anthropic_error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


def openai_error(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


PROVIDERS = {
    "anthropic": dict(
        make=make_anthropic,
        error=lambda kind, message: anthropic_error(kind, message),
        batch_id="msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
        body=ANTHROPIC_RUNNING,
        label="Anthropic",
        request_id_header="request-id",
        key=ANTHROPIC_KEY,
    ),
    "openai": dict(
        make=make_openai,
        error=lambda kind, message: openai_error(message, kind),
        batch_id="batch_abc123",
        body=OPENAI_IN_PROGRESS,
        label="OpenAI",
        request_id_header="x-request-id",
        key=OPENAI_KEY,
    ),
    "azure-openai": dict(
        make=make_azure,
        error=azure_error,
        batch_id="batch_72a2792ef7d24ba7b82c7fe4a37e379f",
        body={**OPENAI_IN_PROGRESS, "id": "batch_72a2792ef7d24ba7b82c7fe4a37e379f"},
        label="Azure OpenAI",
        request_id_header="apim-request-id",
        key=AZURE_KEY,
    ),
}


@pytest.fixture(params=sorted(PROVIDERS))
def spec(request) -> dict:
    return PROVIDERS[request.param]


def operations(provider, batch_id: str) -> dict[str, Callable[[], object]]:
    return {
        "list_page": lambda: provider.list_page(limit=20),
        "retrieve": lambda: provider.retrieve(batch_id),
        "cancel": lambda: provider.cancel(batch_id),
    }


# --- parsing: Anthropic -----------------------------------------------------------------------------------------


def test_anthropic_parses_the_reference_message_batch():
    provider, upstream = make_anthropic(reply(200, ANTHROPIC_DOC_BATCH))
    batch = provider.retrieve("msgbatch_013Zva2CMHLNnXjNJJKqJ2EF")

    moment = datetime(2024, 8, 20, 18, 37, 24, 100435, tzinfo=UTC)
    assert isinstance(batch, Batch)
    assert batch.provider == "anthropic"
    assert batch.account == "anthropic-ops"
    assert batch.id == "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF"
    assert batch.status == "in_progress"
    assert batch.is_ended is False
    assert batch.can_cancel is True
    assert batch.counts.total == 200  # 100 + 50 + 30 + 10 + 10
    assert (
        batch.counts.processing,
        batch.counts.succeeded,
        batch.counts.errored,
        batch.counts.canceled,
        batch.counts.expired,
    ) == (100, 50, 30, 10, 10)
    assert batch.counts.finished == 100
    assert batch.counts_are_final_only is True
    for value in (batch.created_at, batch.expires_at, batch.ended_at, batch.cancel_initiated_at):
        assert value == moment
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
        assert value.microsecond == 100435
    assert set(batch.timestamps) == {"created_at", "expires_at", "ended_at", "cancel_initiated_at", "archived_at"}
    assert batch.timestamps["archived_at"] == moment
    assert batch.raw == ANTHROPIC_DOC_BATCH
    assert batch.raw["results_url"].endswith("/results")
    assert batch.metadata == {}
    assert upstream.routes == [("GET", "/v1/messages/batches/msgbatch_013Zva2CMHLNnXjNJJKqJ2EF")]


def test_anthropic_running_batch_has_null_timestamps_and_counts_total_the_five():
    provider, _ = make_anthropic(reply(200, ANTHROPIC_RUNNING))
    batch = provider.retrieve(ANTHROPIC_RUNNING["id"])
    assert batch.status == "in_progress" and batch.can_cancel and not batch.is_ended
    assert batch.counts.total == 120 and batch.counts.processing == 120 and batch.counts.finished == 0
    assert batch.created_at == datetime(2024, 9, 24, 18, 37, 24, 100435, tzinfo=UTC)
    assert batch.expires_at == datetime(2024, 9, 25, 18, 37, 24, 100435, tzinfo=UTC)
    assert batch.ended_at is None
    assert batch.cancel_initiated_at is None
    assert batch.timestamps["archived_at"] is None and batch.timestamps["ended_at"] is None


def test_anthropic_canceling_batch_is_neither_ended_nor_cancelable():
    provider, _ = make_anthropic(reply(200, ANTHROPIC_CANCELING))
    batch = provider.retrieve(ANTHROPIC_CANCELING["id"])
    assert batch.status == "canceling"
    assert batch.is_ended is False
    assert batch.can_cancel is False
    assert batch.cancel_initiated_at == datetime(2024, 9, 24, 19, 0, tzinfo=UTC)


def test_anthropic_ended_batch():
    provider, _ = make_anthropic(reply(200, ANTHROPIC_ENDED))
    batch = provider.retrieve(ANTHROPIC_ENDED["id"])
    assert batch.is_ended is True and batch.can_cancel is False
    assert batch.counts.total == 120
    assert (batch.counts.succeeded, batch.counts.errored, batch.counts.canceled, batch.counts.expired) == (
        100,
        7,
        12,
        1,
    )
    assert batch.counts.processing == 0 and batch.counts.finished == 120
    assert batch.ended_at == datetime(2024, 9, 24, 19, 2, 3, 500000, tzinfo=UTC)


def test_anthropic_timestamps_with_an_offset_stay_aware_and_compare_in_utc():
    body = {**ANTHROPIC_RUNNING, "created_at": "2024-09-24T20:37:24.100435+02:00"}
    provider, _ = make_anthropic(reply(200, body))
    batch = provider.retrieve(body["id"])
    assert batch.created_at.utcoffset() == timedelta(hours=2)
    assert batch.created_at == datetime(2024, 9, 24, 18, 37, 24, 100435, tzinfo=UTC)


# --- parsing: OpenAI --------------------------------------------------------------------------------------------


def test_openai_parses_the_reference_cancelling_batch():
    provider, upstream = make_openai(reply(200, OPENAI_CANCELLING))
    batch = provider.retrieve("batch_abc123")

    assert isinstance(batch, Batch)
    assert batch.provider == "openai"
    assert batch.account == "openai-ops"
    assert batch.id == "batch_abc123"
    assert batch.status == "cancelling"
    assert batch.is_ended is False
    assert batch.can_cancel is False
    assert dataclasses.astuple(batch.counts) == (100, 76, 23, 1, 0, 0, True)  # total, processing, succ, err, canc, exp
    assert batch.counts_are_final_only is False
    assert batch.created_at == datetime(2024, 3, 26, 16, 45, 33, tzinfo=UTC)
    assert batch.created_at.utcoffset() == timedelta(0)
    assert batch.expires_at == datetime(2024, 3, 27, 16, 45, 33, tzinfo=UTC)
    assert batch.ended_at is None
    assert batch.cancel_initiated_at == datetime(2024, 3, 26, 17, 45, 33, tzinfo=UTC)
    assert set(batch.timestamps) == {
        "created_at",
        "in_progress_at",
        "expires_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
    }
    assert batch.timestamps["in_progress_at"] == datetime(2024, 3, 26, 16, 45, 38, tzinfo=UTC)
    assert batch.timestamps["finalizing_at"] is None and batch.timestamps["cancelled_at"] is None
    for value in batch.timestamps.values():
        assert value is None or value.tzinfo is not None
    assert batch.raw == OPENAI_CANCELLING
    assert batch.metadata == {"customer_id": "user_123456789", "batch_description": "Nightly eval job"}
    assert upstream.routes == [("GET", "/v1/batches/batch_abc123")]


@pytest.mark.parametrize(
    "body, expected",
    [
        # status, is_ended, can_cancel, (total, processing, succeeded, errored, canceled, expired), ended_at
        (OPENAI_IN_PROGRESS, ("in_progress", False, True, (100, 76, 23, 1, 0, 0), None)),
        (
            {
                **OPENAI_IN_PROGRESS,
                "status": "validating",
                "in_progress_at": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
            },
            ("validating", False, True, (0, 0, 0, 0, 0, 0), None),
        ),
        (
            {
                **OPENAI_IN_PROGRESS,
                "status": "finalizing",
                "finalizing_at": 1711480000,
                "request_counts": {"total": 100, "completed": 97, "failed": 3},
            },
            ("finalizing", False, False, (100, 0, 97, 3, 0, 0), None),
        ),
        (OPENAI_CANCELLED, ("cancelled", True, False, (100, 0, 23, 1, 76, 0), ts(1711475400))),
        (OPENAI_EXPIRED, ("expired", True, False, (100, 0, 60, 5, 0, 35), ts(1711557940))),
        (OPENAI_COMPLETED, ("completed", True, False, (100, 0, 95, 5, 0, 0), ts(1711480100))),
        (
            {
                **OPENAI_IN_PROGRESS,
                "status": "failed",
                "in_progress_at": None,
                "failed_at": 1711471540,
                "errors": {
                    "object": "list",
                    "data": [{"code": "invalid_json_line", "message": "bad", "param": None, "line": 1}],
                },
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
            },
            ("failed", True, False, (0, 0, 0, 0, 0, 0), ts(1711471540)),
        ),
    ],
    ids=["in_progress", "validating", "finalizing", "cancelled", "expired", "completed", "failed"],
)
def test_openai_counts_and_lifecycle_by_status(body, expected):
    provider, _ = make_openai(reply(200, body))
    batch = provider.retrieve(body["id"])
    status, is_ended, can_cancel, counts, ended_at = expected
    assert batch.status == status
    assert batch.is_ended is is_ended
    assert batch.can_cancel is can_cancel
    assert dataclasses.astuple(batch.counts) == (*counts, True)
    assert batch.ended_at == ended_at
    if ended_at is not None:
        assert ended_at.tzinfo is not None


def test_openai_null_request_counts_fields_count_as_zero():
    body = {**OPENAI_IN_PROGRESS, "request_counts": {"total": 10, "completed": None, "failed": None}}
    provider, _ = make_openai(reply(200, body))
    assert dataclasses.astuple(provider.retrieve("batch_abc123").counts) == (10, 10, 0, 0, 0, 0, True)


@pytest.mark.parametrize(
    "make, body, batch_id",
    [
        (make_anthropic, ANTHROPIC_DOC_BATCH, ANTHROPIC_DOC_BATCH["id"]),
        (make_openai, OPENAI_CANCELLING, "batch_abc123"),
    ],
    ids=["anthropic", "openai"],
)
def test_batch_and_counts_are_frozen(make, body, batch_id):
    provider, _ = make(reply(200, body))
    batch = provider.retrieve(batch_id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.status = "ended"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.is_ended = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.counts.total = 0  # type: ignore[misc]
    assert batch.status == body.get("processing_status", body.get("status"))


# --- requests sent ----------------------------------------------------------------------------------------------


def test_anthropic_list_page_sends_path_params_and_auth_headers():
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert request.url.path == "/v1/messages/batches"
        assert dict(request.url.params) == {"limit": "20", "after_id": "msgbatch_01PREVIOUSpage"}
        assert request.headers["x-api-key"] == ANTHROPIC_KEY
        assert request.headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in request.headers
        return httpx.Response(
            200,
            json={
                "data": [ANTHROPIC_DOC_BATCH, ANTHROPIC_ENDED],
                "has_more": True,
                "first_id": ANTHROPIC_DOC_BATCH["id"],
                "last_id": ANTHROPIC_ENDED["id"],
            },
        )

    provider, upstream = make_anthropic(answer)
    page = provider.list_page(limit=20, after="msgbatch_01PREVIOUSpage")
    assert len(upstream.calls) == 1
    assert [batch.id for batch in page.batches] == [ANTHROPIC_DOC_BATCH["id"], ANTHROPIC_ENDED["id"]]
    assert [batch.status for batch in page.batches] == ["in_progress", "ended"]
    assert page.has_more is True
    assert page.next_cursor == ANTHROPIC_ENDED["id"]


def test_anthropic_first_page_has_no_after_id():
    provider, upstream = make_anthropic(reply(200, {"data": [], "has_more": False, "first_id": None, "last_id": None}))
    page = provider.list_page(limit=5)
    assert dict(upstream.calls[0].url.params) == {"limit": "5"}
    assert page.batches == [] and page.has_more is False and page.next_cursor is None


def test_openai_list_page_sends_path_params_and_auth_headers():
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert request.url.path == "/v1/batches"
        assert dict(request.url.params) == {"limit": "5", "after": "batch_previous"}
        assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert "x-api-key" not in request.headers
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": [OPENAI_IN_PROGRESS, OPENAI_COMPLETED],
                "first_id": "batch_abc123",
                "last_id": "batch_abc123",
                "has_more": True,
            },
        )

    provider, upstream = make_openai(answer)
    page = provider.list_page(limit=5, after="batch_previous")
    assert len(upstream.calls) == 1
    assert [batch.status for batch in page.batches] == ["in_progress", "completed"]
    assert page.has_more is True and page.next_cursor == "batch_abc123"


def test_openai_list_page_without_last_id_falls_back_to_the_last_batch():
    second = {**OPENAI_COMPLETED, "id": "batch_zzz999"}
    provider, upstream = make_openai(
        reply(200, {"object": "list", "data": [OPENAI_IN_PROGRESS, second], "has_more": True})
    )
    page = provider.list_page(limit=2)
    assert dict(upstream.calls[0].url.params) == {"limit": "2"}
    assert page.next_cursor == "batch_zzz999" and page.has_more is True


def test_the_last_page_has_no_cursor_to_read_on_from():
    provider, _ = make_openai(reply(200, {"object": "list", "data": [OPENAI_IN_PROGRESS], "has_more": False}))
    page = provider.list_page(limit=2)
    assert page.next_cursor is None and page.has_more is False


def test_anthropic_retrieve_and_cancel_paths_and_headers():
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-api-key"] == ANTHROPIC_KEY
        assert request.headers["anthropic-version"] == anthropic.API_VERSION
        if request.method == "POST":
            assert request.url.path == "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/cancel"
            return httpx.Response(200, json=ANTHROPIC_CANCELING)
        return httpx.Response(200, json=ANTHROPIC_RUNNING)

    provider, upstream = make_anthropic(answer)
    assert provider.retrieve("msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d").status == "in_progress"
    canceled = provider.cancel("msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d")
    assert canceled.status == "canceling"
    assert upstream.routes == [
        ("GET", "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"),
        ("POST", "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/cancel"),
    ]


def test_openai_retrieve_and_cancel_paths_and_headers():
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        if request.method == "POST":
            assert request.url.path == "/v1/batches/batch_abc123/cancel"
            return httpx.Response(200, json=OPENAI_CANCELLING)
        return httpx.Response(200, json=OPENAI_IN_PROGRESS)

    provider, upstream = make_openai(answer)
    assert provider.retrieve("batch_abc123").can_cancel is True
    canceled = provider.cancel("batch_abc123")
    assert canceled.status == "cancelling" and canceled.cancel_initiated_at == ts(1711475133)
    assert upstream.routes == [("GET", "/v1/batches/batch_abc123"), ("POST", "/v1/batches/batch_abc123/cancel")]


def test_auth_header_builders():
    assert anthropic.auth_headers("k1") == {"x-api-key": "k1", "anthropic-version": "2023-06-01"}
    assert openai.auth_headers("k2") == {"Authorization": "Bearer k2"}


# --- errors -----------------------------------------------------------------------------------------------------


def test_400_is_a_plain_upstream_error_with_the_providers_message(spec):
    message = "request_counts: limit must be at most 1000"
    provider, _ = spec["make"](
        reply(400, spec["error"]("invalid_request_error", message), headers={spec["request_id_header"]: "req_0123"})
    )
    for name, call in operations(provider, spec["batch_id"]).items():
        if name == "cancel" and spec["label"] == "Anthropic":
            continue  # Anthropic's cancel looks again after a 400; covered below
        with pytest.raises(UpstreamError) as caught:
            call()
        error = caught.value
        assert type(error) is UpstreamError, name
        assert error.status == 400
        assert error.kind == "invalid_request_error"
        assert error.request_id == "req_0123"
        assert message in error.message and message in str(error)
        assert error.message.startswith(f"{spec['label']} HTTP 400")


@pytest.mark.parametrize(
    "make, body, key",
    [
        (make_anthropic, anthropic_error("authentication_error", "invalid x-api-key"), ANTHROPIC_KEY),
        (
            make_openai,
            openai_error(
                "Incorrect API key provided: sk-proj-****************************WXYZ. You can find "
                "your API key at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            ),
            OPENAI_KEY,
        ),
    ],
    ids=["anthropic", "openai"],
)
def test_401_is_an_upstream_error_that_never_shows_the_key(make, body, key):
    provider, upstream = make(reply(401, body))
    with pytest.raises(UpstreamError) as caught:
        provider.list_page(limit=10)
    error = caught.value
    assert type(error) is UpstreamError
    assert error.status == 401
    assert key in upstream.calls[0].headers.get("x-api-key", "") + upstream.calls[0].headers.get("authorization", "")
    for text in (str(error), error.message, repr(error), *map(str, error.args)):
        assert key not in text
        assert key[-20:] not in text  # not even the secret tail


def test_404_is_not_found(spec):
    provider, _ = spec["make"](reply(404, spec["error"]("not_found_error", "No such batch.")))
    for name, call in operations(provider, spec["batch_id"]).items():
        with pytest.raises(NotFound) as caught:
            call()
        assert caught.value.status == 404, name
        assert "No such batch." in caught.value.message


def openai_cancel_refused(current: dict | None) -> Callable:
    """POST cancel answers 409; GET answers with `current`, or 500 when it is None."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(
                409,
                json=openai_error(
                    f"Cannot cancel a batch with status '{current['status'] if current else 'completed'}'."
                ),
                headers={"x-request-id": "req_409"},
            )
        if current is None:
            return httpx.Response(500, json=openai_error("Internal error", "server_error"))
        return httpx.Response(200, json=current)

    return answer


@pytest.mark.parametrize(
    "current", [OPENAI_COMPLETED, OPENAI_CANCELLED, OPENAI_EXPIRED], ids=["completed", "cancelled", "expired"]
)
def test_openai_cancel_409_on_an_ended_batch_is_already_ended(current):
    provider, upstream = make_openai(openai_cancel_refused(current))
    with pytest.raises(AlreadyEnded) as caught:
        provider.cancel("batch_abc123")
    assert caught.value.status == 409
    assert caught.value.request_id == "req_409"
    assert "already ended" in caught.value.message
    assert upstream.routes == [("POST", "/v1/batches/batch_abc123/cancel"), ("GET", "/v1/batches/batch_abc123")]


def test_openai_cancel_409_on_a_finalizing_batch_stays_an_upstream_error():
    finalizing = {**OPENAI_IN_PROGRESS, "status": "finalizing", "finalizing_at": 1711480000}
    provider, upstream = make_openai(openai_cancel_refused(finalizing))
    with pytest.raises(UpstreamError) as caught:
        provider.cancel("batch_abc123")
    assert type(caught.value) is UpstreamError
    assert caught.value.status == 409
    assert "Cannot cancel a batch with status 'finalizing'." in caught.value.message
    assert [method for method, _ in upstream.routes] == ["POST", "GET"]


def test_openai_cancel_409_when_the_second_look_fails_keeps_the_409():
    provider, upstream = make_openai(openai_cancel_refused(None))
    with pytest.raises(UpstreamError) as caught:
        provider.cancel("batch_abc123")
    assert type(caught.value) is UpstreamError
    assert caught.value.status == 409 and caught.value.request_id == "req_409"
    assert [method for method, _ in upstream.routes] == ["POST", "GET"]


def test_anthropic_cancel_400_on_an_ended_batch_is_already_ended():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(
                400,
                json=anthropic_error(
                    "invalid_request_error", "Batch msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d cannot be canceled."
                ),
                headers={"request-id": "req_cancel"},
            )
        return httpx.Response(200, json=ANTHROPIC_ENDED)

    provider, upstream = make_anthropic(answer)
    with pytest.raises(AlreadyEnded) as caught:
        provider.cancel("msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d")
    assert caught.value.status == 400
    assert caught.value.request_id == "req_cancel"
    assert "already ended" in caught.value.message
    assert upstream.routes == [
        ("POST", "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/cancel"),
        ("GET", "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"),
    ]


@pytest.mark.parametrize("current", [ANTHROPIC_RUNNING, ANTHROPIC_CANCELING], ids=["in_progress", "canceling"])
def test_anthropic_cancel_400_on_a_batch_not_ended_stays_an_upstream_error(current):
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(400, json=anthropic_error("invalid_request_error", "Something else is wrong."))
        return httpx.Response(200, json=current)

    provider, upstream = make_anthropic(answer)
    with pytest.raises(UpstreamError) as caught:
        provider.cancel(current["id"])
    assert type(caught.value) is UpstreamError
    assert caught.value.status == 400
    assert "Something else is wrong." in caught.value.message
    assert [method for method, _ in upstream.routes] == ["POST", "GET"]


def test_anthropic_cancel_400_when_the_second_look_fails_keeps_the_400():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(400, json=anthropic_error("invalid_request_error", "Cannot cancel."))
        return httpx.Response(503, json=anthropic_error("api_error", "unavailable"))

    provider, upstream = make_anthropic(answer)
    with pytest.raises(UpstreamError) as caught:
        provider.cancel("msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d")
    assert type(caught.value) is UpstreamError
    assert caught.value.status == 400 and "Cannot cancel." in caught.value.message
    assert [method for method, _ in upstream.routes] == ["POST", "GET"]


def test_anthropic_cancel_non_400_errors_do_not_look_again():
    provider, upstream = make_anthropic(reply(404, anthropic_error("not_found_error", "gone")))
    with pytest.raises(NotFound):
        provider.cancel("msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d")
    assert upstream.routes == [("POST", "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/cancel")]


def test_429_with_retry_after_is_rate_limited(spec):
    provider, _ = spec["make"](
        reply(429, spec["error"]("rate_limit_error", "Number of requests has exceeded."), headers={"retry-after": "7"})
    )
    for name, call in operations(provider, spec["batch_id"]).items():
        with pytest.raises(RateLimited) as caught:
            call()
        assert caught.value.retry_after == 7.0, name
        assert caught.value.status == 429
        assert "retry after 7 s" in caught.value.message


def test_429_without_retry_after(spec):
    provider, _ = spec["make"](
        reply(
            429,
            spec["error"]("rate_limit_error", "slow down"),
            headers={"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},
        )
    )
    with pytest.raises(RateLimited) as caught:
        provider.retrieve(spec["batch_id"])
    assert caught.value.retry_after is None
    assert "retry after" not in caught.value.message


def test_anthropic_529_overloaded_error_is_overloaded():
    provider, _ = make_anthropic(reply(529, anthropic_error("overloaded_error", "Overloaded")))
    with pytest.raises(Overloaded) as caught:
        provider.retrieve("msgbatch_013Zva2CMHLNnXjNJJKqJ2EF")
    assert caught.value.status == 529
    assert caught.value.kind == "overloaded_error"
    assert "Overloaded" in caught.value.message


def test_503_is_overloaded(spec):
    provider, _ = spec["make"](reply(503, spec["error"]("service_unavailable", "The server is overloaded.")))
    with pytest.raises(Overloaded) as caught:
        provider.list_page(limit=1)
    assert caught.value.status == 503


def test_500_is_a_plain_upstream_error(spec):
    provider, _ = spec["make"](reply(500, spec["error"]("api_error", "Internal server error")))
    for name, call in operations(provider, spec["batch_id"]).items():
        with pytest.raises(UpstreamError) as caught:
            call()
        assert type(caught.value) is UpstreamError, name
        assert caught.value.status == 500
        assert "Internal server error" in caught.value.message


@pytest.mark.parametrize(
    "status, expected", [(502, UpstreamError), (503, Overloaded), (404, NotFound), (429, RateLimited)]
)
def test_error_status_with_an_html_body_still_maps_and_reads_well(spec, status, expected):
    html = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
    provider, _ = spec["make"](reply(status, text=html, headers={"content-type": "text/html"}))
    with pytest.raises(expected) as caught:
        provider.retrieve(spec["batch_id"])
    error = caught.value
    assert type(error) is expected
    assert error.status == status
    assert error.message == f"{spec['label']} HTTP {status}: the error body is not JSON"
    assert "<" not in error.message


def test_2xx_non_json_is_bad_response(spec):
    provider, _ = spec["make"](
        reply(200, text="<html><body>captive portal</body></html>", headers={"content-type": "text/html"})
    )
    for name, call in operations(provider, spec["batch_id"]).items():
        with pytest.raises(BadResponse) as caught:
            call()
        assert caught.value.status == 200, name
        assert "not a JSON object" in caught.value.message


def test_2xx_json_that_is_not_an_object_is_bad_response(spec):
    provider, _ = spec["make"](reply(200, ["not", "an", "object"]))
    with pytest.raises(BadResponse):
        provider.retrieve(spec["batch_id"])


def test_2xx_missing_created_at_is_bad_response(spec):
    body = {key: value for key, value in spec["body"].items() if key != "created_at"}
    provider, _ = spec["make"](reply(200, body))
    with pytest.raises(BadResponse) as caught:
        provider.retrieve(spec["batch_id"])
    assert "created_at" in caught.value.message


def test_2xx_missing_request_counts_and_created_at_is_bad_response(spec):
    body = {key: value for key, value in spec["body"].items() if key not in ("created_at", "request_counts")}
    provider, _ = spec["make"](reply(200, body))
    with pytest.raises(BadResponse):
        provider.retrieve(spec["batch_id"])


def test_anthropic_2xx_missing_request_counts_is_bad_response():
    body = {key: value for key, value in ANTHROPIC_RUNNING.items() if key != "request_counts"}
    provider, _ = make_anthropic(reply(200, body))
    with pytest.raises(BadResponse) as caught:
        provider.retrieve(body["id"])
    assert "request_counts" in caught.value.message


DROP = object()


def changed(body: dict, change: dict) -> dict:
    """A copy of body with change applied; DROP removes the key."""
    result = {**body, **change}
    return {key: value for key, value in result.items() if value is not DROP}


@pytest.mark.parametrize(
    "change",
    [
        {"request_counts": {"processing": 1, "succeeded": 0, "errored": 0, "canceled": 0}},  # one count missing
        {"request_counts": {"processing": "many", "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}},
        {"request_counts": "lots"},
        {"created_at": "2024-09-24T18:37:24"},  # no time zone
        {"created_at": "yesterday"},
        {"processing_status": DROP},
        {"id": DROP},
    ],
    ids=["count-missing", "count-not-int", "counts-not-object", "naive-time", "not-a-time", "no-status", "no-id"],
)
def test_anthropic_malformed_batches_are_bad_response(change):
    body = changed(ANTHROPIC_RUNNING, change)
    provider, _ = make_anthropic(reply(200, body))
    with pytest.raises(BadResponse):
        provider.retrieve(ANTHROPIC_RUNNING["id"])


@pytest.mark.parametrize(
    "change",
    [
        {"created_at": "2024-03-26T16:45:33Z"},  # a string, not Unix seconds
        {"created_at": True},
        {"created_at": None},
        {"expires_at": "soon"},
        {"request_counts": {"total": "x", "completed": 0, "failed": 0}},
        {"request_counts": "lots"},
        {"request_counts": [100, 23, 1]},
        {"created_at": 1e20},  # beyond what a datetime can hold
        {"status": DROP},
        {"id": DROP},
    ],
    ids=[
        "iso-string",
        "bool",
        "null-created",
        "bad-expires",
        "count-not-int",
        "counts-string",
        "counts-list",
        "out-of-range",
        "no-status",
        "no-id",
    ],
)
def test_openai_malformed_batches_are_bad_response(change):
    body = changed(OPENAI_IN_PROGRESS, change)
    provider, _ = make_openai(reply(200, body))
    with pytest.raises(BadResponse):
        provider.retrieve("batch_abc123")


@pytest.mark.parametrize("bad_id", ["../../v1/files", "ID/with/slashes", "wrong_prefix123", ""])
def test_a_batch_whose_id_is_not_an_id_is_bad_response(spec, bad_id):
    provider, _ = spec["make"](reply(200, {"data": [{**spec["body"], "id": bad_id}], "has_more": False}))
    # Listed: left out and reported (issue 9), the id not quoted; retrieved: BadResponse.
    page = provider.list_page(limit=1)
    assert page.batches == [] and [batch_id for batch_id, _ in page.unreadable] == [""]
    assert "id" in page.unreadable[0][1] and (not bad_id or bad_id not in page.unreadable[0][1])
    provider, _ = spec["make"](reply(200, {**spec["body"], "id": bad_id}))
    with pytest.raises(BadResponse):
        provider.retrieve(spec["batch_id"])


def test_list_without_a_data_array_or_with_a_bad_item_is_bad_response(spec):
    provider, _ = spec["make"](reply(200, {"has_more": False}))
    with pytest.raises(BadResponse):
        provider.list_page(limit=1)
    # A bad item no longer hides the good ones (issue 9): it is reported beside them.
    provider, _ = spec["make"](reply(200, {"data": [spec["body"], "junk"], "has_more": False}))
    page = provider.list_page(limit=2)
    assert [batch.id for batch in page.batches] == [spec["body"]["id"]]
    assert [batch_id for batch_id, _ in page.unreadable] == [""]


def test_read_timeout_is_upstream_timeout(spec):
    provider, upstream = spec["make"](fails_with(httpx.ReadTimeout("timed out")))
    for name, call in operations(provider, spec["batch_id"]).items():
        with pytest.raises(UpstreamTimeout) as caught:
            call()
        assert "12.0 seconds" in caught.value.message, name
        assert caught.value.status is None
        assert not isinstance(caught.value, UpstreamError)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert len(upstream.calls) == 3


def test_connect_error_is_upstream_unreachable_without_leaking_details(spec):
    key = spec["key"]
    provider, upstream = spec["make"](fails_with(httpx.ConnectError(f"[Errno 111] Connection refused {key}")))
    for name, call in operations(provider, spec["batch_id"]).items():
        with pytest.raises(UpstreamUnreachable) as caught:
            call()
        assert caught.value.message == "Could not reach the provider (ConnectError).", name
        assert key not in str(caught.value)
        assert isinstance(caught.value, ProviderError) and not isinstance(caught.value, UpstreamError)
    assert len(upstream.calls) == 3


def test_long_upstream_messages_are_trimmed(spec):
    provider, _ = spec["make"](reply(400, spec["error"]("invalid_request_error", "x" * 5000)))
    with pytest.raises(UpstreamError) as caught:
        provider.retrieve(spec["batch_id"])
    assert len(caught.value.message) < 400


# --- id validation ----------------------------------------------------------------------------------------------

VALID_IDS = {
    "anthropic": [
        "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
        "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d",
        "msgbatch_a",
        "msgbatch_" + "a" * 100,
    ],
    "openai": ["batch_abc123", "batch_67e5c1a8f2a88190b1d1c9e4a2f3b6c7", "batch_a-b_c", "batch_" + "a" * 100],
}


def invalid_ids(prefix: str) -> list[str]:
    return [
        "",
        " ",
        "../etc",
        "msgbatch_x/../../v1",
        "batch_abc?x=1",
        "/etc/passwd",
        prefix,
        f"{prefix}../../v1",
        f"{prefix}abc/def",
        f"{prefix}abc def",
        f"{prefix}abc%2F..",
        f"{prefix}abc%20",
        f"{prefix}abc?x=1",
        f"{prefix}abc#x",
        f"{prefix}abc\n",
        f"\n{prefix}abc",
        f"{prefix}abc\\x",
        f"{prefix}abc.json",
        f"{prefix}١٢٣",
        f" {prefix}abc",
        f"{prefix}abc ",
        prefix + "a" * 102,
        "x" * 200,
        "msgbatch_abc" if prefix == "batch_" else "batch_abc",  # the other provider's id
    ]


@pytest.mark.parametrize(
    "make, name, prefix",
    [(make_anthropic, "anthropic", "msgbatch_"), (make_openai, "openai", "batch_")],
    ids=["anthropic", "openai"],
)
def test_valid_ids_pass(make, name, prefix):
    provider, _ = make(reply(200, {}))
    for batch_id in VALID_IDS[name]:
        assert provider.is_valid_id(batch_id), batch_id
    assert len(VALID_IDS[name][-1]) <= 110


@pytest.mark.parametrize(
    "make, prefix", [(make_anthropic, "msgbatch_"), (make_openai, "batch_")], ids=["anthropic", "openai"]
)
def test_invalid_ids_are_rejected_before_any_request(make, prefix):
    provider, upstream = make(reply(200, {}))
    for batch_id in invalid_ids(prefix):
        assert provider.is_valid_id(batch_id) is False, repr(batch_id)
        with pytest.raises(ValueError):
            provider.retrieve(batch_id)
        with pytest.raises(ValueError):
            provider.cancel(batch_id)
        with pytest.raises(ValueError):
            list(provider.stream_results(batch_id))
        with pytest.raises(ValueError):
            with provider.open_results(batch_id):
                pass
    assert upstream.calls == []


# --- stream_results ---------------------------------------------------------------------------------------------


def result_line(custom_id: str, kind: str = "succeeded") -> bytes:
    if kind == "succeeded":
        result = {
            "type": "succeeded",
            "message": {
                "id": f"msg_{custom_id}",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": "Bonjour — ça va? ✓"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 7},
            },
        }
    else:
        result = {
            "type": "errored",
            "error": {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens too large"}},
        }
    return json.dumps({"custom_id": custom_id, "result": result}, ensure_ascii=False).encode()


def test_anthropic_stream_results_yields_lines_one_by_one():
    lines = [result_line("req-1"), result_line("req-2", "errored"), result_line("req-3")]
    body = lines[0] + b"\n\n" + lines[1] + b"\r\n" + lines[2] + b"\n"
    # Chunks that split lines (and a multi-byte character) anywhere, as a network would.
    chunks = [body[i : i + 17] for i in range(0, len(body), 17)]
    sent: list[bytes] = []

    def body_stream() -> Iterator[bytes]:
        for chunk in chunks:
            sent.append(chunk)
            yield chunk

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert request.url.path == "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results"
        assert request.headers["x-api-key"] == ANTHROPIC_KEY
        assert request.headers["anthropic-version"] == "2023-06-01"
        return httpx.Response(200, content=body_stream(), headers={"content-type": "application/binary"})

    provider, upstream = make_anthropic(answer)
    stream = provider.stream_results("msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d")
    assert upstream.calls == []  # a generator: nothing is asked before the first line is wanted
    first = next(stream)
    assert first == lines[0]
    assert len(sent) < len(chunks)  # the rest of the body has not been read yet
    rest = list(stream)
    assert rest == lines[1:]  # the blank line is skipped, \r\n handled
    assert all(isinstance(line, bytes) for line in rest)
    assert json.loads(rest[1])["result"]["message"]["content"][0]["text"] == "Bonjour — ça va? ✓"
    assert len(upstream.calls) == 1


def test_anthropic_result_sources_only_for_ended_batches():
    provider, _ = make_anthropic(reply(200, {}))
    assert provider.result_sources(anthropic.parse_batch(ANTHROPIC_ENDED, account="a")) == ["results"]
    assert provider.result_sources(anthropic.parse_batch(ANTHROPIC_RUNNING, account="a")) == []


@pytest.mark.parametrize(
    "status, body, headers, expected",
    [
        (404, anthropic_error("not_found_error", "No results for this batch."), {}, NotFound),
        (500, anthropic_error("api_error", "Internal server error"), {}, UpstreamError),
        (529, anthropic_error("overloaded_error", "Overloaded"), {}, Overloaded),
        (429, anthropic_error("rate_limit_error", "Too many"), {"retry-after": "7"}, RateLimited),
        (401, anthropic_error("authentication_error", "invalid x-api-key"), {}, UpstreamError),
    ],
    ids=["404", "500", "529", "429", "401"],
)
def test_anthropic_stream_results_error_status_raises(status, body, headers, expected):
    provider, upstream = make_anthropic(reply(status, body, headers=headers))
    with pytest.raises(expected) as caught:
        list(provider.stream_results("msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"))
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert body["error"]["message"] in caught.value.message
    if status == 429:
        assert caught.value.retry_after == 7.0
    assert ANTHROPIC_KEY not in caught.value.message
    assert upstream.routes == [("GET", "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results")]


def openai_files_upstream(batch: dict, files: dict[str, bytes | httpx.Response]) -> Callable:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        if request.url.path == f"/v1/batches/{batch['id']}":
            return httpx.Response(200, json=batch)
        for file_id, content in files.items():
            if request.url.path == f"/v1/files/{file_id}/content":
                return content if isinstance(content, httpx.Response) else httpx.Response(200, content=content)
        raise AssertionError(f"unexpected request {request.url}")

    return answer


def openai_output_line(custom_id: str) -> bytes:
    return json.dumps(
        {
            "id": f"batch_req_{custom_id}",
            "custom_id": custom_id,
            "response": {
                "status_code": 200,
                "request_id": "req_x",
                "body": {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
                },
            },
            "error": None,
        }
    ).encode()


def openai_error_line(custom_id: str) -> bytes:
    return json.dumps(
        {
            "id": f"batch_req_{custom_id}",
            "custom_id": custom_id,
            "response": {
                "status_code": 400,
                "request_id": "req_y",
                "body": {"error": {"message": "bad", "type": "invalid_request_error"}},
            },
            "error": None,
        }
    ).encode()


def test_openai_stream_results_reads_the_batch_then_output_then_error_file():
    output = [openai_output_line("r1"), openai_output_line("r2")]
    errors = [openai_error_line("r3")]
    provider, upstream = make_openai(
        openai_files_upstream(
            OPENAI_COMPLETED,
            {
                "file-out123": b"\n".join(output) + b"\n\n",
                "file-err456": errors[0] + b"\n",
            },
        )
    )
    assert list(provider.stream_results("batch_abc123")) == output + errors
    assert upstream.routes == [
        ("GET", "/v1/batches/batch_abc123"),
        ("GET", "/v1/files/file-out123/content"),
        ("GET", "/v1/files/file-err456/content"),
    ]


def test_openai_stream_results_skips_a_missing_error_file():
    batch = {**OPENAI_COMPLETED, "error_file_id": None, "request_counts": {"total": 2, "completed": 2, "failed": 0}}
    output = [openai_output_line("r1"), openai_output_line("r2")]
    provider, upstream = make_openai(openai_files_upstream(batch, {"file-out123": b"\n".join(output)}))
    assert list(provider.stream_results("batch_abc123")) == output
    assert upstream.routes == [("GET", "/v1/batches/batch_abc123"), ("GET", "/v1/files/file-out123/content")]


def test_openai_stream_results_of_a_running_batch_is_empty():
    provider, upstream = make_openai(openai_files_upstream(OPENAI_IN_PROGRESS, {}))
    assert list(provider.stream_results("batch_abc123")) == []
    assert upstream.routes == [("GET", "/v1/batches/batch_abc123")]


def test_openai_result_sources_and_open_results():
    provider, _upstream = make_openai(openai_files_upstream(OPENAI_CANCELLED, {"file-err456": b"line\n"}))
    assert provider.result_sources(openai.parse_batch(OPENAI_CANCELLED, account="o")) == ["output", "error"]
    with provider.open_results("batch_abc123", "error") as response:
        assert response.read() == b"line\n"
    with pytest.raises(ValueError):
        with provider.open_results("batch_abc123", "input"):
            pass
    provider, _ = make_openai(openai_files_upstream(OPENAI_IN_PROGRESS, {}))
    with pytest.raises(NotFound):
        with provider.open_results("batch_abc123", "output"):
            pass


@pytest.mark.parametrize(
    "status, kind, headers, expected",
    [
        (404, "invalid_request_error", {}, NotFound),
        (500, "server_error", {}, UpstreamError),
        (503, "server_error", {}, Overloaded),
        (429, "rate_limit_exceeded", {"retry-after": "7"}, RateLimited),
    ],
    ids=["404", "500", "503", "429"],
)
def test_openai_stream_results_error_status_on_a_file_raises(status, kind, headers, expected):
    failing = httpx.Response(status, json=openai_error("No such File object: file-err456", kind), headers=headers)
    provider, upstream = make_openai(
        openai_files_upstream(
            OPENAI_COMPLETED,
            {
                "file-out123": openai_output_line("r1") + b"\n",
                "file-err456": failing,
            },
        )
    )
    stream = provider.stream_results("batch_abc123")
    assert next(stream) == openai_output_line("r1")  # the output file streams first
    with pytest.raises(expected) as caught:
        next(stream)
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert "No such File object" in caught.value.message
    if status == 429:
        assert caught.value.retry_after == 7.0
    assert upstream.routes[-1] == ("GET", "/v1/files/file-err456/content")


def test_openai_stream_results_error_status_on_the_batch_raises():
    provider, upstream = make_openai(reply(404, openai_error("No batch found with id 'batch_abc123'.")))
    with pytest.raises(NotFound):
        list(provider.stream_results("batch_abc123"))
    assert upstream.routes == [("GET", "/v1/batches/batch_abc123")]


def test_openai_stream_results_refuses_a_strange_file_id_without_asking_for_it():
    batch = {**OPENAI_COMPLETED, "output_file_id": "../../organization/api_keys", "error_file_id": None}
    provider, upstream = make_openai(openai_files_upstream(batch, {}))
    with pytest.raises(BadResponse):
        list(provider.stream_results("batch_abc123"))
    assert upstream.routes == [("GET", "/v1/batches/batch_abc123")]


def test_raw_is_the_body_as_sent():
    body = copy.deepcopy(OPENAI_CANCELLING)
    provider, _ = make_openai(reply(200, body))
    batch = provider.retrieve("batch_abc123")
    assert batch.raw == OPENAI_CANCELLING
    assert batch.raw["input_file_id"] == "file-abc123"


# --- hardening found in review ------------------------------------------------------------------------------------


def test_result_lines_keep_unicode_line_separators_inside_json_strings():
    line = json.dumps({"custom_id": "r1", "text": "a\u2028b\u2029c\x85d"}, ensure_ascii=False).encode()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=line + b"\n" + line + b"\n")

    provider, _ = make_anthropic(answer)
    lines = list(provider.stream_results("msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"))
    assert lines == [line, line]
    assert json.loads(lines[0])["text"] == "a\u2028b\u2029c\x85d"


def test_transport_failure_mid_results_is_a_provider_error():
    def answer(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield result_line("req-1") + b"\n"
            raise httpx.ReadTimeout("stalled")

        return httpx.Response(200, content=body())

    provider, _ = make_anthropic(answer)
    stream = provider.stream_results("msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d")
    with pytest.raises(UpstreamTimeout):
        list(stream)


def test_an_upstream_that_echoes_the_key_has_it_redacted(spec):
    key = spec["key"]
    provider, _ = spec["make"](reply(401, spec["error"]("authentication_error", f"bad key {key} given")))
    with pytest.raises(UpstreamError) as raised:
        provider.retrieve(spec["batch_id"])
    assert key not in raised.value.message and "[redacted]" in raised.value.message


def test_retry_after_that_is_not_a_finite_number_is_ignored():
    provider, _ = make_anthropic(
        reply(429, anthropic_error("rate_limit_error", "slow down"), headers={"retry-after": "inf"})
    )
    with pytest.raises(RateLimited) as raised:
        provider.retrieve("msgbatch_013Zva2CMHLNnXjNJJKqJ2EF")
    assert raised.value.retry_after is None
