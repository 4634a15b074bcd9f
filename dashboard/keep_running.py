"""Run a command, and start it again whenever it exits by itself, until told to stop.

    python -m dashboard.keep_running COMMAND [ARG...]

The Procfile's processes run under it: honcho (`make run`) restarts nothing, and stops every process
once one exits. An exit nobody asked for (a crash, an out-of-memory kill, an error at start-up) is
reported on stderr and the command started again after a pause: FIRST_PAUSE, doubling up to
MAX_PAUSE while it keeps exiting soon after its start. SIGTERM or SIGINT is passed on to the
command as SIGTERM (its clean stop: the poller releases its leases), and this then exits as it did.

Standard library only: it must not need the database, the cache or Django to start.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import threading
import time

FIRST_PAUSE = 1.0
MAX_PAUSE = 60.0
STEADY_AFTER = 60.0  # a run that lasted this long was no crash loop: the next pause is FIRST_PAUSE again


def say(message: str) -> None:
    print(f"keep_running: {message}", file=sys.stderr, flush=True)


def keep_running(command: list[str]) -> int:
    stopping = threading.Event()
    child: subprocess.Popen | None = None

    def stop(signum, frame) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pause = FIRST_PAUSE
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command)
        if stopping.is_set():  # the signal came while it was being started
            child.send_signal(signal.SIGTERM)
        returncode = child.wait()
        if stopping.is_set():
            return max(returncode, 0)  # killed by the SIGTERM passed on: a clean stop
        lasted = time.monotonic() - started
        if lasted >= STEADY_AFTER:
            pause = FIRST_PAUSE
        say(f"`{shlex.join(command)}` exited ({returncode}) after {lasted:.0f} s; starting it again in {pause:g} s")
        if stopping.wait(pause):
            return 0  # stopped with nothing running
        pause = min(2 * pause, MAX_PAUSE)


def main(argv: list[str] | None = None) -> int:
    command = sys.argv[1:] if argv is None else argv
    if not command:
        say("usage: python -m dashboard.keep_running COMMAND [ARG...]")
        return 2
    return keep_running(command)


if __name__ == "__main__":
    sys.exit(main())
