"""What the benches share: loopback ports, manage.py, gunicorn and poller processes, percentiles.

Every process runs on 127.0.0.1 only, with the environment of `base_env` (production settings:
DEBUG=0, the simulator's accounts, no real key, no DATABASE_URL or REDIS_URL from the caller), and
is stopped by its own process id. gunicorn gets `--no-control-socket`, so a bench never touches the
control socket of another gunicorn on the machine.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
HOST = "127.0.0.1"
START_ATTEMPTS = 3  # a free port can be taken by someone else between probing and binding
CALLER_VARIABLES = (
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "BATCH_ACCOUNTS_FILE",
    "DATABASE_URL",
    "REDIS_URL",
    "SIMULATOR_BASE_URL",
    "ACCESS_LOG",
    "DJANGO_SETTINGS_MODULE",
    "WEB_WORKERS",
    "WEB_THREADS",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def base_env(sqlite_path: Path, **overrides: str) -> dict[str, str]:
    """A manage.py or gunicorn subprocess's environment: production settings on `sqlite_path`."""
    env = {name: value for name, value in os.environ.items() if name not in CALLER_VARIABLES}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "SQLITE_PATH": str(sqlite_path),
            "SIMULATOR_ENABLED": "1",
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-" + "x" * 50,
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 600) -> str:
    """`manage.py ARGS`: its stdout, or RuntimeError with the end of its stderr."""
    done = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def operator_password(env: dict[str, str]) -> str:
    """(Re)create the operator user; its fresh password."""
    return manage("ensure_operator", env=env).split("password:")[1].split()[0]


@dataclass
class Process:
    """A subprocess of the bench (in a session of its own), stopped by its id."""

    name: str
    process: subprocess.Popen = field(repr=False)
    log: Path
    url: str = ""

    def stop(self, timeout: float = 25) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only its own children
            self.process.wait(timeout=5)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited {self.process.returncode}:\n{self.tail()}")


def spawn(name: str, command: list[str], env: dict[str, str], log: Path) -> Process:
    with log.open("a") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Process(name=name, process=process, log=log)


def start_gunicorn(name: str, env: dict[str, str], log: Path, *, timeout: float = 60) -> Process:
    """The production server (`gunicorn --config python:dashboard.gunicorn dashboard.wsgi`) on a
    free loopback port, answering /healthz before this returns."""
    command = [str(BIN / "gunicorn"), "--config", "python:dashboard.gunicorn", "--no-control-socket", "dashboard.wsgi"]
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        url = f"http://{HOST}:{port}"
        server = spawn(name, command, {**env, "HOST": HOST, "PORT": str(port)}, log)
        server.url = url
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and server.process.poll() is None:
            # Only once gunicorn says it holds the port: an answer before could come from someone else.
            if f"Listening at: {url} ({server.process.pid})" in log.read_text(errors="replace"):
                try:
                    if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                        return server
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        server.stop()
        if attempt == START_ATTEMPTS - 1:
            raise RuntimeError(f"{name} (gunicorn) did not answer /healthz on {url}:\n{server.tail()}")
    raise AssertionError("unreachable")


def start_poller(env: dict[str, str], log: Path, owner: str) -> Process:
    """`manage.py poll`, as `make run` starts it next to the web server."""
    return spawn("poller", [PYTHON, "manage.py", "poll", "--owner", owner], env, log)


def sign_in(base: str, password: str, *, username: str = "operator") -> httpx.Cookies:
    """Sign in as a browser does (login form, CSRF cookie); the session's cookies."""
    with httpx.Client(base_url=base, timeout=60) as client:
        client.get("/login/")
        answer = client.post(
            "/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
        )
        if answer.status_code != 302 or "sessionid" not in client.cookies:
            raise RuntimeError(f"sign-in failed: HTTP {answer.status_code}")
        return httpx.Cookies(client.cookies)


# A list page's one live request (templates/batches/list.html, partial "feed"): the URL it polls with
# its cursor, and how often. Each answer of 200 carries the element again with the next cursor.
FEED_LINK = re.compile(r'id="live-feed"[^>]*?hx-get="([^"]+)"[^>]*?hx-trigger="every (\d+(?:\.\d+)?)s', re.S)
# A list row the feed watches (not ended): its <tr> carries data-live.
LIVE_ROW = re.compile(r'<tr id="row-[^"]+"[^>]*? data-live[\s>]')


def timed(call: Callable[[], object], count: int, warm_up: int) -> tuple[list[float], list[float]]:
    """Milliseconds per call: wall-clock, and this thread's CPU time (what the machine's other load
    does not add to; the request runs on this thread, its SQLite queries included)."""
    for _ in range(warm_up):
        call()
    wall, cpu = [], []
    for _ in range(count):
        started, used = time.perf_counter(), time.thread_time()
        call()
        cpu.append((time.thread_time() - used) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    return wall, cpu


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants (gunicorn's workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def machine_note() -> str:
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}"
