"""A Python process that has imported Django and the libraries every app process imports, but has
read no settings, and forks a fresh child for each `python SCRIPT ARGS` or `python -c CODE` it is
asked to run (tests/services.py `run_python` starts one per test process and talks to it).

A Django process spends about a third of a CPU-second importing Django before it reads anything
of its environment; a child forked from here starts past that point. Everything a process reads
from its environment is read in the child, after its environment, working directory, arguments
and `sys.path` are set as `subprocess.run([python, ...], cwd=..., env=...)` would set them: nothing
imported here reads settings or the environment when imported. The child's stdout and stderr go
to files, its exit status is a process's (SystemExit, an uncaught exception: 1), and it ends as
an interpreter does: non-daemon threads joined, atexit handlers run, streams flushed.

Protocol, on stdin and stdout: a request is a 4-byte length and a pickled dict (argv, env, cwd,
timeout); the answer is a 4-byte length and a pickled dict (returncode, stdout, stderr, timed_out).
End of input ends the zygote.
"""

import os
import sys

# Imported before any fork: Django's modules that read no settings when imported, and what they import.
PRELOADED = (
    "django",
    "django.conf",
    "django.db.models",
    "django.http",
    "django.urls",
    "django.core.management",
    "django.template.defaulttags",
    "django.test",
    "httpx",
    "sqlparse",
    "asgiref.sync",
)


def _child(argv: list[str], env: dict[str, str], cwd: str, out: int, err: int) -> int:
    import atexit
    import runpy
    import tempfile
    import threading
    import traceback

    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # read again from this environment, as a new process would
    status = 0
    try:
        if argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path[0] = ""
            code = compile(argv[1], "<string>", "exec")
            exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # noqa: S102 - what `python -c` runs
        else:
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(os.path.abspath(argv[0]), run_name="__main__")  # __file__ absolute, sys.argv[0] as given
    except SystemExit as stop:
        if stop.code is None:
            status = 0
        elif isinstance(stop.code, int):
            status = stop.code
        else:
            print(stop.code, file=sys.stderr)
            status = 1
    except BaseException as error:
        # From the program's own first frame on, as the interpreter prints it (not this module's or runpy's).
        program = "<string>" if argv[0] == "-c" else os.path.abspath(argv[0])
        frames = error.__traceback__
        while frames is not None and frames.tb_frame.f_code.co_filename != program:
            frames = frames.tb_next
        traceback.print_exception(type(error), error, frames or error.__traceback__)
        status = 1
    try:
        threading._shutdown()  # as the interpreter does at exit: wait for non-daemon threads
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed stream has nothing left to write
                pass
    return status


def _wait(pid: int, timeout: float | None) -> tuple[int, bool]:
    """The child's exit status (as subprocess reports it: -N for a signal), and whether it timed out."""
    import select
    import signal

    timed_out = False
    if timeout is not None:
        pidfd = os.pidfd_open(pid)
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if not poller.poll(timeout * 1000):
                timed_out = True
                os.kill(pid, signal.SIGKILL)
        finally:
            os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), timed_out


def _run(request: dict) -> dict:
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(0)
                os.open(os.devnull, os.O_RDONLY)  # fd 0 again: stdin reads nothing, as with capture_output
                status = _child(request["argv"], request["env"], request["cwd"], out.fileno(), err.fileno())
            finally:
                os._exit(status)
        returncode, timed_out = _wait(pid, request["timeout"])
        out.seek(0)
        err.seek(0)
        return {"returncode": returncode, "stdout": out.read(), "stderr": err.read(), "timed_out": timed_out}


def main() -> None:
    import importlib
    import pickle
    import struct

    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.set_inheritable(requests.fileno(), False)
    os.set_inheritable(answers.fileno(), False)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    for name in PRELOADED:
        importlib.import_module(name)

    def read(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = requests.read(size - len(data))
            if not chunk:
                return b""
            data += chunk
        return data

    while header := read(4):
        request = pickle.loads(read(struct.unpack(">I", header)[0]))  # noqa: S301 - from the test process that started us
        answer = pickle.dumps(_run(request))
        answers.write(struct.pack(">I", len(answer)) + answer)


if __name__ == "__main__":
    main()
