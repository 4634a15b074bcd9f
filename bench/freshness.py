"""The poller's freshness: 1,000 running batches over 8 accounts, 200 ms upstream latency.

Requirement: every running batch is refreshed at least once per 2 x POLL_SECONDS (default 3 s).

In a fresh SQLite file: the embedded simulator (reached in process, as the dashboard reaches it by
default) with 8 accounts, 4 Anthropic and 4 OpenAI; each holds 125 long-running batches among
3 times as many ended ones, all of the last few hours, newest first in one mixed order. A warm-up
(no latency) fills the store; then every simulator account answers 200 ms late and the poller runs
as `manage.py poll` does (`poller.run_cycle`, then sleep to the next POLL_SECONDS) for --seconds.
Each time the store writes a running batch's row with this cycle's `last_fetched_at`
(store.record_many, the poller's one write path, wrapped), the moment is noted. A batch's worst gap
is the longest time between two such moments, or from its last one to the end of the run (the
whole run if it was never written). Upstream requests are counted on each account's httpx client.

Then the same with retrieves only, POLL_CONCURRENCY at a time (--retrieve-seconds; the path taken
when the listing is not cheaper), and with the strategy before (--baseline-seconds): retrieves
only, one at a time (poller.REFRESH_BY_LISTING = False, POLL_CONCURRENCY = 1). 0 skips a run.

The embedded simulator runs in this process: its work (and its pool of 32 threads, the most
requests it serves at once) shares the CPU and the GIL with the poller, as `make run` does.

    .venv/bin/python bench/freshness.py     # --running 1000 --ended-per-running 3 --latency-ms 200 --seconds 30

The tests run it only small, that it runs through (tests/bench/test_benches_run.py): never its figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = 8


def setup(path: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["SQLITE_PATH"] = path
    for name in ("DATABASE_URL", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "BATCH_ACCOUNTS_FILE", "SIMULATOR_BASE_URL"):
        os.environ.pop(name, None)
    os.environ["SIMULATOR_ENABLED"] = "1"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("dashboard.alarms").setLevel(logging.WARNING)  # a line per alarm the poller opens: not measured


def make_accounts(running: int, ended_per_running: int) -> list:
    """The simulator's accounts and batches, and the dashboard's Account for each."""
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone

    from dashboard import providers
    from dashboard.accounts import Account
    from dashboard.simulator.models import SimAccount, SimBatch, anthropic_batch_id, key_digest, openai_batch_id

    now = timezone.now()
    accounts = []
    with transaction.atomic():
        for n in range(ACCOUNTS):
            provider = "anthropic" if n < ACCOUNTS // 2 else "openai"
            module = providers.module(provider)
            key = f"sk-bench-freshness-{n}"
            sim = SimAccount.objects.create(provider=provider, name=f"team{n}", key_sha256=key_digest(key))
            base_url = f"https://{settings.EMBEDDED_SIMULATOR_HOST}/simulator{module.SIMULATOR_PATH}"
            accounts.append(Account(name=f"team{n}", provider=provider, base_url=base_url, api_key=key))
            mine = running // ACCOUNTS + (n < running % ACCOUNTS)
            batches = []
            for i in range(mine * (ended_per_running + 1)):
                is_running = i % (ended_per_running + 1) == 1  # the newest is ended: one in N+1 runs
                fields = {
                    "account": sim,
                    "created_at": now - timedelta(minutes=2, seconds=40 * i),
                    "total": 100,
                    "processing_seconds": 20 * 3600 if is_running else 30,
                    "cancel_grace_seconds": 8,
                    "error_percent": 5,
                }
                if provider == "anthropic":
                    fields |= {"public_id": anthropic_batch_id(), "output_file_id": "", "error_file_id": ""}
                else:
                    fields |= {
                        "public_id": openai_batch_id(),
                        "validating_seconds": 1,
                        "finalizing_seconds": 1,
                        "endpoint": "/v1/chat/completions",
                        "completion_window": "24h",
                        "input_file_public_id": f"file-bench{n}x{i}",
                        "model": "gpt-4.1-mini",
                        "metadata": {"bench": "freshness"},
                    }
                batches.append(SimBatch.planned(**fields))
            SimBatch.objects.bulk_create(batches)
    return accounts


class Requests:
    """Upstream requests per account, as each account's shared httpx client sends them."""

    def __init__(self, accounts) -> None:
        from dashboard.accounts import client_for

        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        for account in accounts:
            client_for(account).event_hooks["request"].append(self.hook(account.key))

    def hook(self, key: str):
        def count(request) -> None:
            kind = "list" if request.url.path.endswith("/batches") else "retrieve"
            with self.lock:
                self.counts[key, kind] += 1

        return count

    def snapshot(self) -> Counter:
        with self.lock:
            return Counter(self.counts)


@dataclass
class Run:
    cycles: list[float] = field(default_factory=list)  # seconds each cycle took
    errors: list[str] = field(default_factory=list)
    requests: Counter = field(default_factory=Counter)  # (account, kind) over the measured cycles
    refreshes: dict = field(default_factory=lambda: defaultdict(list))  # (account, batch) -> moments seen
    started: float = 0.0
    ended: float = 0.0


def poll_until(accounts, stop: threading.Event, run: Run, requests: Requests, owner: str) -> None:
    """The `manage.py poll` loop: a cycle, then sleep to the next POLL_SECONDS."""
    from django.conf import settings
    from django.db import connections
    from django.utils import timezone

    from dashboard.batches import poller

    try:
        while not stop.is_set():
            started = time.monotonic()
            before = requests.snapshot()
            results = poller.run_cycle(owner=owner, now=timezone.now(), accounts=accounts)
            run.cycles.append(time.monotonic() - started)
            run.requests.update(requests.snapshot() - before)
            run.errors.extend(f"{result.account}: {result.error}" for result in results if result.error)
            stop.wait(max(0.0, settings.POLL_SECONDS - (time.monotonic() - started)))
    finally:
        connections.close_all()


def warm_up(accounts) -> None:
    """Cycles without latency until every account's history is stored."""
    from django.db.models import Q
    from django.utils import timezone

    from dashboard.batches import poller
    from dashboard.models import AccountState

    for _ in range(100):
        AccountState.objects.update(next_poll_at=None)
        poller.run_cycle(owner="warm-up", now=timezone.now(), accounts=accounts)
        pending = AccountState.objects.filter(Q(backfill_done=False) | Q(last_success_at__isnull=True))
        if AccountState.objects.count() == len(accounts) and not pending.exists():
            break
    for account in accounts:
        poller.release(account, owner="warm-up")


def measure(accounts, running_ids: set, seconds: float, requests: Requests, owner: str) -> Run:
    from dashboard.batches import poller, store
    from dashboard.models import StoredBatch

    run = Run()
    lock = threading.Lock()
    record_many = store.record_many

    def noting(batches, *, fetched_at):
        batches = list(batches)
        changed = record_many(batches, fetched_at=fetched_at)
        watched = [batch.id for batch in batches if batch.id in running_ids]
        # Written with this fetch's time, not refused as older than what the store holds (one query more
        # per page the poller stores, counted in its cycle time).
        written = StoredBatch.objects.filter(batch_id__in=watched, last_fetched_at=fetched_at)
        moment = time.monotonic()
        with lock:
            for key in written.values_list("account", "batch_id"):
                run.refreshes[key].append(moment)
        return changed

    stop = threading.Event()
    thread = threading.Thread(target=poll_until, args=(accounts, stop, run, requests, owner), name="poller")
    store.record_many = noting
    try:
        run.started = time.monotonic()
        thread.start()
        stop.wait(seconds)
        run.ended = time.monotonic()
        stop.set()
        thread.join()
    finally:
        store.record_many = record_many
    for account in accounts:
        poller.release(account, owner=owner)
    return run


def worst_gaps(run: Run, running: set) -> dict[str, float]:
    """Per account: the longest time between two refreshes of one of its batches (or from the last one
    to the end; a batch never refreshed counts the whole run)."""
    worst: dict[str, float] = defaultdict(float)
    for key in running:
        moments = [moment for moment in run.refreshes.get(key, []) if moment <= run.ended]  # not the last cycle's tail
        if not moments:
            gap = run.ended - run.started
        else:
            gap = max(b - a for a, b in zip(moments, [*moments[1:], run.ended], strict=True))
        worst[key[0]] = max(worst[key[0]], gap)
    return worst


def report(title: str, run: Run, accounts, running: set, poll_seconds: float) -> None:
    from dashboard.batches import poller

    per_account = Counter(account for account, _ in running)
    worst = worst_gaps(run, running)
    cycles = len(run.cycles) or 1
    print(f"\n{title}")
    print(
        f"  {len(run.cycles)} cycles in {run.ended - run.started:.0f} s; cycle time median "
        f"{statistics.median(run.cycles or [0]):.2f} s, max {max(run.cycles or [0]):.2f} s; "
        f"errors: {len(run.errors)}"
    )
    print(
        f"  {'account':20} {'page':>5} {'running':>8} {'worst gap s':>12} {'gap/(2xPOLL)':>13} "
        f"{'lists/cycle':>12} {'retrieves/cycle':>16}"
    )
    for account in accounts:
        key = account.key
        lists = run.requests[key, "list"] / cycles
        retrieves = run.requests[key, "retrieve"] / cycles
        print(
            f"  {key:20} {poller.page_limit(account):5d} {per_account[key]:8d} {worst[key]:12.2f} "
            f"{worst[key] / (2 * poll_seconds):13.2f} {lists:12.1f} {retrieves:16.1f}"
        )
    total = sum(run.requests.values()) / cycles
    overall = max(worst.values())
    print(
        f"  {'all':20} {'':5} {sum(per_account.values()):8d} {overall:12.2f} {overall / (2 * poll_seconds):13.2f} "
        f"{'':12} {'':16}  upstream requests per cycle: {total:.1f}"
    )
    for error in run.errors[:5]:
        print(f"  error: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--running", type=int, default=1000)
    parser.add_argument("--ended-per-running", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30, help="the run of the poller as it is")
    parser.add_argument(
        "--retrieve-seconds", type=float, default=30, help="a run with retrieves only, concurrent; 0: skip it"
    )
    parser.add_argument(
        "--baseline-seconds", type=float, default=50, help="a run of the old strategy (one at a time); 0: skip it"
    )
    parser.add_argument(
        "--anthropic-page-limit", type=int, help="preview a MAX_PAGE_LIMIT on the Anthropic module (it takes 1000)"
    )
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        setup(str(Path(folder) / "bench.sqlite3"))
        from django.conf import settings

        from dashboard.batches import poller
        from dashboard.models import StoredBatch
        from dashboard.providers import anthropic
        from dashboard.simulator.models import SimAccount

        if options.anthropic_page_limit:
            anthropic.MAX_PAGE_LIMIT = options.anthropic_page_limit
        started = time.perf_counter()
        accounts = make_accounts(options.running, options.ended_per_running)
        requests = Requests(accounts)
        warm_up(accounts)
        running = set(StoredBatch.objects.filter(is_ended=False).values_list("account", "batch_id"))
        running_ids = {batch_id for _, batch_id in running}
        concurrency = settings.POLL_CONCURRENCY
        print(
            f"{StoredBatch.objects.count()} batches stored ({len(running)} running) over {len(accounts)} accounts "
            f"after the warm-up ({time.perf_counter() - started:.1f} s); upstream latency {options.latency_ms} ms "
            f"on every account; POLL_SECONDS {settings.POLL_SECONDS:g}; {os.cpu_count()} CPUs, load average "
            + " ".join(f"{load:.1f}" for load in os.getloadavg())
        )
        SimAccount.objects.update(latency_ms=options.latency_ms)

        strategies = [
            (options.seconds, True, concurrency, f"Listing when cheaper, else retrieves {concurrency} at a time (now)"),
            (options.retrieve_seconds, False, concurrency, f"Retrieves only, {concurrency} at a time"),
            (options.baseline_seconds, False, 1, "Retrieves only, one at a time (the poller before: baseline)"),
        ]
        for seconds, by_listing, at_a_time, title in strategies:
            if seconds <= 0:
                continue
            poller.REFRESH_BY_LISTING = by_listing
            settings.POLL_CONCURRENCY = at_a_time
            run = measure(accounts, running_ids, seconds, requests, owner=f"bench-{by_listing}-{at_a_time}")
            report(title, run, accounts, running, settings.POLL_SECONDS)


if __name__ == "__main__":
    main()
