"""The poller's malloc arenas: two, however many threads allocate (see dashboard/process_memory.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent

# Sixteen threads allocate while all alive; then glibc's malloc_info says how many arenas (heaps) it has.
ARENAS_AFTER_THREADS = """
import ctypes, sys, tempfile, threading
sys.path.insert(0, sys.argv[2])
from dashboard.process_memory import limit_malloc_arenas

if sys.argv[1] == "limited":
    assert limit_malloc_arenas()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, (ctypes.c_char_p, ctypes.c_char_p)
libc.malloc_info.argtypes, libc.fclose.argtypes = (ctypes.c_int, ctypes.c_void_p), (ctypes.c_void_p,)
together = threading.Barrier(16)

def allocate():
    together.wait()
    for _ in range(100):
        libc.malloc(4000)
    together.wait()

threads = [threading.Thread(target=allocate) for _ in range(16)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    out = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, out)
    libc.fclose(out)
    print(open(report.name).read().count("<heap nr="))
"""


def arenas_after_threads(mode: str) -> int:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", ARENAS_AFTER_THREADS, mode, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.strip())


def test_threads_that_allocate_share_two_arenas_once_limited():
    assert arenas_after_threads("as glibc starts") > 2  # one arena per thread, up to 8 per core
    assert arenas_after_threads("limited") <= 2


def test_an_operators_own_malloc_arena_max_wins(monkeypatch):
    from dashboard import process_memory

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not process_memory.limit_malloc_arenas()


def test_the_poll_command_limits_its_arenas_before_it_polls(monkeypatch, db):
    from dashboard.batches import poller
    from dashboard.management.commands import poll

    calls = []
    monkeypatch.setattr(poll, "limit_malloc_arenas", lambda: calls.append("arenas"))
    monkeypatch.setattr(poller, "run_cycle", lambda **kwargs: calls.append("cycle") or [])
    call_command("poll", "--once", "--owner", "t")
    assert calls == ["arenas", "cycle"]
