"""Live-page latency under load: the production server (gunicorn) against Django's runserver.

For each server, on its own fresh SQLite file and loopback port: migrate, seed the simulator's demo
batches, start the server, create --live-rows long-running batches through the simulator's API with
the official SDKs (`x-sim-processing-seconds: 3600`, so every row on the first list page stays live),
start the poller (`manage.py poll`, as `make run` does; pages read only what it stores) and wait for
its first cycle to store them, then let N simulated viewers watch the list page as a browser does now.
--sessions sessions sign in first (signing in is a deliberately slow password hash, and the server's
cost per request does not depend on whose session it is); the viewers are spread over them. Each
viewer loads its own list page and its summary box (`/summary`, once, with `HX-Request: true`),
checks that the page has its feed and --live-rows live rows, then polls the page's one live request,
its feed (`/?feed=<cursor>`, dashboard/web/live.py), every ROW_POLL_SECONDS with `HX-Request: true`:
204 when nothing changed, 200 with changed rows and the feed element again with a new cursor, which
the viewer follows from then on. A poll due while the previous one is still in flight is skipped (as
htmx drops it) and counted. Rows the page shows without a stored batch still poll their own `/row`
(none here when the poller has stored every batch). Viewers start staggered over one poll interval.
A viewer is one httpx.AsyncClient with at most 6 connections, as a browser has per host.

Latency is measured from the moment the request leaves on a connection to the last byte of the
answer, so it is the server's time (its queueing included) and not the client's wait for one of its
6 connections; "p95 queued" counts from the poll's due time, which is what the person in front of
the browser sees.

    make bench            # or: .venv/bin/python bench/server_load.py --seconds 20 --only gunicorn

The embedded simulator answers in the processes that call it (here only the poller: the feed reads
the store). "server CPU" is the server's (all its workers), "poller CPU" the poller's (with the
simulator in it), "others CPU" the rest of the machine's busy time.

Every loop is bounded by the deadline; servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import (
    FEED_LINK,
    HOST,
    LIVE_ROW,
    PYTHON,
    ROOT,
    free_port,
    machine_note,
    manage,
    operator_password,
    percentile,
    process_tree_cpu,
)

BIN = Path(PYTHON).parent
BROWSER_CONNECTIONS = 6
POLL_SECONDS = 3  # ROW_POLL_SECONDS in the servers: the feed's interval
PAGE_LOADS_AT_ONCE = 8
HTMX = {"HX-Request": "true"}
# A row shown without a stored batch still polls itself (templates/batches/list.html), not through the feed.
ROW_LINK = re.compile(r'hx-get="([^"]+/row)" hx-trigger="every (\d+(?:\.\d+)?)s"')
LONG_RUNNING = {"x-sim-processing-seconds": "3600"}
CLIENT_TIMEOUT = httpx.Timeout(30.0, pool=60.0)


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used so far (every core), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    )
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


# --- the server ----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    env: dict
    base: str
    log: Path
    process: subprocess.Popen | None = None
    description: str = ""

    def start(self) -> None:
        if self.name == "gunicorn":
            command = [
                str(BIN / "gunicorn"),
                "--config",
                "python:dashboard.gunicorn",
                "--no-control-socket",  # never the control socket of another gunicorn on this machine
                "dashboard.wsgi",
            ]
            workers = self.env.get("WEB_WORKERS") or ("2" if self.env.get("REDIS_URL") else "1")
            threads = self.env.get("WEB_THREADS") or "16"
            self.description = f"gunicorn gthread, {workers} worker(s) x {threads} threads"
        else:
            command = [PYTHON, "manage.py", "runserver", "--noreload", self.base.removeprefix("http://")]
            self.description = "runserver --noreload (a thread per connection)"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.tail()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer /healthz within 30 s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def create_live_batches(base: str, count: int) -> None:
    """`count` batches that stay live for an hour, spread over the simulator's demo accounts."""
    import anthropic
    import openai

    keys = [("anthropic", "sk-ant-sim-ops"), ("anthropic", "sk-ant-sim-research")]
    keys += [("openai", "sk-sim-ops"), ("openai", "sk-sim-research")]
    for i in range(count):
        provider, key = keys[i % len(keys)]
        if provider == "anthropic":
            with anthropic.Anthropic(api_key=key, base_url=f"{base}/simulator/anthropic", max_retries=0) as client:
                client.messages.batches.create(
                    requests=[
                        {
                            "custom_id": f"load-{i}-{n}",
                            "params": {
                                "model": "claude-sonnet-4-5",
                                "max_tokens": 64,
                                "messages": [{"role": "user", "content": f"Question {n}"}],
                            },
                        }
                        for n in range(20)
                    ],
                    extra_headers=LONG_RUNNING,
                )
        else:
            lines = [
                (
                    f'{{"custom_id": "load-{i}-{n}", "method": "POST", "url": "/v1/chat/completions", "body": '
                    f'{{"model": "gpt-4.1-mini", "messages": [{{"role": "user", "content": "Question {n}"}}]}}}}'
                )
                for n in range(20)
            ]
            with openai.OpenAI(api_key=key, base_url=f"{base}/simulator/openai/v1", max_retries=0) as client:
                upload = client.files.create(file=(f"load-{i}.jsonl", "\n".join(lines).encode()), purpose="batch")
                client.batches.create(
                    input_file_id=upload.id,
                    endpoint="/v1/chat/completions",
                    completion_window="24h",
                    metadata={"job": f"load-{i}"},
                    extra_headers=LONG_RUNNING,
                )


# --- the viewers ---------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # feed and row polls: request sent -> last byte, seconds
    queued: list[float] = field(default_factory=list)  # poll due -> last byte, seconds
    feed_answers: Counter = field(default_factory=Counter)  # feed polls answered, by status
    row_polls: int = 0  # polls of rows shown without a stored batch
    skipped: int = 0  # polls due while the previous one was still in flight
    served: int = 0  # every answered request, sign-ins, list pages and summaries included
    retried: int = 0  # sent again after the server closed a kept-alive connection under it
    errors: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors.append(what)


@dataclass
class Page:
    """What a loaded list page polls: its feed (URL with the cursor, interval) and its unstored rows."""

    feed: str
    every: float
    unstored_rows: list[tuple[str, str]]


async def timed_get(client: httpx.AsyncClient, url: str, tally: Tally, **kwargs) -> tuple[httpx.Response | None, float]:
    """GET, returning the response and the seconds from its first byte sent to its last byte read.

    A request that fails on a kept-alive connection before any answer arrived (the server closed
    it as idle just as it was reused) is sent again once on a fresh one, as browsers do; counted.
    """
    for attempt in (1, 2):
        events: list[tuple[str, float]] = []

        async def trace(event: str, info: dict, events: list = events) -> None:
            if event.startswith(("connection.connect_tcp.", "http11.send_request_headers.", "http11.receive_response")):
                events.append((event, time.perf_counter()))

        try:
            response = await client.get(url, extensions={"trace": trace}, **kwargs)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as error:
            reused = not any(name.startswith("connection.connect_tcp.") for name, _ in events)
            answered = any(name.startswith("http11.receive_response_headers.complete") for name, _ in events)
            if attempt == 1 and reused and not answered:
                tally.retried += 1
                continue
            tally.error(f"GET {url}: {type(error).__name__}: {error}")
            return None, 0.0
        except httpx.HTTPError as error:
            tally.error(f"GET {url}: {type(error).__name__}: {error}")
            return None, 0.0
        done = time.perf_counter()
        tally.served += 1
        if not 200 <= response.status_code < 300:
            tally.error(f"GET {url}: HTTP {response.status_code}")
        return response, done - (events[0][1] if events else done)
    raise AssertionError("unreachable")


async def sign_in(base: str, password: str, tally: Tally) -> httpx.Cookies | None:
    """Sign in as a browser does (login form, CSRF cookie); the session's cookies, or None on failure."""
    async with httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT) as client:
        response, _ = await timed_get(client, "/login/", tally)
        if response is None:
            return None
        try:
            posted = await client.post(
                "/login/",
                data={"username": "operator", "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
            )
        except (httpx.HTTPError, KeyError) as error:
            tally.error(f"POST /login/: {type(error).__name__}: {error}")
            return None
        tally.served += 1
        if posted.status_code != 302 or "sessionid" not in client.cookies:
            tally.error(f"POST /login/: HTTP {posted.status_code}, not signed in")
            return None
        return httpx.Cookies(client.cookies)


async def open_page(client: httpx.AsyncClient, live_rows: int, tally: Tally) -> Page | None:
    """Load the list page and its summary box, as a browser does; what the page then polls, or None."""
    page, _ = await timed_get(client, "/", tally)
    if page is None or page.status_code != 200:
        return None
    await timed_get(client, "/summary", tally, headers=HTMX)
    feed = FEED_LINK.search(page.text)
    if feed is None:
        tally.error("list page has no live feed")
        return None
    live = len(LIVE_ROW.findall(page.text))
    if live != live_rows:
        tally.error(f"list page has {live} live rows, expected {live_rows}")
    return Page(html.unescape(feed.group(1)), float(feed.group(2)), ROW_LINK.findall(page.text))


def next_due(due: float, every: float, deadline: float, tally: Tally) -> float:
    """The next poll's due time: those that fell due while the last one was in flight are skipped."""
    due += every
    while due < time.perf_counter():
        if due < deadline:
            tally.skipped += 1
        due += every
    return due


async def poll_feed(
    client: httpx.AsyncClient, url: str, every: float, first: float, deadline: float, tally: Tally
) -> None:
    due = first
    while due < deadline:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        response, latency = await timed_get(client, url, tally, headers=HTMX)
        if response is not None:
            tally.latencies.append(latency)
            tally.queued.append(time.perf_counter() - due)
            tally.feed_answers[response.status_code] += 1
            if response.status_code == 200:
                feed = FEED_LINK.search(response.text)
                if feed is None:  # htmx would have swapped the feed element away: the page stops watching
                    tally.error(f"GET {url}: a 200 answer without the live-feed element")
                    return
                url = html.unescape(feed.group(1))
        due = next_due(due, every, deadline, tally)


async def poll_row(
    client: httpx.AsyncClient, url: str, every: float, first: float, deadline: float, tally: Tally
) -> None:
    due = first
    while due < deadline:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        response, latency = await timed_get(client, url, tally, headers=HTMX)
        if response is not None:
            tally.latencies.append(latency)
            tally.queued.append(time.perf_counter() - due)
            tally.row_polls += 1
            if response.status_code == 286:  # the batch ended: htmx stops polling this row
                return
        due = next_due(due, every, deadline, tally)


async def viewer(
    base: str,
    cookies: httpx.Cookies,
    live_rows: int,
    loads: asyncio.Semaphore,
    ready: asyncio.Future,
    go: asyncio.Event,
    window: dict,
    share: float,
    tally: Tally,
) -> None:
    """One browser tab on the list page; `share` (0 to 1) of a poll interval is its offset in the window."""
    limits = httpx.Limits(max_connections=BROWSER_CONNECTIONS, max_keepalive_connections=BROWSER_CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT, limits=limits, cookies=cookies) as client:
        page = None
        try:
            async with loads:
                page = await open_page(client, live_rows, tally)
        finally:
            ready.set_result(None)
        await go.wait()  # every viewer has its page: the measured window starts together
        if page is None:
            return
        first, deadline = window["start"] + share * page.every, window["deadline"]
        await asyncio.gather(
            poll_feed(client, page.feed, page.every, first, deadline, tally),
            *(poll_row(client, url, float(every), first, deadline, tally) for url, every in page.unstored_rows),
        )


async def load(options: argparse.Namespace, base: str, password: str, server_pid: int, poller_pid: int) -> dict:
    tally = Tally()
    window: dict = {}
    go = asyncio.Event()
    loop = asyncio.get_running_loop()
    begin = time.perf_counter()
    sessions = [await sign_in(base, password, tally) for _ in range(min(options.sessions, options.viewers))]
    sessions = [cookies for cookies in sessions if cookies is not None]
    if not sessions:
        raise RuntimeError(f"no session could sign in: {tally.errors[:3]}")
    # Pages load a few at a time (each renders the whole list): as many browsers opening it, not a burst.
    loads = asyncio.Semaphore(PAGE_LOADS_AT_ONCE)
    ready = [loop.create_future() for _ in range(options.viewers)]
    tasks = [
        asyncio.create_task(
            viewer(
                base,
                sessions[i % len(sessions)],
                options.live_rows,
                loads,
                ready[i],
                go,
                window,
                i / options.viewers,
                tally,
            )
        )
        for i in range(options.viewers)
    ]
    async with asyncio.timeout(options.viewers * 0.5 + 120):
        await asyncio.gather(*ready)
    start_seconds = time.perf_counter() - begin
    window["start"] = time.perf_counter()
    window["deadline"] = window["start"] + options.seconds
    go.set()
    served_before, errors_before = tally.served, len(tally.errors)
    cpu_before, server_cpu_before, busy_before = (
        time.process_time(),
        process_tree_cpu(server_pid),
        machine_busy_seconds(),
    )
    poller_cpu_before = process_tree_cpu(poller_pid)
    async with asyncio.timeout(options.seconds + 60):
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - window["start"]
    server_cpu = process_tree_cpu(server_pid) - server_cpu_before
    poller_cpu = process_tree_cpu(poller_pid) - poller_cpu_before
    bench_cpu = time.process_time() - cpu_before
    others_cpu = max(0.0, machine_busy_seconds() - busy_before - server_cpu - bench_cpu - poller_cpu)
    return {
        "tally": tally,
        "elapsed": elapsed,
        "start_seconds": start_seconds,
        "sessions": len(sessions),
        "window_served": tally.served - served_before,
        "window_errors": len(tally.errors) - errors_before,
        "bench_cpu": bench_cpu,
        "server_cpu": server_cpu,
        "poller_cpu": poller_cpu,
        "others_cpu": others_cpu,
    }


# --- one server ----------------------------------------------------------------------------


def server_env(options: argparse.Namespace, sqlite_path: Path, port: int) -> dict:
    env = {
        **os.environ,
        "SQLITE_PATH": str(sqlite_path),
        "HOST": HOST,
        "PORT": str(port),
        "DEBUG": "0",
        "ROW_POLL_SECONDS": str(POLL_SECONDS),
        "LIST_PAGE_SIZE": str(options.live_rows),  # the first page: the long-running batches, all live
    }
    # The embedded simulator's demo accounts, in process, on SQLite: nothing real, nothing remote.
    for variable in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "BATCH_ACCOUNTS_FILE", "DATABASE_URL"):
        env.pop(variable, None)
    env.pop("SIMULATOR_BASE_URL", None)
    return env


def prepare_database(options: argparse.Namespace, workdir: Path) -> tuple[Path, str]:
    """A migrated, demo-seeded SQLite file with the operator user, copied for each server; its password."""
    template = workdir / "template.sqlite3"
    env = server_env(options, template, 0)
    manage("migrate", "--noinput", env=env)
    manage("seed_demo", env=env)
    return template, operator_password(env)


def start_poller(env: dict, log: Path) -> subprocess.Popen:
    """`manage.py poll` next to the server, as `make run` starts it; back once its first cycle has
    stored every account's batches (the long-running ones included: they were made before)."""
    with log.open("w") as out:
        poller = subprocess.Popen(
            [PYTHON, "manage.py", "poll", "--owner", "bench-server-load"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if poller.poll() is not None:
            raise RuntimeError(f"the poller exited {poller.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with sqlite3.connect(env["SQLITE_PATH"], timeout=20) as db:
            (polled,) = db.execute(
                "SELECT count(*) FROM dashboard_accountstate WHERE last_success_at IS NOT NULL"
            ).fetchone()
        db.close()
        if polled >= 4:  # the simulator's 4 demo accounts
            return poller
        time.sleep(0.2)
    stop_poller(poller)
    raise RuntimeError(f"the poller did not finish a cycle within 60 s:\n{log.read_text(errors='replace')[-3000:]}")


def stop_poller(poller: subprocess.Popen) -> None:
    if poller.poll() is None:
        poller.send_signal(signal.SIGTERM)  # it stops after its current cycle or sleep
        try:
            poller.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(poller.pid, signal.SIGKILL)
            poller.wait(timeout=5)


def fresh_copy(template: Path, target: Path) -> None:
    with sqlite3.connect(template) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    source.close()
    copy.close()


def measure(name: str, options: argparse.Namespace, workdir: Path, template: Path, password: str) -> dict:
    port = free_port()
    env = server_env(options, workdir / f"{name}.sqlite3", port)
    fresh_copy(template, Path(env["SQLITE_PATH"]))
    base = f"http://{HOST}:{port}"
    server = Server(name=name, env=env, base=base, log=workdir / f"{name}.log")
    print(f"[{name}] starting on {base} ({env['SQLITE_PATH']})", file=sys.stderr, flush=True)
    server.start()
    poller: subprocess.Popen | None = None
    try:
        create_live_batches(base, options.live_rows)
        poller = start_poller(env, workdir / f"{name}-poller.log")
        print(
            f"[{name}] {server.description}: {options.viewers} viewers on {options.sessions} sessions, "
            f"pages of {options.live_rows} live rows, {options.seconds:g} s",
            file=sys.stderr,
            flush=True,
        )
        result = asyncio.run(load(options, base, password, server.process.pid, poller.pid))
    finally:
        if poller is not None:
            stop_poller(poller)
        server.stop()
    tally: Tally = result["tally"]
    for line in tally.errors[:5]:
        print(f"[{name}] error: {line}", file=sys.stderr)
    if tally.errors:
        print(f"[{name}] server log tail:\n{server.tail(15)}", file=sys.stderr)
    return {
        "name": name,
        "description": server.description,
        "served": tally.served,
        "feed_polls": sum(tally.feed_answers.values()),
        "feed_204": tally.feed_answers[204],
        "feed_200": tally.feed_answers[200],
        "row_polls": tally.row_polls,
        "skipped": tally.skipped,
        "sessions": result["sessions"],
        "errors": len(tally.errors),
        "retried": tally.retried,
        "p50": percentile(tally.latencies, 0.50) * 1000,
        "p95": percentile(tally.latencies, 0.95) * 1000,
        "p99": percentile(tally.latencies, 0.99) * 1000,
        "p95_queued": percentile(tally.queued, 0.95) * 1000,
        "rate": result["window_served"] / result["elapsed"],
        "start": result["start_seconds"],
        "server_cpu": 100 * result["server_cpu"] / result["elapsed"],
        "bench_cpu": 100 * result["bench_cpu"] / result["elapsed"],
        "poller_cpu": 100 * result["poller_cpu"] / result["elapsed"],
        "others_cpu": 100 * result["others_cpu"] / result["elapsed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="measured polling window per server")
    parser.add_argument("--viewers", type=int, default=500, help="list pages watched, each polling its own feed")
    parser.add_argument("--sessions", type=int, default=10, help="signed-in sessions the viewers are spread over")
    parser.add_argument("--live-rows", type=int, default=25, help="live rows each viewer's list page must show")
    parser.add_argument("--only", choices=("gunicorn", "runserver"), help="measure one server only")
    options = parser.parse_args()
    if min(options.viewers, options.sessions, options.live_rows) < 1 or options.seconds <= 0:
        parser.error("--viewers, --sessions, --live-rows and --seconds must be positive")

    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    names = [options.only] if options.only else ["gunicorn", "runserver"]
    template, password = prepare_database(options, workdir)
    results = [measure(name, options, workdir, template, password) for name in names]

    reference = next((r["p95"] for r in results if r["name"] == "runserver"), None)
    print(
        f"\n{options.viewers} viewers on {min(options.sessions, options.viewers)} sessions, each on a list page of "
        f"{options.live_rows} live rows polling its feed every {POLL_SECONDS} s for {options.seconds:g} s "
        f"({machine_note()}; latency = request sent -> last byte)"
    )
    if max(r["others_cpu"] for r in results) > 20:
        print(
            "note: other processes used the CPUs during the run (see 'others CPU'), so these figures are "
            "pessimistic; run it again on a quiet machine"
        )
    header = (
        f"{'server':<10} {'requests':>9} {'errors':>6} {'retried':>7} "
        f"{'feed polls':>10} {'204':>6} {'200':>5} {'skipped':>7} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>7} "
        f"{'p95 vs runserver':>16} {'p95 queued':>10} {'start s':>7} "
        f"{'server CPU':>10} {'bench CPU':>9} {'poller CPU':>10} {'others CPU':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = f"{r['p95'] / reference:.2f}x" if reference else "n/a"
        print(
            f"{r['name']:<10} {r['served']:>9} {r['errors']:>6} {r['retried']:>7} "
            f"{r['feed_polls']:>10} {r['feed_204']:>6} {r['feed_200']:>5} {r['skipped']:>7} "
            f"{r['p50']:>8.1f} {r['p95']:>8.1f} {r['p99']:>8.1f} "
            f"{r['rate']:>7.1f} {ratio:>16} {r['p95_queued']:>10.1f} {r['start']:>7.1f} "
            f"{r['server_cpu']:>9.0f}% {r['bench_cpu']:>8.0f}% {r['poller_cpu']:>9.0f}% {r['others_cpu']:>9.0f}%"
        )
    for r in results:
        print(f"  {r['name']}: {r['description']}; {r['row_polls']} polls of rows shown without a stored batch")
    print(
        "requests: every answered request (sign-ins, list pages and summaries included); feed polls: answered "
        "in the window, 204 (nothing changed) and 200 (rows changed: the viewer follows the new cursor); "
        "skipped: polls due while the viewer's last was in flight; p50/p95/p99: feed (and row) polls; "
        "req/s: during the window; p95 queued: from the poll's due time, with the wait for one of a browser's "
        f"{BROWSER_CONNECTIONS} connections; start s: sign-ins and every viewer's page and summary, before the window"
    )
    if any(r["errors"] for r in results):
        print(f"logs kept in {workdir}")
        sys.exit(1)
    shutil.rmtree(workdir, ignore_errors=True)  # the servers' logs and database copies: some 25 MB a run


if __name__ == "__main__":
    main()
