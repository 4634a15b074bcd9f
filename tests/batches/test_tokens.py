"""Tokens per batch: the BatchTokens rows (disjoint kinds per model) and the batch's tokens source."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

import httpx
import pytest
from django.db import IntegrityError, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.accounts import find_account
from dashboard.batches import poller, results, services, store
from dashboard.batches.results import ModelTokens, parse_line, summarize
from dashboard.batches.services import tokens_note
from dashboard.models import BatchTokens, ResultsSummary, StoredBatch
from dashboard.providers.anthropic import AnthropicProvider
from dashboard.providers.base import NotFound, UpstreamTimeout
from dashboard.providers.usage import Usage
from tests.factories import stored_batch
from tests.providers.test_providers import ANTHROPIC_ENDED, OPENAI_COMPLETED, OPENAI_IN_PROGRESS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_a_stored_batch_starts_with_tokens_not_known_yet_and_no_rows(db):
    row = stored_batch("openai-ops", "batch_tokens_1", fetched_at=T0, created=T0)
    assert (row.tokens_source, row.tokens_note) == ("", "")
    assert row.tokens_source == StoredBatch.TokensSource.NOT_KNOWN_YET
    assert not row.tokens.exists()


def test_one_tokens_row_per_batch_and_model_whose_kinds_add_up_to_the_total(db):
    row = stored_batch("anthropic-ops", "msgbatch_tokens1", fetched_at=T0, created=T0)
    tokens = BatchTokens.objects.create(
        batch=row, model="claude-x", input=10, cache_read=20, cache_write=30, output=40, reasoning=5, requests=2
    )
    BatchTokens.objects.create(batch=row, model="", input=1)
    assert tokens.total == 105
    assert sorted(row.tokens.values_list("model", flat=True)) == ["", "claude-x"]
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchTokens.objects.create(batch=row, model="claude-x", input=1)
    row.delete()
    assert not BatchTokens.objects.exists()


# --- counting: the same single pass as the error summary ------------------------------------------------------


def anthropic_line(index: int, *, model: str = "claude-x", usage=None, kind: str = "succeeded") -> bytes:
    if kind != "succeeded":
        result = {"type": kind, "error": {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}}
        return json.dumps({"custom_id": f"r{index}", "result": result}).encode() + b"\n"
    message = {"model": model}
    if usage is not None:
        message["usage"] = usage
    return json.dumps({"custom_id": f"r{index}", "result": {"type": "succeeded", "message": message}}).encode() + b"\n"


def usage(fresh: int, output: int, *, read: int = 0, written: int = 0) -> dict:
    return {
        "input_tokens": fresh,
        "output_tokens": output,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }


def test_summarize_adds_tokens_up_per_model_and_counts_billed_lines_without_usage():
    lines = [
        anthropic_line(1, usage=usage(10, 5, read=100, written=7)),
        anthropic_line(2, model="claude-y", usage=usage(1, 2)),
        anthropic_line(3, usage=usage(20, 6, read=50)),
        anthropic_line(4),  # succeeded, no usage: unknown
        anthropic_line(5, usage={"input_tokens": -1, "output_tokens": 3}),  # untrusted: unknown
        anthropic_line(6, kind="errored"),  # bills nothing
        b"{not json\n",  # may have been billed: unknown
    ]
    summary = summarize(parse_line("anthropic", number, line) for number, line in enumerate(lines, 1))
    assert summary.tokens == [
        ModelTokens("claude-x", Usage(input=30, cache_read=150, cache_write=7, output=11), 2),
        ModelTokens("claude-y", Usage(input=1, output=2), 1),
    ]
    assert summary.usage_unknown == 3
    assert tokens_note(summary) == "3 of 6 results had no usage that could be read: their tokens are not counted."


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", ""]), st.integers(0, 10**6), st.integers(0, 10**6), st.booleans()),
        max_size=40,
    )
)
def test_the_sums_are_those_of_the_lines_whatever_their_order(rows):
    lines = [
        parse_line(
            "anthropic", number, anthropic_line(number, model=model, usage=usage(fresh, output) if known else None)
        )
        for number, (model, fresh, output, known) in enumerate(rows, 1)
    ]
    expected: dict[str, list[int]] = {}
    for model, fresh, output, known in rows:
        if known:
            tally = expected.setdefault(model, [0, 0, 0])
            tally[0] += fresh
            tally[1] += output
            tally[2] += 1
    # The usage held is added up every HELD_LINES lines: as often as every line, and never within these.
    for held_lines in (1, 2, 3, results.HELD_LINES):
        with patch.object(results, "HELD_LINES", held_lines):
            summary = summarize(lines)
        assert {
            tally.model: [tally.usage.input, tally.usage.output, tally.requests] for tally in summary.tokens
        } == expected
        assert summary.usage_unknown == sum(not known for *_, known in rows)
        assert all(tally.usage.cache_read == tally.usage.reasoning == 0 for tally in summary.tokens)


def serve(monkeypatch, body: bytes, calls: list | None = None):
    @contextmanager
    def open_results(self, batch_id, source="results", *, known=None):
        if calls is not None:
            calls.append(batch_id)
        yield httpx.Response(200, headers={"content-type": "application/binary"}, content=body)

    monkeypatch.setattr(AnthropicProvider, "open_results", open_results)


def ended_anthropic(batch_id: str, *, ended_at: str = "2024-09-24T19:02:03.5Z") -> StoredBatch:
    return stored_batch("anthropic-ops", batch_id, fetched_at=T0, body={**ANTHROPIC_ENDED, "ended_at": ended_at})


def test_counting_an_ended_batch_stores_its_tokens_per_model_with_the_summary(db, monkeypatch):
    row = ended_anthropic("msgbatch_counted1")
    serve(
        monkeypatch,
        anthropic_line(1, usage=usage(10, 5, read=3)) + anthropic_line(2, model="claude-y", usage=usage(1, 1)),
    )
    summary = services.error_summary(account=find_account("anthropic-ops"), batch=store.as_batch(row))
    assert summary.total == 2
    row.refresh_from_db()
    assert (row.tokens_source, row.tokens_note) == ("results", "")
    stored = {
        t.model: (t.input, t.cache_read, t.cache_write, t.output, t.reasoning, t.requests) for t in row.tokens.all()
    }
    assert stored == {"claude-x": (10, 3, 0, 5, 0, 1), "claude-y": (1, 0, 0, 1, 0, 1)}
    assert ResultsSummary.objects.filter(batch=row).count() == 1


def test_results_with_lines_without_usage_say_so_and_count_the_rest(db, monkeypatch):
    row = ended_anthropic("msgbatch_partial1")
    serve(monkeypatch, anthropic_line(1, usage=usage(10, 5)) + anthropic_line(2) + anthropic_line(3, kind="errored"))
    services.error_summary(account=find_account("anthropic-ops"), batch=store.as_batch(row))
    row.refresh_from_db()
    assert row.tokens_source == "results"
    assert row.tokens_note == "1 of 2 results had no usage that could be read: their tokens are not counted."
    assert list(row.tokens.values_list("model", "input", "output", "requests")) == [("claude-x", 10, 5, 1)]


def test_a_summary_stored_before_tokens_were_counted_is_counted_once_more_for_them(db, monkeypatch):
    row = ended_anthropic("msgbatch_before1")
    calls: list = []
    serve(monkeypatch, anthropic_line(1, usage=usage(4, 2)), calls)
    account, batch = find_account("anthropic-ops"), store.as_batch(row)
    services.error_summary(account=account, batch=batch)
    BatchTokens.objects.all().delete()
    StoredBatch.objects.filter(pk=row.pk).update(tokens_source="")  # as stored before this release
    services.error_summary(account=account, batch=batch)
    services.error_summary(account=account, batch=batch)
    assert len(calls) == 2  # counted, counted again for its tokens, then read from the store
    assert list(row.tokens.values_list("input", "output")) == [(4, 2)]
    assert ResultsSummary.objects.filter(batch=row).count() == 1


def test_the_batch_object_s_usage_is_kept_over_the_results(db, monkeypatch):
    body = {
        **OPENAI_COMPLETED,
        "model": "gpt-5",
        "usage": {
            "input_tokens": 300,
            "input_tokens_details": {"cached_tokens": 100},
            "output_tokens": 50,
            "output_tokens_details": {"reasoning_tokens": 20},
            "total_tokens": 350,
        },
    }
    row = stored_batch("openai-ops", OPENAI_COMPLETED["id"], fetched_at=T0, body=body)
    assert row.tokens_source == "batch"
    assert list(row.tokens.values_list("model", "input", "cache_read", "output", "reasoning", "requests")) == [
        ("gpt-5", 200, 100, 30, 20, 95)
    ]
    services._keep_tokens(batch_row=row.pk, summary=summarize([]))
    row.refresh_from_db()
    assert row.tokens_source == "batch" and row.tokens.get().input == 200


def test_the_batch_object_s_usage_is_updated_as_it_runs(db):
    def running(tokens: int, at: datetime) -> StoredBatch:
        body = {
            **OPENAI_IN_PROGRESS,
            "model": "gpt-5",
            "usage": {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens},
        }
        return stored_batch("openai-ops", OPENAI_IN_PROGRESS["id"], fetched_at=at, body=body)

    running(10, T0)
    row = running(25, T0 + timedelta(seconds=5))
    assert list(row.tokens.values_list("input", flat=True)) == [25]


def test_the_poller_counts_one_ended_batch_per_account_and_cycle_newest_ended_first(db, monkeypatch):
    older = ended_anthropic("msgbatch_older1", ended_at="2024-09-24T19:02:03Z")
    newer = ended_anthropic("msgbatch_newer1", ended_at="2024-09-25T19:02:03Z")
    calls: list = []
    serve(monkeypatch, anthropic_line(1, usage=usage(4, 2)), calls)
    account = find_account("anthropic-ops")
    assert services.count_ended_results(account=account, limit=1) == 1
    assert calls == [newer.batch_id]
    assert services.count_ended_results(account=account, limit=1) == 1
    assert calls == [newer.batch_id, older.batch_id]
    assert services.count_ended_results(account=account, limit=1) == 0  # once per batch
    assert set(StoredBatch.objects.values_list("tokens_source", flat=True)) == {"results"}


def test_after_its_poll_the_poller_counts_as_many_as_the_setting_says(db, monkeypatch, settings):
    for day in (21, 22, 23):
        ended_anthropic(f"msgbatch_cycle{day}", ended_at=f"2024-09-{day}T19:02:03Z")
    calls: list = []
    serve(monkeypatch, anthropic_line(1, usage=usage(4, 2)), calls)
    account = find_account("anthropic-ops")
    settings.POLL_RESULTS_PER_CYCLE = 0
    poller._count_results(account)
    assert calls == []
    settings.POLL_RESULTS_PER_CYCLE = 2
    poller._count_results(account)
    assert calls == ["msgbatch_cycle23", "msgbatch_cycle22"]


def test_results_that_cannot_be_read_mark_the_tokens_unavailable_and_say_why(db, monkeypatch):
    row = ended_anthropic("msgbatch_refused1")

    @contextmanager
    def open_results(self, batch_id, source="results", *, known=None):
        raise NotFound("Anthropic HTTP 404 not_found_error: no results", status=404)
        yield

    monkeypatch.setattr(AnthropicProvider, "open_results", open_results)
    services.count_ended_results(account=find_account("anthropic-ops"))
    row.refresh_from_db()
    assert row.tokens_source == "unavailable"
    assert row.tokens_note.startswith("The results could not be read: Anthropic HTTP 404")
    assert not row.tokens.exists()


def test_a_transient_failure_leaves_the_batch_to_be_counted_again(db, monkeypatch, settings):
    settings.POLL_RESULTS_PER_CYCLE = 1
    row = ended_anthropic("msgbatch_transient1")

    @contextmanager
    def open_results(self, batch_id, source="results", *, known=None):
        raise UpstreamTimeout("Anthropic did not answer in time")
        yield

    monkeypatch.setattr(AnthropicProvider, "open_results", open_results)
    poller._count_results(find_account("anthropic-ops"))  # never raises
    row.refresh_from_db()
    assert (row.tokens_source, row.tokens_note) == ("", "")


def test_a_batch_whose_results_are_elsewhere_is_unavailable_with_the_provider_s_words(db):
    body = json.loads((FIXTURES / "bedrock" / "get-model-invocation-job-in-progress.json").read_text())
    body = {**body, "status": "Completed", "endTime": body["submitTime"]}
    row = stored_batch("bedrock-ops", "ab12cd34ef56", fetched_at=T0, body=body)
    services.count_ended_results(account=find_account("bedrock-ops"))
    row.refresh_from_db()
    assert row.tokens_source == "unavailable" and "S3" in row.tokens_note
    assert not row.tokens.exists()
