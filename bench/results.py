"""Results at line rate: one 100,000-request Anthropic batch, downloaded, exported, summarized, parsed.

    .venv/bin/python bench/results.py
    .venv/bin/python bench/results.py --requests 100 --rounds 1    # small (tests/bench: that it runs)

Everything runs in this process on a throwaway SQLite database, as the large results test does
(tests/batches/test_results_large.py): the batch is made through the embedded simulator's own API and
stored by a poll; the dashboard's views are called through Django's test client, as a signed-in
operator. The simulator's answer is recorded to a file once, and a local static HTTP server (a
process of its own, on 127.0.0.1) serves that file: the *fast upstream*. While the download, the
CSV export and the summary are measured, the dashboard reads the batch's results from it over a
real socket; *direct* is the same file read from it with httpx, no dashboard in between.

Printed, as a table with each figure's baseline, the ratio to it, the target and whether it is met:
- download MB/s through the dashboard and direct (the dashboard must add under 10% to the time:
  ratio >= 0.91), and the download's memory growth (peak RSS over RSS before it, under 50 MiB);
- the simulator's own results generation (MB/s read straight from it, against the dashboard's
  forwarding of the fast upstream), and the dashboard forwarding the simulator (against it straight);
- CSV export of all lines, lines/s (>= 100,000);
- the error summary, cold (counted from upstream and stored: < 1 s) and warm (read from the store);
- parser lines/s: ours, a bare `json.loads` loop and the official Anthropic SDK's JSONL decoder.
The targets are on wall-clock time, on whatever else the machine runs (its load average is printed);
for the CSV export and the cold summary this process's CPU time (all its threads; the static server
is another process) is printed too: what they cost, whether or not the cores were shared.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOTAL = 100_000
ROUNDS = 9  # downloads and warm summaries: the best of this many runs (the rest: of 5 or 3)
MB = 1_000_000
CHUNK = 64 * 1024
HOST = "127.0.0.1"


def configure(workdir: Path) -> None:
    """Production-like settings on a database of our own, with the simulator's demo accounts only."""
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "BATCH_ACCOUNTS_FILE", "DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ.pop("SIMULATOR_BASE_URL", None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "SQLITE_PATH": str(workdir / "bench.sqlite3"),
            "SIMULATOR_ENABLED": "1",
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-" + "x" * 50,
            "LOG_LEVEL": "WARNING",
            "ALLOWED_HOSTS": "testserver,127.0.0.1",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def rss_bytes(field: str) -> int:
    """VmRSS or VmHWM (the peak since the last reset) of this process."""
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1]) * 1024
    return 0


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
    except OSError:
        return False
    return True


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def best_of(rounds: int, run: Callable[[], object]) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        value = run()
        best = min(best, time.perf_counter() - started)
    return best, value


def best_cpu_of(rounds: int, run: Callable[[], object]) -> tuple[float, float]:
    """The best wall-clock time and the best CPU time of this process (all its threads) of `rounds` runs."""
    wall = cpu = float("inf")
    for _ in range(rounds):
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        run()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    return wall, cpu


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def static_server(directory: Path) -> tuple[subprocess.Popen, str]:
    """Python's own static file server on 127.0.0.1, serving `directory`: the fast upstream."""
    import httpx

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", HOST, "--directory", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{HOST}:{port}"
    for _ in range(200):
        try:
            httpx.get(url + "/", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the static server did not start")


def make_batch(total: int) -> tuple[str, str]:
    """A `total`-request Anthropic batch made through the simulator's API, ended, and stored by a poll."""
    import httpx

    from dashboard.accounts import embedded_transport, simulator_base_url
    from dashboard.simulator.demo import ensure_demo_accounts
    from tests.factories import ANTHROPIC_KEYS, poll_store

    ensure_demo_accounts()
    headers = {"x-api-key": ANTHROPIC_KEYS["ops"], "anthropic-version": "2023-06-01"}
    requests = [
        {
            "custom_id": f"r{i:06d}",
            "params": {"model": "claude-sonnet-4-5", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]},
        }
        for i in range(total)
    ]
    base = simulator_base_url() + "/anthropic/v1/messages/batches"
    with httpx.Client(transport=embedded_transport(), timeout=300) as http:
        answer = http.post(
            base,
            content=json.dumps({"requests": requests}).encode(),
            headers={**headers, "content-type": "application/json", "x-sim-processing-seconds": "0.5"},
        )
        answer.raise_for_status()
        batch_id = answer.json()["id"]
        while http.get(f"{base}/{batch_id}", headers=headers).json()["processing_status"] != "ended":
            time.sleep(0.2)
    poll_store()
    return batch_id, f"{base}/{batch_id}/results"


class FastUpstream:
    """The dashboard's transport to the simulator, except that the batch's results come from the
    static server over a real socket (the simulator is asked for nothing else while measuring)."""

    def __init__(self, batch_id: str, file_url: str):
        import httpx

        from dashboard.accounts import embedded_transport

        self.path = f"/simulator/anthropic/v1/messages/batches/{batch_id}/results"
        self.file_url = httpx.URL(file_url)
        self.simulator = embedded_transport()
        self.socket = httpx.HTTPTransport()
        self.served = 0

    def transport(self):
        import httpx

        upstream = self

        class Routing(httpx.BaseTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                if request.method == "GET" and request.url.path == upstream.path:
                    upstream.served += 1
                    routed = httpx.Request("GET", upstream.file_url, extensions=request.extensions)
                    return upstream.socket.handle_request(routed)
                return upstream.simulator.handle_request(request)

        return Routing()


def read_direct(http, url: str, headers: dict | None = None) -> int:
    """Bytes of `url` read with the long-lived httpx client `http` (as the dashboard keeps one per account)."""
    size = 0
    with http.stream("GET", url, headers=headers) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            size += len(chunk)
    return size


def read_view(client, url: str, *, count_lines: bool = True) -> tuple[int, int]:
    """Bytes (and newlines, if asked) of a streamed answer of the dashboard, read as a server would send it."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    size = newlines = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        if count_lines:
            newlines += chunk.count(b"\n")
    response.close()
    return size, newlines


def clear_summary(account_key: str, batch_id: str) -> None:
    """Forget the batch's stored error summary: the next request counts it again (cold)."""
    from dashboard.models import ResultsSummary

    ResultsSummary.objects.filter(batch__account=account_key, batch__batch_id=batch_id).delete()


def sdk_decoder_rate(chunks: list[bytes]) -> Callable[[], int]:
    import httpx2
    from anthropic._decoders.jsonl import JSONLDecoder
    from anthropic.types.messages import MessageBatchIndividualResponse

    def run() -> int:
        decoder = JSONLDecoder(
            raw_iterator=iter(chunks), line_type=MessageBatchIndividualResponse, http_response=httpx2.Response(200)
        )
        return sum(1 for _ in decoder)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=TOTAL, help="the batch's requests (result lines)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="downloads and warm summaries: best of this many")
    options = parser.parse_args()
    total, rounds = options.requests, options.rounds
    workdir = Path(tempfile.mkdtemp(prefix="bench-results-"))
    server = None
    try:
        configure(workdir)
        import httpx
        from django.contrib.auth import get_user_model
        from django.test import Client

        from dashboard import accounts
        from dashboard.batches import results

        load_before = load_average()
        started = time.perf_counter()
        batch_id, results_url = make_batch(total)
        print(f"(setup: a {total:,}-request batch made, ended and stored in {time.perf_counter() - started:.1f} s)")
        account_key = "anthropic-ops"
        batch_url = f"/batches/{account_key}/{batch_id}"
        headers = {"x-api-key": "sk-ant-sim-ops", "anthropic-version": "2023-06-01"}

        # The simulator's own results generation, read straight from it (and recorded).
        recording = workdir / "files" / "results.jsonl"
        recording.parent.mkdir()

        with (
            httpx.Client(transport=accounts.embedded_transport(), timeout=120) as http,
            http.stream("GET", results_url, headers=headers) as response,
            recording.open("wb") as file,
        ):
            response.raise_for_status()
            for chunk in response.iter_raw():
                file.write(chunk)
        data = recording.read_bytes()
        size = len(data)
        assert data.count(b"\n") == total
        lines = data.splitlines()
        user = get_user_model().objects.create_superuser("bench", password="bench-" + "x" * 20)
        client = Client()
        client.force_login(user)

        # The simulator's results straight, and forwarded by the dashboard (the embedded simulator, as
        # `make run` has it), interleaved.
        to_simulator = httpx.Client(transport=accounts.embedded_transport(), timeout=120)
        assert read_view(client, f"{batch_url}/results/download") == (size, total)
        straight_times, via_times = [], []
        for _ in range(3):
            for run, times in (
                (lambda: read_direct(to_simulator, results_url, headers), straight_times),
                (lambda: read_view(client, f"{batch_url}/results/download", count_lines=False), via_times),
            ):
                gc.collect()
                started = time.perf_counter()
                run()
                times.append(time.perf_counter() - started)
        to_simulator.close()
        simulator_seconds, via_simulator_seconds = min(straight_times), min(via_times)

        # --- from here on, the fast upstream ---------------------------------------------------
        server, server_url = static_server(recording.parent)
        file_url = f"{server_url}/results.jsonl"
        upstream = FastUpstream(batch_id, file_url)
        accounts.embedded_transport = upstream.transport  # the dashboard's clients are made anew with it
        accounts._clients.clear()
        to_upstream = httpx.Client(timeout=60)  # made once: an SSL context alone takes milliseconds
        read_direct(to_upstream, file_url)  # warm the page cache and the server
        assert read_view(client, f"{batch_url}/results/download") == (size, total)  # checked once, not timed

        direct_times, dashboard_times, growth = [], [], []
        for _ in range(rounds):  # interleaved, so both see the same machine
            gc.collect()
            started = time.perf_counter()
            assert read_direct(to_upstream, file_url) == size
            direct_times.append(time.perf_counter() - started)
            gc.collect()
            before = rss_bytes("VmRSS")
            peak_known = reset_peak_rss()
            started = time.perf_counter()
            assert read_view(client, f"{batch_url}/results/download", count_lines=False)[0] == size  # as read_direct
            dashboard_times.append(time.perf_counter() - started)
            growth.append(rss_bytes("VmHWM") - before if peak_known else 0)
        direct_seconds, dashboard_seconds = min(direct_times), min(dashboard_times)
        to_upstream.close()

        assert read_view(client, f"{batch_url}/results/export.csv")[1] == total + 1  # the header, a row per line
        csv_seconds, csv_cpu = best_cpu_of(5, lambda: read_view(client, f"{batch_url}/results/export.csv"))

        def cold() -> None:
            clear_summary(account_key, batch_id)
            response = client.get(f"{batch_url}/results/summary")
            assert response.status_code == 200 and f"of {total} result lines" in response.content.decode()

        def warm() -> None:
            response = client.get(f"{batch_url}/results/summary")
            assert response.status_code == 200 and f"of {total} result lines" in response.content.decode()

        cold_seconds, cold_cpu = best_cpu_of(5, cold)
        warm_seconds, _ = best_of(rounds, warm)
        served = upstream.served
        assert served == 1 + rounds + 1 + 5 + 5, served  # warm summaries never went upstream

        # --- parsers, on the recorded lines in memory ------------------------------------------
        def ours() -> int:
            return sum(1 for _ in results.parse_stream("anthropic", (("", line) for line in lines)))

        def bare() -> int:
            loads = json.loads
            for line in lines:
                loads(line)
            return len(lines)

        chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        ours_seconds, _ = best_of(3, ours)
        bare_seconds, _ = best_of(3, bare)
        sdk_seconds, decoded = best_of(3, sdk_decoder_rate(chunks))
        assert decoded == total

        def rate(seconds: float) -> float:
            return size / MB / seconds

        download_direct, download_dashboard = rate(direct_seconds), rate(dashboard_seconds)
        simulator_rate, via_simulator = rate(simulator_seconds), rate(via_simulator_seconds)
        csv_rate = total / csv_seconds
        ours_rate, bare_rate, sdk_rate = total / ours_seconds, total / bare_seconds, total / sdk_seconds
        growth_mib = max(growth) / 2**20
        rows = [  # measure, value, baseline, ratio to it, target (on the ratio), met
            ("download direct (fast upstream)", f"{download_direct:,.1f} MB/s", "itself", 1.0, "", None),
            (
                "download through the dashboard",
                f"{download_dashboard:,.1f} MB/s",
                "direct",
                download_dashboard / download_direct,
                ">= 0.91",  # adds under 10% to the time: 1 / 1.1
                download_dashboard / download_direct >= 1 / 1.1,
            ),
            ("download memory growth", f"{growth_mib:,.1f} MiB", "50 MiB", growth_mib / 50, "< 1", growth_mib < 50),
            (
                "simulator results, straight",
                f"{simulator_rate:,.1f} MB/s",
                "dash. fwd",
                simulator_rate / download_dashboard,
                "",
                None,
            ),
            (
                "download through the dashboard from the simulator",
                f"{via_simulator:,.1f} MB/s",
                "simulator",
                via_simulator / simulator_rate,
                "",
                None,
            ),
            (
                "CSV export, all lines",
                f"{csv_rate:,.0f} lines/s",
                "100,000/s",
                csv_rate / 100_000,
                ">= 1",
                csv_rate >= 100_000,
            ),
            (
                "  the same, by this process's CPU time",
                f"{total / csv_cpu:,.0f} lines/s",
                "100,000/s",
                total / csv_cpu / 100_000,
                "",
                None,
            ),
            ("summary, cold (counted, stored)", f"{cold_seconds:.3f} s", "1 s", cold_seconds, "< 1", cold_seconds < 1),
            ("  the same, by this process's CPU time", f"{cold_cpu:.3f} s", "1 s", cold_cpu, "", None),
            (
                "summary, warm (from the store)",
                f"{warm_seconds * 1000:.1f} ms",
                "cold",
                warm_seconds / cold_seconds,
                "",
                None,
            ),
            ("parser: bare json.loads loop", f"{bare_rate:,.0f} lines/s", "itself", 1.0, "", None),
            (
                "parser: ours (parse_stream)",
                f"{ours_rate:,.0f} lines/s",
                "json.loads",
                ours_rate / bare_rate,
                ">= 0.8",
                ours_rate / bare_rate >= 0.8,
            ),
            (
                "parser: Anthropic SDK JSONLDecoder",
                f"{sdk_rate:,.0f} lines/s",
                "json.loads",
                sdk_rate / bare_rate,
                "",
                None,
            ),
            ("parser: ours vs the SDK's decoder", "", "SDK", ours_rate / sdk_rate, "", None),
        ]
        print(
            f"{total:,} result lines, {size / MB:.1f} MB (Anthropic batch {batch_id}); downloads and warm summary: "
            f"best of {rounds}; CSV and cold summary: best of 5; the rest: best of 3"
        )
        print(f"(load average before and after: {load_before}; {load_average()})")
        print(f"{'measure':<50} {'value':>16} {'baseline':>11} {'ratio':>7} {'target':>7}  met")
        for name, value, baseline, ratio, target, met in rows:
            mark = "" if met is None else ("yes" if met else "NO")
            print(f"{name:<50} {value:>16} {baseline:>11} {ratio:>7.2f} {target:>7}  {mark}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
