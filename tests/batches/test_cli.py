"""The operator CLI, `manage.py batches …`, against the embedded simulator, reached in process as by default.

`list` and `show` read the store the poller keeps fresh (`factories.poll_store()` runs it here), and so
do `cancel` and `results` to find a batch's account; only cancel and results then go upstream.
"""

from __future__ import annotations

import getpass
import json
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from dashboard.accounts import find_account
from dashboard.batches import selectors
from dashboard.models import AccountState, CancelAttempt
from dashboard.providers.http import BatchAPI
from tests import factories
from tests.factories import anthropic_batch, created_ago, custom_id, fault, openai_batch, poll_store, time_passes

ACCOUNTS = ("anthropic-ops", "anthropic-research", "openai-ops", "openai-research")
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
LIST_ROW = re.compile(
    r"^(?P<account>(?:anthropic|openai)-[a-z0-9-]+)\s+(?P<id>(?:msgbatch|batch)_[A-Za-z0-9_-]+)\s+"
    rf"(?P<status>[a-z_]+)\s+(?P<created>{WHEN})\s+(?P<updated>\d+ (?:s|min) ago)\s+"
    r"(?P<requests>\d+ ok, \d+ err, \d+ processing of \d+)(?P<stale> \(stale\))?$"
)


@pytest.fixture(autouse=True)
def unhurried_poller(settings):
    """A poll interval long enough that a slow test run never makes what was just polled stale or
    lagging (three intervals late); the tests that want staleness poll minutes in the past."""
    settings.POLL_SECONDS = 60


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("batches", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def listed(*args) -> list[dict]:
    return listed_rows(run("list", *args)[0])


def listed_rows(out: str) -> list[dict]:
    lines = out.splitlines()
    assert lines[0].split() == ["ACCOUNT", "ID", "STATUS", "CREATED", "UPDATED", "REQUESTS"]
    rows = []
    for line in lines[1:]:
        match = LIST_ROW.match(line)
        assert match, f"not a batch row: {line!r}"
        rows.append(match.groupdict())
    return rows


def stored_status(account_key: str, batch_id: str) -> str | None:
    """The status the store holds for the batch (what `list` and `show` print), None when absent."""
    view = selectors.batch_row(account=find_account(account_key), batch_id=batch_id)
    return None if view is None else view.batch.status


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
    poll_store()
    assert {row["id"] for row in listed()} == {running, ended, completed}
    assert [(row["id"], row["status"]) for row in listed("--status", "ended")] == [(ended, "ended")]
    assert [row["id"] for row in listed("--status", "completed")] == [completed]
    assert [row["id"] for row in listed("--status", "active")] == [running]


def test_list_limit(four_accounts):
    rows = listed("--limit", "2")
    assert [(row["account"], row["id"]) for row in rows] == four_accounts[:2]


def test_list_limit_spans_pages(monkeypatch, four_accounts):
    monkeypatch.setattr(selectors, "MAX_LIMIT", 1)  # one row a page: the CLI follows the cursor up to --limit
    assert [(row["account"], row["id"]) for row in listed("--limit", "3")] == four_accounts[:3]
    assert [(row["account"], row["id"]) for row in listed()] == four_accounts


def test_list_reads_the_store_and_asks_upstream_nothing(four_accounts, anthropic_sdk, upstream_calls):
    newer = anthropic_batch(anthropic_sdk, "ops").id  # made upstream after the poll
    upstream_calls.clear()
    out, err = run("list")
    assert upstream_calls == []
    assert newer not in out and [(row["account"], row["id"]) for row in listed_rows(out)] == four_accounts
    assert err == ""  # every account polled just now: nothing to warn about
    poll_store()
    assert [(row["account"], row["id"]) for row in listed()] == [("anthropic-ops", newer), *four_accounts]


def test_list_shows_when_each_row_was_updated_and_marks_stale_rows(embedded_upstream, anthropic_sdk, openai_sdk):
    running = anthropic_batch(anthropic_sdk, "ops", seconds=600).id
    ended = openai_batch(openai_sdk, "ops", seconds=60, ago={"hours": 1}).id
    poll_store(now=timezone.now() - timedelta(minutes=5))  # the poller's last cycle, then it stopped
    out, err = run("list")
    rows = {row["id"]: row for row in listed_rows(out)}
    assert set(rows) == {running, ended}
    assert rows[running]["updated"] == rows[ended]["updated"] == "5 min ago"
    assert rows[running]["stale"] == " (stale)"  # not ended, and not refreshed for many poll intervals
    assert rows[ended]["stale"] is None  # an ended batch has nothing more to change: never stale
    for account in ACCOUNTS:
        assert re.search(rf"^{account}: not polled since {WHEN}: is `manage\.py poll` running\?$", err, re.M), err
    assert re.fullmatch(r"stale: Not refreshed for 3\d\d s: is the poller running\?\n", run("show", running)[1])

    poll_store()  # the poller runs again
    out, err = run("list")
    rows = {row["id"]: row for row in listed_rows(out)}
    assert {row["stale"] for row in rows.values()} == {None}
    assert re.fullmatch(r"\d+ s ago", rows[running]["updated"]), rows[running]["updated"]
    assert err == ""
    assert run("show", running)[1] == ""


def test_list_of_a_store_never_polled_says_so_on_stderr(embedded_upstream, anthropic_sdk, upstream_calls):
    batch_id = anthropic_batch(anthropic_sdk, "ops").id  # upstream only: no poller has run
    upstream_calls.clear()
    out, err = run("list")
    assert listed_rows(out) == [] and len(out.splitlines()) == 1  # the header alone
    assert batch_id not in out
    for account in ACCOUNTS:
        assert f"{account}: not polled yet: run `manage.py poll` (or `poll --once`) to fill the store." in err
    assert upstream_calls == []
    _, err = run("list", "--account", "openai-ops")
    assert err.strip() == "openai-ops: not polled yet: run `manage.py poll` (or `poll --once`) to fill the store."


def test_list_with_an_account_failing_from_the_start_reports_it_on_stderr(embedded_upstream, anthropic_sdk, openai_sdk):
    made = factories.four_accounts(anthropic_sdk, openai_sdk)
    fault("anthropic", "research", "500")
    poll_store()  # the poll of anthropic-research fails; the others fill the store
    out, err = run("list")
    assert re.search(
        r"^anthropic-research: polls failing \(1 in a row\): Anthropic HTTP 500 .*Last good poll: -\.$", err, re.M
    ), err
    assert err.count("\n") == 1, "only the failing account is reported"
    assert made[2][1] not in out  # never stored: nothing to show of it
    assert [(row["account"], row["id"]) for row in listed_rows(out)] == [made[0], made[1], made[3]]


def test_list_with_an_account_failing_later_shows_its_last_known_rows_as_stale(four_accounts):
    fault("anthropic", "research", "500")
    poll_store()  # stored by the first poll, failing in this one
    out, err = run("list")
    assert "anthropic-research: polls failing (1 in a row): Anthropic HTTP 500" in err
    assert "Last good poll: -." not in err
    assert err.count("\n") == 1
    rows = listed_rows(out)
    assert [(row["account"], row["id"]) for row in rows] == four_accounts  # the other accounts still listed
    assert [row["id"] for row in rows if row["stale"]] == [four_accounts[2][1]]

    _, err = run("show", four_accounts[2][1])
    assert err.startswith("stale: Polls of this account are failing (Anthropic HTTP 500")
    fault("anthropic", "research", "")
    poll_store()  # poll_account ignores the backoff: retried at once, and recovered
    out, err = run("list")
    assert err == "" and not any(row["stale"] for row in listed_rows(out))


def test_list_shows_what_was_stored_before_an_account_started_failing_on_a_later_page(
    monkeypatch, embedded_upstream, anthropic_sdk, openai_sdk, upstream_calls
):
    from dashboard.batches import poller

    monkeypatch.setattr(poller, "LIST_PAGE_LIMIT", 1)  # one batch a page
    newest = anthropic_batch(anthropic_sdk, "ops", seconds=600).id
    middle = openai_batch(openai_sdk, "ops", seconds=600).id
    oldest = anthropic_batch(anthropic_sdk, "ops", seconds=600).id
    created_ago(middle, minutes=1)
    created_ago(oldest, minutes=2)
    original = BatchAPI.list_page
    pages: list[str | None] = []

    def list_page(self, *, limit, after=None):
        if self.account != "anthropic-ops":
            return original(self, limit=limit, after=after)
        pages.append(after)
        assert len(pages) <= 10, "the poller keeps asking a failing account for the same page"
        page = original(self, limit=limit, after=after)
        if len(pages) == 1:
            fault("anthropic", "ops", "529")  # the account starts failing after the first page
        return page

    monkeypatch.setattr(BatchAPI, "list_page", list_page)
    poll_store()
    assert pages == [None, newest]  # the first page, then the failing one (the backfill); not asked again
    upstream_calls.clear()
    out, err = run("list")
    assert upstream_calls == []  # the CLI never asks the (failing) account itself
    rows = listed_rows(out)
    assert [row["id"] for row in rows] == [newest, middle]
    assert oldest not in out
    assert [row["id"] for row in rows if row["stale"]] == [newest]
    assert err.count("anthropic-ops: polls failing (1 in a row): Anthropic HTTP 529") == 1


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
    poll_store()
    out, err = run("show", batch_id)
    lines = out.splitlines()
    assert re.fullmatch(rf"{label}  {batch_id}  {status}  \(fetched {WHEN}\)", lines[0]), lines[0]
    assert err == ""  # just polled: not stale
    created = next(line for line in lines if line.strip().startswith("created_at"))
    assert re.search(rf"{WHEN}$", created)
    assert re.search(rf"^\s+{timestamp}\s+{WHEN}$", out, re.M)
    assert "counts" in out
    raw = json.loads(out[out.index("\n{") + 1 :])
    assert raw["id"] == batch_id
    assert raw["processing_status" if provider == "anthropic" else "status"] == status


def test_show_with_account_option(embedded_upstream, openai_sdk):
    batch_id = openai_batch(openai_sdk, "research").id
    poll_store()
    out, _ = run("show", batch_id, "--account", "openai-research")
    assert out.startswith(f"OpenAI · research  {batch_id}  validating")
    with pytest.raises(CommandError, match=f"No batch '{batch_id}' stored for openai-ops"):
        run("show", batch_id, "--account", "openai-ops")


@pytest.mark.parametrize("batch_id", ["msgbatch_01nothere", "batch_nothere"])
def test_show_unknown_id_is_not_in_the_store_and_asks_upstream_nothing(
    embedded_upstream, anthropic_sdk, upstream_calls, batch_id
):
    anthropic_batch(anthropic_sdk)
    poll_store()
    upstream_calls.clear()
    with pytest.raises(
        CommandError,
        match=re.escape(
            f"No batch '{batch_id}' stored for any configured account: the poller (`manage.py poll`) has not seen it"
        ),
    ):
        run("show", batch_id)
    assert upstream_calls == []


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_show_of_a_batch_the_poller_has_not_seen_yet_says_so(
    embedded_upstream, anthropic_sdk, openai_sdk, upstream_calls, provider
):
    poll_store()  # the store is filled, then a batch is made upstream
    if provider == "anthropic":
        batch_id, account = anthropic_batch(anthropic_sdk, "research").id, "anthropic-research"
    else:
        batch_id, account = openai_batch(openai_sdk, "research").id, "openai-research"
    upstream_calls.clear()
    with pytest.raises(CommandError, match=r"has not seen it \(yet\)\."):
        run("show", batch_id)
    with pytest.raises(CommandError, match=f"No batch '{batch_id}' stored for {account}: the poller"):
        run("show", batch_id, "--account", account)
    assert upstream_calls == []
    poll_store()
    assert run("show", batch_id)[0].split("  ")[1] == batch_id


@pytest.mark.parametrize("batch_id", ["../x", "msgbatch_../x", "batch_x/../y", "batch_x?y=1", ""])
def test_show_malformed_id_makes_no_upstream_request(embedded_upstream, upstream_calls, batch_id):
    with pytest.raises(CommandError, match="No batch"):
        run("show", batch_id)
    assert upstream_calls == []


# --- cancel --------------------------------------------------------------------------------


def test_cancel_running_batch_is_recorded_with_the_os_user(
    embedded_upstream, anthropic_sdk, openai_sdk, upstream_calls
):
    anthropic_id = anthropic_batch(anthropic_sdk, "research").id
    openai_id = openai_batch(openai_sdk, "ops").id
    poll_store()
    for account, batch_id, status in (
        ("anthropic-research", anthropic_id, "canceling"),
        ("openai-ops", openai_id, "cancelling"),
    ):
        AccountState.objects.filter(account=account).update(next_poll_at=timezone.now() + timedelta(hours=1))
        upstream_calls.clear()
        out, _ = run("cancel", batch_id)
        assert out.strip() == (
            f"{account} {batch_id}: accepted: Cancel accepted; status is now {status}. "
            f"(as OS user {getpass.getuser()}, an operator of this machine; audited)"
        )
        # Found in the store: the one upstream request is the cancel itself.
        assert len(upstream_calls) == 1 and upstream_calls[0].startswith("POST ")
        assert upstream_calls[0].endswith(f"/{batch_id}/cancel")
        row = CancelAttempt.objects.get(batch_id=batch_id)
        assert (row.outcome, row.via, row.actor, row.user, row.account) == (
            "accepted",
            "cli",
            getpass.getuser(),
            None,
            account,
        )
        assert row.status_after == status and row.finished_at is not None
        # The cancel's answer is in the store at once, and the poller takes the account next.
        assert stored_status(account, batch_id) == status
        assert AccountState.objects.get(account=account).next_poll_at is None
    assert anthropic_sdk("sk-ant-sim-research").messages.batches.retrieve(anthropic_id).processing_status == "canceling"
    assert openai_sdk().batches.retrieve(openai_id).status == "cancelling"


def test_cancel_ended_batch_says_already_ended(embedded_upstream, anthropic_sdk):
    batch_id = anthropic_batch(anthropic_sdk).id
    poll_store()  # stored while running
    created_ago(batch_id, hours=1)  # then it ended upstream, before the next poll
    assert stored_status("anthropic-ops", batch_id) == "in_progress"
    out, _ = run("cancel", batch_id)
    assert out.startswith(f"anthropic-ops {batch_id}: already_ended: Batch {batch_id} had already ended;")
    row = CancelAttempt.objects.get()
    assert (row.outcome, row.via, row.status_after) == ("already_ended", "cli", "ended")
    assert stored_status("anthropic-ops", batch_id) == "ended"  # retrieved once and stored


def test_cancel_twice_second_time_after_the_end(embedded_upstream, openai_sdk):
    batch_id = openai_batch(openai_sdk).id
    poll_store()
    assert ": accepted: " in run("cancel", batch_id)[0]
    assert stored_status("openai-ops", batch_id) == "cancelling"
    time_passes(batch_id, seconds=30)  # the cancel grace (8 s) is over: cancelled
    out, _ = run("cancel", batch_id)
    assert ": already_ended: " in out and "had already ended" in out
    assert list(CancelAttempt.objects.order_by("id").values_list("outcome", "status_after")) == [
        ("accepted", "cancelling"),
        ("already_ended", "cancelled"),
    ]
    assert stored_status("openai-ops", batch_id) == "cancelled"


def test_cancel_while_upstream_fails_is_an_error_and_recorded(embedded_upstream, anthropic_sdk):
    batch_id = anthropic_batch(anthropic_sdk).id
    poll_store()  # seen by the poller: the store tells the CLI the batch's account
    fault("anthropic", "ops", "500")
    with pytest.raises(CommandError, match="Anthropic HTTP 500"):
        run("cancel", batch_id)
    row = CancelAttempt.objects.get()
    assert (row.outcome, row.via, row.actor) == ("upstream_error", "cli", getpass.getuser())
    assert "Anthropic HTTP 500" in row.message and row.finished_at is not None
    assert row.status_after == "in_progress"  # as stored: the provider did not say
    assert stored_status("anthropic-ops", batch_id) == "in_progress"
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


def test_cancel_with_account_of_a_batch_not_stored_yet_goes_straight_upstream(
    embedded_upstream, openai_sdk, upstream_calls
):
    batch_id = openai_batch(openai_sdk, "research").id  # no poll: not in the store
    upstream_calls.clear()
    out, _ = run("cancel", batch_id, "--account", "openai-research")
    assert out.strip() == (
        f"openai-research {batch_id}: accepted: Cancel accepted; status is now cancelling. "
        f"(as OS user {getpass.getuser()}, an operator of this machine; audited)"
    )
    assert len(upstream_calls) == 1 and upstream_calls[0].endswith(f"/{batch_id}/cancel")
    assert CancelAttempt.objects.get().outcome == "accepted"
    assert stored_status("openai-research", batch_id) == "cancelling"  # the answer is stored


@pytest.mark.parametrize("failing", [False, True])
def test_cancel_without_account_of_a_batch_not_stored_sends_nothing(
    embedded_upstream, anthropic_sdk, upstream_calls, failing
):
    """Without --account the CLI finds the batch's account in the store; a batch the poller has not
    seen is a clear error, whether or not upstream would answer, and no cancel is sent at all."""
    poll_store()
    batch_id = anthropic_batch(anthropic_sdk).id
    if failing:
        fault("anthropic", "ops", "500")
    upstream_calls.clear()
    with pytest.raises(CommandError, match=r"stored for any configured account: the poller .* has not seen it"):
        run("cancel", batch_id)
    assert upstream_calls == []
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
    poll_store()
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
    poll_store()
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
    poll_store()
    with pytest.raises(CommandError, match="has not ended yet"):
        run("results", batch_id)
    assert capsys.readouterr().out == ""


def test_results_of_unknown_batch_is_an_error(capsys, embedded_upstream):
    with pytest.raises(CommandError, match="No batch"):
        run("results", "msgbatch_01nothere")
    assert capsys.readouterr().out == ""


def test_results_of_an_ended_batch_the_poller_has_not_seen_is_an_error(capsys, embedded_upstream, openai_sdk):
    batch_id = openai_batch(openai_sdk, "ops", ago={"hours": 1}).id  # ended upstream, never polled
    with pytest.raises(CommandError, match=r"has not seen it \(yet\)"):
        run("results", batch_id)
    assert capsys.readouterr().out == ""
    poll_store()
    assert len(result_lines(capsys, batch_id)) == 1
