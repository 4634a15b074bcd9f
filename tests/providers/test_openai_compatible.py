"""OpenAI-compatible batch APIs (issue 18): an `openai` account with the provider's base_url.

Groq speaks OpenAI's /v1/batches under https://api.groq.com/openai/v1; its recorded answers
(tests/fixtures/compatible/groq-batches.json, with their source) are read by the OpenAI module as
they are: a list without `has_more`, `file_…` ids (OpenAI's are `file-…`), errors as a list object.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from dashboard.providers import openai

GROQ = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "compatible" / "groq-batches.json").read_text())
GROQ_URL = "https://api.groq.com/openai/v1"


def groq(routes: dict[str, httpx.Response]) -> tuple[openai.OpenAIProvider, list[str]]:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.method} {request.url.path}")
        return routes.get(request.url.path, httpx.Response(404, json={"error": {"message": "Not found"}}))

    client = httpx.Client(
        base_url=GROQ_URL, transport=httpx.MockTransport(answer), headers=openai.auth_headers("gsk_x")
    )
    return openai.OpenAIProvider(client, account="openai-groq"), asked


def test_a_groq_list_is_one_page_of_readable_batches():
    provider, asked = groq({"/openai/v1/batches": httpx.Response(200, json=GROQ["list"])})
    page = provider.list_page(limit=100)
    assert asked == ["GET /openai/v1/batches"]
    assert page.unreadable == () and (page.has_more, page.next_cursor) == (False, None)
    completed, failed = page.batches
    assert (completed.status, completed.is_ended, completed.counts.succeeded, completed.counts.total) == (
        "completed",
        True,
        3,
        3,
    )
    assert failed.status == "failed" and failed.metadata == {"team": "evals"} and failed.ended_at is not None


def test_a_groq_output_file_is_read_by_its_file_id():
    batch = GROQ["list"]["data"][0]
    line = json.dumps(GROQ["output_lines"][0]).encode()
    file_path = f"/openai/v1/files/{batch['output_file_id']}/content"
    provider, asked = groq(
        {
            f"/openai/v1/batches/{batch['id']}": httpx.Response(200, json=batch),
            file_path: httpx.Response(200, content=line + b"\n"),
        }
    )
    assert list(provider.stream_results(batch["id"])) == [line]
    assert asked == [f"GET /openai/v1/batches/{batch['id']}", f"GET {file_path}"]
    parsed = openai.parse_result_line(1, GROQ["output_lines"][0], line.decode(), "output")
    assert (parsed.custom_id, parsed.type, parsed.model) == ("request-1", "succeeded", "llama-3.1-8b-instant")


def test_a_file_id_that_could_leave_the_files_path_is_still_refused():
    for file_id in ("file_../../batches", "file_a/b", "file-a?b=c", "files_x", "file_"):
        assert not openai.FILE_ID.fullmatch(file_id), file_id
