"""Upstream calls as the number of viewers grows: viewers cost database reads only.

The stack as it is deployed, every process on 127.0.0.1 and one fresh SQLite file:
- the simulator, served over HTTP by a gunicorn process of its own with an access log: every
  /simulator/ line in it is one upstream call, whoever made it (poller or web server);
- the dashboard: gunicorn with production settings (DEBUG=0), reaching the simulator over HTTP
  (SIMULATOR_BASE_URL);
- the poller: `manage.py poll`, reaching the simulator over HTTP.
Seeded with the demo data (`manage.py seed_demo`) plus --live-per-account long-running batches
(`x-sim-processing-seconds: 3600`) in each demo account, made on the simulator's API, so rows stay live.

Then, for each N in --viewers (1, 10, 50), N signed-in viewers (each its own session, signed in
through the login form before any window) watch the list page for --seconds, as the browser does:
each loads `/`, then its header box (`/summary`, once and every 60 s) and polls the page's one live
request, its feed (`#live-feed`'s hx-get, `?feed=<cursor>`, with `HX-Request: true`) every
ROW_POLL_SECONDS, following the cursor of every 200 answer (204: nothing changed); a row the store
does not hold yet polls its own URL, as its hx-get says. Viewers start staggered over one poll
interval; a viewer is one httpx.AsyncClient with at most 6 connections, as a browser has per host,
and a poll still in flight when the next is due skips that turn (as htmx does).

Upstream calls are counted in the simulator's access log over the window. The poller calls in
bursts, one cycle every POLL_SECONDS; each window opens half a poll interval after a burst and lasts
a whole number of intervals, so every window holds the same number of the poller's cycles (no
cycle is cut by a window's edge). Requirement: the calls of every N within 5% of the 1-viewer run.

    make bench            # or: .venv/bin/python bench/viewers.py --seconds 15 --viewers 1,10
"""

from __future__ import annotations

import argparse
import asyncio
import html
import math
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import (
    FEED_LINK,
    LIVE_ROW,
    Process,
    base_env,
    machine_note,
    manage,
    operator_password,
    sign_in,
    start_gunicorn,
    start_poller,
)

# A row whose batch the store does not hold yet polls its own URL (templates/batches/list.html).
ROW_LINK = re.compile(r'hx-get="([^"]+/row)" hx-trigger="every (\d+(?:\.\d+)?)s"')
HEADER_URL = "/summary"  # the list's header box, loaded after the page and every 60 s
HEADER_EVERY = 60.0
BROWSER_CONNECTIONS = 6
LONG_RUNNING = {"x-sim-processing-seconds": "3600"}
TOLERANCE = 0.05


# --- upstream calls --------------------------------------------------------------------------------


class UpstreamLog:
    """The simulator's access log, read on from where the last look stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.kinds: Counter = Counter()

    @staticmethod
    def kind(line: str) -> str:
        """list, retrieve (GET .../batches/<id>) or other, from an access log line's request."""
        request = line.split('"')[1] if line.count('"') >= 2 else ""
        method, _, target = request.partition(" ")
        path = target.split(" ")[0].split("?")[0].rstrip("/")
        if method == "GET" and path.endswith("/batches"):
            return "list"
        if method == "GET" and "/" not in path.rpartition("/batches/")[2] and "/batches/" in path:
            return "retrieve"
        return "other"

    def read(self) -> Counter:
        """Calls so far, by kind (list, retrieve, other)."""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            line = raw.decode(errors="replace")
            if " /simulator/" in line:
                self.kinds[self.kind(line)] += 1
        return Counter(self.kinds)

    def total(self) -> int:
        return sum(self.read().values())


async def after_next_burst(log: UpstreamLog, period: float, timeout: float = 60) -> float:
    """The monotonic time half a poll interval after the poller's next burst of calls began."""
    before = log.total()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        if log.total() > before:
            return time.monotonic() + period / 2
    raise RuntimeError(f"no upstream call in {timeout:g} s: is the poller running?")


# --- the stack -------------------------------------------------------------------------------------


def create_live_batches(simulator: str, per_account: int) -> None:
    """`per_account` batches that stay live for an hour in each demo account, on the simulator's API."""
    api = f"{simulator}/simulator"
    with httpx.Client(timeout=30) as client:
        for n in range(per_account):
            for key in ("sk-ant-sim-ops", "sk-ant-sim-research"):
                answer = client.post(
                    f"{api}/anthropic/v1/messages/batches",
                    headers={"x-api-key": key, "anthropic-version": "2023-06-01", **LONG_RUNNING},
                    json={
                        "requests": [
                            {
                                "custom_id": f"viewers-{n}-{i}",
                                "params": {
                                    "model": "claude-sonnet-4-5",
                                    "max_tokens": 64,
                                    "messages": [{"role": "user", "content": f"Question {i}"}],
                                },
                            }
                            for i in range(20)
                        ]
                    },
                )
                answer.raise_for_status()
            for key in ("sk-sim-ops", "sk-sim-research"):
                auth = {"Authorization": f"Bearer {key}"}
                lines = "\n".join(
                    f'{{"custom_id": "viewers-{n}-{i}", "method": "POST", "url": "/v1/chat/completions", '
                    f'"body": {{"model": "gpt-4.1-mini", "messages": [{{"role": "user", "content": "Q{i}"}}]}}}}'
                    for i in range(20)
                )
                upload = client.post(
                    f"{api}/openai/v1/files",
                    headers=auth,
                    data={"purpose": "batch"},
                    files={"file": (f"viewers-{n}.jsonl", lines.encode(), "application/jsonl")},
                )
                upload.raise_for_status()
                answer = client.post(
                    f"{api}/openai/v1/batches",
                    headers={**auth, **LONG_RUNNING},
                    json={
                        "input_file_id": upload.json()["id"],
                        "endpoint": "/v1/chat/completions",
                        "completion_window": "24h",
                        "metadata": {"job": f"viewers-{n}"},
                    },
                )
                answer.raise_for_status()


def stored_live(sqlite_path: Path) -> int:
    with sqlite3.connect(sqlite_path, timeout=20) as db:
        (count,) = db.execute("SELECT count(*) FROM dashboard_storedbatch WHERE NOT is_ended").fetchone()
    db.close()
    return count


# --- the viewers -----------------------------------------------------------------------------------


@dataclass
class Tally:
    by_kind: Counter = field(default_factory=Counter)  # answered requests: page, header, feed, row
    changed: int = 0  # feed answers of 200: something changed (204: nothing did)
    rows_sent: int = 0  # rows in the feed's 200 answers
    ended_rows: int = 0
    dropped: int = 0  # polls due while the previous one was still in flight (htmx skips them)
    errors: list[str] = field(default_factory=list)
    live_rows: list[int] = field(default_factory=list)  # live rows on each viewer's list page


async def fetch(client: httpx.AsyncClient, url: str, kind: str, tally: Tally) -> httpx.Response | None:
    headers = {"HX-Request": "true"} if kind != "page" else {}
    for attempt in (1, 2):
        try:
            response = await client.get(url, headers=headers)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as error:
            if attempt == 1:
                continue  # a kept-alive connection closed under the request: sent again, as browsers do
            tally.errors.append(f"GET {url}: {type(error).__name__}: {error}")
            return None
        except httpx.HTTPError as error:
            tally.errors.append(f"GET {url}: {type(error).__name__}: {error}")
            return None
        if not 200 <= response.status_code < 300:
            tally.errors.append(f"GET {url}: HTTP {response.status_code}")
            return None
        tally.by_kind[kind] += 1
        return response
    raise AssertionError("unreachable")


def next_due(due: float, every: float, tally: Tally) -> float:
    """The next poll's due time; turns that passed while this poll was in flight are skipped."""
    due += every
    while due < time.monotonic():
        due += every
        tally.dropped += 1
    return due


async def poll_row(client: httpx.AsyncClient, url: str, every: float, due: float, deadline: float, tally: Tally):
    while due < deadline:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        response = await fetch(client, url, "row", tally)
        if response is not None and response.status_code == 286:  # ended: htmx stops polling the row
            tally.ended_rows += 1
            return
        due = next_due(due, every, tally)


async def poll_header(client: httpx.AsyncClient, due: float, deadline: float, tally: Tally) -> None:
    while due < deadline:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await fetch(client, HEADER_URL, "header", tally)
        due = next_due(due, HEADER_EVERY, tally)


async def poll_feed(client: httpx.AsyncClient, url: str, every: float, due: float, deadline: float, tally: Tally):
    while due < deadline:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        answer = await fetch(client, url, "feed", tally)
        if answer is not None and answer.status_code == 200:
            found = FEED_LINK.search(answer.text)
            if found is None:
                tally.errors.append("a feed answer of 200 has no feed to poll next")
                return
            url = html.unescape(found.group(1))  # the next cursor: what this page now shows
            tally.changed += 1
            tally.rows_sent += answer.text.count('<tr id="row-')
        due = next_due(due, every, tally)


async def viewer(base: str, cookies: httpx.Cookies, start_at: float, deadline: float, tally: Tally) -> None:
    limits = httpx.Limits(max_connections=BROWSER_CONNECTIONS, max_keepalive_connections=BROWSER_CONNECTIONS)
    timeout = httpx.Timeout(30.0, pool=60.0)
    async with (
        httpx.AsyncClient(base_url=base, cookies=cookies, limits=limits, timeout=timeout) as client,
        asyncio.TaskGroup() as tasks,
    ):
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        page = await fetch(client, "/", "page", tally)
        if page is None:
            return
        loaded = time.monotonic()
        tally.live_rows.append(len(LIVE_ROW.findall(page.text)))
        feed = FEED_LINK.search(page.text)
        if feed is None:
            tally.errors.append("the list page has no live feed")
            return
        tasks.create_task(poll_header(client, loaded, deadline, tally))
        for url, every in ROW_LINK.findall(page.text):
            tasks.create_task(poll_row(client, url, float(every), loaded + float(every), deadline, tally))
        url, every = html.unescape(feed.group(1)), float(feed.group(2))
        tasks.create_task(poll_feed(client, url, every, loaded + every, deadline, tally))


@dataclass
class Result:
    viewers: int
    window: float
    calls: Counter
    tally: Tally

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def served(self) -> int:
        return sum(self.tally.by_kind.values())


async def watch(base: str, sessions: list[httpx.Cookies], log: UpstreamLog, window: float, period: float) -> Result:
    """len(sessions) viewers for `window` seconds; the upstream calls of that window."""
    start = await after_next_burst(log, period)
    deadline = start + window
    tally = Tally()
    count = len(sessions)
    viewers = [
        asyncio.create_task(viewer(base, cookies, start + i * period / count, deadline, tally))
        for i, cookies in enumerate(sessions)
    ]
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    before = log.read()
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    calls = log.read() - before
    # Requests still in flight at the deadline finish; none of theirs is counted (nor should any exist).
    async with asyncio.timeout(120):
        await asyncio.gather(*viewers)
    return Result(viewers=count, window=window, calls=calls, tally=tally)


# --- main --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="measured window per N (whole poll intervals)")
    parser.add_argument("--viewers", default="1,10,50", help="the Ns, comma-separated; the first is the reference")
    parser.add_argument("--live-per-account", type=int, default=3, help="long-running batches added per demo account")
    options = parser.parse_args()
    counts = [int(n) for n in options.viewers.split(",")]
    if options.seconds <= 0 or not counts or min(counts) < 1:
        parser.error("--seconds and every N must be positive")

    period = 3.0  # POLL_SECONDS and ROW_POLL_SECONDS below
    periods = max(1, math.ceil(options.seconds / period - 1e-9))
    window = periods * period
    workdir = Path(tempfile.mkdtemp(prefix="bench-viewers-"))
    sqlite_path = workdir / "bench.sqlite3"
    env = base_env(sqlite_path, ROW_POLL_SECONDS="3", POLL_SECONDS="3")
    access_log = workdir / "simulator-access.log"
    processes: list[Process] = []
    failed = True
    try:
        started = time.monotonic()
        manage("migrate", "--noinput", env=env)
        manage("seed_demo", env=env)
        password = operator_password(env)
        simulator = start_gunicorn("simulator", {**env, "ACCESS_LOG": str(access_log)}, workdir / "simulator.log")
        processes.append(simulator)
        upstream = {**env, "SIMULATOR_BASE_URL": f"{simulator.url}/simulator"}
        app = start_gunicorn("dashboard", upstream, workdir / "dashboard.log")
        processes.append(app)
        create_live_batches(simulator.url, options.live_per_account)
        poller = start_poller(upstream, workdir / "poller.log", "bench-viewers")
        processes.append(poller)
        deadline = time.monotonic() + 60
        while stored_live(sqlite_path) < 4 * options.live_per_account:
            poller.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the poller stored no live batches in 60 s:\n{poller.tail()}")
            time.sleep(0.2)
        with ThreadPoolExecutor(max_workers=4) as pool:
            sessions = list(pool.map(lambda _: sign_in(app.url, password), range(max(counts))))
        print(
            f"[viewers] stack up in {time.monotonic() - started:.0f} s ({workdir}); {machine_note()}",
            file=sys.stderr,
            flush=True,
        )

        log = UpstreamLog(access_log)
        results = []
        for count in counts:
            result = asyncio.run(watch(app.url, sessions[:count], log, window, period))
            for process in processes:
                process.check_alive()
            print(
                f"[viewers] {count} viewers: {result.total} upstream calls, {result.served} requests served",
                file=sys.stderr,
                flush=True,
            )
            results.append(result)
        failed = any(result.tally.errors for result in results)
    finally:
        for process in reversed(processes):
            process.stop()
        if failed:
            print(f"[viewers] logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    reference = results[0].total
    print(
        f"\nUpstream calls with N viewers watching the same list page, {window:g} s each "
        f"(the feed every 3 s, the header every 60 s, poller every 3 s; {machine_note()})"
    )
    header = (
        f"{'viewers':>7} {'live rows':>9} {'pages':>6} {'headers':>7} {'feed polls':>10} {'changed':>7} "
        f"{'rows sent':>9} {'row polls':>9} {'skipped':>7} {'served':>7} "
        f"{'req/s':>6} {'errors':>6} {'upstream calls':>14} {'list/retrieve/other':>19} {'calls/s':>7} "
        f"{'vs 1st':>6} {'±5%':>4}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        tally = result.tally
        ratio = result.total / reference if reference else float("nan")
        kinds = f"{result.calls['list']}/{result.calls['retrieve']}/{result.calls['other']}"
        rows = max(tally.live_rows, default=0)
        print(
            f"{result.viewers:>7} {rows:>9} {tally.by_kind['page']:>6} {tally.by_kind['header']:>7} "
            f"{tally.by_kind['feed']:>10} {tally.changed:>7} {tally.rows_sent:>9} {tally.by_kind['row']:>9} "
            f"{tally.dropped:>7} {result.served:>7} {result.served / result.window:>6.1f} "
            f"{len(tally.errors):>6} {result.total:>14} {kinds:>19} {result.total / result.window:>7.2f} "
            f"{ratio:>5.2f}x {'ok' if abs(ratio - 1) <= TOLERANCE else 'MISS':>4}"
        )
    for result in results:
        for error in result.tally.errors[:3]:
            print(f"  {result.viewers} viewers, error: {error}")
    print(
        "feed polls: the page's one live request per interval, answered 204 (nothing changed) or 200 (changed: "
        "its rows sent); row polls: rows not stored yet; skipped: polls due while the previous one was still in "
        "flight (the server saturated)\nserved: viewer requests answered in the window (pages, headers, feed and "
        "row polls); upstream calls: /simulator/ "
        "lines of the simulator's access log in the window; vs 1st: calls / calls of the first run (target 1.00 ± 0.05)"
    )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
