"""Pollers that share the work: 1, 2 and 4 `manage.py poll` processes on one PostgreSQL, then one of 4 killed.

The simulator serves --accounts Anthropic accounts (200), each with --running long-running batches
among them (5,000 in all), as a gunicorn process of its own (its own SQLite, --simulator-threads
threads, so that its sleeping requests are never the limit), answering every request --latency-ms
late (200). The dashboard's store is a fresh PostgreSQL database. A warm-up without latency (four
pollers) fills the store; then, with the latency on, each step starts its pollers (the step before
stopped with SIGTERM: their leases released), lets them settle for --settle-seconds and measures
--seconds:

- worst refresh gap: the bench reads every running batch's `last_fetched_at` (the cycle's start, on
  the database's clock, that last refreshed it) every --sample-seconds; a batch's gap is the time
  between two refreshes, or from its last one to the end of the step (from the refresh before the
  step for the first); the worst over all running batches, and in POLL_SECONDS;
- account polls per second: each poller's `-v 3` lines (one per account poll, with when it ended);
- CPU per poller, as a share of one core (/proc: user + system of the process and its threads), and
  the simulator's and PostgreSQL's (its server and backends alive at the step's end); all three per
  account poll ("ms CPU/poll"); and the whole machine's busy cores (other work on it included: on a
  machine of 2 cores the simulator, PostgreSQL and the pollers share them, so past about 2 cores'
  worth the machine, not the pollers, is the limit);
- the share of the accounts each held at the end of the step (leases in the database).

The last step keeps the 4 pollers of the step before, kills one (SIGKILL: no goodbye) and measures
--seconds from that moment: the worst gap then is its accounts' wait for the others to notice (at
their next beat: its session lock is gone with its connection) and poll them.

Goals: throughput with 4 pollers >= 3 x one poller's; worst gap <= 2 x POLL_SECONDS while one of 4
is killed. A poller cannot poll an account more often than every POLL_SECONDS, so the most any
number of pollers can reach is accounts / POLL_SECONDS polls a second (the "demand", printed): the
ratio of 4 to 1 is only meaningful while one poller falls short of it by 3 x or more (the most
reachable, demand / one poller's, is printed). --env POLL_ACCOUNT_CONCURRENCY=4 makes one poller's
limit its upstream's latency (4 accounts at a time), as the goal means it, rather than its CPU.

Each goal gets a verdict line, and the exit status is 1 if one was missed. The throughput goal is
judged only where it can be reached (one poller short of the demand by 3 x or more); otherwise the
line says so and points to the latency-bound run. `make bench` runs both: the default settings (the
fail-over goal) and `--env POLL_ACCOUNT_CONCURRENCY=4 --no-kill` (the throughput goal).

    .venv/bin/python bench/pollers.py      # --accounts 200 --running 5000 --latency-ms 200 --seconds 60
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import PYTHON, Process, base_env, machine_note, manage, spawn, start_gunicorn  # noqa: E402

POLLED = re.compile(r"^(?P<account>[a-z0-9-]+): listed .*; polled (?P<start>[\d.]+)-(?P<end>[\d.]+)$")

SIMULATED = """
from datetime import timedelta
from django.db import transaction
from django.utils import timezone
from dashboard.simulator.models import SimAccount, SimBatch, anthropic_batch_id, key_digest
now = timezone.now()
with transaction.atomic():
    for n in range({accounts}):
        account = SimAccount.objects.create(
            provider="anthropic", name=f"team{{n}}", key_sha256=key_digest(f"sk-ant-bench-pollers-{{n}}")
        )
        mine = {running} // {accounts} + (n < {running} % {accounts})
        SimBatch.objects.bulk_create(
            SimBatch.planned(
                account=account, public_id=anthropic_batch_id(), output_file_id="", error_file_id="",
                created_at=now - timedelta(minutes=2, seconds=40 * i), total=100,
                processing_seconds=20 * 3600, cancel_grace_seconds=8, error_percent=5,
            )
            for i in range(mine)
        )
"""


class Store:
    """The dashboard's PostgreSQL database, read directly (psycopg), as the pollers leave it."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.connection = psycopg.connect(url, autocommit=True)
        self.lock = threading.Lock()

    def fetched(self) -> list[tuple[str, float]]:
        """(account/batch, last_fetched_at as a Unix time) of every running batch."""
        with self.lock:
            rows = self.connection.execute(
                "SELECT account || '/' || batch_id, extract(epoch FROM last_fetched_at)::float8"
                " FROM dashboard_storedbatch WHERE NOT is_ended"
            ).fetchall()
        return rows

    def holders(self) -> Counter:
        with self.lock:
            rows = self.connection.execute(
                "SELECT lease_owner, count(*) FROM dashboard_accountstate WHERE lease_owner <> '' GROUP BY 1"
            ).fetchall()
        return Counter(dict(rows))

    def counts(self) -> tuple[int, int, int]:
        """Stored batches, running ones, accounts whose history is read to its end."""
        with self.lock:
            stored, running = self.connection.execute(
                "SELECT count(*), count(*) FILTER (WHERE NOT is_ended) FROM dashboard_storedbatch"
            ).fetchone()
            done = self.connection.execute(
                "SELECT count(*) FROM dashboard_accountstate WHERE backfill_done AND last_success_at IS NOT NULL"
            ).fetchone()[0]
        return stored, running, done


class Sampler(threading.Thread):
    """Every `interval`, each running batch's last refresh: the distinct moments seen, per batch."""

    def __init__(self, store: Store, interval: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.store, self.interval = store, interval
        self.seen: dict[str, set[float]] = defaultdict(set)
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.is_set():
            rows = self.store.fetched()
            with self.lock:
                for key, moment in rows:
                    self.seen[key].add(moment)
            self.stop.wait(self.interval)

    def worst_gaps(self, start: float, end: float) -> dict[str, float]:
        """Each running batch's longest time without a refresh within [start, end]."""
        worst = {}
        with self.lock:
            for key, moments in self.seen.items():
                before = [m for m in moments if m <= start]
                within = sorted(m for m in moments if start < m <= end)
                points = ([max(before)] if before else [start]) + within + [end]
                worst[key] = max(b - a for a, b in itertools.pairwise(points))
        return worst


def setting(name: str, env: dict[str, str]) -> float:
    code = f"from django.conf import settings; print('=', settings.{name})"
    return float(manage("shell", "-c", code, env=env).split("=")[-1])


def polls(log: Path, start: float, end: float) -> int:
    """Account polls a poller's log says ended within [start, end]."""
    lines = log.read_text(errors="replace").splitlines()
    return sum(1 for m in map(POLLED.match, lines) if m and start < float(m["end"]) <= end)


def start_pollers(names: list[str], env: dict[str, str], folder: Path) -> dict[str, Process]:
    return {
        name: spawn(name, [PYTHON, "manage.py", "poll", "--owner", name, "-v", "3"], env, folder / f"{name}.log")
        for name in names
    }


def stop(pollers: dict[str, Process]) -> None:
    for process in pollers.values():
        process.stop()


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and each of its descendants, by process id (/proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = defaultdict(list)
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
            children[int(fields[1])].append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        current = todo.pop()
        if current in times:
            found[current] = times[current]
        todo.extend(children.get(current, []))
    return found


def used_cpu(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two `tree_cpu` readings by the processes alive at the second (those
    that ended in between are left out: their time is gone from /proc)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (all cores)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def measure(pollers, sampler: Sampler, store: Store, seconds: float, simulator: Process, database: int) -> dict:
    """`seconds` of the running pollers, from now; `database`: the PostgreSQL server's process id."""
    for process in pollers.values():
        process.check_alive()
    start = time.time()
    cpu = {name: tree_cpu(process.process.pid) for name, process in pollers.items()}
    simulator_cpu, database_cpu, machine = tree_cpu(simulator.process.pid), tree_cpu(database), machine_busy()
    time.sleep(seconds)
    end = time.time()
    used = {name: used_cpu(cpu[name], tree_cpu(process.process.pid)) for name, process in pollers.items()}
    simulator_cpu = used_cpu(simulator_cpu, tree_cpu(simulator.process.pid))
    database_cpu = used_cpu(database_cpu, tree_cpu(database))
    machine = [after - before for after, before in zip(machine_busy(), machine, strict=True)]
    for process in pollers.values():
        process.check_alive()
    time.sleep(1)  # the last polls' lines
    gaps = sampler.worst_gaps(start, end)
    return {
        "gap": max(gaps.values(), default=0.0),
        # The accounts whose batches went longest without a refresh, and how long (to look up in -v 3 logs).
        "worst": sorted(
            {key.split("/")[0]: gap for key, gap in sorted(gaps.items(), key=lambda item: item[1])}.items(),
            key=lambda item: -item[1],
        )[:3],
        "polls": sum(polls(process.log, start, end) for process in pollers.values()) / (end - start),
        "cpu": [used[name] / (end - start) for name in sorted(pollers)],
        "simulator": simulator_cpu / (end - start),
        "database": database_cpu / (end - start),
        # Cores busy, all processes of the machine (other work on it too), and of how many.
        "machine": (machine[0] / (end - start), machine[1] / (end - start)),
        "held": [store.holders().get(name, 0) for name in sorted(pollers)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--running", type=int, default=5000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60, help="each step's measured time")
    parser.add_argument("--settle-seconds", type=float, default=12, help="after a step's pollers start")
    parser.add_argument("--sample-seconds", type=float, default=0.5)
    parser.add_argument("--simulator-threads", type=int, default=128)
    parser.add_argument("--steps", default="1,2,4", help="poller counts, in turn; the last is then killed one of")
    parser.add_argument("--logs", type=Path, help="a folder to copy the pollers' and the simulator's logs to")
    parser.add_argument("--no-kill", action="store_true", help="no last step killing one poller")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a setting of the pollers (repeatable)"
    )
    options = parser.parse_args()
    steps = [int(step) for step in options.steps.split(",")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what it started on the way out

    from tests.services import start_postgres

    with tempfile.TemporaryDirectory(prefix="bench-pollers-") as name:
        folder = Path(name)
        postgres = start_postgres()
        simulator = None
        pollers: dict[str, Process] = {}
        sampler = None
        met = False
        try:
            simulator_env = base_env(folder / "simulator.sqlite3", WEB_THREADS=str(options.simulator_threads))
            manage("migrate", "--noinput", env=simulator_env)
            manage(
                "shell", "-c", SIMULATED.format(accounts=options.accounts, running=options.running), env=simulator_env
            )
            simulator = start_gunicorn("simulator", simulator_env, folder / "simulator.log")
            accounts_file = folder / "accounts.json"
            accounts_file.write_text(
                json.dumps(
                    [
                        {
                            "name": f"team{n}",
                            "provider": "anthropic",
                            "base_url": f"{simulator.url}/simulator/anthropic",
                            "api_key": f"sk-ant-bench-pollers-{n}",
                        }
                        for n in range(options.accounts)
                    ]
                )
            )
            env = base_env(
                folder / "unused.sqlite3",
                DATABASE_URL=postgres.create_database(),
                BATCH_ACCOUNTS_FILE=str(accounts_file),
                SIMULATOR_ENABLED="0",
                **dict(setting.split("=", 1) for setting in options.env),
            )
            manage("migrate", "--noinput", env=env)
            store = Store(env["DATABASE_URL"])
            database = int((postgres.datadir / "postmaster.pid").read_text().split()[0])
            poll_seconds, window = setting("POLL_SECONDS", env), setting("POLL_HEARTBEAT_SECONDS", env)
            concurrency = setting("POLL_ACCOUNT_CONCURRENCY", env)

            started = time.monotonic()
            pollers = start_pollers([f"warm{n}" for n in range(4)], env, folder)
            while store.counts()[2] < options.accounts or store.counts()[1] < options.running:
                if time.monotonic() - started > 900:
                    raise RuntimeError(f"the warm-up did not fill the store: {store.counts()}")
                for process in pollers.values():
                    process.check_alive()
                time.sleep(1)
            stop(pollers)
            stored, running, _ = store.counts()
            latency = f"SimAccount.objects.update(latency_ms={options.latency_ms})"
            manage("shell", "-c", f"from dashboard.simulator.models import SimAccount; {latency}", env=simulator_env)
            print(
                f"{options.accounts} accounts, {stored} batches stored ({running} running) after the warm-up "
                f"({time.monotonic() - started:.0f} s); upstream latency {options.latency_ms} ms; POLL_SECONDS "
                f"{poll_seconds:g}, POLL_HEARTBEAT_SECONDS {window:g}, POLL_ACCOUNT_CONCURRENCY {concurrency:g}; "
                f"{options.seconds:g} s a step; {machine_note()}"
            )
            sampler = Sampler(store, options.sample_seconds)
            sampler.start()
            rows = []
            for count in steps:
                pollers = start_pollers([f"p{n}" for n in range(count)], env, folder)
                time.sleep(options.settle_seconds)
                rows.append((f"{count}", measure(pollers, sampler, store, options.seconds, simulator, database)))
                if count != steps[-1]:
                    stop(pollers)
            if not options.no_kill:
                victim = sorted(pollers)[-1]
                os.killpg(pollers[victim].process.pid, signal.SIGKILL)
                pollers[victim].process.wait(timeout=10)
                del pollers[victim]
                killed = measure(pollers, sampler, store, options.seconds, simulator, database)
                rows.append((f"{steps[-1]}, one killed", killed))
            stop(pollers)
            report(rows, poll_seconds, options.accounts)
            met = verdicts(rows, steps, poll_seconds, options.accounts, killed=not options.no_kill)
        finally:
            if sampler is not None:
                sampler.stop.set()
            stop(pollers)
            if simulator is not None:
                simulator.stop()
            postgres.stop()
            if options.logs:
                options.logs.mkdir(parents=True, exist_ok=True)
                for log in folder.glob("*.log"):
                    shutil.copy(log, options.logs / log.name)
    sys.exit(0 if met else 1)


THROUGHPUT_GOAL = 3.0  # x one poller's, with 4
GAP_GOAL = 2.0  # x POLL_SECONDS, while one of 4 is killed


def verdicts(rows, steps: list[int], poll_seconds: float, accounts: int, *, killed: bool) -> bool:
    """Print each goal's verdict; whether none was missed."""
    by_title = dict(rows)
    one = by_title.get("1", {}).get("polls") or math.nan
    met = True
    if "1" in by_title and "4" in by_title:
        ratio = by_title["4"]["polls"] / one
        reachable = accounts / poll_seconds / one
        if reachable < THROUGHPUT_GOAL:
            print(
                f"goal: 4 pollers >= {THROUGHPUT_GOAL:g} x one's: not measurable at these settings ({ratio:.2f} x;"
                f" one poller already does 1/{reachable:.2f} of the demand, so 4 can reach {reachable:.2f} x at most):"
                " see the latency-bound run, --env POLL_ACCOUNT_CONCURRENCY=4 --no-kill"
            )
        else:
            ok = ratio >= THROUGHPUT_GOAL
            met &= ok
            print(f"goal: 4 pollers >= {THROUGHPUT_GOAL:g} x one's: {ratio:.2f} x: {'met' if ok else 'MISSED'}")
    if killed:
        gap = by_title[f"{steps[-1]}, one killed"]["gap"] / poll_seconds
        ok = gap <= GAP_GOAL
        met &= ok
        print(
            f"goal: worst gap <= {GAP_GOAL:g} x POLL_SECONDS while one of {steps[-1]} is killed: "
            f"{gap * poll_seconds:.1f} s = {gap:.2f} x: "
            f"{'met' if ok else 'MISSED'}"
        )
    return met


def report(rows, poll_seconds: float, accounts: int) -> None:
    one = rows[0][1]["polls"] or math.nan
    demand = accounts / poll_seconds
    print(
        f"demand: {accounts} accounts every {poll_seconds:g} s = {demand:.1f} account polls/s, the most any number "
        f"of pollers can reach: {demand / one:.2f} x one poller's here"
    )
    print(
        f"{'pollers':16} {'worst gap s':>11} {'/(2xPOLL)':>9} {'polls/s':>8} {'x one':>6} {'ms CPU/poll':>11} "
        f"{'CPU per poller (share of a core)':>34} {'sim CPU':>7} {'PG CPU':>6} {'busy cores':>10}  accounts held"
    )
    for title, row in rows:
        cpu = " ".join(f"{share:.2f}" for share in row["cpu"])
        held = "/".join(str(count) for count in row["held"])
        # The pollers', the simulator's and PostgreSQL's CPU per account poll, in milliseconds.
        per_poll = 1000 * (sum(row["cpu"]) + row["simulator"] + row["database"]) / (row["polls"] or math.nan)
        print(
            f"{title:16} {row['gap']:11.1f} {row['gap'] / (2 * poll_seconds):9.2f} {row['polls']:8.1f} "
            f"{row['polls'] / one:6.2f} {per_poll:11.1f} {cpu:>34} {row['simulator']:7.2f} {row['database']:6.2f} "
            f"{row['machine'][0]:5.2f}/{row['machine'][1]:<4.0f}  {held}"
        )
    for title, row in rows:
        worst = ", ".join(f"{account} {gap:.1f} s" for account, gap in row["worst"])
        print(f"longest without a refresh, {title} pollers: {worst}")


if __name__ == "__main__":
    main()
