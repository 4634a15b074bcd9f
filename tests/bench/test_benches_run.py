"""Every bench of `make bench` (the Makefile's BENCHES), run small: that it still runs through.

The scripts under bench/ are run by hand, seldom, and nothing else imports them: as the app changed,
four of them rotted unseen (list-page markup they looked for was gone, a constant had moved to the
settings, a store function they wrapped was no longer called, an import was removed) until someone
next ran `make bench`. Each test here runs one bench as `make bench` does (`python bench/<name>.py`,
a process of its own, from the repository's root) with the smallest parameters that still take it
through every phase and table it prints, and asserts that it ran through: no traceback, none of its
own error lines, and its closing tables printed with their data rows.

Never its figures, nor its goals' verdicts ("met", "NOT met", "MISS", "no"): a tiny run on a busy
CI machine misses goals, and that is no rot. A bench that exits 1 for a missed goal also exits 1
when it crashes: for those, exit 0 and 1 are both accepted, and the full table (printed only after
every measure) is what tells a finished run from a crash. The benches that need PostgreSQL start
their own as the integration tests do (tests/services.py `start_postgres`); none needs Redis or a
browser.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300  # seconds; the slowest of these takes about 60 s on a loaded 2-core machine
GOAL_OR_DONE = (0, 1)  # a bench that exits 1 when a goal is missed: its table tells a crash apart


@dataclass
class Run:
    command: str
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"`{self.command}` exited {self.returncode}\n--- stdout (end)\n{self.stdout[-6000:]}"
            f"\n--- stderr (end)\n{self.stderr[-6000:]}"
        )


def run_bench(name: str, *args: str) -> Run:
    """`python bench/<name>.py ARGS` from the repository's root, to its end. Past TIMEOUT it is sent
    SIGTERM first (the benches stop the servers and pollers they started on it), then killed."""
    command = [sys.executable, f"bench/{name}.py", *args]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        pytest.fail(f"bench/{name}.py ran over {TIMEOUT} s:\n{stdout[-6000:]}\n{stderr[-6000:]}")
    return Run(" ".join(command[1:]), process.returncode, stdout, stderr)


def tables(output: str, heading: str) -> list[list[str]]:
    """The rows of each table whose heading line starts with `heading` (leading spaces aside): the
    lines after it, its rule of dashes left out, up to the first blank line; stripped."""
    found, rows = [], None
    for line in output.splitlines():
        text = line.strip()
        if rows is None:
            if text.startswith(heading):
                rows = []
        elif not text:
            found.append(rows)
            rows = None
        elif set(text) - set("-|"):
            rows.append(text)
    if rows is not None:
        found.append(rows)
    return found


def assert_ran_through(run: Run, *, exit_codes: tuple[int, ...] = (0,), errors: tuple[str, ...] = ()) -> None:
    """Exited as a finished run does, with no traceback and none of the bench's own error lines."""
    assert run.returncode in exit_codes, run
    assert "Traceback" not in run.stdout + run.stderr, run
    for error in errors:
        assert error not in run.stdout + run.stderr, f"{error!r} printed:\n{run}"


def assert_table(run: Run, heading: str, row_starts: list[str], *, count: int = 1) -> None:
    """`count` tables under `heading`, each with a row starting with each of `row_starts`."""
    found = tables(run.stdout, heading)
    assert len(found) == count, f"{count} table(s) headed {heading!r} expected, {len(found)} found:\n{run}"
    for rows in found:
        for start in row_starts:
            assert any(row.startswith(start) for row in rows), f"no row {start!r} under {heading!r}:\n{run}"


def assert_lines(run: Run, *texts: str) -> None:
    for text in texts:
        assert text in run.stdout, f"{text!r} not printed:\n{run}"


# --- the stack over HTTP: gunicorn, the simulator, the poller ----------------------------------------


@pytest.mark.slow
def test_viewers():
    # Exit 0: it ran through; 1: a viewer saw an error (no live feed on the page, an HTTP error), or
    # a crash. Two windows of 6 s: a feed poll falls due 3 s after each viewer's page load.
    run = run_bench("viewers", "--seconds", "6", "--viewers", "1,2", "--live-per-account", "1")
    assert_ran_through(run, errors=("error:", "logs kept in"))
    assert_table(run, "viewers live rows", ["1 ", "2 "])


@pytest.mark.slow
def test_live_feed():
    # Exit 0: it ran through (it has no goal it exits on); 1: a crash. One viewer or two per step,
    # one step of each way while the writer changes batches.
    run = run_bench(
        "live_feed",
        *("--seconds", "3", "--idle-viewers", "1", "--idle-viewers-feed", "2", "--changes", "1"),
        *("--steps-rows", "1", "--steps-feed", "2"),
    )
    assert_ran_through(run, errors=("logs kept in",))
    steps = [line for line in run.stderr.splitlines() if line.startswith("[live_feed]") and ": p95" in line]
    assert len(steps) == 4 and all(" 0 errors," in step for step in steps), run
    assert_table(run, "way ", ["rows ", "feed "], count=2)
    assert_lines(run, "feed / rows CPU per viewer per interval:", "viewers held:")


@pytest.mark.slow
def test_server_load():
    # Exit 0: it ran through (its figures are printed, not judged); 1: a viewer saw an error (no live
    # feed, other than --live-rows live rows, an HTTP error), or a crash. Both servers, as by default;
    # a 6 s window: each viewer's feed is polled at least once.
    run = run_bench("server_load", "--seconds", "6", "--viewers", "2", "--sessions", "1", "--live-rows", "4")
    assert_ran_through(run, errors=("] error:",))
    assert_table(run, "server ", ["gunicorn ", "runserver "])


@pytest.mark.slow
def test_pages():
    # Exit 0: it ran through (a missed target is printed, not an exit status); 1: a crash. 50 row polls
    # a phase over HTTP: the server's CPU over them is read in clock ticks, which a few would not reach.
    run = run_bench(
        "pages",
        *("--calls", "1", "--polls", "50", "--rounds", "1", "--batches", "16", "--live-per-account", "1"),
        *("--latency-ms", "1"),
    )
    assert_ran_through(run, errors=("logs kept in",))
    assert_table(
        run, "request ", ["list: unfiltered ", "list: feed poll (htmx) ", "row poll, HTTP (gunicorn) "], count=2
    )
    assert_lines(run, "list: feed poll (htmx), its measured answers:")


@pytest.mark.slow
def test_poller_memory():
    # Exit 0: it ran through (it has no goal); 1: a crash. 12 s, sampled every 0.5 s: the poller
    # polls both accounts within the first few seconds, so there is a start and a second half.
    run = run_bench(
        "poller_memory",
        *("--minutes", "0.2", "--accounts", "2", "--running", "2", "--ended-per-running", "1"),
        *("--latency-ms", "0", "--poll-seconds", "1", "--sample-seconds", "0.5"),
    )
    assert_ran_through(run, errors=("not every account was polled",))
    assert_table(run, "RSS MiB", ["start ", "end ", "steady ", "peak "])
    assert_lines(run, "every account polled after", "tracebacks in its log: 0", "private memory at the end")


@pytest.mark.slow
def test_pollers():
    # Exit 0: every goal judged was met; 1: one was missed, or a crash. Steps 1 and 4 (the throughput
    # goal's), then one of the 4 killed (the fail-over goal's), with POLL_ACCOUNT_CONCURRENCY=4: what
    # both of the Makefile's runs of it take together. It starts its own PostgreSQL.
    run = run_bench(
        "pollers",
        *("--accounts", "4", "--running", "8", "--latency-ms", "1", "--seconds", "3", "--settle-seconds", "2"),
        *("--simulator-threads", "8", "--steps", "1,4", "--env", "POLL_ACCOUNT_CONCURRENCY=4"),
    )
    assert_ran_through(run, exit_codes=GOAL_OR_DONE)
    assert_table(run, "pollers ", ["1 ", "4 ", "4, one killed "])
    assert_lines(run, "demand:", "goal: 4 pollers >=", "goal: worst gap <=")


# --- in one process: the store, the pages through Django's test client ---------------------------------


STORE_LIST_ROWS = [
    "list_batches unfiltered, first page ",
    "list page /? ",
    "list page /?q=no-such-thing ",
    "list_batches search 2 characters 'ev' (common) ",
]


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_store_list(database):
    # Exit 0: the goal was met; 1: missed, or a crash. Sizes of 100 and 200 batches: every case, the
    # pages' too, and both stores taking turns. PostgreSQL: the bench starts its own.
    run = run_bench("store_list", "--database", database, "--sizes", "100,200", "--calls", "1")
    assert_ran_through(run, exit_codes=GOAL_OR_DONE)
    assert_table(run, "case ", STORE_LIST_ROWS)
    assert_lines(run, f"{database}: the goal, list page medians:", f"{database}: what grows underneath:")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_spend(database):
    # Exit 0: it ran through (it has no goal it exits on); 1: a crash. PostgreSQL: the bench starts its own.
    run = run_bench("spend", "--database", database, "--sizes", "100,200", "--calls", "1")
    assert_ran_through(run)
    assert_table(run, "case ", ["spent today (list header) ", "/spend/ page, 3 days ", "baseline: /metrics"])


def test_freshness():
    # Exit 0: it ran through (it has no goal it exits on); 1: a crash. One running batch an account,
    # a second of each of its three runs (a cycle each).
    run = run_bench(
        "freshness",
        *("--running", "8", "--ended-per-running", "1", "--latency-ms", "1"),
        *("--seconds", "1", "--retrieve-seconds", "1", "--baseline-seconds", "1"),
    )
    assert_ran_through(run, errors=("  error: ",))
    assert run.stdout.count("errors: 0") == 3, run
    assert_table(run, "account ", ["anthropic-team0 ", "openai-team7 ", "all "], count=3)
    assert_lines(run, "Listing when cheaper", "Retrieves only, one at a time")


def test_alarms():
    # Exit 0: it ran through (it has no goal it exits on); 1: a poll failed, the store never filled,
    # or a crash.
    run = run_bench("alarms", "--running", "8", "--ended-per-running", "1", "--cycles", "2")
    assert_ran_through(run, errors=("a poll failed", "still backfilling"))
    assert_table(run, "median ms", ["without rules (alarms off) ", "with rules (alarms on) ", "extra per cycle "])
    assert_lines(run, "First evaluation: opened", "evaluation.evaluate alone:")


def test_access():
    # Exit 0: it ran through (its goal's verdict is printed, not an exit status); 1: a crash.
    run = run_bench("access", "--batches", "100", "--calls", "10")
    assert_ran_through(run)
    assert_table(run, "| case |", ["| list page |", "| row |", "| alarms page |", "| feed, nothing changed |"])
    assert_lines(run, "Goal: the scoped user's median")


def test_results():
    # Exit 0: it ran through (a missed target is a "NO" in its table); 1: a crash, an assertion of its own.
    run = run_bench("results", "--requests", "100", "--rounds", "1")
    assert_ran_through(run)
    assert_table(
        run, "measure ", ["download through the dashboard ", "CSV export, all lines ", "parser: ours vs the SDK's"]
    )


# --- in memory -------------------------------------------------------------------------------------


def test_jsonl_split():
    # Exit 0: it ran through (it has no goal); 1: a crash.
    run = run_bench("jsonl_split", "--size-mb", "1")
    assert_ran_through(run)
    assert_table(run, "splitter ", ["re-joining (before) ", "jsonl_lines (now) "])


def test_tokens():
    # Exit 0: the goal was met; 1: missed, or a crash. Two slices of 10 lines per provider.
    run = run_bench("tokens", "--lines", "20", "--rounds", "1", "--slice-lines", "10")
    assert_ran_through(run, exit_codes=GOAL_OR_DONE)
    rows = [
        f"{batch}: {kind}"
        for batch in (
            "Anthropic, cache reads and writes",
            "OpenAI o4-mini, cached + reasoning",
            "Azure OpenAI gpt-4.1-mini, cached",
            "Gemini 2.5 Flash, cached + thoughts",
        )
        for kind in ("file split", "parsed, summarized")
    ]
    assert_table(run, "batch: pass (CPU s)", rows)
    assert_lines(run, "not measured, its tokens are unavailable", "at the end")
