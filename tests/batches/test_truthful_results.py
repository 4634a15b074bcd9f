"""Results and data that must be told truthfully: odd text in result lines, exports that fail
half-way, error pages served with 200, huge offsets, answers about the wrong batch, the cancel
story after two cancels, and the operator's view of the admin.

The ended batch comes from the embedded simulator through the poller (the store has it); its
results are then served by a stand-in for the provider's results endpoint, so each test can say
exactly which bytes upstream sends.
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import contextmanager

import httpx
import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.batches import services
from dashboard.batches.results import csv_row, parse_line
from dashboard.models import CancelAttempt
from dashboard.providers.anthropic import AnthropicProvider
from dashboard.providers.base import BadResponse, UpstreamError
from tests.factories import anthropic_batch, poll_store, text
from tests.providers.test_providers import ANTHROPIC_RUNNING

GOOD = {"custom_id": "req-1", "result": {"type": "succeeded", "message": {"model": "m", "usage": {}}}}
LONE_SURROGATE = b'{"custom_id": "req-\\ud800-x", "result": {"type": "errored", "error": {"type": "error", "error": {"type": "api_error", "message": "bad \\udfff text"}}}}'  # noqa: E501


def serve_results(monkeypatch, *chunks: bytes, content_type: str = "application/binary", fail_after: bool = False):
    """Have every Anthropic results request answered 200 with `chunks` (then a failure, if asked)."""
    served = []

    def body():
        yield from chunks
        if fail_after:
            raise UpstreamError("Anthropic HTTP 500 api_error: the stream broke")

    @contextmanager
    def open_results(self, batch_id, source="results", *, known=None):
        served.append(batch_id)
        yield httpx.Response(200, headers={"content-type": content_type}, content=body())

    monkeypatch.setattr(AnthropicProvider, "open_results", open_results)
    return served


@pytest.fixture
def ended(operator_client, embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk, count=3, ended=True)
    poll_store()
    return f"/batches/anthropic-ops/{batch.id}/"


def lines(*items) -> bytes:
    return b"".join((item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n" for item in items)


# --- text no page or file can encode ---------------------------------------------------------------


def test_a_lone_surrogate_in_a_result_line_neither_breaks_the_page_nor_cuts_the_export(
    operator_client, ended, monkeypatch
):
    serve_results(monkeypatch, lines(GOOD, LONE_SURROGATE, *[GOOD] * 7))
    page = operator_client.get(ended)
    assert page.status_code == 200
    assert "req-\ufffd-x" in text(page) and "bad \ufffd text" in text(page)
    export = operator_client.get(ended + "results/export.csv")
    assert export.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert len(rows) == 1 + 9, "every line exported, none cut off"
    assert rows[2][1] == "req-\ufffd-x" and rows[-1][0] == "9"
    summary = operator_client.get(ended + "results/summary", HTTP_HX_REQUEST="true")
    assert summary.status_code == 200 and "bad \ufffd text" in text(summary)


json_leaves = st.one_of(
    st.text(alphabet=st.characters(codec=None, categories=None), max_size=20),  # surrogates included
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
json_values = st.recursive(
    json_leaves, lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children)
)


@pytest.mark.slow
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    provider=st.sampled_from(["anthropic", "openai"]),
    custom_id=json_values,
    message=json_values,
    model=json_values,
)
def test_every_text_field_of_any_result_line_can_be_shown_and_exported(provider, custom_id, message, model):
    """Whatever JSON values arrive where text belongs, the line's text fields are printable text
    (never Python's repr of an object) and its CSV row can be written and encoded."""
    if provider == "anthropic":
        data = {
            "custom_id": custom_id,
            "result": {"type": "errored", "error": {"error": {"type": model, "message": message}}},
        }
    else:
        data = {
            "custom_id": custom_id,
            "response": {"status_code": 400, "body": {"model": model, "error": {"message": message, "type": model}}},
        }
    raw = json.dumps(data, ensure_ascii=True).encode()  # lone surrogates travel as \\udXXX escapes
    line = parse_line(provider, 1, raw)
    for value in (line.custom_id, line.model, line.error_type, line.error_message):
        assert isinstance(value, str)
        value.encode("utf-8")  # raises on a lone surrogate
        assert not value.startswith(("{'", "['")), f"Python repr shown: {value!r}"
    out = io.StringIO()
    csv.writer(out).writerow(csv_row(line))
    out.getvalue().encode("utf-8")


# --- an export that fails after its header -------------------------------------------------------


def test_an_export_that_fails_half_way_says_so_in_the_file(operator_client, ended, monkeypatch):
    serve_results(monkeypatch, lines(GOOD, GOOD, GOOD), fail_after=True)
    export = operator_client.get(ended + "results/export.csv")
    assert export.status_code == 200  # the header was already on its way
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [row[0] for row in rows[1:4]] == ["1", "2", "3"]
    assert rows[-1][0] == "ERROR"
    assert "stopped after result line 3" in rows[-1][1] and "the stream broke" in rows[-1][1]
    assert "incomplete" in rows[-1][1]


# --- an error page served with 200 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"<!doctype html><html><body>Service temporarily unavailable</body></html>", "text/html; charset=utf-8"),
        (b"<!doctype html><html><body>Bad gateway</body></html>\n", "application/octet-stream"),
        (b"Service temporarily unavailable\n" + lines(GOOD), "text/plain"),
    ],
)
def test_a_200_that_is_not_json_lines_is_a_provider_error_and_its_summary_is_never_kept(
    operator_client, ended, monkeypatch, body, content_type
):
    serve_results(monkeypatch, body, content_type=content_type)
    page = operator_client.get(ended)
    assert page.status_code == 200
    assert "Could not read the results: Anthropic answered for the results file with" in text(page)
    assert 'class="result-line result-invalid"' not in text(page)
    summary = operator_client.get(ended + "results/summary", HTTP_HX_REQUEST="true")
    assert "Could not read the results" in text(summary)
    assert operator_client.get(ended + "results/export.csv").status_code == 502
    # The upstream recovers: the summary is counted again, not served from a cached error.
    serve_results(monkeypatch, lines(GOOD, GOOD))
    summary = operator_client.get(ended + "results/summary", HTTP_HX_REQUEST="true")
    assert "succeeded 2" in text(summary) and "Could not read" not in text(summary)


def test_an_empty_results_file_is_no_lines_not_an_error(operator_client, ended, monkeypatch):
    serve_results(monkeypatch, b"")
    page = operator_client.get(ended)
    assert page.status_code == 200 and "No result lines match." in text(page)


# --- offsets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", ["100000000000000000000", "9" * 5000, "-5", "1e9", "NaN", ""])
def test_any_offset_is_a_page_not_a_500(operator_client, ended, monkeypatch, offset):
    serve_results(monkeypatch, lines(GOOD, GOOD))
    response = operator_client.get(ended, {"offset": offset})
    assert response.status_code == 200


# --- an answer about another batch -----------------------------------------------------------------


def test_an_answer_about_another_batch_is_refused(settings):
    other = {**ANTHROPIC_RUNNING, "id": "msgbatch_01OTHER"}
    client = httpx.Client(
        base_url="https://api.anthropic.invalid",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=other)),
    )
    provider = AnthropicProvider(client, account="anthropic-default")
    with pytest.raises(BadResponse, match="answered a request about batch msgbatch_01ASKED with another batch"):
        provider.retrieve("msgbatch_01ASKED")
    with pytest.raises(BadResponse, match="another batch"):
        provider.cancel("msgbatch_01ASKED")
    assert provider.retrieve("msgbatch_01OTHER").id == "msgbatch_01OTHER"  # the control


# --- the cancel story after two cancels -------------------------------------------------------------


def test_the_cancel_story_counts_from_the_first_accepted_cancel():
    from dashboard.providers.openai import parse_batch

    ended = parse_batch(
        {
            "id": "batch_story",
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": "file-1",
            "completion_window": "24h",
            "status": "cancelled",
            "created_at": 1_764_000_000,
            "cancelling_at": 1_764_000_100,
            "cancelled_at": 1_764_000_200,
            "request_counts": {"total": 1000, "completed": 500, "failed": 0},
        },
        account="openai-ops",
    )
    attempts = [
        CancelAttempt(outcome="accepted", counts_at_cancel={"total": 1000, "completed": 100, "failed": 0}),
        CancelAttempt(outcome="accepted", counts_at_cancel={"total": 1000, "completed": 353, "failed": 0}),
    ]
    story = services.cancel_story(batch=ended, attempts=attempts)
    assert story.finished_after_cancel == 400


# --- the operator in the admin ------------------------------------------------------------------------


def test_the_operator_make_run_creates_reads_the_audit_trail_and_the_store_in_the_admin(db):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("ensure_operator", stdout=io.StringIO())
    client = Client()
    client.force_login(get_user_model().objects.get(username="operator"))
    pages = ("audit/", "admin/", "admin/dashboard/cancelattempt/", "admin/dashboard/storedbatch/")
    for page in pages:
        assert client.get("/" + page).status_code == 200, page
    assert client.get("/admin/auth/user/").status_code == 403, "operators do not manage users"


def test_staff_read_bulk_cancels_and_stored_summaries_in_the_admin(admin_client):
    for page in ("bulkcancel", "resultssummary"):
        assert admin_client.get(f"/admin/dashboard/{page}/").status_code == 200, page
        assert admin_client.get(f"/admin/dashboard/{page}/add/").status_code == 403, "read-only"


# --- a batch the provider no longer knows -------------------------------------------------------------


def test_a_batch_gone_upstream_stops_polling_and_its_page_is_a_404(operator_client, embedded_upstream, anthropic_sdk):
    from django.utils import timezone

    from dashboard.batches import store

    batch = anthropic_batch(anthropic_sdk, seconds=600)
    poll_store()
    assert store.mark_gone(account_key="anthropic-ops", batch_id=batch.id, at=timezone.now())
    assert not store.mark_gone(account_key="anthropic-ops", batch_id=batch.id, at=timezone.now()), "marked once"
    row = operator_client.get(f"/batches/anthropic-ops/{batch.id}/row", HTTP_HX_REQUEST="true")
    assert row.status_code == 286 and "hx-trigger" not in text(row) and "hx-post" not in text(row)
    assert "deleted upstream or not found" in text(row)
    detail = operator_client.get(f"/batches/anthropic-ops/{batch.id}/")
    assert detail.status_code == 404
    assert "deleted upstream or not found" in text(detail) and "last seen in_progress" in text(detail)
    for suffix in ("results/summary", "results/download", "results/export.csv"):
        assert operator_client.get(f"/batches/anthropic-ops/{batch.id}/{suffix}").status_code == 404
    # Listed again after all (it exists): it is an ordinary stored batch once more.
    poll_store()
    from dashboard.models import StoredBatch

    assert StoredBatch.objects.get(batch_id=batch.id).gone_at is None


# --- why a line is invalid, in an operator's words ------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "line", "error_type", "words"),
    [
        (
            "anthropic",
            b'{"custom_id": "a", "result": {"type": "succeeded"',
            "invalid_json",
            "unreadable from character",
        ),
        ("anthropic", b'{"custom_id": "a"} trailing', "invalid_json", "This line is not valid JSON"),
        ("anthropic", b"[" * 100_000, "invalid_json", "nests too deeply"),
        ("anthropic", b'{"custom_id": "a"}', "no_result", "This line has no result object."),
        ("anthropic", b'{"custom_id": "a", "result": {}}', "no_result_type", "does not say its type"),
        ("anthropic", b'{"custom_id": "a", "result": {"type": "vanished"}}', "unknown_result_type", "vanished"),
        ("openai", b'{"custom_id": "a", "response": {"body": {}}}', "no_status", "neither a response status"),
        ("openai", b'{"custom_id": "a", "response": {"status_code": 502}}', "http_502", "answered HTTP 502"),
    ],
)
def test_an_unreadable_line_says_why_in_plain_words(provider, line, error_type, words):
    parsed = parse_line(provider, 1, line)
    assert parsed.type in ("invalid", "errored")
    assert parsed.error_type == error_type
    assert words in parsed.error_message
    for python_text in ("Expecting", "delimiter", "RecursionError", "http_None", "Extra data", "string indices"):
        assert python_text not in parsed.error_message
