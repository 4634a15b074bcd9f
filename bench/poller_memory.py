"""The poller's memory: 40 accounts, 1,000 running batches, a shortened interval, RSS sampled over time.

The simulator runs as its own server (gunicorn on a loopback port, on a SQLite file of its own), as a
real upstream is another machine: the poller's memory is the poller's alone. It holds --accounts
accounts (half Anthropic, half OpenAI), each with its share of --running batches that stay running
for the whole run among --ended-per-running times as many ended ones, every account answering
--latency-ms late. The poller is a real `manage.py poll` on a fresh SQLite store, given those
accounts by BATCH_ACCOUNTS_FILE, at POLL_SECONDS=--poll-seconds. (--embedded: the simulator in the
poller's process instead, as `make run` has it; its memory then counts too.)

Every --sample-seconds: the poller's VmRSS (/proc/PID/status), its Private and Shared resident
memory (/proc/PID/smaps_rollup) and its threads. Printed: the samples (every minute), then start
(the first sample once every account was polled), steady (the median of the second half), end,
peak, and the slope of a least-squares line through the second half, in MiB per hour.

    .venv/bin/python bench/poller_memory.py                 # 3 minutes
    .venv/bin/python bench/poller_memory.py --minutes 60    # flat over an hour?

The tests run it only small, that it runs through (tests/bench/test_benches_run.py): never its figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import base_env, machine_note, manage, process_tree_cpu, spawn, start_gunicorn

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
EMBEDDED_BASE = "https://embedded-simulator.invalid/simulator"


@dataclass
class Sample:
    seconds: float
    rss: int  # bytes
    private: int
    shared: int
    threads: int
    cpu: float


def read_sample(pid: int, started: float) -> Sample:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    rollup: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[-1] == "kB":
            rollup[name] = int(parts[0]) * 1024
    return Sample(
        seconds=time.monotonic() - started,
        rss=int(status["VmRSS"].split()[0]) * 1024,
        private=rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0),
        shared=rollup.get("Shared_Clean", 0) + rollup.get("Shared_Dirty", 0),
        threads=int(status["Threads"]),
        cpu=process_tree_cpu(pid),
    )


def regions(pid: int) -> dict[str, int]:
    """Private resident memory (bytes) by kind of mapping, from /proc/PID/smaps: the main heap (brk),
    anonymous mappings (CPython's object arenas, other threads' malloc arenas, large blocks, thread
    stacks), and files (the private pages of libraries and extension modules)."""
    kinds: dict[str, int] = {}
    kind = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            name = head[5] if len(head) > 5 else ""
            kind = name if name.startswith("[") else ("files" if name else "anonymous")
        elif head and head[0] in ("Private_Clean:", "Private_Dirty:"):
            kinds[kind] = kinds.get(kind, 0) + int(head[1]) * 1024
    return kinds


SIMULATOR_DATA = """
import json, sys
from datetime import timedelta
from django.db import transaction
from django.utils import timezone
from dashboard.simulator.models import SimAccount, SimBatch, anthropic_batch_id, key_digest, openai_batch_id

accounts, running, ended_per_running, latency_ms = (int(value) for value in sys.argv[1:5])
now = timezone.now()
made = []
with transaction.atomic():
    for n in range(accounts):
        provider = "anthropic" if n % 2 == 0 else "openai"
        key = f"sk-bench-memory-{n}"
        sim = SimAccount.objects.create(
            provider=provider, name=f"team{n}", key_sha256=key_digest(key), latency_ms=latency_ms
        )
        made.append({"name": f"team{n}", "provider": provider, "api_key": key})
        mine = running // accounts + (n < running % accounts)
        batches = []
        for i in range(mine * (ended_per_running + 1)):
            is_running = i % (ended_per_running + 1) == 1
            fields = {
                "account": sim,
                "created_at": now - timedelta(minutes=2, seconds=40 * i),
                "total": 100,
                "processing_seconds": 48 * 3600 if is_running else 30,
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
                    "metadata": {"bench": "poller_memory"},
                }
            batches.append(SimBatch.planned(**fields))
        SimBatch.objects.bulk_create(batches)
print(json.dumps(made))
"""


def polled_accounts(store: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(
                "SELECT count(*) FROM dashboard_accountstate WHERE last_success_at IS NOT NULL"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


def slope_per_hour(samples: list[Sample], attribute: str) -> float:
    if len(samples) < 2:
        return float("nan")
    xs = [sample.seconds for sample in samples]
    ys = [getattr(sample, attribute) for sample in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if not spread:
        return float("nan")
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread * 3600 / MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--running", type=int, default=1000)
    parser.add_argument("--ended-per-running", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="POLL_SECONDS (3 by default in production)")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--embedded", action="store_true", help="the simulator in the poller's process")
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for the poller (e.g. MALLOC_ARENA_MAX=2)"
    )
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-poller-memory-") as folder:
        folder = Path(folder)
        store = folder / "store.sqlite3"
        simulator_db = store if options.embedded else folder / "simulator.sqlite3"
        simulator_env = base_env(simulator_db, WEB_THREADS="64")
        manage("migrate", "--verbosity", "0", env=simulator_env)
        made = json.loads(
            manage(
                "shell",
                "-c",
                f"import sys; sys.argv = ['', '{options.accounts}', '{options.running}', "
                f"'{options.ended_per_running}', '{options.latency_ms}']\n" + SIMULATOR_DATA,
                env=simulator_env,
            )
            .strip()
            .splitlines()[-1]
        )
        simulator = None
        if options.embedded:
            base = EMBEDDED_BASE
        else:
            simulator = start_gunicorn("simulator", simulator_env, folder / "simulator.log")
            base = f"{simulator.url}/simulator"
        paths = {"anthropic": "/anthropic", "openai": "/openai/v1"}
        accounts_file = folder / "accounts.json"
        accounts_file.write_text(
            json.dumps([{**account, "base_url": base + paths[account["provider"]]} for account in made])
        )
        poller_env = base_env(
            store,
            BATCH_ACCOUNTS_FILE=str(accounts_file),
            SIMULATOR_ENABLED="1" if options.embedded else "0",
            POLL_SECONDS=f"{options.poll_seconds:g}",
        )
        poller_env.update(item.split("=", 1) for item in options.env)
        manage("migrate", "--verbosity", "0", env=poller_env)
        print(
            f"{options.accounts} accounts, {options.running} running batches (and {options.ended_per_running} ended "
            f"per running one), {options.latency_ms} ms upstream latency, POLL_SECONDS {options.poll_seconds:g}, "
            f"simulator {'in the poller process' if options.embedded else 'a server of its own'}"
            + (f", {' '.join(options.env)}" if options.env else "")
            + f"; {machine_note()}"
        )
        poller = spawn(
            "poller",
            [sys.executable, "manage.py", "poll", "--owner", "bench-memory"],
            poller_env,
            folder / "poller.log",
        )
        samples: list[Sample] = []
        steady_from = None
        started = time.monotonic()
        deadline = started + options.minutes * 60
        try:
            while time.monotonic() < deadline:
                poller.check_alive()
                if simulator:
                    simulator.check_alive()
                sample = read_sample(poller.process.pid, started)
                samples.append(sample)
                if steady_from is None and polled_accounts(store) >= options.accounts:
                    steady_from = len(samples) - 1
                    print(f"  every account polled after {sample.seconds:.0f} s")
                if len(samples) == 1 or int(sample.seconds // 60) != int(samples[-2].seconds // 60):
                    print(
                        f"  {sample.seconds:6.0f} s  RSS {sample.rss / MIB:6.1f} MiB  private "
                        f"{sample.private / MIB:6.1f}  shared {sample.shared / MIB:5.1f}  threads "
                        f"{sample.threads:3d}  CPU {sample.cpu:6.1f} s",
                        flush=True,
                    )
                time.sleep(options.sample_seconds)
            where = regions(poller.process.pid)
            log = poller.log.read_text(errors="replace").splitlines()
            tracebacks = [number for number, line in enumerate(log) if "Traceback" in line]
        finally:
            poller.stop()
            if simulator:
                simulator.stop()
        if steady_from is None:
            print(f"  not every account was polled: the poller's log ends\n{poller.tail()}")
            steady_from = 0
        measured = samples[steady_from:]
        second_half = [
            sample for sample in measured if sample.seconds >= (measured[0].seconds + samples[-1].seconds) / 2
        ]
        print(f"\n  {'':10} {'RSS MiB':>9} {'private':>9} {'shared':>8} {'threads':>8}")
        for label, sample in (("start", measured[0]), ("end", samples[-1])):
            print(
                f"  {label:10} {sample.rss / MIB:9.1f} {sample.private / MIB:9.1f} {sample.shared / MIB:8.1f} "
                f"{sample.threads:8d}"
            )
        print(
            f"  {'steady':10} {statistics.median(s.rss for s in second_half) / MIB:9.1f} "
            f"{statistics.median(s.private for s in second_half) / MIB:9.1f} "
            f"{statistics.median(s.shared for s in second_half) / MIB:8.1f}"
        )
        print(f"  {'peak':10} {max(s.rss for s in samples) / MIB:9.1f}")
        print(
            f"  slope over the second half ({(second_half[-1].seconds - second_half[0].seconds) / 60:.0f} min): "
            f"RSS {slope_per_hour(second_half, 'rss'):+.1f} MiB/h, "
            f"private {slope_per_hour(second_half, 'private'):+.1f} MiB/h; "
            f"poller CPU {samples[-1].cpu / samples[-1].seconds:.0%} of a core; "
            f"tracebacks in its log: {len(tracebacks)}"
        )
        print(
            "  private memory at the end by mapping: "
            + ", ".join(
                f"{kind} {size / MIB:.1f} MiB"
                for kind, size in sorted(where.items(), key=lambda item: -item[1])
                if size >= MIB / 10
            )
        )
        if tracebacks:
            first = tracebacks[0]
            print("  the first one:\n" + "\n".join(log[max(0, first - 2) : first + 30]))


if __name__ == "__main__":
    main()
