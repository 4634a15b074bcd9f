"""dashboard/keep_running.py, the Procfile's restarter, run as a real process around tiny commands."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from tests.services import ROOT, wait_until

# Says "started" in the file it is given, and runs until SIGTERM (says "stopped", exits 0); the
# first run, if told to, exits 3 by itself at once instead.
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    first = "started" not in open(sys.argv[1]).read()
    log = open(sys.argv[1], "a", buffering=1)
    signal.signal(signal.SIGTERM, lambda *_: (log.write("stopped\\n"), sys.exit(0)))
    log.write("started\\n")
    if first and sys.argv[2] == "crash":
        sys.exit(3)
    time.sleep(600)
    """
)


def keep_running(tmp_path, first_run: str) -> tuple[subprocess.Popen, object]:
    events = tmp_path / "events"
    events.touch()
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard.keep_running", sys.executable, "-c", CHILD, str(events), first_run],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, lambda: events.read_text().splitlines()


def test_a_command_that_exits_by_itself_is_started_again_until_keep_running_is_stopped(tmp_path):
    process, events = keep_running(tmp_path, "crash")
    try:
        wait_until(lambda: events() == ["started", "started"], timeout=30, what="the command to be started again")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "exited (3)" in stderr and "starting it again in 1 s" in stderr
    assert events() == ["started", "started", "stopped"], "nothing is started once it was told to stop"


def test_sigterm_reaches_the_running_command_which_is_not_started_again(tmp_path):
    process, events = keep_running(tmp_path, "run")
    try:
        wait_until(lambda: events() == ["started"], timeout=30, what="the command to start")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert events() == ["started", "stopped"]
    assert "starting it again" not in stderr


def test_without_a_command_it_says_how_to_use_it():
    done = subprocess.run(
        [sys.executable, "-m", "dashboard.keep_running"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and "usage" in done.stderr
