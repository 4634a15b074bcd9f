"""Results at line rate (bench/results.py measures it): downloads forwarded in large chunks with
upstream's length and encoding, the CSV export in buffered chunks of whole rows, the simulator's
results in chunks and as it always wrote them.

As in tests/test_truthful_results.py, the ended batch comes from the embedded simulator through the
poller, and its results are then served by a stand-in for the provider's results endpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
from contextlib import contextmanager

import httpx
import pytest
from django.utils import timezone

from dashboard import accounts, services
from dashboard.providers.anthropic import AnthropicProvider
from dashboard.providers.base import UpstreamError
from dashboard.simulator import anthropic_api
from dashboard.simulator.models import SimBatch, SimRequest
from dashboard.simulator.progression import Outcome, anthropic_state
from tests.factories import ANTHROPIC_KEYS, anthropic_batch, embedded_transport, poll_store

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
    assert rows[2][8:] == ["'+evil", "'@SUM(A1)"]
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
    from dashboard import selectors

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
