"""Results of a 100,000-request batch through the dashboard, against the embedded simulator.

The batch is made once through the simulator's API and stored by a poll (`poll_store`, as `manage.py
poll` does); the dashboard's pages, download, CSV export and error summary are then read through
Django's test client (views in the test thread, the simulator reached in process, as by default):
the batch from the store, its results from upstream. What is shown:
- a results page parses only the lines it shows (plus one to know there is more);
- the download passes the simulator's bytes through unchanged, and it, the CSV export and the
  error summary stream: tracemalloc's peak stays far below the size of the file.

tracemalloc traces every thread of the process. So that it measures the dashboard alone, and not
the simulator making 53 MiB of results, the simulator's answer is recorded to a file once, and
while memory is measured the dashboard's upstream serves that batch's results from the recording
(read in 64 KiB chunks, as from a socket); everything else still comes from the simulator.

The database is flushed between transactional tests, so the big batch lives in one test function
whose phases run in order. Run with -s to see sizes, peaks and timings.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import re
import time
import tracemalloc
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from django.core.cache import cache

from dashboard import accounts
from dashboard.accounts import embedded_transport
from dashboard.batches import results
from dashboard.models import ResultsSummary
from tests.factories import ANTHROPIC_KEYS, poll_store

TOTAL = 100_000
PAGE = 50
PEAK_LIMIT = 16 * 2**20  # generous (measured peaks are ~1-2 MiB); the results file is ~53 MiB
ERROR_KINDS = {"invalid_request_error", "api_error", "overloaded_error"}
RESULT_ROW = re.compile(
    r'<tr class="result-line result-(?P<type>[a-z]+)">\s*<td class="muted">(?P<number>\d+)</td>\s*'
    r"<td><code>(?P<custom_id>[^<]*)</code></td>"
)
SUMMARY_COUNT = re.compile(r'<span class="count count-([a-z]+)">[a-z]+ (\d+)</span>')
SUMMARY_ERROR = re.compile(r"<tr><td><code>([^<]*)</code></td><td>([^<]*)</td><td>(\d+)</td></tr>")
CUSTOM_ID = re.compile(rb'"custom_id":"([^"]*)"')


def log(message: str) -> None:
    print(f"[results-large] {message}", flush=True)


@contextmanager
def timed(label: str):
    start = time.perf_counter()
    yield
    log(f"{label}: {time.perf_counter() - start:.2f} s")


@contextmanager
def peak_memory(label: str, into: dict):
    """tracemalloc's peak while the block runs, counting only what is allocated inside it."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        yield
    finally:
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        into[label] = peak
        log(
            f"{label}: peak {peak / 2**20:.1f} MiB (still held {current / 2**20:.1f} MiB), "
            f"{time.perf_counter() - start:.2f} s"
        )


@pytest.fixture
def parsed(monkeypatch) -> list[int]:
    """How many result lines the dashboard has parsed: parse_stream looks parse_line up as a module global."""
    count = [0]
    original = results.parse_line

    def counting(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(results, "parse_line", counting)
    return count


def wait_until_ended(client, batch_id: str, *, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.processing_status}"
        time.sleep(0.2)


def shown_rows(response) -> list[dict]:
    return [match.groupdict() for match in RESULT_ROW.finditer(response.content.decode())]


def simulator_stream(url: str, headers: dict, recording: Path) -> dict:
    """The simulator's own answer, streamed into `recording`: size, line count, sha256, the errored
    custom_ids, and the answer's headers."""
    digest = hashlib.sha256()
    size = lines = 0
    errored: set[str] = set()
    with (
        httpx.Client(transport=embedded_transport(), timeout=60) as http,
        http.stream("GET", url, headers=headers) as response,
        recording.open("wb") as file,
    ):
        assert response.status_code == 200, response.read()[:500]
        pending = b""
        for chunk in response.iter_raw():
            file.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
            *complete, pending = (pending + chunk).split(b"\n")
            for line in complete:
                if b'"result":{"type":"errored"' in line:
                    errored.add(CUSTOM_ID.search(line).group(1).decode())
        assert pending == b""
        response_headers = response.headers.raw
    return {
        "sha256": digest.hexdigest(),
        "bytes": size,
        "lines": lines,
        "errored": errored,
        "headers": response_headers,
    }


class _Recording(httpx.SyncByteStream):
    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self):
        with self.path.open("rb") as file:
            while chunk := file.read(64 * 1024):
                yield chunk


class ReplayedResults(httpx.BaseTransport):
    """The embedded simulator, except that one batch's results are served from a recording of its answer."""

    def __init__(self, batch_id: str, recording: Path, headers: list[tuple[bytes, bytes]]) -> None:
        self.inner = embedded_transport()
        self.path = f"/simulator/anthropic/v1/messages/batches/{batch_id}/results"
        self.recording = recording
        self.headers = headers
        self.served = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET" or request.url.path != self.path:
            return self.inner.handle_request(request)
        assert request.headers["x-api-key"] == ANTHROPIC_KEYS["ops"]  # the dashboard asks as the simulator requires
        self.served += 1
        return httpx.Response(200, headers=self.headers, stream=_Recording(self.recording), request=request)


@pytest.mark.slow
@pytest.mark.usefixtures("fast_simulator")
def test_a_100000_request_anthropic_batch_is_paged_downloaded_exported_and_summarized_in_bounded_memory(
    operator_client, embedded_upstream, anthropic_sdk, parsed, settings, monkeypatch, fresh_http_clients, tmp_path
):
    test_start = time.perf_counter()
    client = anthropic_sdk(timeout=120)

    # --- setup: one batch of 100,000 requests through the simulator's own API -------------------
    # The create body is ~11 MB, well past Django's 2.5 MB DATA_UPLOAD_MAX_MEMORY_SIZE: the simulator must
    # accept it all the same, as the real API does. It is posted as JSON, as the SDK would (whose own
    # preparation of 100,000 requests would take seconds and test nothing here).
    body = json.dumps(
        {
            "requests": [
                {
                    "custom_id": f"r{i:06d}",
                    "params": {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]},
                }
                for i in range(TOTAL)
            ]
        }
    ).encode()
    assert len(body) > 4 * 2**20
    with timed("create 100,000-request batch"), httpx.Client(transport=embedded_transport(), timeout=120) as http:
        answer = http.post(
            f"{embedded_upstream}/anthropic/v1/messages/batches",
            content=body,
            headers={
                "x-api-key": ANTHROPIC_KEYS["ops"],
                "anthropic-version": "2023-06-01",
                "content-type": "application/json",
                "x-sim-processing-seconds": "0.5",
            },
        )
    assert answer.status_code == 200, answer.text[:500]
    created = answer.json()
    assert sum(created["request_counts"].values()) == TOTAL
    batch_id = created["id"]
    del body, answer
    with timed("wait until ended"):
        ended = wait_until_ended(client, batch_id)
    counts = ended.request_counts
    assert counts.processing == 0 and counts.canceled == 0
    assert counts.succeeded + counts.errored + counts.expired == TOTAL
    assert counts.errored > 0 and counts.expired > 0 and counts.succeeded > 0
    with timed("poll the store"):
        poll_store()  # the pages read the batch from the store; only its results are read upstream
    batch_url = f"/batches/anthropic-ops/{batch_id}"

    recording = tmp_path / "results.jsonl"
    with timed("simulator results streamed directly (and recorded)"):
        direct = simulator_stream(
            ended.results_url, {"x-api-key": ANTHROPIC_KEYS["ops"], "anthropic-version": "2023-06-01"}, recording
        )
    assert direct["lines"] == TOTAL
    assert len(direct["errored"]) == counts.errored
    log(
        f"results file: {direct['bytes']:,} bytes ({direct['bytes'] / 2**20:.1f} MiB), {direct['lines']:,} lines, "
        f"{counts.errored:,} errored, {counts.expired:,} expired"
    )
    assert direct["bytes"] > 3 * PEAK_LIMIT  # the bound below means something only if the file is far larger

    # --- the detail page parses only what it shows ------------------------------------------------
    parsed[0] = 0
    with timed("detail page, first page"):
        first = operator_client.get(f"{batch_url}/")
    assert first.status_code == 200
    rows = shown_rows(first)
    assert len(rows) == PAGE
    assert [int(row["number"]) for row in rows] == list(range(1, PAGE + 1))
    assert [row["custom_id"] for row in rows] == [f"r{i:06d}" for i in range(PAGE)]
    assert 'rel="next"' in first.content.decode() and 'rel="prev"' not in first.content.decode()
    log(f"first page parsed {parsed[0]} lines")
    assert parsed[0] <= PAGE + 1

    parsed[0] = 0
    with timed("detail page, offset=100"):
        third = operator_client.get(f"{batch_url}/?offset=100")
    assert third.status_code == 200
    rows = shown_rows(third)
    assert [int(row["number"]) for row in rows] == list(range(101, 151))
    assert [row["custom_id"] for row in rows] == [f"r{i:06d}" for i in range(100, 150)]
    log(f"offset=100 page parsed {parsed[0]} lines")
    assert parsed[0] <= 101 + PAGE

    parsed[0] = 0
    with timed("detail page, type=errored"):
        errored_page = operator_client.get(f"{batch_url}/?type=errored")
    assert errored_page.status_code == 200
    rows = shown_rows(errored_page)
    assert len(rows) == PAGE
    assert {row["type"] for row in rows} == {"errored"}
    # custom_id r000123 is line 124: the page shows the first 50 errored lines, in order ...
    errored_numbers = sorted(int(custom_id[1:]) + 1 for custom_id in direct["errored"])
    assert [int(row["number"]) for row in rows] == errored_numbers[:PAGE]
    assert [row["custom_id"] for row in rows] == [f"r{number - 1:06d}" for number in errored_numbers[:PAGE]]
    # ... and reading stopped at the 51st, which only tells that there is a next page.
    log(f"type=errored page parsed {parsed[0]} lines (the 51st errored line is #{errored_numbers[PAGE]})")
    assert parsed[0] == errored_numbers[PAGE]
    assert parsed[0] < TOTAL // 10
    assert 'rel="next"' in errored_page.content.decode()

    # --- from here on memory is measured: the dashboard's upstream serves the recorded results ----
    replay = ReplayedResults(batch_id, recording, direct["headers"])
    monkeypatch.setattr(accounts, "embedded_transport", lambda: replay)
    for http_client in fresh_http_clients.values():
        http_client.close()
    fresh_http_clients.clear()  # the dashboard's next client is built with the replaying transport

    # --- the download streams the simulator's bytes through unchanged ---------------------------
    peaks: dict[str, int] = {}
    digest = hashlib.sha256()
    size = newlines = 0
    with peak_memory("download", peaks):
        response = operator_client.get(f"{batch_url}/results/download")
        assert response.status_code == 200
        assert response.streaming
        assert response["Content-Type"] == "application/x-jsonl"
        for chunk in response.streaming_content:
            digest.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
        response.close()
    assert newlines == TOTAL
    assert size == direct["bytes"]
    assert digest.hexdigest() == direct["sha256"]
    assert peaks["download"] < PEAK_LIMIT

    # --- the CSV export of errored lines streams too ---------------------------------------------
    exported: list[str] = []  # ~8,000 short ids; the lines themselves are not kept
    types: Counter = Counter()
    header = None
    parsed[0] = 0
    with peak_memory("export.csv?type=errored", peaks):
        response = operator_client.get(f"{batch_url}/results/export.csv?type=errored")
        assert response.status_code == 200
        assert response.streaming
        for chunk in response.streaming_content:
            for row in csv.reader(chunk.decode().splitlines()):
                if header is None:
                    header = row
                    continue
                types[row[2]] += 1
                exported.append(row[1])
        response.close()
    assert header == list(results.CSV_COLUMNS)
    assert types == Counter({"errored": counts.errored})
    assert len(exported) == len(set(exported)) == counts.errored
    assert set(exported) == direct["errored"]
    assert parsed[0] == TOTAL  # the filter reads every line, one at a time
    assert peaks["export.csv?type=errored"] < PEAK_LIMIT
    del exported

    # --- the error summary is one streaming pass --------------------------------------------------
    parsed[0] = 0
    with peak_memory("summary", peaks):
        response = operator_client.get(f"{batch_url}/results/summary")
    assert response.status_code == 200
    assert parsed[0] == TOTAL
    page = response.content.decode()
    by_type = {kind: int(count) for kind, count in SUMMARY_COUNT.findall(page)}
    errors = [(kind, html.unescape(message), int(count)) for kind, message, count in SUMMARY_ERROR.findall(page)]
    log(f"summary: {by_type}; errors {errors}")
    assert f"of {TOTAL} result lines" in page
    assert sum(by_type.values()) == TOTAL
    assert by_type == {"succeeded": counts.succeeded, "errored": counts.errored, "expired": counts.expired}
    assert list(by_type) == ["succeeded", "errored", "expired"]
    assert sum(count for _, _, count in errors) == counts.errored
    assert {kind for kind, _, _ in errors} == ERROR_KINDS
    assert [count for _, _, count in errors] == sorted((count for _, _, count in errors), reverse=True)
    # What was rendered is what the service computed, stored with the batch for every later viewer.
    stored = ResultsSummary.objects.get(batch__account="anthropic-ops", batch__batch_id=batch_id)
    assert stored.sources == "results"
    assert stored.total == TOTAL and dict(stored.summary().by_type) == by_type and stored.summary().errors == errors
    assert peaks["summary"] < PEAK_LIMIT
    assert replay.served == 3  # download, export and summary each read the (recorded) results once

    # --- the summary again: from the database, not upstream, and the same page --------------------
    cache.clear()
    parsed[0] = 0
    with timed("summary again (stored)"):
        again = operator_client.get(f"{batch_url}/results/summary")
    assert again.status_code == 200
    assert again.content.decode() == page
    assert parsed[0] == 0 and replay.served == 3

    elapsed = time.perf_counter() - test_start
    log(
        "peaks (MiB): "
        + ", ".join(f"{name} {peak / 2**20:.1f}" for name, peak in peaks.items())
        + f"; results file {direct['bytes'] / 2**20:.1f} MiB; whole test {elapsed:.1f} s"
    )


# --- OpenAI: output and error files downloaded as they are -------------------------------------


def chat_line(custom_id: str) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1},
    }


@pytest.mark.usefixtures("fast_simulator")
def test_openai_downloads_of_output_and_error_files_are_the_simulators_bytes(
    operator_client, embedded_upstream, openai_sdk
):
    count = 2_000
    client = openai_sdk(timeout=60)
    content = "".join(json.dumps(chat_line(f"o{i:05d}")) + "\n" for i in range(count)).encode()
    upload = client.files.create(file=("in.jsonl", content, "application/jsonl"), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        extra_headers={"x-sim-processing-seconds": "0.5"},
    )
    deadline = time.monotonic() + 30
    while batch.status != "completed":
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.2)
        batch = client.batches.retrieve(batch.id)
    assert batch.output_file_id and batch.error_file_id
    assert batch.request_counts.completed + batch.request_counts.failed == count
    assert batch.request_counts.failed > 0
    poll_store()  # the views read the batch (and so its files' ids) from the store

    expected = {
        "output": client.files.content(batch.output_file_id).content,
        "error": client.files.content(batch.error_file_id).content,
    }
    assert expected["output"].count(b"\n") == batch.request_counts.completed
    assert expected["error"].count(b"\n") == batch.request_counts.failed

    for source, filename in (("output", f"{batch.id}_output.jsonl"), ("error", f"{batch.id}_error.jsonl")):
        response = operator_client.get(f"/batches/openai-ops/{batch.id}/results/download?source={source}")
        assert response.status_code == 200, source
        assert response.streaming
        assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
        body = b"".join(response.streaming_content)
        response.close()
        assert body == expected[source], source

    # Without a source the download is the output file; an unknown source is a 404.
    response = operator_client.get(f"/batches/openai-ops/{batch.id}/results/download")
    assert b"".join(response.streaming_content) == expected["output"]
    response.close()
    assert operator_client.get(f"/batches/openai-ops/{batch.id}/results/download?source=results").status_code == 404

    # The detail page's source filter reads the error file's lines only.
    page = operator_client.get(f"/batches/openai-ops/{batch.id}/?source=error")
    assert page.status_code == 200
    assert 0 < len(shown_rows(page)) <= PAGE
    assert {row["type"] for row in shown_rows(page)} == {"errored"}
