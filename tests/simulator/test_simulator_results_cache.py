"""The simulator renders an ended batch's results once, to disk, and serves later requests from that file."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.simulator import anthropic_api, openai_api
from dashboard.simulator.models import SimBatch
from tests.factories import ANTHROPIC_KEYS, OPENAI_KEYS

ANTHROPIC = "/simulator/anthropic/v1/messages/batches"
OPENAI = "/simulator/openai/v1"
A_HEADERS = {"x-api-key": ANTHROPIC_KEYS["ops"], "anthropic-version": "2023-06-01"}
O_HEADERS = {"authorization": f"Bearer {OPENAI_KEYS['ops']}"}


@pytest.fixture
def cache_dir(settings, tmp_path, transactional_db, demo_accounts):
    settings.SIMULATOR_RESULTS_DIR = str(tmp_path / "results")
    return tmp_path / "results"


@pytest.fixture
def counted(monkeypatch):
    """How many times each results renderer ran."""
    calls = {"anthropic": 0, "openai": 0}

    def counting(name, render):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return render(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(anthropic_api, "result_lines", counting("anthropic", anthropic_api.result_lines))
    monkeypatch.setattr(openai_api, "output_lines", counting("openai", openai_api.output_lines))
    return calls


def cached_files(directory) -> list:
    return sorted(directory.glob("*.jsonl")) if directory.exists() else []


def body(response) -> bytes:
    content = b"".join(response.streaming_content)
    response.close()
    return content


def anthropic_batch(client, count: int = 40, seconds: str = "0") -> str:
    requests = [
        {
            "custom_id": f"c-{i}",
            "params": {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]},
        }
        for i in range(count)
    ]
    response = client.post(
        ANTHROPIC,
        data=json.dumps({"requests": requests}),
        content_type="application/json",
        headers={**A_HEADERS, "x-sim-processing-seconds": seconds},
    )
    assert response.status_code == 200, response.content
    return response.json()["id"]


def results(client, batch_id: str, **headers):
    return client.get(f"{ANTHROPIC}/{batch_id}/results", headers={**A_HEADERS, **headers})


def test_an_ended_batch_is_rendered_once_and_served_from_its_file(client, cache_dir, counted):
    batch_id = anthropic_batch(client)
    first = results(client, batch_id)
    first_bytes = body(first)
    assert first.status_code == 200 and counted["anthropic"] == 1
    assert first_bytes.count(b"\n") == 40
    assert len(cached_files(cache_dir)) == 1

    second = results(client, batch_id)
    assert second.status_code == 200
    assert body(second) == first_bytes
    assert counted["anthropic"] == 1  # not rendered again
    for name in ("Content-Type", "Content-Disposition"):
        assert second[name] == first[name]
    assert not second.has_header("Content-Length") and not first.has_header("Content-Length")
    assert [path.read_bytes() for path in cached_files(cache_dir)] == [first_bytes]

    # Faults still apply before anything is served.
    faulted = results(client, batch_id, **{"x-sim-fault": "500"})
    assert faulted.status_code == 500 and faulted.json()["error"]["type"] == "api_error"
    assert counted["anthropic"] == 1


def test_the_cached_bytes_are_the_rendered_bytes(client, cache_dir, settings, tmp_path):
    batch_id = anthropic_batch(client, count=300)
    cached = body(results(client, batch_id))
    assert body(results(client, batch_id)) == cached
    settings.SIMULATOR_RESULTS_DIR = str(tmp_path / "elsewhere")  # no file there: rendered anew
    assert body(results(client, batch_id)) == cached


def test_a_batch_not_final_is_never_cached(client, cache_dir, counted):
    running = anthropic_batch(client, seconds="600")
    assert results(client, running).status_code == 400
    assert cached_files(cache_dir) == []

    # Ended, then stalled: served, but rendered every time and never kept.
    stalled = anthropic_batch(client)
    SimBatch.objects.filter(public_id=stalled).update(stalled_at=timezone.now())
    first, second = body(results(client, stalled)), body(results(client, stalled))
    assert first == second and first.count(b"\n") == 40
    assert counted["anthropic"] == 2
    assert cached_files(cache_dir) == []


def test_a_canceling_batch_is_not_cached_and_its_final_results_are(client, cache_dir, counted):
    batch_id = anthropic_batch(client, seconds="600")
    canceled = client.post(f"{ANTHROPIC}/{batch_id}/cancel", headers=A_HEADERS)
    assert canceled.json()["processing_status"] == "canceling"
    assert results(client, batch_id).status_code == 400
    assert cached_files(cache_dir) == []
    SimBatch.objects.filter(public_id=batch_id).update(cancel_initiated_at=timezone.now() - timedelta(minutes=5))
    lines = body(results(client, batch_id)).splitlines()
    assert {json.loads(line)["result"]["type"] for line in lines} == {"canceled"}
    assert len(cached_files(cache_dir)) == 1


def test_a_changed_plan_or_a_deleted_batch_never_serves_a_stale_file(client, cache_dir, counted):
    batch_id = anthropic_batch(client, seconds="60")
    SimBatch.objects.filter(public_id=batch_id).update(created_at=timezone.now() - timedelta(hours=1))
    before = body(results(client, batch_id))
    [old_file] = cached_files(cache_dir)
    # Moved in time so that it ends otherwise (expired while processing): other results, another file.
    SimBatch.objects.filter(public_id=batch_id).update(
        created_at=timezone.now() - timedelta(hours=25), processing_seconds=48 * 3600
    )
    after = body(results(client, batch_id))
    assert after != before and counted["anthropic"] == 2
    assert "expired" in {json.loads(line)["result"]["type"] for line in after.splitlines()}
    assert not old_file.exists() and len(cached_files(cache_dir)) == 1  # the older version was dropped

    deleted = client.delete(f"{ANTHROPIC}/{batch_id}", headers=A_HEADERS)
    assert deleted.status_code == 200
    assert cached_files(cache_dir) == []
    assert results(client, batch_id).status_code == 404


def test_a_client_that_goes_away_leaves_no_file(client, cache_dir, monkeypatch):
    monkeypatch.setattr(anthropic_api, "RESULTS_CHUNK", 256)
    batch_id = anthropic_batch(client, count=200)
    response = results(client, batch_id)
    chunks = iter(response.streaming_content)
    next(chunks)
    response.close()  # as a server does when the client disconnects
    assert cached_files(cache_dir) == []
    assert list(cache_dir.iterdir()) == []  # nor a temporary one


def test_openai_output_and_error_files_are_cached(client, cache_dir, counted, settings):
    settings.SIMULATOR_VALIDATING_SECONDS = 0
    settings.SIMULATOR_FINALIZING_SECONDS = 0
    settings.SIMULATOR_ERROR_PERCENT = 30
    lines = [
        json.dumps(
            {
                "custom_id": f"o-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
            }
        )
        for i in range(50)
    ]
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("in.jsonl", ("\n".join(lines) + "\n").encode())
    file_id = client.post(f"{OPENAI}/files", {"purpose": "batch", "file": upload}, headers=O_HEADERS).json()["id"]
    batch = client.post(
        f"{OPENAI}/batches",
        data=json.dumps({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        content_type="application/json",
        headers={**O_HEADERS, "x-sim-processing-seconds": "1"},
    ).json()
    SimBatch.objects.filter(public_id=batch["id"]).update(created_at=timezone.now() - timedelta(minutes=1))
    batch = client.get(f"{OPENAI}/batches/{batch['id']}", headers=O_HEADERS).json()
    assert batch["status"] == "completed" and batch["error_file_id"], batch
    for file_id in (batch["output_file_id"], batch["error_file_id"]):
        first = client.get(f"{OPENAI}/files/{file_id}/content", headers=O_HEADERS)
        assert first.status_code == 200, first.content
        first_bytes = body(first)
        calls = counted["openai"]
        second = client.get(f"{OPENAI}/files/{file_id}/content", headers=O_HEADERS)
        assert second.status_code == 200 and second["Content-Type"] == first["Content-Type"]
        assert body(second) == first_bytes and counted["openai"] == calls
        detail = client.get(f"{OPENAI}/files/{file_id}", headers=O_HEADERS).json()
        assert detail["bytes"] == len(first_bytes) and counted["openai"] == calls
    assert counted["openai"] == 2
    assert len(cached_files(cache_dir)) == 2


def test_concurrent_first_requests_each_keep_a_whole_file(client, cache_dir, monkeypatch, counted):
    monkeypatch.setattr(anthropic_api, "RESULTS_CHUNK", 512)
    batch_id = anthropic_batch(client, count=200)
    slow = results(client, batch_id)
    slow_chunks = iter(slow.streaming_content)
    head = next(slow_chunks)
    assert list(cache_dir.glob("*.jsonl")) == []  # only a temporary file so far: nothing to serve from
    fast = body(results(client, batch_id))
    assert counted["anthropic"] == 2
    assert head + b"".join(slow_chunks) == fast
    slow.close()
    assert [path.read_bytes() for path in cached_files(cache_dir)] == [fast]
    assert [path.name for path in cache_dir.iterdir() if not path.name.endswith(".jsonl")] == []
    assert body(results(client, batch_id)) == fast and counted["anthropic"] == 2
