"""Watching costs what changes: a live page's one feed request per interval against per-row polling.

One server process, as deployed by default (gunicorn gthread, 1 worker x 16 threads, production
settings), on a fresh SQLite file whose store holds 25 running OpenAI batches: the list's first page,
all live. Two ways to watch that page, measured in the same run against the same server:

- rows: what the list did before (one request per live row per interval): each viewer polls each of
  its 25 rows (`/batches/<account>/<id>/row`, the view still serves a row alone) and the header badge
  (`/alarms/badge`) every interval, over up to 6 connections as a browser does; a row whose previous
  poll is still in flight skips its turn (as htmx does).
- feed: each viewer asks the page's feed (`/?feed=…`, dashboard/web/live.py) every interval on one
  connection, following the cursor each 200 answer carries.

1. Nothing changed: --idle-viewers (per-row) and --idle-viewers-feed viewers for --seconds; server
   CPU per request, and per viewer per interval (per request x the requests a viewer makes in one),
   the server's own CPU with nobody watching taken off.
2. A realistic change rate: a writer process stores --changes of the 25 batches anew every interval
   (their counts move on, through dashboard/batches/store.py as the poller records them). Viewers
   come in steps; for each step, request latency (sent -> last byte) over the window; a step holds
   when its p95 is under 100 ms with no error and no skipped poll. The most viewers a step held.

Viewers start staggered over one interval. They share a few signed-in sessions (signing in is a
deliberately slow password hash; the server's cost per request does not depend on whose session it
is) and start from one page load per step (a page load is not what this measures). The client is a
minimal HTTP/1.1 client over asyncio streams, so that the bench's own CPU leaves the server its core;
its CPU is printed. Staleness is off (POLL_SECONDS=3600 in the server): no poller runs, only the writer.

    make bench            # or: .venv/bin/python bench/live_feed.py --seconds 12 --steps-rows 20,40 --steps-feed 200,500
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from harness import (
    FEED_LINK,
    PYTHON,
    Process,
    base_env,
    machine_note,
    manage,
    operator_password,
    percentile,
    process_tree_cpu,
    sign_in,
    spawn,
    start_gunicorn,
)

INTERVAL = 3.0
ROWS = 25
BROWSER_CONNECTIONS = 6
P95_LIMIT_MS = 100.0
LIVE_ROW_LINK = re.compile(r' data-live[^>]*>.*?<a [^>]*?href="(/batches/[^"]+/)"', re.S)
SESSIONS = 8

# The store's batches, and the writer that moves some of them on every interval (run by manage.py shell).
STORE_SCRIPT = """
import json, os, random, time
from datetime import datetime, timedelta, timezone as tz
from dashboard.batches import store
from dashboard.providers import module

parse = module("openai").parse_batch
ids = json.loads(os.environ["BENCH_BATCH_IDS"])
created = datetime.now(tz.utc) - timedelta(minutes=30)
done = dict.fromkeys(ids, 0)

def write(batch_id, index):
    body = {
        "id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
        "input_file_id": "file-" + batch_id[-24:], "completion_window": "24h", "status": "in_progress",
        "output_file_id": None, "error_file_id": None,
        "created_at": int((created - timedelta(seconds=index)).timestamp()),
        "in_progress_at": int(created.timestamp()) + 5, "expires_at": int((created + timedelta(hours=24)).timestamp()),
        "request_counts": {"total": 10000, "completed": done[batch_id], "failed": 0},
        "metadata": {"job": "bench-" + str(index)},
    }
    store.record(parse(body, account="openai-ops"), fetched_at=datetime.now(tz.utc))

if os.environ.get("BENCH_WRITER") != "1":
    for index, batch_id in enumerate(ids):
        write(batch_id, index)
else:
    changes, interval = int(os.environ["BENCH_CHANGES"]), float(os.environ["BENCH_INTERVAL"])
    print("writer started", flush=True)
    while True:
        started = time.monotonic()
        for batch_id in random.sample(ids, changes):
            done[batch_id] += 1
            write(batch_id, ids.index(batch_id))
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
"""


# --- a minimal HTTP/1.1 client --------------------------------------------------------------------


class Connection:
    """One kept-alive HTTP/1.1 connection; GET only, Content-Length bodies (what Django sends)."""

    def __init__(self, host: str, port: int, cookie: str) -> None:
        self.host, self.port, self.cookie = host, port, cookie
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, *, htmx: bool = True) -> tuple[int, bytes, float]:
        """(status, body, seconds from the request's first byte sent to the answer's last byte read)."""
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nCookie: {self.cookie}\r\n"
                + ("HX-Request: true\r\n" if htmx else "")
                + "\r\n"
            ).encode()
            try:
                started = time.perf_counter()
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                body = await self.reader.readexactly(int(headers.get("content-length", "0")))
                seconds = time.perf_counter() - started
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
                continue  # the server closed a kept-alive connection under it: sent again, as browsers do
            if headers.get("connection", "").lower() == "close":
                self.close()
            return status, body, seconds
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# --- the viewers ------------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, every request of the window
    page_latencies: list[float] = field(default_factory=list)  # interval's due time -> the page is current
    statuses: Counter = field(default_factory=Counter)
    rows_sent: int = 0  # feed: rows in its 200 answers
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


async def feed_viewer(base: str, cookie: str, url: str, start: float, deadline: float, tally: Tally) -> None:
    parts = urlsplit(base)
    connection = Connection(parts.hostname, parts.port, cookie)
    due = start
    try:
        while due < deadline:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                status, body, seconds = await connection.get(url)
            except (OSError, asyncio.IncompleteReadError) as error:
                tally.errors.append(f"feed: {type(error).__name__}: {error}")
                return
            tally.latencies.append(seconds)
            tally.page_latencies.append(time.perf_counter() - due)
            tally.statuses[status] += 1
            if status == 200:
                text = body.decode()
                tally.rows_sent += text.count('<tr id="row-')
                found = FEED_LINK.search(text)
                if found is None:
                    return
                url = html.unescape(found.group(1))
            elif status != 204:
                tally.errors.append(f"feed: HTTP {status}")
                return
            due += INTERVAL
            while due < time.perf_counter():  # a request still in flight when the next was due: skipped
                due += INTERVAL
                tally.skipped += 1
    finally:
        connection.close()


async def rows_viewer(base: str, cookie: str, urls: list[str], start: float, deadline: float, tally: Tally) -> None:
    parts = urlsplit(base)
    pool: asyncio.Queue[Connection] = asyncio.Queue()  # a browser's connections to the host: polls wait for one
    for _ in range(BROWSER_CONNECTIONS):
        pool.put_nowait(Connection(parts.hostname, parts.port, cookie))
    live = list(urls)
    in_flight: set[str] = set()
    rounds: set[asyncio.Task] = set()

    async def poll(url: str, finished: list[float]) -> None:
        connection = await pool.get()
        try:
            status, _, seconds = await connection.get(url)
        except (OSError, asyncio.IncompleteReadError) as error:
            tally.errors.append(f"row: {type(error).__name__}: {error}")
            return
        finally:
            in_flight.discard(url)
            pool.put_nowait(connection)
        tally.latencies.append(seconds)
        tally.statuses[status] += 1
        finished.append(time.perf_counter())
        if status == 286 and url in live:  # ended: htmx stops polling the row
            live.remove(url)
        elif status not in (200, 286):
            tally.errors.append(f"row: HTTP {status}")

    async def one_round(asked: list[str], due: float) -> None:
        finished: list[float] = []
        await asyncio.gather(*(poll(url, finished) for url in asked))
        if asked and len(finished) == len(asked):
            tally.page_latencies.append(max(finished) - due)

    due = start
    while due < deadline:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        asked = []
        for url in live:
            if url in in_flight:
                tally.skipped += 1  # its previous poll is still in flight: this one is dropped
                continue
            in_flight.add(url)
            asked.append(url)
        task = asyncio.create_task(one_round(asked, due))
        rounds.add(task)
        task.add_done_callback(rounds.discard)
        due += INTERVAL
    if rounds:
        await asyncio.gather(*rounds)
    while not pool.empty():
        pool.get_nowait().close()


async def watch(mode: str, base: str, cookies: list[str], count: int, seconds: float, start_with: dict) -> Tally:
    """`count` viewers for one warm-up interval then `seconds`; the tally of the measured window."""
    tally, warm = Tally(), Tally()
    begin = time.perf_counter() + 0.2
    measured_from = begin + INTERVAL
    deadline = measured_from + seconds

    async def one(index: int) -> None:
        cookie = cookies[index % len(cookies)]
        offset = index * INTERVAL / count
        viewer = feed_viewer if mode == "feed" else rows_viewer
        target = start_with["feed"] if mode == "feed" else start_with["rows"]
        # The warm-up interval runs on its own tally; the measured window on the other.
        await viewer(base, cookie, target, begin + offset, measured_from + offset, warm)
        await viewer(
            base, cookie, target if mode == "rows" else start_with["feed"], measured_from + offset, deadline, tally
        )

    async with asyncio.timeout(seconds + 4 * INTERVAL + 120):
        await asyncio.gather(*(one(index) for index in range(count)))
    tally.errors.extend(warm.errors)
    return tally


# --- the runs -----------------------------------------------------------------------------------------


@dataclass
class Step:
    mode: str
    viewers: int
    tally: Tally
    seconds: float
    server_cpu: float
    bench_cpu: float

    @property
    def p95_ms(self) -> float:
        return percentile(self.tally.latencies, 0.95) * 1000

    @property
    def page_p95_ms(self) -> float:
        return percentile(self.tally.page_latencies, 0.95) * 1000

    @property
    def holds(self) -> bool:
        return not self.tally.errors and not self.tally.skipped and self.p95_ms < P95_LIMIT_MS

    @property
    def cpu_per_request_ms(self) -> float:
        return 1000 * self.server_cpu / max(1, len(self.tally.latencies))

    @property
    def cpu_per_viewer_interval_ms(self) -> float:
        """What a viewer's interval costs as the page asks it (every request it makes in one interval),
        from the CPU per request served: polls skipped by a saturated server would make it look cheaper."""
        return self.cpu_per_request_ms * (ROWS + 1 if self.mode == "rows" else 1)


def idle_cpu_rate(server: Process, seconds: float) -> float:
    """The server's CPU per second with nobody watching (its threads' and the arbiter's own upkeep):
    taken off every step's, so that a few requests are not charged with it."""
    before = process_tree_cpu(server.process.pid)
    time.sleep(seconds)
    return (process_tree_cpu(server.process.pid) - before) / seconds


BASELINE = {"rate": 0.0}


def run_step(mode: str, count: int, seconds: float, base: str, cookies: list[str], server: Process) -> Step:
    start_with = load_page(base, cookies[0])
    cpu_before, bench_before = process_tree_cpu(server.process.pid), time.process_time()
    # CPU is read around the whole step (warm-up included) and scaled to the measured window's share.
    began = time.perf_counter()
    tally = asyncio.run(watch(mode, base, cookies, count, seconds, start_with))
    elapsed = time.perf_counter() - began
    server.check_alive()
    share = seconds / elapsed
    step = Step(
        mode=mode,
        viewers=count,
        tally=tally,
        seconds=seconds,
        server_cpu=max(0.0, (process_tree_cpu(server.process.pid) - cpu_before) * share - BASELINE["rate"] * seconds),
        bench_cpu=(time.process_time() - bench_before) * share,
    )
    verdict = "holds" if step.holds else "does not hold"
    print(
        f"[live_feed] {mode:>4} x {count:>4}: p95 {step.p95_ms:6.1f} ms, {len(tally.latencies)} requests, "
        f"{tally.skipped} skipped, {len(tally.errors)} errors, server CPU {100 * step.server_cpu / seconds:.0f}%: "
        f"{verdict}",
        file=sys.stderr,
        flush=True,
    )
    for error in tally.errors[:3]:
        print(f"[live_feed]   {error}", file=sys.stderr)
    return step


def load_page(base: str, cookie: str) -> dict:
    """The list page, as a new viewer loads it: its feed URL and its live rows' own URLs."""

    async def fetch() -> str:
        parts = urlsplit(base)
        connection = Connection(parts.hostname, parts.port, cookie)
        try:
            status, body, _ = await connection.get("/", htmx=False)
        finally:
            connection.close()
        if status != 200:
            raise RuntimeError(f"the list page answered {status}")
        return body.decode()

    page = asyncio.run(fetch())
    rows = [f"{link}row" for link in LIVE_ROW_LINK.findall(page)]
    if len(rows) != ROWS:
        raise RuntimeError(f"the list page has {len(rows)} live rows, not {ROWS}")
    found = FEED_LINK.search(page)
    if found is None:
        raise RuntimeError("the list page has no live feed")
    return {"feed": html.unescape(found.group(1)), "rows": [*rows, "/alarms/badge"]}


def ramp(mode: str, steps: list[int], seconds: float, base: str, cookies: list[str], server: Process) -> list[Step]:
    done = []
    for count in steps:
        step = run_step(mode, count, seconds, base, cookies, server)
        done.append(step)
        if not step.holds:
            break
    return done


def held(steps: list[Step]) -> int:
    return max((step.viewers for step in steps if step.holds), default=0)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: its server and writer are stopped too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15, help="measured window of each step (whole intervals)")
    parser.add_argument("--idle-viewers", type=int, default=20, help="viewers when nothing changes, per-row polling")
    parser.add_argument("--idle-viewers-feed", type=int, default=200, help="viewers when nothing changes, the feed")
    parser.add_argument("--changes", type=int, default=3, help="batches of the 25 the writer moves on per interval")
    parser.add_argument("--steps-rows", default="5,10,20,40,60,80,100", help="viewer counts tried, per-row polling")
    parser.add_argument("--steps-feed", default="100,250,500,700,900", help="viewer counts tried, the feed")
    options = parser.parse_args()
    seconds = max(1, round(options.seconds / INTERVAL)) * INTERVAL
    steps_rows = [int(n) for n in options.steps_rows.split(",")]
    steps_feed = [int(n) for n in options.steps_feed.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="bench-live-feed-"))
    script = workdir / "store.py"
    script.write_text(STORE_SCRIPT)
    ids = [f"batch_{number:032x}" for number in range(1, ROWS + 1)]
    env = base_env(
        workdir / "bench.sqlite3",
        ROW_POLL_SECONDS=str(int(INTERVAL)),
        POLL_SECONDS="3600",
        LIST_PAGE_SIZE=str(ROWS),
        WEB_WORKERS="1",
        WEB_THREADS="16",
        BENCH_BATCH_IDS=json.dumps(ids),
        BENCH_CHANGES=str(options.changes),
        BENCH_INTERVAL=str(INTERVAL),
    )
    processes: list[Process] = []
    failed = True
    try:
        manage("migrate", "--noinput", env=env)
        manage("shell", "-c", f"exec(open({str(script)!r}).read())", env=env)
        password = operator_password(env)
        server = start_gunicorn("dashboard", env, workdir / "server.log")
        processes.append(server)
        cookies = []
        for _ in range(SESSIONS):
            jar = sign_in(server.url, password)
            cookies.append("; ".join(f"{name}={value}" for name, value in jar.items()))
        print(f"[live_feed] server up ({workdir}); {machine_note()}", file=sys.stderr, flush=True)

        BASELINE["rate"] = idle_cpu_rate(server, seconds)
        idle = [
            run_step("rows", options.idle_viewers, seconds, server.url, cookies, server),
            run_step("feed", options.idle_viewers_feed, seconds, server.url, cookies, server),
        ]
        writer = spawn(
            "writer",
            [PYTHON, "manage.py", "shell", "-c", f"exec(open({str(script)!r}).read())"],
            {**env, "BENCH_WRITER": "1"},
            workdir / "writer.log",
        )
        processes.append(writer)
        deadline = time.monotonic() + 30
        while "writer started" not in writer.log.read_text(errors="replace"):
            writer.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the writer did not start")
            time.sleep(0.1)
        changing = {
            "rows": ramp("rows", steps_rows, seconds, server.url, cookies, server),
            "feed": ramp("feed", steps_feed, seconds, server.url, cookies, server),
        }
        failed = False
    finally:
        for process in reversed(processes):
            process.stop()
        if failed:
            print(f"[live_feed] logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    rows_idle, feed_idle = idle
    print(
        f"\nOne server process (gunicorn gthread, 1 worker x 16 threads) watched on a page of {ROWS} live rows, "
        f"every {INTERVAL:g} s; {seconds:g} s windows ({machine_note()})"
    )
    print(
        f"\n1. Nothing changed: {options.idle_viewers} viewers polling rows, {options.idle_viewers_feed} on the feed; "
        f"the server's own upkeep with nobody watching ({1000 * BASELINE['rate']:.1f} ms CPU/s) taken off"
    )
    header = (
        f"{'way':<6} {'requests/viewer/interval':>24} {'skipped':>7} {'CPU ms/request':>14} "
        f"{'CPU ms/viewer/interval':>22} {'p95 ms':>7} {'answers':>22}"
    )
    print(header)
    print("-" * len(header))
    for step in idle:
        asked = ROWS + 1 if step.mode == "rows" else 1
        answers = ", ".join(f"{status}: {count}" for status, count in sorted(step.tally.statuses.items()))
        print(
            f"{step.mode:<6} {asked:>24} {step.tally.skipped:>7} {step.cpu_per_request_ms:>14.2f} "
            f"{step.cpu_per_viewer_interval_ms:>22.2f} {step.p95_ms:>7.1f} {answers:>22}"
        )
    # Either can read 0 on a tiny run (--idle-viewers-feed 2: a clock tick's worth of CPU, less the upkeep).
    rows_cost, feed_cost = rows_idle.cpu_per_viewer_interval_ms, feed_idle.cpu_per_viewer_interval_ms
    ratio = feed_cost / rows_cost if rows_cost else float("nan")
    share = f"1/{1 / ratio:.0f}" if ratio else "0"
    print(f"feed / rows CPU per viewer per interval: {ratio:.3f} ({share}; goal <= 1/20)")

    print(f"\n2. {options.changes} of the {ROWS} batches change every interval: viewers a step holds (p95 < 100 ms)")
    header = (
        f"{'way':<6} {'viewers':>7} {'p50 ms':>7} {'p95 ms':>7} {'page p95 ms':>11} {'req/s':>7} {'skipped':>7} "
        f"{'errors':>6} {'rows sent/answer':>16} {'server CPU':>10} {'bench CPU':>9} {'holds':>5}"
    )
    print(header)
    print("-" * len(header))
    for mode in ("rows", "feed"):
        for step in changing[mode]:
            tally = step.tally
            answers = tally.statuses[200]
            sent = f"{tally.rows_sent / answers:.1f}" if mode == "feed" and answers else "-"
            print(
                f"{mode:<6} {step.viewers:>7} {percentile(tally.latencies, 0.5) * 1000:>7.1f} {step.p95_ms:>7.1f} "
                f"{step.page_p95_ms:>11.1f} {len(tally.latencies) / seconds:>7.1f} {tally.skipped:>7} "
                f"{len(tally.errors):>6} {sent:>16} {100 * step.server_cpu / seconds:>9.0f}% "
                f"{100 * step.bench_cpu / seconds:>8.0f}% {'yes' if step.holds else 'no':>5}"
            )
    rows_held, feed_held = held(changing["rows"]), held(changing["feed"])
    last_feed = changing["feed"][-1]
    more = " (the largest step tried: it may hold more)" if last_feed.holds else ""
    print(
        f"viewers held: rows {rows_held}, feed {feed_held}{more}; ratio "
        f"{feed_held / rows_held if rows_held else float('inf'):.1f}x (goal >= 500 viewers)"
    )
    print(
        "p95: request sent -> last byte; page p95: from the interval's due time until the page is current "
        f"(all its row polls answered, or the feed's answer); skipped: polls due while the last was in flight; "
        f"rows: {ROWS} row polls + the header badge per interval; feed: one request"
    )


if __name__ == "__main__":
    main()
