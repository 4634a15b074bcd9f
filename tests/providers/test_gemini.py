"""The Gemini Batch Mode provider against httpx.MockTransport and answers recorded from the API
(tests/fixtures/gemini/), and hypothesis properties over what it parses. No network, no database."""

from __future__ import annotations

import copy
import json
import pickle
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.providers import gemini
from dashboard.providers.base import AlreadyEnded, BadResponse, Batch, NotFound, ProviderError, UpstreamError
from dashboard.providers.errors import EARLIEST, LATEST, MAX_COUNT, UnreadableBatch
from tests.providers.test_providers import Upstream, reply
from tests.providers.test_untrusted_upstream import FAST, assert_ours, bad_counts, bad_iso_times, json_values

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gemini"
URL = "https://generativelanguage.googleapis.com"
KEY = "AIzaSy" + "GeminiTestKey0123456789abcdefXYZ"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


PENDING = fixture("batch_pending.json")
RUNNING = fixture("batch_running.json")
SUCCEEDED_INLINE = fixture("batch_succeeded_inline.json")
RESPONSES_FILE = (FIXTURES / "responses.jsonl").read_bytes()
KEY_INVALID = fixture("error_api_key_invalid.json")
PENDING_ID = "tti3ik8qob66dxcvynlg5swnutyntbi926ac"
RUNNING_ID = "4m855v7q30kc7gtzcigdg9m72o87s08w33vp"


def with_metadata(body: dict, **changes) -> dict:
    return {**body, "metadata": {**body["metadata"], **changes}}


SUCCEEDED_FILE = {
    **with_metadata(
        PENDING,
        state="BATCH_STATE_SUCCEEDED",
        endTime="2025-12-03T17:30:00.5Z",
        updateTime="2025-12-03T17:30:00.5Z",
        batchStats={"requestCount": "3", "successfulRequestCount": "2", "failedRequestCount": "1"},
        output={"responsesFile": "files/batch-tti3ik8qob66dxcvynlg5swnutyntbi926ac"},
    ),
    "done": True,
    "response": {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput",
        "responsesFile": "files/batch-tti3ik8qob66dxcvynlg5swnutyntbi926ac",
    },
}
CANCELLED = with_metadata(
    RUNNING,
    state="BATCH_STATE_CANCELLED",
    endTime="2025-12-10T18:29:00Z",
    batchStats={
        "requestCount": "10",
        "successfulRequestCount": "4",
        "failedRequestCount": "1",
        "pendingRequestCount": "5",
    },
)
VALID = [PENDING, RUNNING, SUCCEEDED_INLINE, SUCCEEDED_FILE, CANCELLED]


def make(answer, *, key: str = KEY, secrets: tuple[str, ...] = ()) -> tuple[gemini.GeminiProvider, Upstream]:
    upstream = Upstream(answer)
    client = httpx.Client(base_url=URL, transport=httpx.MockTransport(upstream), headers=gemini.auth_headers(key))
    return gemini.GeminiProvider(client, account="gemini-ops", secrets=secrets), upstream


def read(data, *, secrets: tuple[str, ...] = ()) -> Batch | UnreadableBatch:
    try:
        return gemini.parse_batch(data, account="gemini-ops", secrets=secrets)
    except UnreadableBatch as error:
        return error


# --- recorded answers -----------------------------------------------------------------------------------------


def test_the_recorded_pending_batch():
    provider, upstream = make(reply(200, PENDING))
    batch = provider.retrieve(PENDING_ID)
    assert (batch.provider, batch.account, batch.id, batch.status) == ("gemini", "gemini-ops", PENDING_ID, "pending")
    assert batch.can_cancel and not batch.is_ended and batch.counts_are_final_only is False
    assert batch.counts.known and (batch.counts.total, batch.counts.processing, batch.counts.succeeded) == (3, 3, 0)
    created = datetime(2025, 12, 3, 17, 23, 6, 4734, tzinfo=UTC)  # nanoseconds cut to microseconds
    assert batch.created_at == created and batch.timestamps == {
        "createTime": created,
        "updateTime": created,
        "endTime": None,
    }
    assert batch.expires_at == created + timedelta(hours=48)
    assert batch.ended_at is None and batch.cancel_initiated_at is None
    assert batch.metadata == {"displayName": "capitals-batch"}  # not the Operation's metadata: the batch
    assert batch.raw == PENDING
    assert upstream.routes == [("GET", f"/v1beta/batches/{PENDING_ID}")]
    assert upstream.calls[0].headers["x-goog-api-key"] == KEY


def test_the_recorded_running_batch():
    batch = gemini.parse_batch(RUNNING, account="gemini-ops")
    assert (batch.id, batch.status, batch.can_cancel, batch.counts.processing) == (RUNNING_ID, "running", True, 3)
    assert batch.timestamps["updateTime"] == datetime(2025, 12, 10, 18, 27, 38, 619743, tzinfo=UTC)


def test_the_recorded_succeeded_inline_batch_keeps_only_the_number_of_its_inlined_responses():
    batch = gemini.parse_batch(SUCCEEDED_INLINE, account="gemini-ops")
    assert batch.status == "succeeded" and batch.is_ended and not batch.can_cancel
    assert (batch.counts.total, batch.counts.succeeded, batch.counts.errored, batch.counts.processing) == (3, 3, 0, 0)
    assert batch.ended_at == datetime(2025, 12, 3, 17, 24, 41, 850709, tzinfo=UTC)
    kept = batch.raw["response"]["inlinedResponses"]["inlinedResponses"]
    assert kept == "3 inlined responses: read from Gemini when the results are shown"
    assert SUCCEEDED_INLINE["response"]["inlinedResponses"]["inlinedResponses"][0]["response"]  # the answer untouched
    assert gemini.GeminiProvider.result_sources(None, batch) == ["responses"]


def test_the_stats_read_right_after_a_cancel_tell_how_many_requests_finished_after_it():
    running = gemini.parse_batch(
        with_metadata(RUNNING, batchStats={"requestCount": "10", "successfulRequestCount": "2"}), account="gemini-ops"
    )
    kept = gemini.counts_at_cancel(running)
    assert kept == {"requestCount": "10", "successfulRequestCount": "2"}
    cancelled = gemini.parse_batch(CANCELLED, account="gemini-ops")  # 4 succeeded, 1 failed in the end
    count, text = gemini.after_cancel(cancelled, kept)
    assert count == 3 and "2 requests had finished when the cancel was accepted" in text
    assert gemini.after_cancel(cancelled, None)[0] is None
    assert gemini.after_cancel(cancelled, {"successfulRequestCount": "2e9"})[0] is None  # not a count


def test_a_cancelled_batch_counts_what_never_ran_as_canceled():
    batch = gemini.parse_batch(CANCELLED, account="gemini-ops")
    counts = batch.counts
    assert batch.status == "cancelled" and batch.is_ended and not batch.can_cancel
    assert (counts.total, counts.processing, counts.succeeded, counts.errored, counts.canceled, counts.expired) == (
        10,
        0,
        4,
        1,
        5,
        0,
    )
    expired = gemini.parse_batch(with_metadata(CANCELLED, state="BATCH_STATE_EXPIRED"), account="gemini-ops")
    assert (expired.counts.canceled, expired.counts.expired, expired.status in gemini.ENDED_BADLY) == (0, 5, True)
    failed = gemini.parse_batch(with_metadata(CANCELLED, state="BATCH_STATE_FAILED"), account="gemini-ops")
    assert (failed.counts.canceled, failed.counts.expired, failed.counts.processing) == (0, 0, 0)


@pytest.mark.parametrize("stats", [None, {}, {"pendingRequestCount": "3"}])
def test_a_batch_without_a_request_count_has_unknown_counts_not_zero(stats):
    metadata = {key: value for key, value in PENDING["metadata"].items() if key != "batchStats"}
    if stats is not None:
        metadata["batchStats"] = stats
    batch = gemini.parse_batch({**PENDING, "metadata": metadata}, account="gemini-ops")
    assert batch.counts.known is False
    assert (batch.counts.total, batch.counts.processing) == (0, 0)


def test_counts_are_read_as_int64_strings_or_numbers():
    body = with_metadata(
        RUNNING, batchStats={"requestCount": 7, "successfulRequestCount": "2", "pendingRequestCount": "5"}
    )
    counts = gemini.parse_batch(body, account="gemini-ops").counts
    assert (counts.total, counts.succeeded, counts.processing) == (7, 2, 5)


@pytest.mark.parametrize(
    ("state", "word", "ended", "cancelable"),
    [
        ("BATCH_STATE_PENDING", "pending", False, True),
        ("BATCH_STATE_RUNNING", "running", False, True),
        ("BATCH_STATE_SUCCEEDED", "succeeded", True, False),
        ("BATCH_STATE_FAILED", "failed", True, False),
        ("BATCH_STATE_CANCELLED", "cancelled", True, False),
        ("BATCH_STATE_EXPIRED", "expired", True, False),
        ("BATCH_STATE_UNSPECIFIED", "unspecified", False, False),
        ("BATCH_STATE_PAUSED_FOR_REVIEW", "paused_for_review", False, False),
    ],
)
def test_states_are_shown_without_their_prefix(state, word, ended, cancelable):
    batch = gemini.parse_batch(with_metadata(RUNNING, state=state), account="gemini-ops")
    assert (batch.status, batch.is_ended, batch.can_cancel) == (word, ended, cancelable)
    assert word in gemini.STATUSES or not (ended or cancelable)


# --- list, cancel, errors ---------------------------------------------------------------------------------------


def test_the_list_reads_operations_and_pages_by_token():
    pages = {
        None: {"operations": [RUNNING, PENDING], "nextPageToken": "CiAKGjB0token"},
        "CiAKGjB0token": {"operations": [SUCCEEDED_FILE]},
    }
    provider, upstream = make(lambda request: httpx.Response(200, json=pages[request.url.params.get("pageToken")]))
    first = provider.list_page(limit=2)
    assert [batch.id for batch in first.batches] == [RUNNING_ID, PENDING_ID]
    assert (first.has_more, first.next_cursor) == (True, "CiAKGjB0token")
    second = provider.list_page(limit=2, after=first.next_cursor)
    assert (second.has_more, second.next_cursor, len(second.batches)) == (False, None, 1)
    assert [dict(call.url.params) for call in upstream.calls] == [
        {"pageSize": "2"},
        {"pageSize": "2", "pageToken": "CiAKGjB0token"},
    ]
    assert upstream.routes[0] == ("GET", "/v1beta/batches")


def test_an_empty_list_leaves_out_its_operations():
    provider, _ = make(reply(200, {}))
    page = provider.list_page(limit=5)
    assert (page.batches, page.has_more, page.next_cursor) == ([], False, None)


def test_a_cancel_answers_an_empty_object_and_the_batch_is_retrieved_after():
    cancelled = with_metadata(RUNNING, state="BATCH_STATE_CANCELLED")

    def answer(request):
        return httpx.Response(200, json={} if request.method == "POST" else cancelled)

    provider, upstream = make(answer)
    batch = provider.cancel(RUNNING_ID)
    assert batch.status == "cancelled"
    assert upstream.routes == [
        ("POST", f"/v1beta/batches/{RUNNING_ID}:cancel"),
        ("GET", f"/v1beta/batches/{RUNNING_ID}"),
    ]


def test_a_refused_cancel_of_an_ended_batch_is_already_ended():
    refusal = {"error": {"code": 400, "message": "The batch has already finished.", "status": "FAILED_PRECONDITION"}}

    def answer(request):
        return (
            httpx.Response(400, json=refusal) if request.method == "POST" else httpx.Response(200, json=SUCCEEDED_FILE)
        )

    provider, _ = make(answer)
    with pytest.raises(AlreadyEnded) as raised:
        provider.cancel(PENDING_ID)
    assert raised.value.current.status == "succeeded" and raised.value.kind == "FAILED_PRECONDITION"


def test_google_errors_are_named_by_their_status_and_never_show_the_key():
    echoed = {"error": {**KEY_INVALID["error"], "message": f"API key not valid: {KEY}"}}
    provider, _ = make(reply(400, echoed))
    with pytest.raises(UpstreamError) as raised:
        provider.retrieve(PENDING_ID)
    error = raised.value
    assert (error.status, error.kind) == (400, "INVALID_ARGUMENT")
    assert KEY not in error.message and KEY[:16] not in error.message and "API key not valid" in error.message
    missing = {"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}
    with pytest.raises(NotFound):
        make(reply(404, missing))[0].retrieve(PENDING_ID)


@pytest.mark.parametrize(
    "bad", ["", "batches/x", "../files/x", "abc:cancel", "ABC", "abc?x=1", "abc%2F", "a" * 101, "-abc", "abc def"]
)
def test_malformed_ids_never_reach_a_url(bad):
    provider, upstream = make(reply(200, PENDING))
    assert not provider.is_valid_id(bad)
    for call in (provider.retrieve, provider.cancel):
        with pytest.raises(ValueError):
            call(bad)
    assert upstream.calls == []


# --- results ------------------------------------------------------------------------------------------------------


def test_the_responses_file_is_downloaded_as_the_sdk_does_and_parsed():
    def answer(request):
        if request.url.path.endswith(":download"):
            return httpx.Response(200, content=RESPONSES_FILE)
        return httpx.Response(200, json=SUCCEEDED_FILE)

    provider, upstream = make(answer)
    batch = provider.retrieve(PENDING_ID)
    assert provider.result_sources(batch) == ["responses"]
    lines = list(provider.stream_results(PENDING_ID))
    assert upstream.routes[-1] == ("GET", "/v1beta/files/batch-tti3ik8qob66dxcvynlg5swnutyntbi926ac:download")
    assert upstream.calls[-1].url.params["alt"] == "media"
    parsed = [gemini.parse_result_line(n, json.loads(line), line.decode()) for n, line in enumerate(lines, 1)]
    assert [(line.custom_id, line.type, line.model, line.stop_reason) for line in parsed] == [
        ("gemini-sample-0", "succeeded", "gemini-2.0-flash", "STOP"),
        ("gemini-sample-1", "succeeded", "gemini-2.0-flash", "STOP"),
    ]
    assert (parsed[0].input_tokens, parsed[0].output_tokens) == (13, 8)


def test_inlined_responses_are_read_from_a_fresh_retrieve_one_a_line():
    provider, upstream = make(reply(200, SUCCEEDED_INLINE))
    known = provider.retrieve(PENDING_ID)
    with provider.open_results(PENDING_ID, known=known) as response:
        body = b"".join(response.iter_raw())
        assert int(response.headers["content-length"]) == len(body)
    lines = body.splitlines()
    assert len(lines) == 3 and upstream.routes == [("GET", f"/v1beta/batches/{PENDING_ID}")] * 2
    first = gemini.parse_result_line(1, json.loads(lines[0]), lines[0].decode())
    assert (first.type, first.output_tokens, first.model) == ("succeeded", 8, "gemini-2.5-flash-lite")


def test_a_batch_without_output_has_no_result_sources():
    provider, _ = make(reply(200, RUNNING))
    batch = provider.retrieve(RUNNING_ID)
    assert provider.result_sources(batch) == []
    with pytest.raises(NotFound):
        with provider.open_results(RUNNING_ID, known=batch):
            pass


def test_a_responses_file_with_an_odd_name_is_refused():
    odd = with_metadata(SUCCEEDED_FILE, output={"responsesFile": "files/../../v1beta/batches"})
    provider, upstream = make(reply(200, odd))
    with pytest.raises(BadResponse):
        with provider.open_results(PENDING_ID):
            pass
    assert len(upstream.calls) == 1  # the retrieve only


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            {"key": "r2", "error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}},
            ("r2", "errored", "RESOURCE_EXHAUSTED", "Resource exhausted"),
        ),
        ({"key": "r3", "error": {"code": 13, "message": "internal"}}, ("r3", "errored", "13", "internal")),
        (
            {"metadata": {"key": "lead-3"}, "response": {"promptFeedback": {"blockReason": "SAFETY"}}},
            ("lead-3", "succeeded", "", ""),
        ),
        ({"key": "r4"}, ("r4", "invalid", "no_response", "This line has neither a response nor an error.")),
        (
            {"key": 7, "response": "text"},
            ("7", "invalid", "no_response", "This line has neither a response nor an error."),
        ),
    ],
)
def test_result_lines_of_every_kind(line, expected):
    parsed = gemini.parse_result_line(1, line, json.dumps(line))
    assert (parsed.custom_id, parsed.type, parsed.error_type, parsed.error_message) == expected


def test_a_blocked_prompt_says_why_as_its_stop_reason():
    line = {"metadata": {"key": "lead-3"}, "response": {"promptFeedback": {"blockReason": "SAFETY"}}}
    assert gemini.parse_result_line(1, line, "").stop_reason == "SAFETY"


# --- accounts -----------------------------------------------------------------------------------------------------


def test_accounts_are_read_as_the_sdk_reads_them():
    assert gemini.from_environment({}) == []
    (both,) = gemini.from_environment({"GOOGLE_API_KEY": "google-key", "GEMINI_API_KEY": "gemini-key"})
    assert (both.api_key, both.name, both.base_url) == ("google-key", "default", gemini.DEFAULT_BASE_URL)
    (named,) = gemini.from_environment(
        {
            "GEMINI_API_KEY": " gemini-key\n",
            "GEMINI_ACCOUNT_NAME": "prod",
            "GOOGLE_GEMINI_BASE_URL": "http://proxy:8080",
        }
    )
    assert (named.api_key, named.name, named.base_url) == ("gemini-key", "prod", "http://proxy:8080")
    connection = gemini.connect(named)
    assert dict(connection.headers) == {"x-goog-api-key": "gemini-key"} and connection.secrets == ("gemini-key",)


# --- properties: a Batch or our own error, nothing else ----------------------------------------------------------


def assert_valid(batch: Batch) -> None:
    assert isinstance(batch, Batch) and gemini.BATCH_ID.fullmatch(batch.id)
    assert re.fullmatch(r"[a-z][a-z_]*", batch.status)
    for value in (*batch.timestamps.values(), batch.expires_at, batch.ended_at):
        assert value is None or value.tzinfo is not None
    assert EARLIEST <= batch.created_at < LATEST
    counts = batch.counts
    for value in (counts.total, counts.processing, counts.succeeded, counts.errored, counts.canceled, counts.expired):
        assert type(value) is int and 0 <= value <= MAX_COUNT
    assert counts.known or counts.total == counts.processing == counts.succeeded == 0
    assert isinstance(dict(batch.metadata), dict)
    assert pickle.loads(pickle.dumps(batch)).id == batch.id  # noqa: S301 (our own bytes)
    json.dumps(dict(batch.raw))  # stored as JSON


GEMINI_FIELDS = ["name", "metadata", "done", "response", "error"]
METADATA_FIELDS = [
    "state",
    "createTime",
    "updateTime",
    "endTime",
    "batchStats",
    "displayName",
    "output",
    "model",
    "name",
]
operation_like = st.dictionaries(
    st.sampled_from(GEMINI_FIELDS) | st.text(max_size=6),
    json_values | st.dictionaries(st.sampled_from(METADATA_FIELDS), json_values, max_size=6),
    max_size=5,
)


@FAST
@given(data=json_values | operation_like)
def test_any_json_is_a_valid_batch_or_our_own_error(data):
    answer = read(data)
    if isinstance(answer, Batch):
        assert_valid(answer)
    else:
        assert_ours(answer, batch_id=answer.batch_id)


@FAST
@given(
    which=st.integers(0, len(VALID) - 1),
    changes=st.dictionaries(st.sampled_from(GEMINI_FIELDS), json_values, max_size=2),
    metadata_changes=st.dictionaries(st.sampled_from(METADATA_FIELDS), json_values, max_size=4),
    stats_changes=st.dictionaries(st.sampled_from(gemini.COUNT_FIELDS) | st.text(max_size=5), json_values, max_size=3),
)
def test_a_valid_batch_with_arbitrary_fields_changed_is_a_valid_batch_or_our_own_error(
    which, changes, metadata_changes, stats_changes
):
    body = copy.deepcopy(VALID[which])
    body["metadata"].update(metadata_changes)
    if isinstance(body["metadata"].get("batchStats"), dict):
        body["metadata"]["batchStats"].update(stats_changes)
    body.update(changes)
    answer = read(body)
    if isinstance(answer, Batch):
        assert_valid(answer)
    else:
        name = body.get("name")
        expected = name[len("batches/") :] if isinstance(name, str) and name.startswith("batches/") else ""
        assert_ours(answer, batch_id=expected if gemini.BATCH_ID.fullmatch(expected) else "")


@FAST
@given(field=st.sampled_from(gemini.TIMESTAMPS), value=bad_iso_times)
def test_timestamps_out_of_range_or_not_timestamps_are_refused(field, value):
    answer = read(with_metadata(RUNNING, **{field: value}))
    assert isinstance(answer, UnreadableBatch) and f"metadata.{field}" in answer.message
    assert_ours(answer, batch_id=RUNNING_ID)


@FAST
@given(
    which=st.sampled_from(gemini.COUNT_FIELDS),
    value=bad_counts.filter(lambda value: not (isinstance(value, str) and value.isascii() and value.isdigit()))
    | st.sampled_from(["-1", "1e3", " 3", "3.0", "0x10", "9" * 20, "1000000001", "１２"]),
)
def test_counts_that_are_not_plausible_int64_are_refused(which, value):
    stats = {**RUNNING["metadata"]["batchStats"], which: value}
    answer = read(with_metadata(RUNNING, batchStats=stats))
    assert isinstance(answer, UnreadableBatch) and f"metadata.batchStats.{which}" in answer.message
    assert str(value)[:20] not in answer.message.replace(RUNNING_ID, "") or len(str(value)) < 6


@FAST
@given(state=st.text(max_size=40).filter(lambda text: not re.fullmatch(r"BATCH_STATE_[A-Z][A-Z_]{0,39}", text)))
def test_a_state_that_is_not_a_batch_state_is_refused(state):
    answer = read(with_metadata(RUNNING, state=state))
    assert isinstance(answer, UnreadableBatch) and "metadata.state" in answer.message


def test_names_that_are_not_batches_and_an_id_are_refused_without_being_quoted():
    for bad in (None, 7, RUNNING_ID, "operations/abc", "batches/", "batches/a/b", "batches/" + KEY.lower()):
        answer = read({**RUNNING, "name": bad}, secrets=(KEY.lower(),))
        assert isinstance(answer, UnreadableBatch) and answer.batch_id == ""
        assert KEY.lower()[:16] not in answer.message


@FAST
@given(data=json_values | st.dictionaries(st.sampled_from(["key", "response", "error", "metadata"]), json_values))
def test_any_result_line_is_read_into_a_result_line(data):
    if not isinstance(data, dict):
        data = {"key": data}
    line = gemini.parse_result_line(3, data, "raw")
    assert line.type in ("succeeded", "errored", "invalid") and line.number == 3
    for value in (line.custom_id, line.model, line.stop_reason, line.error_type, line.error_message):
        assert isinstance(value, str)
    assert line.input_tokens is None or type(line.input_tokens) is int


def test_a_list_with_one_unreadable_operation_shows_the_others():
    broken = with_metadata(PENDING, createTime="0001-01-01T00:00:00Z")
    provider, _ = make(reply(200, {"operations": [RUNNING, broken, "junk"], "nextPageToken": "t"}))
    page = provider.list_page(limit=3)
    assert [batch.id for batch in page.batches] == [RUNNING_ID]
    assert [batch_id for batch_id, _ in page.unreadable] == [PENDING_ID, ""]
    assert page.next_cursor == "t"


def test_an_answer_that_is_not_an_object_is_a_bad_response():
    provider, _ = make(lambda request: httpx.Response(200, content=b"[1, 2]"))
    with pytest.raises(ProviderError):
        provider.list_page(limit=1)
