"""The batch detail page and its results views, through Django's test client, against the embedded simulator.

Batches are made with the official SDKs, which reach the simulator in process (tests/factories.py),
and moved into the past in the simulator's database when they should have ended. The pages read the
dashboard's store, which `poll_store` fills as the poller (`manage.py poll`) does; only the results
(pages of lines, summary, download, CSV export) are read upstream, by the views in the test thread
through the dashboard's own httpx clients, in process too, as they do by default. Every response
fetched here goes through `fetch`, which also checks that no API key ever appears in it.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import Counter
from datetime import UTC, datetime

import pytest

from dashboard.batches.results import CSV_COLUMNS
from dashboard.models import AccountState, CancelAttempt
from tests.factories import (
    ALL_KEYS,
    anthropic_batch,
    embedded_simulator_url,
    fault,
    openai_batch,
    openai_line,
    poll_store,
    time_passes,
)

# The batches of these tests run for ten minutes, and OpenAI's are a minute old: past validating.
RUNNING = {"seconds": 600}
RUNNING_OPENAI = {"seconds": 600, "ago": {"minutes": 1}}
HTMX_RESULTS = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "results"}
ANTHROPIC_TIMESTAMPS = ("created_at", "expires_at", "ended_at", "cancel_initiated_at", "archived_at")
OPENAI_TIMESTAMPS = (
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
RESULT_ROW = re.compile(r'<tr class="result-line result-(?P<type>[a-z]+)">(?P<body>.*?)</tr>', re.S)
CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
XSS = "<img src=x onerror=alert(1)>"


# --- helpers -------------------------------------------------------------------------------


def fetch(client, path: str, data: dict | None = None, **headers):
    """GET with the test client; the body (streamed or not) is read into `response.body`, checked for keys."""
    response = client.get(path, data or {}, **headers)
    if response.streaming:
        response.body = b"".join(response.streaming_content).decode()
    else:
        response.body = response.content.decode()
    for key in ALL_KEYS:
        assert key not in response.body, f"API key {key} leaked into {path}"
        for name, value in response.items():
            assert key not in value, f"API key {key} leaked into the {name} header of {path}"
    return response


def result_rows(body: str) -> list[dict]:
    """The result lines shown: number, custom_id, type and (OpenAI) file, from the results table."""
    found = []
    for match in RESULT_ROW.finditer(body):
        cells = CELL.findall(match["body"])
        custom_id = html.unescape(re.sub(r"</?code>", "", cells[1]))
        row = {"number": int(cells[0]), "custom_id": custom_id, "type": match["type"], "cells": cells}
        found.append(row)
    return found


def link(body: str, rel: str) -> str:
    match = re.search(
        rf'<a href="([^"]*)" hx-get="([^"]*)" hx-target="#results" hx-swap="outerHTML"[^>]* rel="{rel}">', body
    )
    if not match:
        return ""
    assert match[1] == match[2], "the link and its htmx request must ask for the same page"
    return html.unescape(match[1])


def field(body: str, name: str) -> str:
    match = re.search(rf"<tr><th>{re.escape(name)}</th><td>(.*?)</td></tr>", body, re.S)
    assert match, f"no {name!r} field on the page"
    return match[1].strip()


def raw_json(body: str) -> dict:
    match = re.search(
        r'<details class="raw"><summary>Raw JSON from [^<]*</summary><pre>(.*?)</pre></details>', body, re.S
    )
    assert match, "no raw JSON <details> on the page"
    return json.loads(html.unescape(match[1]))


def anthropic_results(make_client, batch_id: str) -> list[dict]:
    client = make_client()  # kept referenced while the results stream in
    return [entry.model_dump() for entry in client.messages.batches.results(batch_id)]


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def ended_anthropic(embedded_upstream, anthropic_sdk):
    """An ended Anthropic batch of 120 requests (req-000..req-119) and its results as the SDK reads them."""
    batch = anthropic_batch(anthropic_sdk, count=120, seconds=60, ended=True)
    results = anthropic_results(anthropic_sdk, batch.id)
    assert len(results) == 120
    kinds = Counter(entry["result"]["type"] for entry in results)
    assert kinds["errored"] >= 8 and kinds["succeeded"] >= 100, kinds  # 8% errored, 2% expired per 100 requests
    poll_store()
    return batch.id, results


@pytest.fixture
def ended_openai(embedded_upstream, openai_sdk):
    """A completed OpenAI batch of 120 requests with output and error files, one custom_id carrying HTML."""
    lines = [openai_line(f"req-{i:03d}") for i in range(119)] + [openai_line(f"evil-{XSS}")]
    batch = openai_batch(openai_sdk, lines=lines, seconds=60, ago={"hours": 1})
    done = openai_sdk().batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id and done.error_file_id
    output = jsonl(openai_sdk().files.content(done.output_file_id).text)
    errors = jsonl(openai_sdk().files.content(done.error_file_id).text)
    assert len(output) == done.request_counts.completed and len(errors) == done.request_counts.failed > 0
    poll_store()
    return done, output, errors


# --- a batch that has not ended --------------------------------------------------------------


def test_detail_of_running_openai_batch_shows_every_field(operator_client, embedded_upstream, openai_sdk):
    batch = openai_batch(openai_sdk, count=3, metadata={"job": "nightly-eval", "team": "research"}, **RUNNING_OPENAI)
    upstream = openai_sdk().batches.retrieve(batch.id)
    assert upstream.status == "in_progress"
    poll_store()

    response = fetch(operator_client, f"/batches/openai-ops/{batch.id}/")
    assert response.status_code == 200
    body = response.body
    assert f"<title>{batch.id} · Batch dashboard</title>" in body
    assert f"OpenAI · ops <code>{batch.id}</code>" in body
    assert field(body, "Status") == "in_progress"
    assert field(body, "Requests") == ("total 3 · processing 3 · succeeded 0 · errored 0 · canceled 0 · expired 0")
    assert field(body, "endpoint") == "<code>/v1/chat/completions</code>"
    assert field(body, "model") == "<code>gpt-4o-mini</code>"
    assert field(body, "input_file_id") == f"<code>{upstream.input_file_id}</code>"
    assert field(body, "completion_window") == "<code>24h</code>"
    for name in OPENAI_TIMESTAMPS:
        value = field(body, name)
        if getattr(upstream, name) is None:
            assert value == '<span class="muted">—</span>', (name, value)
        else:
            assert "<time datetime=" in value, (name, value)
    created = datetime.fromtimestamp(upstream.created_at, tz=UTC)
    assert f'<time datetime="{created.isoformat()}"' in field(body, "created_at")

    metadata = re.search(r'<table class="plain metadata">(.*?)</table>', body, re.S)[1]
    assert "<tr><th>job</th><td>nightly-eval</td></tr>" in metadata
    assert "<tr><th>team</th><td>research</td></tr>" in metadata
    tokens = re.search(r'<div class="batch-tokens">(.*?)</div>', body, re.S)[1]
    assert " ".join(re.sub(r"<[^>]+>", " ", tokens).split()) == (
        "As OpenAI reports them on the batch, so far (updated as it runs). The kinds do not overlap: they add up"
        " to the total billed. Model Input Cache read Cache write Output Reasoning Total Requests"
        " gpt-4o-mini 0 0 0 0 0 0 0"
    )
    assert "<h3>Usage</h3>" not in body, "the batch's raw usage is the Tokens section, not repeated"

    raw = raw_json(body)
    assert raw["id"] == batch.id and raw["status"] == "in_progress"
    assert raw["metadata"] == {"job": "nightly-eval", "team": "research"}
    assert raw["request_counts"] == {"total": 3, "completed": 0, "failed": 0}

    # The live row (the page's feed keeps it current), with a Cancel button for an operator.
    row = re.search(rf'<tr id="row-openai-ops-{batch.id}"[^>]*>', body)[0]
    assert 'data-status="in_progress"' in row and " data-live" in row
    assert re.search(rf'<div id="live-feed"[^>]*hx-get="/batches/openai-ops/{batch.id}/\?feed=', body)
    assert f'hx-post="/batches/openai-ops/{batch.id}/cancel"' in body
    assert ">Cancel</button>" in body

    assert "Results are available once the batch has ended." in body
    assert 'class="batches results-table"' not in body and "/results/summary" not in body
    assert "/results/download" not in body
    assert "Nobody has tried to cancel this batch through the dashboard." in body


def test_detail_of_running_anthropic_batch(operator_client, embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk, count=4, **RUNNING)
    poll_store()
    response = fetch(operator_client, f"/batches/anthropic-ops/{batch.id}/")
    assert response.status_code == 200
    body = response.body
    assert field(body, "Provider") == "Anthropic · ops"
    assert field(body, "Status") == "in_progress"
    assert field(body, "Requests") == "total 4 · processing 4 · succeeded 0 · errored 0 · canceled 0 · expired 0"
    assert field(body, "type") == "<code>message_batch</code>"
    for name in ANTHROPIC_TIMESTAMPS:
        value = field(body, name)
        if name in ("created_at", "expires_at"):
            assert "<time datetime=" in value, (name, value)
        else:
            assert value == '<span class="muted">—</span>', (name, value)
    assert "<h3>Usage</h3>" not in body  # tokens are in their own section
    assert "<h3>Metadata</h3>" not in body
    assert raw_json(body)["processing_status"] == "in_progress"
    assert f'hx-post="/batches/anthropic-ops/{batch.id}/cancel"' in body
    assert " data-live" in body
    assert "Results are available once the batch has ended." in body


def test_viewer_sees_the_detail_without_a_cancel_button(viewer_client, embedded_upstream, anthropic_sdk, openai_sdk):
    made = (
        ("anthropic-ops", anthropic_batch(anthropic_sdk, count=3, **RUNNING)),
        ("openai-ops", openai_batch(openai_sdk, count=3, **RUNNING_OPENAI)),
    )
    poll_store()
    for account, batch in made:
        response = fetch(viewer_client, f"/batches/{account}/{batch.id}/")
        assert response.status_code == 200
        assert field(response.body, "Status") == "in_progress"
        assert f'<tr id="row-{account}-{batch.id}"' in response.body
        assert " data-live" in response.body  # still live
        assert "hx-post" not in response.body and ">Cancel</button>" not in response.body


def test_results_views_of_a_running_batch_are_404(
    operator_client, embedded_upstream, anthropic_sdk, openai_sdk, upstream_calls
):
    made = (
        ("anthropic-ops", anthropic_batch(anthropic_sdk, count=3, **RUNNING)),
        ("openai-ops", openai_batch(openai_sdk, count=3, **RUNNING_OPENAI)),
    )
    poll_store()
    upstream_calls.clear()
    for account, batch in made:
        base = f"/batches/{account}/{batch.id}"
        for path in ("/results/download", "/results/summary", "/results/export.csv"):
            assert fetch(operator_client, base + path).status_code == 404, path
        assert fetch(operator_client, base + "/results/download", {"source": "output"}).status_code == 404
        # An htmx request for the results alone still says why there are none.
        response = fetch(operator_client, base + "/", **HTMX_RESULTS)
        assert response.status_code == 200
        assert response.body.strip().startswith('<section id="results"')
        assert "Results are available once the batch has ended." in response.body
    assert upstream_calls == []  # the store says it has not ended: nothing to ask upstream


# --- escaping --------------------------------------------------------------------------------


def test_metadata_is_escaped_on_the_detail_page(operator_client, embedded_upstream, openai_sdk):
    batch = openai_batch(openai_sdk, metadata={"note": XSS, "<b>key</b>": "plain"}, count=3, **RUNNING_OPENAI)
    poll_store()
    response = fetch(operator_client, f"/batches/openai-ops/{batch.id}/")
    assert response.status_code == 200
    body = response.body
    assert "<img" not in body and "<b>key" not in body
    metadata = re.search(r'<table class="plain metadata">(.*?)</table>', body, re.S)[1]
    assert "<tr><th>note</th><td>&lt;img src=x onerror=alert(1)&gt;</td></tr>" in metadata
    assert "<tr><th>&lt;b&gt;key&lt;/b&gt;</th><td>plain</td></tr>" in metadata
    assert raw_json(body)["metadata"]["note"] == XSS  # escaped in the <pre>, intact once unescaped


def test_upstream_validation_errors_are_shown_and_escaped(operator_client, embedded_upstream, openai_sdk):
    """A failed OpenAI batch lists its input problems: line, code and message (which may echo a custom_id)."""
    lines = [
        openai_line("ok-1"),
        openai_line("bad-url", url="/v1/embeddings"),
        openai_line(f"dup-{XSS}"),
        openai_line(f"dup-{XSS}"),
    ]
    batch = openai_batch(openai_sdk, lines=lines, **RUNNING_OPENAI)
    assert openai_sdk().batches.retrieve(batch.id).status == "failed"
    poll_store()

    response = fetch(operator_client, f"/batches/openai-ops/{batch.id}/")
    assert response.status_code == 200
    body = response.body
    assert field(body, "Status") == "failed (ended)"
    assert "<img" not in body
    errors = re.search(r'<table class="plain errors">(.*?)</table>', body, re.S)
    assert errors, "no errors table"
    rows = re.findall(r"<tr><td>(.*?)</td><td><code>(.*?)</code></td><td>(.*?)</td></tr>", errors[1], re.S)
    assert rows == [
        (
            "2",
            "mismatched_url",
            "The URL provided for this request does not match the batch endpoint /v1/chat/completions.",
        ),
        (
            "4",
            "duplicate_custom_id",
            "The custom_id &#x27;dup-&lt;img src=x onerror=alert(1)&gt;&#x27; is not unique within the input file.",
        ),
    ]
    assert "<tr><th>Line</th><th>Code</th><th>Message</th></tr>" in errors[1]
    assert field(body, "failed_at").startswith("<time datetime=")
    # Ended, but there is no output or error file to show or download.
    assert "Results are available once the batch has ended." not in body
    assert "/results/download" not in body
    assert "No result lines match." in body
    for source in ("output", "error"):
        assert (
            fetch(operator_client, f"/batches/openai-ops/{batch.id}/results/download", {"source": source}).status_code
            == 404
        )


# --- results of an ended batch ---------------------------------------------------------------


def test_ended_batch_shows_the_first_50_result_lines(operator_client, ended_anthropic, upstream_calls):
    batch_id, results = ended_anthropic
    upstream_calls.clear()
    response = fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/")
    assert response.status_code == 200
    # The batch is the store's; only its results are read upstream.
    assert upstream_calls == [f"GET {embedded_simulator_url()}/anthropic/v1/messages/batches/{batch_id}/results"]
    body = response.body
    assert field(body, "Status") == "ended (ended)"
    assert "Results are available once the batch has ended." not in body
    shown = result_rows(body)
    assert [row["number"] for row in shown] == list(range(1, 51))
    assert [(row["custom_id"], row["type"]) for row in shown] == [
        (entry["custom_id"], entry["result"]["type"]) for entry in results[:50]
    ]
    succeeded = next(row for row in shown if row["type"] == "succeeded")
    message = next(e["result"]["message"] for e in results if e["custom_id"] == succeeded["custom_id"])
    assert succeeded["cells"][3:6] == [
        "claude-sonnet-4-5",
        message["stop_reason"],
        f"{message['usage']['input_tokens']} / {message['usage']['output_tokens']}",
    ]

    assert link(body, "next") == "?offset=50"
    assert link(body, "prev") == ""
    assert "Next 50 →" in body
    # The summary loads by itself; the filter form replaces only the results and pushes its URL.
    assert f'<div id="summary" hx-get="/batches/anthropic-ops/{batch_id}/results/summary" hx-trigger="load"' in body
    assert (
        f'<form class="filters" method="get" hx-get="/batches/anthropic-ops/{batch_id}/" hx-target="#results"'
        ' hx-swap="outerHTML" hx-push-url="true">' in body
    )
    assert (
        f'<a href="/batches/anthropic-ops/{batch_id}/results/download?source=results" download>'
        "Download results (JSONL)</a>" in body
    )
    assert f'<a href="/batches/anthropic-ops/{batch_id}/results/export.csv">Export these lines as CSV</a>' in body
    # The ended row stays on the page, without polling and without a Cancel button.
    row = re.search(rf'<tr id="row-anthropic-ops-{batch_id}"[^>]*>', body)[0]
    assert 'data-status="ended"' in row and "hx-trigger" not in row
    assert "hx-post" not in body


def test_results_filtered_by_type(operator_client, ended_anthropic):
    batch_id, results = ended_anthropic
    expected = [entry["custom_id"] for entry in results if entry["result"]["type"] == "errored"]
    response = fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/", {"type": "errored"})
    assert response.status_code == 200
    shown = result_rows(response.body)
    assert [row["custom_id"] for row in shown] == expected
    assert {row["type"] for row in shown} == {"errored"}
    by_id = {e["custom_id"]: e["result"]["error"]["error"] for e in results if e["result"]["type"] == "errored"}
    for row in shown:  # the error column: upstream type and message
        error = by_id[row["custom_id"]]
        assert row["cells"][-1].strip() == f"<code>{error['type']}</code> {html.escape(error['message'])}"
    assert link(response.body, "next") == ""  # fewer than 50 errored lines
    assert '<option value="errored" selected>errored</option>' in response.body
    assert f'href="/batches/anthropic-ops/{batch_id}/results/export.csv?type=errored">' in response.body

    expired = [entry["custom_id"] for entry in results if entry["result"]["type"] == "expired"]
    shown = result_rows(fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/", {"type": "expired"}).body)
    assert [row["custom_id"] for row in shown] == expired and expired

    response = fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/", {"type": "canceled"})
    assert result_rows(response.body) == [] and "No result lines match." in response.body

    # An unknown type is ignored: every line again.
    response = fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/", {"type": "<bogus>"})
    assert len(result_rows(response.body)) == 50 and "&lt;bogus&gt;" not in response.body


def test_results_searched_by_custom_id(operator_client, ended_anthropic):
    batch_id, results = ended_anthropic
    response = fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/", {"q": "REQ-01"})
    shown = result_rows(response.body)
    assert [row["custom_id"] for row in shown] == [f"req-{i:03d}" for i in range(10, 20)]
    assert 'name="q" value="REQ-01"' in response.body

    errored_ids = [e["custom_id"] for e in results if e["result"]["type"] == "errored"]
    response = fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/", {"q": errored_ids[0], "type": "errored"})
    assert [row["custom_id"] for row in result_rows(response.body)] == [errored_ids[0]]
    response = fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/", {"q": errored_ids[0], "type": "succeeded"})
    assert result_rows(response.body) == [] and "No result lines match." in response.body


def test_results_paging(operator_client, ended_anthropic):
    batch_id, results = ended_anthropic
    url = f"/batches/anthropic-ops/{batch_id}/"
    second = fetch(operator_client, url, {"offset": "50"})
    assert [row["number"] for row in result_rows(second.body)] == list(range(51, 101))
    assert [row["custom_id"] for row in result_rows(second.body)] == [e["custom_id"] for e in results[50:100]]
    assert link(second.body, "next") == "?offset=100"
    assert link(second.body, "prev") == "?offset=0"
    assert "← Previous 50" in second.body

    last = fetch(operator_client, url, {"offset": "100"})
    assert [row["number"] for row in result_rows(last.body)] == list(range(101, 121))
    assert link(last.body, "next") == "" and "Next 50" not in last.body
    assert link(last.body, "prev") == "?offset=50"

    beyond = fetch(operator_client, url, {"offset": "500"})
    assert beyond.status_code == 200 and result_rows(beyond.body) == []

    for junk in ("abc", "-20", ""):
        response = fetch(operator_client, url, {"offset": junk})
        assert response.status_code == 200
        assert [row["number"] for row in result_rows(response.body)] == list(range(1, 51)), junk

    # Paging keeps the filters: more than 50 succeeded lines.
    succeeded = [e["custom_id"] for e in results if e["result"]["type"] == "succeeded"]
    first = fetch(operator_client, url, {"type": "succeeded"})
    assert link(first.body, "next") == "?type=succeeded&offset=50"
    page = fetch(operator_client, url, {"type": "succeeded", "offset": "50"})
    assert [row["custom_id"] for row in result_rows(page.body)] == succeeded[50:100]
    assert link(page.body, "prev") == "?type=succeeded&offset=0"


def test_htmx_request_for_the_results_gets_only_the_results_section(operator_client, ended_anthropic):
    batch_id, results = ended_anthropic
    url = f"/batches/anthropic-ops/{batch_id}/"
    response = fetch(operator_client, url, {"type": "errored"}, **HTMX_RESULTS)
    assert response.status_code == 200
    body = response.body.strip()
    assert body.startswith('<section id="results" class="card">') and body.endswith("</section>")
    assert body.count("<section") == 1
    assert "<html" not in body and "<body" not in body and "<title" not in body
    assert "<h2>Fields</h2>" not in body and f'id="row-anthropic-ops-{batch_id}"' not in body
    assert [row["custom_id"] for row in result_rows(body)] == [
        e["custom_id"] for e in results if e["result"]["type"] == "errored"
    ]
    assert 'hx-trigger="load"' in body  # the error summary comes along with the swapped section

    paged = fetch(operator_client, url, {"offset": "50"}, **HTMX_RESULTS).body.strip()
    assert paged.startswith('<section id="results"') and "<html" not in paged
    assert [row["number"] for row in result_rows(paged)] == list(range(51, 101))

    # htmx aiming at something else (the live row polls its own URL) gets the whole page.
    whole = fetch(operator_client, url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET=f"row-anthropic-ops-{batch_id}")
    assert "<html" in whole.body and "<h2>Fields</h2>" in whole.body


def test_error_summary_counts_errors_by_type_and_message(operator_client, ended_anthropic, anthropic_sdk):
    batch_id, results = ended_anthropic
    counts = anthropic_sdk().messages.batches.retrieve(batch_id).request_counts
    response = fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/results/summary", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.body.strip()
    assert body.startswith('<section id="summary" class="card">') and "<html" not in body

    shown = dict((kind, int(n)) for kind, n in re.findall(r'<span class="count count-(\w+)">\1 (\d+)</span>', body))
    expected = {
        kind: getattr(counts, kind) for kind in ("succeeded", "errored", "canceled", "expired") if getattr(counts, kind)
    }
    assert shown == expected
    total = sum(expected.values())
    assert total == 120
    assert f"of {total} result lines" in body

    summary = body.split("</section>", 1)[0]  # after it, the tokens and cost it counted, out of band
    errors = [
        (kind, html.unescape(message), int(n))
        for kind, message, n in re.findall(r"<tr><td><code>(.*?)</code></td><td>(.*?)</td><td>(\d+)</td></tr>", summary)
    ]
    upstream = Counter(
        (e["result"]["error"]["error"]["type"], e["result"]["error"]["error"]["message"])
        for e in results
        if e["result"]["type"] == "errored"
    )
    assert sorted(errors) == sorted((kind, message, n) for (kind, message), n in upstream.items())
    assert sum(n for _, _, n in errors) == counts.errored
    assert [n for _, _, n in errors] == sorted((n for _, _, n in errors), reverse=True)  # most frequent first


def test_csv_export_of_the_filtered_lines(operator_client, ended_anthropic):
    batch_id, results = ended_anthropic
    response = fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/results/export.csv", {"type": "errored"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{batch_id}_results.csv"'
    rows = list(csv.reader(io.StringIO(response.body)))
    assert rows[0] == list(CSV_COLUMNS)
    errored = [(n, e) for n, e in enumerate(results, start=1) if e["result"]["type"] == "errored"]
    assert [(row[0], row[1], row[2]) for row in rows[1:]] == [(str(n), e["custom_id"], "errored") for n, e in errored]
    first = errored[0][1]["result"]["error"]["error"]
    assert rows[1][8:10] == [first["type"], first["message"]]
    assert rows[1][10:] == [""] * 5  # an errored line bills no tokens: its usage is not reported

    everything = list(
        csv.reader(io.StringIO(fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/results/export.csv").body))
    )
    assert len(everything) == 1 + 120
    searched = list(
        csv.reader(
            io.StringIO(
                fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/results/export.csv", {"q": "req-11"}).body
            )
        )
    )
    assert [row[1] for row in searched[1:]] == [f"req-{i}" for i in range(110, 120)]


def test_download_of_anthropic_results(operator_client, ended_anthropic, anthropic_sdk):
    batch_id, results = ended_anthropic
    response = fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/results/download")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-jsonl"
    assert response["Content-Disposition"] == f'attachment; filename="{batch_id}.jsonl"'
    lines = jsonl(response.body)
    counts = anthropic_sdk().messages.batches.retrieve(batch_id).request_counts
    total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
    assert len(lines) == total == 120
    assert [line["custom_id"] for line in lines] == [e["custom_id"] for e in results]
    assert (
        fetch(operator_client, f"/batches/anthropic-ops/{batch_id}/results/download", {"source": "results"}).body
        == response.body
    )
    for source in ("output", "error", "bogus"):
        assert (
            fetch(
                operator_client, f"/batches/anthropic-ops/{batch_id}/results/download", {"source": source}
            ).status_code
            == 404
        ), source


def test_openai_results_by_file(operator_client, ended_openai):
    batch, output, errors = ended_openai
    url = f"/batches/openai-ops/{batch.id}/"
    page = fetch(operator_client, url)
    assert page.status_code == 200
    assert "<th>File</th>" in page.body
    for source in ("output", "error"):
        assert (
            f'<a href="/batches/openai-ops/{batch.id}/results/download?source={source}" download>'
            f"Download {source} file (JSONL)</a>" in page.body
        )
    assert len(result_rows(page.body)) == 50

    only_errors = fetch(operator_client, url, {"source": "error"})
    shown = result_rows(only_errors.body)
    assert [row["custom_id"] for row in shown] == [line["custom_id"] for line in errors]
    assert {row["type"] for row in shown} == {"errored"} and {row["cells"][3] for row in shown} == {"error"}
    assert "context_length_exceeded" in only_errors.body or "invalid_request_error" in only_errors.body
    assert '<option value="error" selected>error file</option>' in only_errors.body

    from_output = result_rows(fetch(operator_client, url, {"source": "output", "offset": "50"}).body)
    assert [row["custom_id"] for row in from_output] == [line["custom_id"] for line in output[50:100]]
    assert {row["cells"][3] for row in from_output} == {"output"}

    # A custom_id carrying HTML is found by search and shown escaped, in the page and in the CSV.
    found = fetch(operator_client, url, {"q": "<img"})
    assert [row["custom_id"] for row in result_rows(found.body)] == [f"evil-{XSS}"]
    assert "<img" not in found.body and "evil-&lt;img src=x onerror=alert(1)&gt;" in found.body
    exported = list(
        csv.reader(
            io.StringIO(
                fetch(operator_client, f"/batches/openai-ops/{batch.id}/results/export.csv", {"source": "error"}).body
            )
        )
    )
    assert [row[1] for row in exported[1:]] == [line["custom_id"] for line in errors]
    assert {row[3] for row in exported[1:]} == {"error"}


def test_download_of_openai_files(operator_client, ended_openai):
    batch, output, errors = ended_openai
    base = f"/batches/openai-ops/{batch.id}/results/download"
    for source, expected, filename in (
        ("output", output, f"{batch.id}_output.jsonl"),
        ("error", errors, f"{batch.id}_error.jsonl"),
    ):
        response = fetch(operator_client, base, {"source": source})
        assert response.status_code == 200
        assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
        assert jsonl(response.body) == expected
    assert jsonl(fetch(operator_client, base).body) == output  # the output file unless told otherwise
    assert len(output) + len(errors) == batch.request_counts.total == 120
    for source in ("results", "bogus", ""):
        assert fetch(operator_client, base, {"source": source}).status_code == 404, source


# --- the store: what the page shows without asking upstream ------------------------------------


def history_rows(body: str) -> list[tuple[str, ...]]:
    """The History card's rows, newest first: (status, processing, succeeded, errored, canceled, expired)."""
    table = re.search(r'<table class="plain history">(.*?)</table>', body, re.S)
    assert table, "no History table on the page"
    rows = re.findall(r"<tr><td>(.*?)</td>((?:<td>[^<]*</td>){6})</tr>", table[1], re.S)
    for seen, _ in rows:
        assert "<time datetime=" in seen, seen
    return [tuple(re.findall(r"<td>([^<]*)</td>", cells)) for _, cells in rows]


def test_detail_of_a_running_batch_makes_no_upstream_call(
    operator_client, embedded_upstream, anthropic_sdk, openai_sdk, upstream_calls
):
    made = (
        ("anthropic-ops", anthropic_batch(anthropic_sdk, count=3, **RUNNING)),
        ("openai-ops", openai_batch(openai_sdk, count=3, **RUNNING_OPENAI)),
    )
    poll_store()
    assert upstream_calls, "the poller asks upstream"
    upstream_calls.clear()
    for account, batch in made:
        response = fetch(operator_client, f"/batches/{account}/{batch.id}/")
        assert response.status_code == 200
        assert field(response.body, "Status") == "in_progress"
        assert raw_json(response.body)["id"] == batch.id
        # The row says how fresh the stored state is.
        row = re.search(rf'<tr id="row-{account}-{batch.id}"[^>]*>.*?</tr>', response.body, re.S)[0]
        assert "is-stale" not in row and "live · refreshed every 3 s" in row, row
        # The results section of a running batch, and its live row, are the store's too.
        assert fetch(operator_client, f"/batches/{account}/{batch.id}/", **HTMX_RESULTS).status_code == 200
        assert fetch(operator_client, f"/batches/{account}/{batch.id}/row", HTTP_HX_REQUEST="true").status_code == 200
    assert upstream_calls == []


def test_history_card_lists_the_changes_the_poller_saw(operator_client, embedded_upstream, openai_sdk):
    # Past validating (3 s), and the first of its 20 requests finishes 30 s into processing.
    batch = openai_batch(openai_sdk, count=20, seconds=600, ago={"seconds": 10})
    poll_store()
    url = f"/batches/openai-ops/{batch.id}/"
    body = fetch(operator_client, url).body
    assert "<h2>History</h2>" in body
    assert history_rows(body) == [("in_progress", "20", "0", "0", "0", "0")]

    # Upstream moves on; the page shows nothing new until the poller has seen it.
    time_passes(batch.id, minutes=5)
    upstream = openai_sdk().batches.retrieve(batch.id)
    assert upstream.status == "in_progress" and 0 < upstream.request_counts.completed < 20
    assert history_rows(fetch(operator_client, url).body) == [("in_progress", "20", "0", "0", "0", "0")]
    poll_store()
    body = fetch(operator_client, url).body
    done, failed = upstream.request_counts.completed, upstream.request_counts.failed
    moved = ("in_progress", str(20 - done - failed), str(done), str(failed), "0", "0")
    assert history_rows(body) == [moved, ("in_progress", "20", "0", "0", "0", "0")]  # newest first
    assert field(body, "Requests") == (
        f"total 20 · processing {20 - done - failed} · succeeded {done} · errored {failed} · canceled 0 · expired 0"
    )

    # A poll that sees nothing new adds no row; the batch's end does.
    poll_store()
    assert len(history_rows(fetch(operator_client, url).body)) == 2
    time_passes(batch.id, hours=1)
    poll_store()
    body = fetch(operator_client, url).body
    ended = openai_sdk().batches.retrieve(batch.id)
    assert ended.status == "completed"
    newest = history_rows(body)[0]
    assert len(history_rows(body)) == 3
    assert newest == ("completed", "0", str(ended.request_counts.completed), str(ended.request_counts.failed), "0", "0")


# --- upstream failures and bad addresses -----------------------------------------------------


def test_detail_of_a_seen_batch_is_stale_when_its_account_fails(
    operator_client, embedded_upstream, anthropic_sdk, upstream_calls
):
    batch = anthropic_batch(anthropic_sdk, count=3, **RUNNING)
    poll_store()  # seen once: its last known state is kept
    assert fetch(operator_client, f"/batches/anthropic-ops/{batch.id}/").status_code == 200
    fault("anthropic", "ops", "500")
    poll_store()
    state = AccountState.objects.get(account="anthropic-ops")
    assert state.consecutive_failures == 1
    assert state.last_error == "Anthropic HTTP 500 api_error: Internal server error"
    upstream_calls.clear()

    response = fetch(operator_client, f"/batches/anthropic-ops/{batch.id}/")
    assert response.status_code == 200
    body = response.body
    assert (
        "⚠ Stale: Polls of this account are failing (Anthropic HTTP 500 api_error: Internal server error); "
        "shown as last fetched." in body
    )
    assert field(body, "Status") == "in_progress"  # the last known fields are still shown
    assert field(body, "Requests") == "total 3 · processing 3 · succeeded 0 · errored 0 · canceled 0 · expired 0"
    assert raw_json(body)["id"] == batch.id
    row = re.search(rf'<tr id="row-anthropic-ops-{batch.id}"[^>]*>', body)[0]
    assert "is-stale" in row and " data-live" in row  # still watched by the page's feed
    assert "Results are available once the batch has ended." in body
    assert upstream_calls == []  # the page is the store's, failing account or not

    # A cancel goes upstream by itself (not through the poller): on the failing account it says it
    # failed, in the row it answers with and in the audit trail, and the row stays stale.
    answer = operator_client.post(f"/batches/anthropic-ops/{batch.id}/cancel", HTTP_HX_REQUEST="true")
    assert answer.status_code == 200
    row = answer.content.decode()
    assert not any(key in row for key in ALL_KEYS)
    assert row.strip().startswith(f'<tr id="row-anthropic-ops-{batch.id}" class="batch-row is-stale"')
    assert 'data-status="in_progress"' in row
    assert '<div class="row-notice" role="status">Anthropic HTTP 500 api_error: Internal server error</div>' in row
    [attempt] = CancelAttempt.objects.filter(batch_id=batch.id)
    assert attempt.outcome == CancelAttempt.Outcome.UPSTREAM_ERROR and attempt.status_after == "in_progress"

    # Once the account answers again, the next poll makes the row fresh.
    fault("anthropic", "ops", "")
    poll_store()
    body = fetch(operator_client, f"/batches/anthropic-ops/{batch.id}/").body
    assert "Stale" not in body and "is-stale" not in body


def test_stale_ended_batch_says_its_results_cannot_be_read(operator_client, ended_anthropic):
    batch_id, _ = ended_anthropic
    base = f"/batches/anthropic-ops/{batch_id}"
    assert len(result_rows(fetch(operator_client, base + "/").body)) == 50
    fault("anthropic", "ops", "529")
    poll_store()
    assert AccountState.objects.get(account="anthropic-ops").consecutive_failures == 1
    response = fetch(operator_client, base + "/")
    assert response.status_code == 200
    # The batch itself is the store's (an ended batch changes no more, so it is not stale) ...
    assert field(response.body, "Status") == "ended (ended)"
    row = re.search(rf'<tr id="row-anthropic-ops-{batch_id}"[^>]*>.*?</tr>', response.body, re.S)[0]
    assert 'data-status="ended"' in row and "final · fetched" in row and "hx-trigger" not in row
    # ... but its results are read upstream, which fails: said so where they would be.
    assert (
        '<div class="banner banner-error" role="alert">Could not read the results: '
        "Anthropic HTTP 529 overloaded_error: Overloaded</div>" in response.body
    )
    assert result_rows(response.body) == []
    summary = fetch(operator_client, base + "/results/summary", HTTP_HX_REQUEST="true")
    assert summary.status_code == 200 and "Could not read the results: Anthropic HTTP 529" in summary.body
    download = fetch(operator_client, base + "/results/download")
    assert download.status_code == 502
    assert download.body == "Could not download the results: Anthropic HTTP 529 overloaded_error: Overloaded\n"
    export = fetch(operator_client, base + "/results/export.csv")
    assert export.status_code == 502
    assert export.body.startswith("Could not export the results: Anthropic HTTP 529")


def not_in_store(account_label: str, batch_id: str) -> str:
    return (
        f"{account_label} has no batch {batch_id} in the dashboard&#x27;s store (yet): the poller lists each "
        "account newest first and reads older history a page per cycle."
    )


def test_detail_of_a_never_seen_batch_whose_account_fails_is_404(
    operator_client, embedded_upstream, anthropic_sdk, openai_sdk, upstream_calls
):
    anthropic_id = anthropic_batch(anthropic_sdk, count=3, **RUNNING).id
    openai_id = openai_batch(openai_sdk, count=3, **RUNNING_OPENAI).id
    fault("anthropic", "ops", "500")
    fault("openai", "ops", "429")
    poll_store()  # fails for both: neither batch reaches the store
    for account in ("anthropic-ops", "openai-ops"):
        assert AccountState.objects.get(account=account).consecutive_failures == 1
    upstream_calls.clear()
    for account, label, batch_id in (
        ("anthropic-ops", "Anthropic · ops", anthropic_id),
        ("openai-ops", "OpenAI · ops", openai_id),
    ):
        for path in ("/", "/results/summary", "/results/download", "/results/export.csv"):
            response = fetch(operator_client, f"/batches/{account}/{batch_id}{path}")
            assert response.status_code == 404, path
            assert "<html" in response.body and "Not found" in response.body, path
            assert not_in_store(label, batch_id) in response.body, path
        # A filter submitted from an open page (htmx, results only) is no more than a 404 either.
        partial = fetch(operator_client, f"/batches/{account}/{batch_id}/", {"type": "errored"}, **HTMX_RESULTS)
        assert partial.status_code == 404 and not_in_store(label, batch_id) in partial.body
    assert upstream_calls == []


@pytest.mark.parametrize(
    "path",
    [
        "/batches/anthropic-ops/not-an-id/",
        "/batches/anthropic-ops/batch_abc/",  # an OpenAI id in an Anthropic account
        "/batches/openai-ops/msgbatch_01abc/",
        "/batches/nobody-ops/msgbatch_01abc/",
        "/batches/anthropic-ops/msgbatch_01a$b/",
        "/batches/openai-ops/batch_a%2Fb/results/summary",
        "/batches/anthropic-ops/not-an-id/results/download",
        "/batches/openai-ops/not-an-id/results/export.csv",
    ],
)
def test_bad_ids_are_404_without_upstream_request(operator_client, embedded_upstream, upstream_calls, path):
    response = fetch(operator_client, path)
    assert response.status_code == 404
    assert "Not found" in response.body
    assert upstream_calls == []


@pytest.mark.parametrize(
    "path",
    [
        "/batches/anthropic-ops/msgbatch_01nothere/",
        "/batches/anthropic-ops/msgbatch_01nothere/results/summary",
        "/batches/anthropic-ops/msgbatch_01nothere/results/download",
        "/batches/anthropic-ops/msgbatch_01nothere/results/export.csv",
        "/batches/openai-ops/batch_nothere/",
        "/batches/openai-ops/batch_nothere/results/download?source=error",
    ],
)
def test_batch_not_in_the_store_is_404_without_upstream_request(
    operator_client, embedded_upstream, upstream_calls, path
):
    poll_store()  # every account polled, healthy and backfilled: the store holds all that upstream lists
    upstream_calls.clear()
    response = fetch(operator_client, path)
    assert response.status_code == 404
    assert "Not found" in response.body
    account, batch_id = path.split("/")[2:4]
    label = {"anthropic-ops": "Anthropic · ops", "openai-ops": "OpenAI · ops"}[account]
    assert not_in_store(label, batch_id) in response.body
    assert upstream_calls == []


def test_batch_of_another_account_is_404(operator_client, embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk, count=3, **RUNNING)
    poll_store()
    response = fetch(operator_client, f"/batches/anthropic-research/{batch.id}/")
    assert response.status_code == 404 and not_in_store("Anthropic · research", batch.id) in response.body
    assert fetch(operator_client, f"/batches/anthropic-ops/{batch.id}/").status_code == 200


def test_anonymous_gets_no_detail_or_results(client, embedded_upstream, upstream_calls):
    for suffix in ("/", "/results/summary", "/results/download", "/results/export.csv"):
        response = client.get(f"/batches/anthropic-ops/msgbatch_01abc{suffix}")
        assert response.status_code == 302 and response["Location"].startswith("/login/"), suffix
    assert upstream_calls == []
