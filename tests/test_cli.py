"""The operator CLI, `manage.py batches …`, against the embedded simulator, reached in process as by default."""

from __future__ import annotations

import getpass
import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from dashboard import services
from dashboard.models import CancelAttempt
from tests.factories import anthropic_batch, created_ago, custom_id, fault, openai_batch, time_passes

ACCOUNTS = ("anthropic-ops", "anthropic-research", "openai-ops", "openai-research")
LIST_ROW = re.compile(
    r"^(?P<account>(?:anthropic|openai)-[a-z0-9-]+)\s+(?P<id>(?:msgbatch|batch)_[A-Za-z0-9_-]+)\s+"
    r"(?P<status>[a-z_]+)\s+"
)


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("batches", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def listed(*args) -> list[dict]:
    return listed_rows(run("list", *args)[0])


def listed_rows(out: str) -> list[dict]:
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ACCOUNT", "ID", "STATUS", "CREATED"]
    rows = []
    for line in lines[1:]:
        match = LIST_ROW.match(line)
        assert match, f"not a batch row: {line!r}"
        rows.append(match.groupdict())
    return rows


# --- list ----------------------------------------------------------------------------------


def test_list_prints_every_account_newest_first(four_accounts):
    rows = listed()
    assert [(row["account"], row["id"]) for row in rows] == four_accounts
    assert {row["account"] for row in rows} == set(ACCOUNTS)
    assert {row["status"] for row in rows} == {"in_progress"}


def test_list_of_one_account(four_accounts):
    rows = listed("--account", "openai-research")
    assert [(row["account"], row["id"]) for row in rows] == [four_accounts[3]]


def test_list_by_status(embedded_upstream, anthropic_sdk, openai_sdk):
    running = anthropic_batch(anthropic_sdk, "ops", seconds=600).id
    ended = anthropic_batch(anthropic_sdk, "research", seconds=60).id
    completed = openai_batch(openai_sdk, "ops", seconds=60).id
    created_ago(ended, hours=1)
    created_ago(completed, hours=2)
    assert {row["id"] for row in listed()} == {running, ended, completed}
    assert [(row["id"], row["status"]) for row in listed("--status", "ended")] == [(ended, "ended")]
    assert [row["id"] for row in listed("--status", "completed")] == [completed]
    assert [row["id"] for row in listed("--status", "active")] == [running]


def test_list_limit(four_accounts):
    rows = listed("--limit", "2")
    assert [(row["account"], row["id"]) for row in rows] == four_accounts[:2]


def test_list_limit_spans_pages(settings, four_accounts):
    settings.LIST_PAGE_SIZE = 1  # the CLI follows the cursor page by page up to --limit
    assert [(row["account"], row["id"]) for row in listed("--limit", "3")] == four_accounts[:3]
    assert [(row["account"], row["id"]) for row in listed()] == four_accounts


def test_list_with_a_failing_account_reports_it_on_stderr(four_accounts):
    fault("anthropic", "research", "500")
    out, err = run("list")
    assert "anthropic-research: Anthropic HTTP 500" in err
    assert four_accounts[2][1] not in out
    assert all(batch_id in out for _, batch_id in (four_accounts[0], four_accounts[1], four_accounts[3]))


def test_list_stops_when_an_account_starts_failing_on_a_later_page(
    settings, monkeypatch, embedded_upstream, anthropic_sdk, openai_sdk
):
    settings.LIST_PAGE_SIZE = 1
    newest = anthropic_batch(anthropic_sdk, "ops", seconds=600).id
    middle = openai_batch(openai_sdk, "ops", seconds=600).id
    oldest = anthropic_batch(anthropic_sdk, "ops", seconds=600).id
    created_ago(middle, minutes=1)
    created_ago(oldest, minutes=2)
    original = services.list_batches
    pages: list[dict | None] = []

    def list_batches(**kwargs):
        pages.append(kwargs.get("cursor"))
        assert len(pages) <= 10, "the CLI keeps asking a failing account for the same page"
        listing = original(**kwargs)
        if len(pages) == 1:
            fault("anthropic", "ops", "529")  # the account starts failing after the first page
        return listing

    monkeypatch.setattr(services, "list_batches", list_batches)
    out, err = run("list")
    assert [row["id"] for row in listed_rows(out)] == [newest, middle]
    assert err.count("anthropic-ops: Anthropic HTTP 529") == 1
    assert len(pages) == 2


# --- show ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "provider, account, label",
    [
        ("openai", "research", "OpenAI · research"),
        ("anthropic", "research", "Anthropic · research"),
    ],
)
def test_show_finds_the_batch_in_its_account(embedded_upstream, anthropic_sdk, openai_sdk, provider, account, label):
    anthropic_batch(anthropic_sdk, "ops")  # decoys in the other accounts
    openai_batch(openai_sdk, "ops")
    if provider == "openai":
        batch_id = openai_batch(openai_sdk, account).id
        created_ago(batch_id, seconds=10)
        status, timestamp = "in_progress", "in_progress_at"
    else:
        batch_id = anthropic_batch(anthropic_sdk, account).id
        status, timestamp = "in_progress", "expires_at"
    out, _ = run("show", batch_id)
    lines = out.splitlines()
    assert lines[0] == f"{label}  {batch_id}  {status}"
    created = next(line for line in lines if line.strip().startswith("created_at"))
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", created)
    assert re.search(rf"^\s+{timestamp}\s+\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", out, re.M)
    assert "counts" in out
    raw = json.loads(out[out.index("\n{") + 1 :])
    assert raw["id"] == batch_id
    assert raw["processing_status" if provider == "anthropic" else "status"] == status


def test_show_with_account_option(embedded_upstream, openai_sdk):
    batch_id = openai_batch(openai_sdk, "research").id
    out, _ = run("show", batch_id, "--account", "openai-research")
    assert out.startswith(f"OpenAI · research  {batch_id}  validating")
    with pytest.raises(CommandError, match="No batch"):
        run("show", batch_id, "--account", "openai-ops")


@pytest.mark.parametrize("batch_id", ["msgbatch_01nothere", "batch_nothere"])
def test_show_unknown_id(embedded_upstream, upstream_calls, batch_id):
    with pytest.raises(CommandError, match=f"No batch '{batch_id}'"):
        run("show", batch_id)
    assert len(upstream_calls) == 2  # asked, and answered 404, by both accounts of that provider


@pytest.mark.parametrize("batch_id", ["../x", "msgbatch_../x", "batch_x/../y", "batch_x?y=1", ""])
def test_show_malformed_id_makes_no_upstream_request(embedded_upstream, upstream_calls, batch_id):
    with pytest.raises(CommandError, match="No batch"):
        run("show", batch_id)
    assert upstream_calls == []


# --- cancel --------------------------------------------------------------------------------


def test_cancel_running_batch_is_recorded_with_the_os_user(embedded_upstream, anthropic_sdk, openai_sdk):
    anthropic_id = anthropic_batch(anthropic_sdk, "research").id
    openai_id = openai_batch(openai_sdk, "ops").id
    for account, batch_id, status in (
        ("anthropic-research", anthropic_id, "canceling"),
        ("openai-ops", openai_id, "cancelling"),
    ):
        out, _ = run("cancel", batch_id)
        assert out.strip() == f"{account} {batch_id}: accepted: Cancel accepted; status is now {status}."
        row = CancelAttempt.objects.get(batch_id=batch_id)
        assert (row.outcome, row.via, row.actor, row.user, row.account) == (
            "accepted",
            "cli",
            getpass.getuser(),
            None,
            account,
        )
        assert row.status_after == status and row.finished_at is not None
    assert anthropic_sdk("sk-ant-sim-research").messages.batches.retrieve(anthropic_id).processing_status == "canceling"
    assert openai_sdk().batches.retrieve(openai_id).status == "cancelling"


def test_cancel_ended_batch_says_already_ended(embedded_upstream, anthropic_sdk):
    batch_id = anthropic_batch(anthropic_sdk).id
    created_ago(batch_id, hours=1)
    out, _ = run("cancel", batch_id)
    assert out.startswith(f"anthropic-ops {batch_id}: already_ended: Batch {batch_id} had already ended;")
    row = CancelAttempt.objects.get()
    assert (row.outcome, row.via, row.status_after) == ("already_ended", "cli", "ended")


def test_cancel_twice_second_time_after_the_end(embedded_upstream, openai_sdk):
    batch_id = openai_batch(openai_sdk).id
    assert ": accepted: " in run("cancel", batch_id)[0]
    time_passes(batch_id, seconds=30)  # the cancel grace (8 s) is over: cancelled
    out, _ = run("cancel", batch_id)
    assert ": already_ended: " in out and "had already ended" in out
    assert list(CancelAttempt.objects.order_by("id").values_list("outcome", "status_after")) == [
        ("accepted", "cancelling"),
        ("already_ended", "cancelled"),
    ]


def test_cancel_while_upstream_fails_is_an_error_and_recorded(embedded_upstream, anthropic_sdk):
    batch_id = anthropic_batch(anthropic_sdk).id
    run("show", batch_id)  # seen once: its last known state lets the CLI find its account
    fault("anthropic", "ops", "500")
    with pytest.raises(CommandError, match="Anthropic HTTP 500"):
        run("cancel", batch_id)
    row = CancelAttempt.objects.get()
    assert (row.outcome, row.via, row.actor) == ("upstream_error", "cli", getpass.getuser())
    assert "Anthropic HTTP 500" in row.message and row.finished_at is not None
    fault("anthropic", "ops", "")
    assert anthropic_sdk().messages.batches.retrieve(batch_id).processing_status == "in_progress"


def test_cancel_with_account_while_upstream_fails_is_recorded_without_a_lookup(
    embedded_upstream, anthropic_sdk, upstream_calls
):
    batch_id = anthropic_batch(anthropic_sdk, "research").id  # never seen by the dashboard
    fault("anthropic", "research", "500")
    upstream_calls.clear()
    with pytest.raises(CommandError, match="Anthropic HTTP 500"):
        run("cancel", batch_id, "--account", "anthropic-research")
    row = CancelAttempt.objects.get()
    assert (row.outcome, row.via, row.account, row.batch_id) == (
        "upstream_error",
        "cli",
        "anthropic-research",
        batch_id,
    )
    assert row.finished_at is not None
    assert upstream_calls[0].startswith("POST ") and upstream_calls[0].endswith(f"/{batch_id}/cancel")


def test_cancel_without_account_of_unseen_batch_while_upstream_fails(embedded_upstream, anthropic_sdk, upstream_calls):
    """Without --account the CLI must look the batch up first; when that fails, no cancel is sent at all."""
    batch_id = anthropic_batch(anthropic_sdk).id
    fault("anthropic", "ops", "500")
    upstream_calls.clear()
    with pytest.raises(CommandError, match="Anthropic HTTP 500"):
        run("cancel", batch_id)
    assert upstream_calls and not any(call.endswith("/cancel") for call in upstream_calls)
    assert CancelAttempt.objects.count() == 0  # nothing was asked of the provider, so nothing to audit


@pytest.mark.parametrize(
    "args",
    [
        ("msgbatch_01abc", "--account", "nope-x"),
        ("batch_abc", "--account", "anthropic-ops"),
        ("../x", "--account", "openai-ops"),
        ("../x",),
    ],
)
def test_cancel_of_unknown_account_or_malformed_id_sends_nothing(embedded_upstream, upstream_calls, args):
    with pytest.raises(CommandError, match="No batch"):
        run("cancel", *args)
    assert upstream_calls == []
    assert CancelAttempt.objects.count() == 0


# --- results -------------------------------------------------------------------------------


def result_lines(capsys, *args) -> list[dict]:
    run("results", *args)
    out = capsys.readouterr().out
    assert out.endswith("\n") or out == ""
    return [json.loads(line) for line in out.splitlines()]


def test_results_of_anthropic_batch_as_jsonl(settings, capsys, embedded_upstream, anthropic_sdk):
    settings.SIMULATOR_ERROR_PERCENT = 30
    batch_id = anthropic_batch(anthropic_sdk, "research", count=40).id
    created_ago(batch_id, hours=1)
    counts = anthropic_sdk("sk-ant-sim-research").messages.batches.retrieve(batch_id).request_counts

    lines = result_lines(capsys, batch_id)
    assert len(lines) == 40
    assert sorted(line["custom_id"] for line in lines) == sorted(custom_id(i) for i in range(40))
    assert sum(line["result"]["type"] == "succeeded" for line in lines) == counts.succeeded

    errored = result_lines(capsys, batch_id, "--type", "errored")
    assert counts.errored > 0
    assert len(errored) == counts.errored
    assert {line["result"]["type"] for line in errored} == {"errored"}
    assert {line["custom_id"] for line in errored} < {line["custom_id"] for line in lines}


def test_results_of_openai_batch_as_jsonl(settings, capsys, embedded_upstream, openai_sdk):
    settings.SIMULATOR_ERROR_PERCENT = 30
    batch_id = openai_batch(openai_sdk, "ops", count=40).id
    created_ago(batch_id, hours=1)
    counts = openai_sdk().batches.retrieve(batch_id).request_counts
    assert counts.total == 40 and counts.failed > 0

    lines = result_lines(capsys, batch_id)
    assert len(lines) == counts.total
    assert sorted(line["custom_id"] for line in lines) == sorted(custom_id(i) for i in range(40))

    errored = result_lines(capsys, batch_id, "--type", "errored")
    assert len(errored) == counts.failed
    assert all(line["error"] is not None or line["response"]["status_code"] != 200 for line in errored)
    assert len(result_lines(capsys, batch_id, "--type", "succeeded")) == counts.completed


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_results_of_running_batch_is_an_error(capsys, embedded_upstream, anthropic_sdk, openai_sdk, provider):
    if provider == "anthropic":
        batch_id = anthropic_batch(anthropic_sdk).id
    else:
        batch_id = openai_batch(openai_sdk).id
    with pytest.raises(CommandError, match="has not ended yet"):
        run("results", batch_id)
    assert capsys.readouterr().out == ""


def test_results_of_unknown_batch_is_an_error(capsys, embedded_upstream):
    with pytest.raises(CommandError, match="No batch"):
        run("results", "msgbatch_01nothere")
    assert capsys.readouterr().out == ""
