"""tests/services.py `run_python`, whose processes are forked from a zygote (tests/zygote.py), ends
as `subprocess.run([python, ...], capture_output=True, text=True)` would for the same program:
the same return code, output and error output, environment, working directory and arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import ROOT, run_python

PROGRAMS = {
    "output and exit code": "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)",
    "an uncaught exception": "raise ValueError('boom')",
    "exit with a message": "import sys\nsys.exit('a message')",
    "the environment, arguments and path": (
        "import os, sys\nprint(os.environ.get('ZYGOTE_PROBE'), os.environ.get('PYTEST_XDIST_WORKER'), sys.argv)\n"
        "print(os.getcwd() == os.path.realpath(sys.argv[1]), sys.path[0] == '')"
    ),
    "settings read from this environment": (
        "from django.conf import settings\nprint(settings.configured, 'SIMULATOR' in str(settings.INSTALLED_APPS))\n"
        "print(settings.DATABASES['default']['NAME'])"
    ),
    "threads joined and atexit run": (
        "import atexit, threading, time\natexit.register(lambda: print('atexit'))\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()"
    ),
    "windows newlines": "import sys\nsys.stdout.write('a\\r\\nb\\rc\\n')",
}


def environment(database: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    return {
        **env,
        "ZYGOTE_PROBE": "probe",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "SQLITE_PATH": str(database),
    }


@pytest.mark.parametrize("program", PROGRAMS.values(), ids=PROGRAMS.keys())
def test_a_program_ends_as_in_a_new_interpreter(tmp_path, program):
    env = environment(tmp_path / "db.sqlite3")
    args = ("-c", program, str(tmp_path))
    expected = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    forked = run_python(*args, env=env, cwd=tmp_path, timeout=60)
    assert (forked.returncode, forked.stdout, forked.stderr) == (expected.returncode, expected.stdout, expected.stderr)


@pytest.mark.parametrize(
    "args",
    [("check", "--tag", "no-such-tag"), ("shell", "-c", "raise ValueError('boom')")],
    ids=["a command's error", "an uncaught exception"],
)
def test_manage_py_ends_as_in_a_new_interpreter(tmp_path, args):
    env = environment(tmp_path / "db.sqlite3")
    expected = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    forked = run_python("manage.py", *args, env=env, timeout=60)
    assert expected.returncode != 0
    assert (forked.returncode, forked.stdout, forked.stderr) == (expected.returncode, expected.stdout, expected.stderr)


def test_a_program_past_its_timeout_is_killed_and_raises(tmp_path):
    env = environment(tmp_path / "db.sqlite3")
    with pytest.raises(subprocess.TimeoutExpired):
        run_python("-c", "import time\nprint('started', flush=True)\ntime.sleep(30)", env=env, timeout=0.5)
    assert run_python("-c", "print('next')", env=env, timeout=60).stdout == "next\n"  # the zygote serves on
