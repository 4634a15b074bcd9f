"""Results at line rate (bench/results.py measures it): downloads forwarded in large chunks with
upstream's length and encoding, the CSV export in buffered chunks of whole rows, the simulator's
results in chunks and as it always wrote them, and an ended batch's error summary counted once and
then served from the database.

As in tests/batches/test_truthful_results.py, the ended batch comes from the embedded simulator through the
poller, and its results are then served by a stand-in for the provider's results endpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import threading
from contextlib import contextmanager

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from dashboard import accounts
from dashboard.accounts import embedded_transport
from dashboard.batches import services
from dashboard.models import ResultsSummary
from dashboard.providers.anthropic import AnthropicProvider
from dashboard.providers.base import UpstreamError
from dashboard.simulator import anthropic_api
from dashboard.simulator.models import SimBatch, SimRequest
from dashboard.simulator.progression import Outcome, anthropic_state
from tests.factories import ANTHROPIC_KEYS, anthropic_batch, poll_store, text

CHUNK = 64 * 1024


def serve_results(monkeypatch, *chunks: bytes, headers: dict | None = None, fail_after: bool = False, wait=None):
    """Have every Anthropic results request answered 200 with `chunks` (then a failure, if asked;
    `wait()` is called before the first chunk)."""
    served = []

    def body():
        if wait is not None:
            wait()
        yield from chunks
        if fail_after:
            raise UpstreamError("Anthropic HTTP 500 api_error: the stream broke")

    @contextmanager
    def open_results(self, batch_id, source="results", *, known=None):
        served.append(source)
        yield httpx.Response(200, headers={"content-type": "application/binary", **(headers or {})}, content=body())

    monkeypatch.setattr(AnthropicProvider, "open_results", open_results)
    return served


def succeeded(index: int, custom_id: str | None = None) -> bytes:
    line = {
        "custom_id": f"req-{index:06d}" if custom_id is None else custom_id,
        "result": {"type": "succeeded", "message": {"model": "m", "usage": {"input_tokens": 3, "output_tokens": 4}}},
    }
    return json.dumps(line).encode() + b"\n"


def errored(index: int, kind: str, message: str) -> bytes:
    line = {
        "custom_id": f"err-{index:06d}",
        "result": {"type": "errored", "error": {"type": "error", "error": {"type": kind, "message": message}}},
    }
    return json.dumps(line).encode() + b"\n"


@pytest.fixture
def ended(operator_client, embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk, count=3, ended=True)
    poll_store()
    return batch.id


def url(batch_id: str, suffix: str) -> str:
    return f"/batches/anthropic-ops/{batch_id}/{suffix}"


# --- the CSV export: buffered, in chunks of whole rows ------------------------------------------


def test_the_csv_export_is_sent_in_chunks_of_whole_rows_not_a_chunk_per_row(operator_client, ended, monkeypatch):
    count = 3_000
    serve_results(monkeypatch, b"".join(succeeded(i) for i in range(count)))
    response = operator_client.get(url(ended, "results/export.csv"))
    assert response.status_code == 200
    chunks = list(response.streaming_content)
    response.close()
    assert len(chunks) <= 4  # 3,001 rows, about 160 KB: was 3,001 chunks
    assert all(len(chunk) >= CHUNK for chunk in chunks[:-1])
    rows = []
    for chunk in chunks:  # each chunk is whole rows (and whole characters): readable on its own
        assert chunk.endswith(b"\r\n")
        rows += list(csv.reader(io.StringIO(chunk.decode())))
    assert rows[0][:3] == ["line", "custom_id", "type"]
    assert [row[0] for row in rows[1:]] == [str(n) for n in range(1, count + 1)]


def test_a_buffered_export_that_fails_keeps_every_row_read_and_ends_with_the_error(operator_client, ended, monkeypatch):
    count = 2_500
    serve_results(monkeypatch, b"".join(succeeded(i) for i in range(count)), fail_after=True)
    response = operator_client.get(url(ended, "results/export.csv"))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    response.close()
    assert [row[0] for row in rows[1:-1]] == [str(n) for n in range(1, count + 1)]
    assert rows[-1][0] == "ERROR"
    assert f"stopped after result line {count}" in rows[-1][1] and "incomplete" in rows[-1][1]


def test_the_buffered_export_still_neutralizes_formulas_and_filters(operator_client, ended, monkeypatch):
    serve_results(
        monkeypatch,
        succeeded(0, custom_id="=HYPERLINK(1)"),
        errored(1, "+evil", "@SUM(A1)"),
        succeeded(2, custom_id="-1+1"),
    )
    response = operator_client.get(url(ended, "results/export.csv"))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row[1] for row in rows[1:]] == ["'=HYPERLINK(1)", "err-000001", "'-1+1"]
    assert rows[2][8:10] == ["'+evil", "'@SUM(A1)"]
    response = operator_client.get(url(ended, "results/export.csv?type=errored"))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row[1] for row in rows[1:]] == ["err-000001"]


# --- the download: large chunks, upstream's length and encoding ----------------------------------


def test_an_upstream_writing_a_line_at_a_time_is_downloaded_in_large_chunks(operator_client, ended, monkeypatch):
    lines = [succeeded(i) for i in range(2_000)]
    serve_results(monkeypatch, *lines)  # one chunk per line, as a server streaming line by line sends them
    response = operator_client.get(url(ended, "results/download"))
    assert response.status_code == 200
    chunks = list(response.streaming_content)
    response.close()
    assert b"".join(chunks) == b"".join(lines)
    assert len(chunks) <= len(b"".join(lines)) // CHUNK + 1  # 5: was 2,000
    assert all(len(chunk) >= CHUNK for chunk in chunks[:-1])


def test_large_upstream_chunks_are_forwarded_as_they_come(operator_client, ended, monkeypatch):
    data = b"".join(succeeded(i) for i in range(4_000))
    pieces = [data[i : i + 200_000] for i in range(0, len(data), 200_000)]
    serve_results(monkeypatch, *pieces)
    response = operator_client.get(url(ended, "results/download"))
    assert list(response.streaming_content) == pieces
    response.close()


def test_the_download_says_upstreams_length(operator_client, ended, monkeypatch):
    data = b"".join(succeeded(i) for i in range(10))
    serve_results(monkeypatch, data, headers={"content-length": str(len(data))})
    response = operator_client.get(url(ended, "results/download"))
    assert response["Content-Length"] == str(len(data))
    assert b"".join(response.streaming_content) == data
    response.close()
    serve_results(monkeypatch, data)  # no length upstream: none made up
    response = operator_client.get(url(ended, "results/download"))
    assert not response.has_header("Content-Length")
    response.close()


def test_a_compressed_upstream_answer_is_downloaded_with_its_encoding(operator_client, ended, monkeypatch):
    # The bytes are forwarded as they came (iter_raw): compressed ones must say so, or the file saved
    # would be gzip under a .jsonl name.
    data = b"".join(succeeded(i) for i in range(100))
    packed = gzip.compress(data)
    serve_results(monkeypatch, packed, headers={"content-encoding": "gzip", "content-length": str(len(packed))})
    response = operator_client.get(url(ended, "results/download"))
    assert response["Content-Encoding"] == "gzip"
    assert response["Content-Length"] == str(len(packed))
    body = b"".join(response.streaming_content)
    response.close()
    assert body == packed and gzip.decompress(body) == data


def test_a_download_never_read_closes_its_upstream_answer(ended):
    closed = []
    account = accounts.find_account("anthropic-ops")

    class Body(httpx.SyncByteStream):
        def __iter__(self):
            yield b"{}\n"

        def close(self):
            closed.append(True)

    @contextmanager
    def open_results(self, batch_id, source="results", *, known=None):
        response = httpx.Response(200, stream=Body())
        try:
            yield response
        finally:
            response.close()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AnthropicProvider, "open_results", open_results)
        download = services.open_download(account=account, batch=_stored_batch(ended), source="results")
        download.close()  # as Django closes a response whose body was never sent
    assert closed == [True]


def _stored_batch(batch_id: str):
    from dashboard.batches import selectors

    return selectors.batch_row(account=accounts.find_account("anthropic-ops"), batch_id=batch_id).batch


# --- the simulator's results: in chunks, as it always wrote them ---------------------------------


def simulator_results(batch_id: str) -> list[bytes]:
    headers = {"x-api-key": ANTHROPIC_KEYS["ops"], "anthropic-version": "2023-06-01"}
    base = f"https://embedded-simulator.invalid/simulator/anthropic/v1/messages/batches/{batch_id}/results"
    with (
        httpx.Client(transport=embedded_transport(), timeout=30) as http,
        http.stream("GET", base, headers=headers) as response,
    ):
        assert response.status_code == 200
        return list(response.iter_raw())


def test_the_simulators_results_come_in_chunks_not_a_line_per_chunk(embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk, count=2_000, ended=True)
    chunks = simulator_results(batch.id)
    data = b"".join(chunks)
    assert data.count(b"\n") == 2_000
    assert len(chunks) <= 25  # about 1.1 MB: was 2,000 chunks
    assert all(len(chunk) >= CHUNK for chunk in chunks[:-1])
    assert all(chunk.endswith(b"\n") for chunk in chunks)


def test_the_simulators_fast_lines_are_the_json_of_each_result(embedded_upstream, anthropic_sdk):
    # Every outcome and variant (both stop reasons, the three errors, canceled and expired): each line
    # written from a template is exactly line_json of its result_body.
    batch = anthropic_batch(anthropic_sdk, count=400, ended=True)
    sim = SimBatch.objects.get(public_id=batch.id)
    SimRequest.objects.filter(batch=sim, index=7).update(custom_id='odd-"%(model)s"-\u00e9', model="m%d \u2028 x")
    plan = sim.plan()
    ended = anthropic_state(plan, timezone.now())
    for state in (ended, dataclasses.replace(ended, finished=250, unfinished_outcome=Outcome.CANCELED)):
        lines = list(anthropic_api.result_lines(sim, state))
        rows = SimRequest.objects.filter(batch=sim).order_by("index").values_list("index", "custom_id", "model")
        expected = []
        for index, custom_id, model in rows:
            rank = plan.rank_of(index)
            body = anthropic_api.result_body(sim, plan, state.outcome_of_rank(plan, rank), index, rank, model)
            expected.append(anthropic_api.line_json(custom_id, body).encode())
        assert lines == expected
        kinds = {json.loads(line)["result"]["type"] for line in lines}
        stop_reasons = {json.loads(line)["result"].get("message", {}).get("stop_reason") for line in lines}
        errors = {json.loads(line)["result"].get("error", {}).get("error", {}).get("type") for line in lines}
        assert {"succeeded", "errored"} <= kinds and ({"canceled"} <= kinds or state is ended)
        assert {"end_turn", "max_tokens"} <= stop_reasons
        assert {"invalid_request_error", "api_error", "overloaded_error"} <= errors
    assert json.loads(lines[7])["custom_id"] == 'odd-"%(model)s"-\u00e9'


def test_stable_tokens_are_what_they_always_were():
    # Two digits at a time now; the ids the simulator ever handed out stay the same.
    assert anthropic_api.stable_token("msgbatch_01abc", 7) == "gocfP7Mq8DASx2RGEqPTeb"
    assert anthropic_api.stable_token("b", 1, "line", length=29) == "SHWMu7Ek0xpKbiXofDvq3L96jthsG"


def test_an_openai_file_comes_in_chunks(embedded_upstream, openai_sdk):
    from tests.factories import openai_batch, time_passes

    batch = openai_batch(openai_sdk, count=1_500)
    time_passes(batch.id, hours=1)
    batch = openai_sdk().batches.retrieve(batch.id)
    assert batch.output_file_id
    url = f"https://embedded-simulator.invalid/simulator/openai/v1/files/{batch.output_file_id}/content"
    with (
        httpx.Client(transport=embedded_transport(), timeout=30) as http,
        http.stream("GET", url, headers={"authorization": "Bearer sk-sim-ops"}) as response,
    ):
        chunks = list(response.iter_raw())
    assert b"".join(chunks).count(b"\n") == batch.request_counts.completed
    assert len(chunks) < batch.request_counts.completed // 20


# --- the error summary: counted once per ended batch, then read from the database ------------------


def summary(operator_client, batch_id: str) -> str:
    response = operator_client.get(url(batch_id, "results/summary"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return text(response)


def test_an_ended_batchs_summary_is_counted_once_and_then_read_from_the_database(operator_client, ended, monkeypatch):
    served = serve_results(
        monkeypatch, succeeded(0), errored(1, "api_error", "Internal server error"), succeeded(2), b"not json\n"
    )
    first = summary(operator_client, ended)
    assert served == ["results"]
    assert "succeeded 2" in first and "errored 1" in first and "invalid 1" in first and "of 4 result lines" in first
    stored = ResultsSummary.objects.get(batch__batch_id=ended)
    assert stored.sources == "results"
    assert stored.total == 4
    assert stored.by_type == [["succeeded", 2], ["errored", 1], ["invalid", 1]]
    assert stored.errors[0] == ["api_error", "Internal server error", 1]
    # From now on: the database, not upstream (which has even stopped answering), and the same page.
    serve_results(monkeypatch, b"", fail_after=True)
    monkeypatch.setattr(AnthropicProvider, "open_results", None)
    for _ in range(2):
        assert summary(operator_client, ended) == first
    assert ResultsSummary.objects.count() == 1


def test_a_summary_that_fails_while_counting_stores_nothing(operator_client, ended, monkeypatch):
    serve_results(monkeypatch, succeeded(0), succeeded(1), fail_after=True)
    assert "Could not read the results" in summary(operator_client, ended)
    assert not ResultsSummary.objects.exists()
    served = serve_results(monkeypatch, succeeded(0), succeeded(1))
    assert "succeeded 2" in summary(operator_client, ended)
    assert served == ["results"] and ResultsSummary.objects.count() == 1


def test_concurrent_first_summaries_store_one_summary(ended, monkeypatch):
    both_counting = threading.Barrier(2, timeout=10)
    served = serve_results(monkeypatch, succeeded(0), errored(1, "api_error", "boom"), b"{}\n", wait=both_counting.wait)
    account = accounts.find_account("anthropic-ops")
    batch = _stored_batch(ended)
    answers, failures = [], []

    def first_request():
        try:
            answers.append(services.error_summary(account=account, batch=batch))
        except Exception as error:  # reported below
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=first_request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures and len(answers) == 2 and served == ["results", "results"]
    assert answers[0] == answers[1]
    stored = ResultsSummary.objects.get(batch__batch_id=ended)  # one row, not two, and whole
    assert stored.summary() == answers[0]
    assert services.error_summary(account=account, batch=batch) == answers[0]
    assert served == ["results", "results"]


def test_a_summary_says_its_sources_and_other_sources_are_counted_anew(operator_client, ended, monkeypatch):
    served = serve_results(monkeypatch, succeeded(0), succeeded(1))
    assert "of 2 result lines" in summary(operator_client, ended)
    monkeypatch.setattr(AnthropicProvider, "result_sources", lambda self, batch: ["results", "again"])
    assert "of 4 result lines" in summary(operator_client, ended)  # both sources read, counted anew
    assert served == ["results", "results", "again"]
    assert dict(ResultsSummary.objects.values_list("sources", "total")) == {"results": 2, "results,again": 4}


def test_a_stored_summary_holds_no_api_key(operator_client, ended, monkeypatch):
    key = ANTHROPIC_KEYS["ops"]  # a configured account's key, echoed back in error messages
    serve_results(
        monkeypatch,
        errored(0, "authentication_error", f"invalid x-api-key: {key}"),
        errored(1, "authentication_error", f"invalid x-api-key: {key.upper()}"),
        errored(2, key, "the key as the type"),
        errored(3, "api_error", "x" * 290 + key),  # the key cut by the 300-character message limit
    )
    page = summary(operator_client, ended)
    stored = ResultsSummary.objects.get(batch__batch_id=ended)
    saved = json.dumps([stored.errors, stored.by_type])
    for where in (page, saved):
        assert key not in where.lower() and key[:10] not in where.lower()
        assert "[redacted]" in where
    assert ["authentication_error", "invalid x-api-key: [redacted]", 2] in stored.errors  # the same after redaction
    assert ["[redacted]", "the key as the type", 1] in stored.errors
    assert summary(operator_client, ended) == page
