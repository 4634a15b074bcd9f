"""The pages' server time on a big store, with the poller idle and busy against a slow upstream.

Targets: the list page (and its feed poll) under 30 ms median with 10,000 stored batches over 8
accounts, filtered and unfiltered, the same with 300 ms of upstream latency as with none; a row poll
under 3 ms median in process and under 5 ms over HTTP on the production server, over 1,000 polls.

In a fresh SQLite file:
- 8 configured accounts (BATCH_ACCOUNTS_FILE), 4 Anthropic and 4 OpenAI, each a simulator account
  reached in process by whoever polls it (the embedded simulator; never this process);
- the simulator holds --live-per-account long-running batches in each (1,000 in all), which a
  `manage.py poll --once` process stores; 9,000 ended batches are written through store.record
  (the poller's own write path, as bench/store_list.py fills it), interleaved in time with those:
  10,000 stored batches;
- the operator user, as `manage.py ensure_operator` makes it.

Then three phases, measured in turn --rounds times (the samples of each split evenly over the
rounds, so that a change in what else the machine runs weighs on every phase alike):
- idle: no poller running, no upstream activity at all;
- busy, 0 ms: `manage.py poll` (its own process, as in production) polling the 8 accounts, which
  answer at once;
- busy, 300 ms: the same, with every simulator account answering --latency-ms late
  (SimAccount.latency_ms); measured once the poller has finished a cycle at that latency.
In each phase:
- in process (this process is the web process): Django's test Client through the whole middleware
  stack, DEBUG=0, signed in (the session and permissions cached after the first request), one
  persistent database connection; --calls requests per list case (after 10 unmeasured): the list
  page with each filter alone and with searches, and the page's feed poll as a browser makes it
  (`GET /?feed=<cursor>`, HX-Request; 204 when nothing changed since the cursor, else 200 with the
  next cursor, new batches and changed rows): each call asks the URL the previous 200 answer gave (a
  204 keeps it), the cursor carried on from call to call and phase to phase. The calls follow one
  another within milliseconds while the poller stores every 3 s, so most (often all) find nothing
  changed: the feed's figures are mostly the 204 path's; the first table's note counts its measured
  200 and 204 answers per phase. Then --polls row polls (`GET /batches/<account>/<id>/row`,
  HX-Request, a live batch) after 50 unmeasured. The time is the whole `client.get` call,
  wall-clock and (second table) this thread's CPU time, which the rest of the machine's load
  inflates less;
- over HTTP: the production server (gunicorn, production settings, started once on the same
  database), one keep-alive httpx.Client, --polls row polls one after another after 50 unmeasured;
  the time is the client's, request sent to last byte read (second table: the server processes'
  CPU time over the polls, per poll).

    make bench            # or: .venv/bin/python bench/pages.py --calls 50 --polls 300
    .venv/bin/python bench/pages.py --profile      # and cProfile the row poll and two list pages
"""

from __future__ import annotations

import argparse
import cProfile
import html
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import httpx
from harness import (
    FEED_LINK,
    ROOT,
    Process,
    base_env,
    machine_note,
    percentile,
    process_tree_cpu,
    sign_in,
    spawn,
    start_gunicorn,
    timed,
)

ACCOUNTS = 8
TEAMS = ("search-quality", "evals", "ingest", "billing", "support", "research")
FEED_CASE = "list: feed poll (htmx)"
LIST_TARGET_MS = 30.0
ROW_TARGET_MS = 3.0
HTTP_ROW_TARGET_MS = 5.0


# --- set-up ------------------------------------------------------------------------------------------


def configure(workdir: Path) -> dict[str, str]:
    """This process's environment (the web process's), before Django starts; the subprocesses' too."""
    environment = base_env(
        workdir / "bench.sqlite3",
        BATCH_ACCOUNTS_FILE=str(workdir / "accounts.json"),
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        ROW_POLL_SECONDS="3",
        POLL_SECONDS="3",
    )
    os.environ.clear()
    os.environ.update(environment)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from dashboard import providers

    entries = []
    for n in range(ACCOUNTS):
        provider = "anthropic" if n < ACCOUNTS // 2 else "openai"
        base_url = f"https://{settings.EMBEDDED_SIMULATOR_HOST}/simulator{providers.module(provider).SIMULATOR_PATH}"
        entries.append({"name": f"team{n}", "provider": provider, "base_url": base_url, "api_key": f"sk-bench-{n}"})
    Path(environment["BATCH_ACCOUNTS_FILE"]).write_text(json.dumps(entries))
    call_command("migrate", verbosity=0)
    return environment


def simulate(live_per_account: int) -> None:
    """The simulator's 8 accounts, each with `live_per_account` batches that run for 20 hours."""
    from django.db import transaction
    from django.utils import timezone

    from dashboard.accounts import configured_accounts
    from dashboard.simulator.models import SimAccount, SimBatch, anthropic_batch_id, key_digest, openai_batch_id

    now = timezone.now()
    with transaction.atomic():
        for n, account in enumerate(configured_accounts()):
            sim = SimAccount.objects.create(
                provider=account.provider, name=account.name, key_sha256=key_digest(account.api_key)
            )
            batches = []
            for i in range(live_per_account):
                fields = {
                    "account": sim,
                    "created_at": now - timedelta(minutes=2, seconds=40 * i + 5 * n),
                    "total": 100,
                    "processing_seconds": 20 * 3600,
                    "cancel_grace_seconds": 8,
                    "error_percent": 5,
                }
                if account.provider == "anthropic":
                    fields |= {"public_id": anthropic_batch_id(), "output_file_id": "", "error_file_id": ""}
                else:
                    fields |= {
                        "public_id": openai_batch_id(),
                        "validating_seconds": 1,
                        "finalizing_seconds": 1,
                        "endpoint": "/v1/chat/completions",
                        "completion_window": "24h",
                        "input_file_public_id": f"file-live{n}x{i}",
                        "model": "gpt-4.1-mini",
                        "metadata": {"team": TEAMS[i % len(TEAMS)], "run": f"live-{i // 50}"},
                    }
                batches.append(SimBatch.planned(**fields))
            SimBatch.objects.bulk_create(batches)


def fill_ended(count: int) -> float:
    """`count` ended batches through store.record, spread over the accounts and the last days."""
    from django.db import transaction
    from django.utils import timezone

    from dashboard.accounts import configured_accounts
    from dashboard.batches import store
    from dashboard.providers import anthropic, openai

    accounts = configured_accounts()
    now = timezone.now()
    started = time.perf_counter()
    with transaction.atomic():
        for n in range(count):
            account = accounts[n % len(accounts)]
            created = now - timedelta(seconds=60 + 37 * n)
            if account.provider == "anthropic":
                data = {
                    "id": f"msgbatch_bench{n:06d}",
                    "type": "message_batch",
                    "processing_status": "ended",
                    "request_counts": {"processing": 0, "succeeded": 97, "errored": 3, "canceled": 0, "expired": 0},
                    "ended_at": (created + timedelta(minutes=30)).isoformat(),
                    "created_at": created.isoformat(),
                    "expires_at": (created + timedelta(hours=24)).isoformat(),
                    "archived_at": None,
                    "cancel_initiated_at": None,
                    "results_url": None,
                }
                batch = anthropic.parse_batch(data, account=account.key)
            else:
                seconds = int(created.timestamp())
                data = {
                    "id": f"batch_bench{n:06d}",
                    "object": "batch",
                    "endpoint": "/v1/chat/completions",
                    "errors": None,
                    "input_file_id": f"file-in{n}",
                    "completion_window": "24h",
                    "status": "completed",
                    "output_file_id": f"file-out{n}",
                    "error_file_id": None,
                    "created_at": seconds,
                    "in_progress_at": seconds + 5,
                    "expires_at": seconds + 86400,
                    "finalizing_at": seconds + 1700,
                    "completed_at": seconds + 1800,
                    "failed_at": None,
                    "expired_at": None,
                    "cancelling_at": None,
                    "cancelled_at": None,
                    "request_counts": {"total": 100, "completed": 97, "failed": 3},
                    "metadata": {"team": TEAMS[n % len(TEAMS)], "run": f"nightly-{n // 50}"},
                }
                batch = openai.parse_batch(data, account=account.key)
            store.record(batch, fetched_at=now)
    return time.perf_counter() - started


# --- measuring -----------------------------------------------------------------------------------------


def expect(response, *statuses: int) -> None:
    if response.status_code not in statuses:
        raise RuntimeError(f"HTTP {response.status_code}, expected {statuses}: {response.content[:300]!r}")


class Web:
    """This process as the web process: the test Client, signed in as the operator."""

    def __init__(self) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        self.client = Client()
        self.client.force_login(
            get_user_model().objects.get(username="operator"), backend="dashboard.web.auth.CachedPermissionsBackend"
        )

    def get(self, url: str, *, htmx: bool = False, statuses: tuple[int, ...] = (200,)) -> str:
        response = self.client.get(url, headers={"HX-Request": "true"} if htmx else {})
        expect(response, *statuses)
        return response.content.decode()


class FeedPoll:
    """The list page's feed as a browser polls it: each call asks the URL the last 200 answer gave
    (its live-feed element holds the next cursor); a 204 (nothing changed) keeps the URL."""

    def __init__(self, web: Web, page: str) -> None:
        self.web, self.url = web, self.next_url(page)
        self.answers: Counter = Counter()

    @staticmethod
    def next_url(text: str) -> str:
        found = FEED_LINK.search(text)
        if found is None:
            raise RuntimeError(f"no live feed in: {text[:300]!r}")
        return html.unescape(found.group(1))

    def __call__(self) -> None:
        text = self.web.get(self.url, htmx=True, statuses=(200, 204))
        self.answers[200 if text else 204] += 1  # a 204 has no body
        if text:
            self.url = self.next_url(text)


def list_cases(web: Web, row_account: str) -> dict[str, tuple[str, bool] | FeedPoll]:
    """The list page's requests (url, htmx): each filter alone, a search; and its feed poll."""
    return {
        "list: unfiltered": ("/", False),
        "list: provider=openai": ("/?provider=openai", False),
        "list: status=active": ("/?status=active", False),
        f"list: account={row_account}": (f"/?account={row_account}", False),
        "list: search 'evals' (metadata)": ("/?q=evals", False),
        "list: search 'bench00123' (id, rare)": ("/?q=bench00123", False),
        "list: status=completed + search": ("/?status=completed&q=ingest", False),
        FEED_CASE: FeedPoll(web, web.get("/")),
    }


def measure_phase(
    web: Web, cases: dict, row_url: str, http: httpx.Client, server: Process, *, calls: int, polls: int
) -> dict[str, tuple[list[float], list[float]]]:
    """(wall ms, CPU ms) samples per request; for the HTTP row poll, the CPU is the server's (all its
    processes) over the polls, divided by their number: one mean."""
    results = {}
    for name, case in cases.items():
        if isinstance(case, FeedPoll):  # its answers counted from the measured calls on
            timed(case, 0, 10)
            case.answers.clear()
            results[name] = timed(case, calls, 0)
        else:
            results[name] = timed(lambda url=case[0], htmx=case[1]: web.get(url, htmx=htmx), calls, 10)
    results["row poll, in process"] = timed(lambda: web.get(row_url, htmx=True), polls, 50)

    def over_http() -> None:
        expect(http.get(row_url, headers={"HX-Request": "true"}), 200)

    for _ in range(50):
        over_http()
    used = process_tree_cpu(server.process.pid)
    wall, _ = timed(over_http, polls, 0)
    results["row poll, HTTP (gunicorn)"] = (wall, [(process_tree_cpu(server.process.pid) - used) * 1000 / polls])
    return results


def wait_for_cycle(since, timeout: float = 120) -> None:
    """Until every account's last successful poll is a cycle that started after `since`."""
    from dashboard.models import AccountState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = list(AccountState.objects.values_list("last_success_at", "consecutive_failures"))
        if len(states) == ACCOUNTS and all(done and done >= since for done, _ in states):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the poller did not finish a cycle within {timeout:g} s: {states}")


class Poller:
    """`manage.py poll` (-v 2: a line per account per cycle) in its own process, or none."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: Process | None = None

    def enter(self, latency_ms: int | None) -> None:
        """No poller (None), or a poller polling the accounts answering `latency_ms` late: back once it
        has finished a cycle that started after the latency was set."""
        from django.utils import timezone

        from dashboard.simulator.models import SimAccount

        if latency_ms is None:
            if self.process is not None:
                self.process.check_alive()
            self.stop()
            return
        SimAccount.objects.update(latency_ms=latency_ms)
        since = timezone.now()
        if self.process is None:
            command = [sys.executable, "manage.py", "poll", "--owner", "bench-pages", "-v", "2"]
            self.process = spawn("poller", command, self.env, self.log)
        wait_for_cycle(since)
        self.process.check_alive()

    def account_polls(self) -> int:
        if not self.log.exists():
            return 0
        return sum(1 for line in self.log.read_text(errors="replace").splitlines() if ": listed " in line)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def profile(web: Web, cases: dict, row_url: str, options) -> None:
    for title, url, htmx, count in (
        ("row poll", row_url, True, options.polls),
        ("list: unfiltered", "/", False, options.calls),
        ("list: search 'evals'", "/?q=evals", False, options.calls),
    ):
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            web.get(url, htmx=htmx)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        total = stats.total_tt  # type: ignore[attr-defined]
        print(f"\ncProfile, {title}: {count} requests, {1000 * total / count:.2f} ms each under the profiler")
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(15)
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


# --- main ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="list pages per case and phase")
    parser.add_argument("--polls", type=int, default=1000, help="row polls per way and phase")
    parser.add_argument("--batches", type=int, default=10_000, help="stored batches in all")
    parser.add_argument("--live-per-account", type=int, default=125, help="live batches per account (x 8)")
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument(
        "--rounds", type=int, default=4, help="phases measured in turn this many times, the samples split evenly"
    )
    parser.add_argument("--profile", action="store_true", help="then cProfile the row poll and two list pages")
    options = parser.parse_args()
    live = ACCOUNTS * options.live_per_account
    if min(options.calls, options.polls) < options.rounds or options.rounds < 1 or options.batches <= live:
        parser.error("--calls and --polls at least --rounds (positive), --batches more than 8 x --live-per-account")

    workdir = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    processes: list[Process | Poller] = []
    failed = True
    try:
        env = configure(workdir)
        from django.core.management import call_command
        from django.db import connections

        from dashboard.models import StoredBatch

        started = time.perf_counter()
        simulate(options.live_per_account)
        seconds = fill_ended(options.batches - live)
        connections.close_all()  # the subprocesses write next
        spawn_once = spawn("poller --once", [sys.executable, "manage.py", "poll", "--once"], env, workdir / "once.log")
        if spawn_once.process.wait(timeout=300) != 0:
            raise RuntimeError(f"manage.py poll --once failed:\n{spawn_once.tail()}")
        stored, active = StoredBatch.objects.count(), StoredBatch.objects.filter(is_ended=False).count()
        if (stored, active) != (options.batches, live):
            raise RuntimeError(f"expected {options.batches} stored ({live} live), found {stored} ({active})")
        out = io.StringIO()
        call_command("ensure_operator", stdout=out)
        password = out.getvalue().split("password:")[1].split()[0]
        row = StoredBatch.objects.filter(account="anthropic-team1", is_ended=False).order_by("-created_at").first()
        row_url = f"/batches/{row.account}/{row.batch_id}/row"
        server = start_gunicorn("dashboard", env, workdir / "dashboard.log")
        processes.append(server)
        http = httpx.Client(base_url=server.url, cookies=sign_in(server.url, password), timeout=30)
        web = Web()
        cases = list_cases(web, row.account)
        print(
            f"[pages] {stored} batches stored ({active} live) over {ACCOUNTS} accounts in "
            f"{time.perf_counter() - started:.0f} s ({seconds:.0f} s of store.record); {machine_note()}",
            file=sys.stderr,
            flush=True,
        )

        poller = Poller(env, workdir / "poller.log")
        processes.append(poller)
        states = {"idle": None, "busy, 0 ms": 0, f"busy, {options.latency_ms} ms": options.latency_ms}
        phases: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in states}
        cpu: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in states}
        polls: Counter = Counter()
        feed_answers: dict[str, Counter] = {name: Counter() for name in states}
        for round_ in range(options.rounds):
            for name, latency in states.items():
                poller.enter(latency)
                before = poller.account_polls()
                share = {
                    key: total // options.rounds + (round_ < total % options.rounds)
                    for key, total in (("calls", options.calls), ("polls", options.polls))
                }
                for request, (wall, used) in measure_phase(web, cases, row_url, http, server, **share).items():
                    phases[name][request].extend(wall)
                    cpu[name][request].extend(used)
                polls[name] += poller.account_polls() - before
                feed_answers[name] += cases[FEED_CASE].answers
            print(
                f"[pages] round {round_ + 1} of {options.rounds} measured; {machine_note()}",
                file=sys.stderr,
                flush=True,
            )
        poller.enter(None)
        if options.profile:
            profile(web, cases, row_url, options)
        http.close()
        failed = False
    finally:
        for process in reversed(processes):
            process.stop()
        if failed:
            print(f"[pages] logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    names = list(phases)
    slow = names[-1]
    print(
        f"\nServer time, median / p95 ms: {options.batches} stored batches ({live} live) over {ACCOUNTS} accounts; "
        f"{options.calls} list pages per case, {options.polls} row polls per way, phases in turn {options.rounds} "
        f"times ({machine_note()})"
    )
    busy = ", ".join(f"{polls[name]} account polls while {name!r} was measured" for name in names[1:])
    print(
        "phases: idle = no poller; busy = `manage.py poll` polling the 8 simulator accounts, answering at once "
        f"or {options.latency_ms} ms late ({busy})"
    )
    header = (
        f"{'request':38} "
        + " ".join(f"{name:>17}" for name in names)
        + f" {slow.split(', ')[1] + '/idle':>11} {slow.split(', ')[1] + '/0 ms':>11} {'target':>14}"
    )
    print(header)
    print("-" * len(header))
    missed = []
    for request in phases["idle"]:
        medians = {name: statistics.median(phases[name][request]) for name in names}
        cells = " ".join(f"{medians[name]:>8.2f} / {percentile(phases[name][request], 0.95):>6.2f}" for name in names)
        target = (
            LIST_TARGET_MS
            if request.startswith("list")
            else ROW_TARGET_MS
            if "in process" in request
            else HTTP_ROW_TARGET_MS
        )
        worst = max(medians.values())
        verdict = f"<{target:g} ms: {'ok' if worst < target else 'MISS'}"
        if worst >= target:
            missed.append(request)
        print(
            f"{request:38} {cells} {medians[slow] / medians['idle']:>10.2f}x "
            f"{medians[slow] / medians[names[1]]:>10.2f}x {verdict:>14}"
        )
    print(
        "target: every phase's median under it; ratios: medians of the slow-upstream phase over the idle one and "
        "over the busy one without latency"
    )
    answers = "; ".join(f"{name} {feed_answers[name][200]} x 200, {feed_answers[name][204]} x 204" for name in names)
    print(f"{FEED_CASE}, its measured answers: {answers} (200: something changed since the cursor)")
    if missed:
        print("missed: " + "; ".join(missed))

    print(
        "\nCPU time per request, median ms (in process: this thread's; HTTP: the server's CPU over the polls / polls, "
        "the median of the rounds' means): what the machine's other load does not inflate"
    )
    header = f"{'request':38} " + " ".join(f"{name:>17}" for name in names) + f" {slow.split(', ')[1] + '/idle':>11}"
    print(header)
    print("-" * len(header))
    for request in cpu["idle"]:
        medians = {name: statistics.median(cpu[name][request]) for name in names}
        cells = " ".join(f"{medians[name]:>17.2f}" for name in names)
        print(f"{request:38} {cells} {medians[slow] / medians['idle']:>10.2f}x")


if __name__ == "__main__":
    main()
