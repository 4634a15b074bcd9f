"""The poller's extra cost for alarms: time per cycle with and without the rules, 1,000 running batches.

In a fresh SQLite file: the embedded simulator (reached in process, as the dashboard reaches it by
default) with 8 accounts, 4 Anthropic and 4 OpenAI; each holds 125 running batches among 3 times as
many ended ones, created over the last hours. So that every rule has something to find:
- the ended batches took from 30 s to 2 h (no longer than they have existed), and Anthropic's
  "stuck" compares a running batch with the 95th percentile of those; one OpenAI ended batch in
  20 failed validation ("ended badly");
- one running batch in 10 was created 23 hours ago ("expiring");
- one running OpenAI batch in 10 is stalled in the simulator, and its last change in the store is
  moved an hour back after the warm-up ("stuck").

A warm-up fills the store (no alarms), and one evaluation opens the alarms (timed apart: it happens
once). Then cycles run back to back as `manage.py poll` runs them (`poller.run_cycle`, without the
sleep to the next POLL_SECONDS), alternately with ALARMS_ENABLED off and on, so both see the same
store and machine. Last, `evaluation.evaluate` alone, and its queries.

    .venv/bin/python bench/alarms.py     # --running 1000 --ended-per-running 3 --cycles 30 --latency-ms 0

Upstream latency 0 (the default) makes the cycles as short as they get: the ratio is the worst case.
The tests run it only small, that it runs through (tests/bench/test_benches_run.py): never its figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = 8


def setup(path: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["SQLITE_PATH"] = path
    accounts = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN")
    for name in ("DATABASE_URL", *accounts, "BATCH_ACCOUNTS_FILE", "SIMULATOR_BASE_URL"):
        os.environ.pop(name, None)
    os.environ["SIMULATOR_ENABLED"] = "1"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("dashboard.alarms.evaluation").setLevel(logging.WARNING)  # one line per alarm opened otherwise


def make_accounts(running: int, ended_per_running: int, seed: int = 7) -> tuple[list, list[str]]:
    """The simulator's accounts and batches; the dashboard's Account for each, and the ids of the
    running OpenAI batches to stall."""
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone

    from dashboard import providers
    from dashboard.accounts import Account
    from dashboard.simulator.models import SimAccount, SimBatch, anthropic_batch_id, key_digest, openai_batch_id

    rng = random.Random(seed)
    now = timezone.now()
    accounts, to_stall = [], []
    with transaction.atomic():
        for n in range(ACCOUNTS):
            provider = "anthropic" if n < ACCOUNTS // 2 else "openai"
            module = providers.module(provider)
            key = f"sk-bench-alarms-{n}"
            sim = SimAccount.objects.create(provider=provider, name=f"team{n}", key_sha256=key_digest(key))
            base_url = f"https://{settings.EMBEDDED_SIMULATOR_HOST}/simulator{module.SIMULATOR_PATH}"
            accounts.append(Account(name=f"team{n}", provider=provider, base_url=base_url, api_key=key))
            mine = running // ACCOUNTS + (n < running % ACCOUNTS)
            batches = []
            for i in range(mine * (ended_per_running + 1)):
                is_running = i % (ended_per_running + 1) == 1
                created = now - timedelta(minutes=2, seconds=40 * i)
                if is_running and rng.random() < 0.1:
                    created = now - timedelta(hours=23, minutes=rng.uniform(0, 30))
                age = (now - created).total_seconds()
                fields = {
                    "account": sim,
                    "created_at": created,
                    "total": 100,
                    # An ended batch took 30 s to 2 h, and ended before now.
                    "processing_seconds": 30 * 3600 if is_running else rng.uniform(30, max(30, min(7200, age - 10))),
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
                        "metadata": {"bench": "alarms"},
                    }
                    if not is_running and rng.random() < 0.05:
                        fields["validation_errors"] = {"object": "list", "data": [{"code": "invalid", "line": 1}]}
                    if is_running and rng.random() < 0.1:
                        to_stall.append(fields["public_id"])
                batches.append(SimBatch.planned(**fields))
            SimBatch.objects.bulk_create(batches)
    return accounts, to_stall


def warm_up(accounts) -> None:
    """Cycles, alarms off, until every account's history is stored."""
    from django.conf import settings
    from django.db.models import Q
    from django.utils import timezone

    from dashboard.batches import poller
    from dashboard.models import AccountState

    settings.ALARMS_ENABLED = False
    for _ in range(100):
        AccountState.objects.update(next_poll_at=None)
        poller.run_cycle(owner="bench", now=timezone.now(), accounts=accounts)
        pending = AccountState.objects.filter(Q(backfill_done=False) | Q(last_success_at__isnull=True))
        if AccountState.objects.count() == len(accounts) and not pending.exists():
            return
    raise SystemExit("the store was still backfilling after 100 cycles")


def cycle(accounts, *, alarms_on: bool) -> float:
    from django.conf import settings
    from django.utils import timezone

    from dashboard.batches import poller

    settings.ALARMS_ENABLED = alarms_on
    started = time.perf_counter()
    results = poller.run_cycle(owner="bench", now=timezone.now(), accounts=accounts)
    elapsed = time.perf_counter() - started
    failed = [result for result in results if result.error]
    if failed:
        raise SystemExit(f"a poll failed: {failed[0].account}: {failed[0].error}")
    return elapsed


def ms(values: list[float], share: float | None = None) -> str:
    if share is None:
        return f"{1000 * statistics.median(values):9.1f}"
    ordered = sorted(values)
    return f"{1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]:9.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--running", type=int, default=1000)
    parser.add_argument("--ended-per-running", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=30, help="cycles of each kind (alternating)")
    parser.add_argument("--latency-ms", type=int, default=0, help="upstream latency of every simulated account")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        setup(str(Path(folder) / "bench.sqlite3"))
        from django.db import connection
        from django.test.utils import CaptureQueriesContext
        from django.utils import timezone

        from dashboard.alarms import evaluation
        from dashboard.models import Alarm, StoredBatch
        from dashboard.simulator import stall
        from dashboard.simulator.models import SimAccount

        started = time.perf_counter()
        accounts, to_stall = make_accounts(options.running, options.ended_per_running)
        warm_up(accounts)
        for public_id in to_stall:
            stall.stall(public_id)
        an_hour_ago = timezone.now() - timedelta(hours=1)
        StoredBatch.objects.filter(batch_id__in=to_stall).update(last_changed_at=an_hour_ago)
        SimAccount.objects.update(latency_ms=options.latency_ms)
        running = StoredBatch.objects.filter(is_ended=False).count()
        print(
            f"{StoredBatch.objects.count()} batches stored ({running} running) over {len(accounts)} accounts after "
            f"the warm-up ({time.perf_counter() - started:.1f} s); upstream latency {options.latency_ms} ms; "
            f"{os.cpu_count()} CPUs, load average " + " ".join(f"{load:.1f}" for load in os.getloadavg())
        )

        keys = [account.key for account in accounts]
        first = evaluation.evaluate(timezone.now(), accounts=keys)
        opened = Counter(alarm.rule for alarm in first.opened)
        print(
            f"First evaluation: opened {len(first.opened)} alarms in {1000 * first.seconds:.1f} ms ("
            + ", ".join(f"{rule} {count}" for rule, count in sorted(opened.items()))
            + ")"
        )

        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(options.cycles):
            for alarms_on in (False, True):
                times[alarms_on].append(cycle(accounts, alarms_on=alarms_on))

        evaluations, cpu = [], []
        for _ in range(options.cycles):
            with CaptureQueriesContext(connection) as queries:
                before = time.process_time()  # CPU time: what a busy machine's load does not inflate
                evaluations.append(evaluation.evaluate(timezone.now(), accounts=keys).seconds)
                cpu.append(time.process_time() - before)
        still = Alarm.objects.filter(resolved_at=None).count()

        off, on = times[False], times[True]
        print(f"\nTime per poller cycle, {options.cycles} cycles each, alternating ({running} running batches):")
        print(f"  {'':28} {'median ms':>9} {'p90 ms':>9} {'mean ms':>9}")
        for title, values in (("without rules (alarms off)", off), ("with rules (alarms on)", on)):
            print(f"  {title:28} {ms(values)} {ms(values, 0.9)} {1000 * statistics.mean(values):9.1f}")
        extra = statistics.median(on) - statistics.median(off)
        print(
            f"  {'extra per cycle':28} {1000 * extra:9.1f}   ratio with/without (medians): "
            f"{statistics.median(on) / statistics.median(off):.2f}x"
        )
        print(
            f"\nevaluation.evaluate alone: median {ms(evaluations)} ms, p90 {ms(evaluations, 0.9)} ms "
            f"(CPU time: median {ms(cpu)} ms); {len(queries)} queries each; {still} alarms open"
        )


if __name__ == "__main__":
    main()
