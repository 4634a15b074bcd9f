"""Row latency under load: the production server (gunicorn) against Django's runserver.

For each server, on its own fresh SQLite file and loopback port: migrate, seed the simulator's demo
batches, start the server, create enough long-running batches through the simulator's API with the
official SDKs (`x-sim-processing-seconds: 3600`, so every row on the first list page stays live),
start the poller (`manage.py poll`, as `make run` does; pages read only what it stores) and wait for
its first cycle to store them, then let N simulated viewers watch: each signs in, loads the list
page once, and polls each of its live rows every ROW_POLL_SECONDS with `HX-Request: true`, as htmx
does. Viewers start staggered
over one poll interval. A viewer is one httpx.AsyncClient with at most 6 connections, as a browser
has per host; a row whose previous poll is still in flight skips its turn (as htmx drops it).

Row latency is measured from the moment the request leaves on a connection to the last byte of the
answer, so it is the server's time (its queueing included) and not the client's wait for one of its
6 connections; "p95 queued" adds that wait, which is what the person in front of the browser sees.

    make bench            # or: .venv/bin/python bench/server_load.py --seconds 20 --only gunicorn

The embedded simulator answers in the processes that call it (here only the poller: a row poll
reads the store). "server CPU" is the server's (all its workers), "poller CPU" the poller's (with
the simulator in it), "others CPU" the rest of the machine's busy time.

Every loop is bounded by the deadline; servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import process_tree_cpu

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
HOST = "127.0.0.1"
BROWSER_CONNECTIONS = 6
ROW_LINK = re.compile(r'hx-get="([^"]+/row)" hx-trigger="every (\d+(?:\.\d+)?)s"')
LONG_RUNNING = {"x-sim-processing-seconds": "3600"}
CLIENT_TIMEOUT = httpx.Timeout(30.0, pool=60.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def manage(*args: str, env: dict) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


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
    latencies: list[float] = field(default_factory=list)  # request sent -> last byte, seconds
    queued: list[float] = field(default_factory=list)  # poll due -> last byte, seconds
    served: int = 0  # every answered request, sign-in and list page included
    retried: int = 0  # sent again after the server closed a kept-alive connection under it
    errors: list[str] = field(default_factory=list)
    sign_in: list[float] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors.append(what)


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


async def sign_in(client: httpx.AsyncClient, password: str, tally: Tally) -> str | None:
    """Sign in and load the list page; its HTML, or None on failure."""
    started = time.perf_counter()
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
    page, _ = await timed_get(client, "/", tally)
    tally.sign_in.append(time.perf_counter() - started)
    return None if page is None or page.status_code != 200 else page.text


async def poll_row(
    client: httpx.AsyncClient, url: str, every: float, first: float, deadline: float, tally: Tally
) -> None:
    due = first
    while due < deadline:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        response, latency = await timed_get(client, url, tally, headers={"HX-Request": "true"})
        if response is not None:
            tally.latencies.append(latency)
            tally.queued.append(time.perf_counter() - due)
            if response.status_code == 286:  # the batch ended: htmx stops polling this row
                return
        due += every
        while due < time.perf_counter():  # a poll still in flight when the next was due: that one is dropped
            due += every


async def viewer(
    base: str,
    password: str,
    rows: int,
    start_at: float,
    signed_in: asyncio.Future,
    go: asyncio.Event,
    polling: dict,
    offset: float,
    tally: Tally,
) -> None:
    limits = httpx.Limits(max_connections=BROWSER_CONNECTIONS, max_keepalive_connections=BROWSER_CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT, limits=limits) as client:
        links: list[tuple[str, str]] = []
        try:
            await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
            page = await sign_in(client, password, tally)
            links = ROW_LINK.findall(page or "")[:rows]
            if page is not None and len(links) < rows:
                tally.error(f"list page has {len(links)} live rows, expected {rows}")
        finally:
            signed_in.set_result(None)
        await go.wait()  # everybody is in: the measured window starts together
        start, deadline = polling["start"], polling["deadline"]
        await asyncio.gather(
            *(poll_row(client, url, float(every), start + offset, deadline, tally) for url, every in links)
        )


async def load(
    base: str,
    password: str,
    viewers: int,
    rows: int,
    seconds: float,
    poll_every: float,
    server_pid: int,
    poller_pid: int,
) -> dict:
    tally = Tally()
    polling: dict = {}
    go = asyncio.Event()
    loop = asyncio.get_running_loop()
    signed_in = [loop.create_future() for _ in range(viewers)]
    begin = time.perf_counter()
    # Sign-ins arrive 0.1 s apart (each is a deliberately slow password hash on the server); once
    # all are in, viewer i starts polling i/viewers of a poll interval after the window opens.
    tasks = [
        asyncio.create_task(
            viewer(base, password, rows, begin + i * 0.1, signed_in[i], go, polling, i * poll_every / viewers, tally)
        )
        for i in range(viewers)
    ]
    async with asyncio.timeout(viewers * 0.1 + 120):
        await asyncio.gather(*signed_in)
    sign_in_seconds = time.perf_counter() - begin
    polling["start"] = time.perf_counter()
    polling["deadline"] = polling["start"] + seconds
    go.set()
    served_before, errors_before = tally.served, len(tally.errors)
    cpu_before, server_cpu_before, busy_before = (
        time.process_time(),
        process_tree_cpu(server_pid),
        machine_busy_seconds(),
    )
    poller_cpu_before = process_tree_cpu(poller_pid)
    async with asyncio.timeout(seconds + 60):
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - polling["start"]
    server_cpu = process_tree_cpu(server_pid) - server_cpu_before
    poller_cpu = process_tree_cpu(poller_pid) - poller_cpu_before
    bench_cpu = time.process_time() - cpu_before
    others_cpu = max(0.0, machine_busy_seconds() - busy_before - server_cpu - bench_cpu - poller_cpu)
    return {
        "tally": tally,
        "elapsed": elapsed,
        "sign_in_seconds": sign_in_seconds,
        "window_served": tally.served - served_before,
        "window_errors": len(tally.errors) - errors_before,
        "bench_cpu": bench_cpu,
        "server_cpu": server_cpu,
        "poller_cpu": poller_cpu,
        "others_cpu": others_cpu,
    }


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# --- one server ----------------------------------------------------------------------------


def server_env(options: argparse.Namespace, sqlite_path: Path, port: int) -> dict:
    env = {
        **os.environ,
        "SQLITE_PATH": str(sqlite_path),
        "HOST": HOST,
        "PORT": str(port),
        "DEBUG": "0",
        "ROW_POLL_SECONDS": "3",
        "LIST_PAGE_SIZE": str(max(25, options.rows)),
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
    password = manage("ensure_operator", env=env).split("password:")[1].split()[0]
    return template, password


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
        create_live_batches(base, max(25, options.rows))
        poller = start_poller(env, workdir / f"{name}-poller.log")
        print(
            f"[{name}] {server.description}: {options.viewers} viewers x {options.rows} rows x {options.seconds:g} s",
            file=sys.stderr,
            flush=True,
        )
        result = asyncio.run(
            load(base, password, options.viewers, options.rows, options.seconds, 3.0, server.process.pid, poller.pid)
        )
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
        "polls": len(tally.latencies),
        "errors": len(tally.errors),
        "retried": tally.retried,
        "p50": percentile(tally.latencies, 0.50) * 1000,
        "p95": percentile(tally.latencies, 0.95) * 1000,
        "p99": percentile(tally.latencies, 0.99) * 1000,
        "p95_queued": percentile(tally.queued, 0.95) * 1000,
        "rate": result["window_served"] / result["elapsed"],
        "sign_in": result["sign_in_seconds"],
        "server_cpu": 100 * result["server_cpu"] / result["elapsed"],
        "bench_cpu": 100 * result["bench_cpu"] / result["elapsed"],
        "poller_cpu": 100 * result["poller_cpu"] / result["elapsed"],
        "others_cpu": 100 * result["others_cpu"] / result["elapsed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="measured polling window per server")
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--rows", type=int, default=25, help="live rows each viewer polls")
    parser.add_argument("--only", choices=("gunicorn", "runserver"), help="measure one server only")
    options = parser.parse_args()
    if options.viewers < 1 or options.rows < 1 or options.seconds <= 0:
        parser.error("--viewers, --rows and --seconds must be positive")

    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    names = [options.only] if options.only else ["gunicorn", "runserver"]
    template, password = prepare_database(options, workdir)
    results = [measure(name, options, workdir, template, password) for name in names]

    reference = next((r["p95"] for r in results if r["name"] == "runserver"), None)
    print(
        f"\n{options.viewers} viewers x {options.rows} live rows, polled every 3 s for {options.seconds:g} s "
        f"({os.cpu_count()} CPUs; latency = request sent -> last byte)"
    )
    if max(r["others_cpu"] for r in results) > 20:
        print(
            "note: other processes used the CPUs during the run (see 'others CPU'), so these figures are "
            "pessimistic; run it again on a quiet machine"
        )
    header = (
        f"{'server':<10} {'requests':>9} {'errors':>6} {'retried':>7} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>7} "
        f"{'p95 vs runserver':>16} {'p95 queued':>10} {'sign-in s':>9} "
        f"{'server CPU':>10} {'bench CPU':>9} {'poller CPU':>10} {'others CPU':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = f"{r['p95'] / reference:.2f}x" if reference else "n/a"
        print(
            f"{r['name']:<10} {r['served']:>9} {r['errors']:>6} {r['retried']:>7} "
            f"{r['p50']:>8.1f} {r['p95']:>8.1f} {r['p99']:>8.1f} "
            f"{r['rate']:>7.1f} {ratio:>16} {r['p95_queued']:>10.1f} {r['sign_in']:>9.1f} "
            f"{r['server_cpu']:>9.0f}% {r['bench_cpu']:>8.0f}% {r['poller_cpu']:>9.0f}% {r['others_cpu']:>9.0f}%"
        )
    for r in results:
        print(f"  {r['name']}: {r['description']}; {r['polls']} row polls")
    print(
        "requests: every answered request (sign-ins and list pages included); req/s: during the polling window; "
        f"p95 queued: from the poll's due time, with the wait for one of a browser's {BROWSER_CONNECTIONS} connections"
    )
    if any(r["errors"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
