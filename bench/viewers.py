"""How upstream load grows with the number of people watching the dashboard.

Starts the dashboard on the embedded simulator (its own SQLite file and port), then for 1, 5 and
25 simulated viewers has each one open the list page and poll every live row for a while, as the
browser does. Upstream calls are counted from the server's access log (every /simulator/ request
is a call the dashboard made upstream). Prints calls per viewer-poll and the ratio to one viewer.

    make bench            # or: .venv/bin/python bench/viewers.py --seconds 12
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(*args: str, env: dict) -> str:
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def signed_in(base: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30, follow_redirects=True)
    client.get("/login/")
    client.post(
        "/login/",
        data={"username": "operator", "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
    )
    return client


def viewer(
    base: str, password: str, seconds: float, poll_every: float, polls: list[int], stop: threading.Event
) -> None:
    client = signed_in(base, password)
    page = client.get("/").text
    rows = re.findall(r'hx-get="([^"]+/row)" hx-trigger="every', page)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        started = time.monotonic()
        for row in rows:
            client.get(row, headers={"HX-Request": "true"})
            polls[0] += 1
        time.sleep(max(0.0, poll_every - (time.monotonic() - started)))


def upstream_calls(log: Path) -> int:
    return sum(
        1
        for line in log.read_text(errors="replace").splitlines()
        if '"GET /simulator/' in line or '"POST /simulator/' in line
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--viewers", default="1,5,25")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    port = free_port()
    env = {
        **os.environ,
        "SQLITE_PATH": str(workdir / "bench.sqlite3"),
        "PORT": str(port),
        "ROW_POLL_SECONDS": "3",
        # Over HTTP to the same server, not in process, so each upstream call shows in the access log.
        "SIMULATOR_BASE_URL": f"http://127.0.0.1:{port}/simulator",
    }
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "BATCH_ACCOUNTS_FILE"):
        env.pop(name, None)
    manage("migrate", "--noinput", env=env)
    password = manage("ensure_operator", env=env).split("password:")[1].split()[0]
    log = workdir / "server.log"
    results = []
    for count in [int(n) for n in options.viewers.split(",")]:
        manage("seed_demo", env=env)
        with log.open("w") as out:
            server = subprocess.Popen(
                [PYTHON, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    httpx.get(base + "/login/", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            before = upstream_calls(log)
            polls = [0]
            stop = threading.Event()
            threads = [
                threading.Thread(target=viewer, args=(base, password, options.seconds, 3.0, polls, stop))
                for _ in range(count)
            ]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            calls = upstream_calls(log) - before
            results.append((count, polls[0], calls, elapsed))
        finally:
            server.terminate()
            server.wait()

    base_rate = results[0][2] / results[0][3]
    print(
        f"{'viewers':>8} {'row polls':>10} {'upstream calls':>15} {'calls/s':>8} {'calls per poll':>15} "
        f"{'calls/s vs 1 viewer':>20}"
    )
    for count, polls, calls, elapsed in results:
        rate = calls / elapsed
        print(
            f"{count:>8} {polls:>10} {calls:>15} {rate:>8.2f} {calls / max(polls, 1):>15.3f} {rate / base_rate:>19.2f}x"
        )
    print(f"(each run {options.seconds:g} s; rows poll every 3 s; upstream answers shared for UPSTREAM_CACHE_SECONDS)")


if __name__ == "__main__":
    main()
