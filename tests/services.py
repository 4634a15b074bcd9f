"""Throwaway PostgreSQL and Redis servers on loopback, and the app's own processes, for integration tests.

Debian's binaries only (`make services` installs them): PostgreSQL from /usr/lib/postgresql/<version>/bin,
`redis-server` from the PATH. Every instance gets a fresh temporary directory and a free 127.0.0.1
port, so pytest-xdist workers can each run their own side by side; nothing touches a system-wide
server. Missing binaries fail the tests (never skip them): CI must run these.

The session fixtures at the bottom are registered by tests/integration/conftest.py (oidc_provider: by
tests/conftest.py).
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MISSING = "run `make services` (Debian's postgresql and redis-server packages)"
START_ATTEMPTS = 3  # a free port can be taken by another worker between probing and binding


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.05):
    """Call predicate until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- PostgreSQL ---------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bin dir (Debian installs each major version side by side)."""
    candidates = [Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    candidates = [path for path in candidates if (path / "pg_ctl").exists() and (path / "postgres").exists()]
    if not candidates:
        pytest.fail(f"PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: {MISSING}.")
    return max(candidates, key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.name)] or [0])


@dataclass
class Postgres:
    bindir: Path
    workdir: Path
    port: int
    as_user: list[str]  # prefix that runs a command as the cluster's OS owner (runuser when we are root)
    host: str = "127.0.0.1"
    user: str = "postgres"
    migrated_template: str = ""  # see create_database(migrated=True)

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None, *, migrated: bool = False) -> str:
        """A new database, empty or (`migrated`) with every migration applied; returns its DATABASE_URL.

        A migrated one is a copy (CREATE DATABASE ... TEMPLATE) of a database this server migrated
        once, with `manage.py migrate` as `app_env()` configures the app: copying takes a fraction
        of the seconds a migrate process takes. A test about migrating runs its own migrate."""
        import psycopg

        name = name or f"test_{uuid.uuid4().hex[:12]}"
        template = self._migrated_template() if migrated else None
        with psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def _migrated_template(self) -> str:
        if not self.migrated_template:
            name = f"migrated_{uuid.uuid4().hex[:12]}"
            manage("migrate", "--noinput", env=app_env(DATABASE_URL=self.create_database(name)))
            self.migrated_template = name  # nobody connects to it again: a template must have no session
        return self.migrated_template

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def start_server(self) -> subprocess.CompletedProcess:
        """pg_ctl start on self.port (again, after stop_server: same data, same port)."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        return self.pg_ctl(
            "start", "-w", "-t", "60", "-l", str(self.workdir / "server.log"), "-o", options, check=False
        )

    def stop_server(self) -> None:
        """Shut the server down as an operator would (clients' connections are ended); its data stays."""
        self.pg_ctl("stop", "-m", "fast", "-w")

    def stop(self) -> None:
        with suppress(Exception):
            self.pg_ctl("stop", "-m", "immediate", "-w", check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_postgres() -> Postgres:
    """initdb a fresh cluster in a temp dir and start it on a free loopback port (trust auth, no sockets)."""
    bindir = postgres_bindir()
    workdir = Path(tempfile.mkdtemp(prefix="itest-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        # initdb and postgres refuse to run as root: the cluster belongs to the `postgres` OS user.
        if not shutil.which("runuser"):
            pytest.fail("running as root needs `runuser` (util-linux) to start PostgreSQL as postgres")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail(f"no `postgres` OS user to own the throwaway cluster: {MISSING}.")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    server = Postgres(bindir=bindir, workdir=workdir, port=0, as_user=as_user)
    try:
        subprocess.run(
            [
                *as_user,
                str(bindir / "initdb"),
                "-D",
                str(server.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        for attempt in range(START_ATTEMPTS):
            server.port = free_port()
            started = server.start_server()
            if started.returncode == 0:
                return server
            if attempt == START_ATTEMPTS - 1:
                raise RuntimeError(
                    f"pg_ctl start failed: {started.stdout}{started.stderr}\n{_log_tail(workdir / 'server.log')}"
                )
    except BaseException:
        server.stop()
        raise
    raise AssertionError("unreachable")


# --- Redis --------------------------------------------------------------------------------


@dataclass
class Redis:
    workdir: Path
    port: int
    binary: str = "redis-server"
    process: subprocess.Popen | None = field(default=None, repr=False)
    host: str = "127.0.0.1"

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis(host=self.host, port=self.port, db=db, socket_timeout=5)

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:
            return False

    def start_server(self) -> bool:
        """redis-server on self.port (again, after stop_server); True once this process is ready."""
        log = self.workdir / "redis.log"
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        # Ready only once *this* process says so: another one may have taken the port meanwhile.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            if "Ready to accept connections" in log.read_text(errors="replace") and self.ping():
                return True
            time.sleep(0.02)
        self.stop_server()
        return False

    def stop_server(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        self.stop_server()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis() -> Redis:
    """A redis-server on a free loopback port that persists nothing."""
    binary = shutil.which("redis-server")
    if not binary:
        pytest.fail(f"redis-server not found on PATH: {MISSING}.")
    server = Redis(workdir=Path(tempfile.mkdtemp(prefix="itest-redis-")), port=0, binary=binary)
    try:
        for _ in range(START_ATTEMPTS):
            server.port = free_port()
            if server.start_server():
                return server
        raise RuntimeError(f"redis-server did not start:\n{_log_tail(server.workdir / 'redis.log')}")
    except BaseException:
        server.stop()
        raise


# --- An OpenID Connect provider -----------------------------------------------------------


@dataclass
class OidcProvider:
    """oidc-provider-mock (Authlib's OpenID Connect server) in a process of its own: discovery, a
    sign-in page where the subject is typed, RS256-signed ID tokens, userinfo, end_session. Any
    client id and secret are accepted; a user's claims are set with `user(sub, claims)`."""

    workdir: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def user(self, sub: str, claims: dict) -> None:
        from urllib.parse import quote

        answer = httpx.put(f"{self.issuer}/users/{quote(sub, safe='')}", json=claims, timeout=10)
        assert answer.status_code == 204, answer.text

    def start_server(self) -> bool:
        log = (self.workdir / "oidc.log").open("ab")
        self.process = subprocess.Popen(
            [PYTHON, "-W", "ignore", "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError("exited")
            with suppress(httpx.HTTPError):
                return httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1).status_code == 200
            return False

        try:
            return wait_until(answers, timeout=20, what="the OpenID Connect provider")
        except RuntimeError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def signing_in_through(provider: OidcProvider, settings) -> Iterator[OidcProvider]:
    """The dashboard's settings for single sign-on through `provider` (pytest-django's `settings`),
    as OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET would make them; discovery read afresh."""
    from dashboard.settings import allowing_sign_out_at
    from dashboard.web import sso

    settings.OIDC_ISSUER = provider.issuer
    settings.SSO_ENABLED = True
    settings.OIDC_RP_CLIENT_ID = "batch-dashboard"
    settings.OIDC_RP_CLIENT_SECRET = "client-secret-for-tests"
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "dashboard.web.sso.SsoBackend"]
    settings.CONTENT_SECURITY_POLICY = allowing_sign_out_at(settings.CONTENT_SECURITY_POLICY, provider.issuer)
    sso.forget_discovery()
    yield provider
    sso.forget_discovery()


def start_oidc_provider() -> OidcProvider:
    """An OpenID Connect provider on a free loopback port."""
    server = OidcProvider(workdir=Path(tempfile.mkdtemp(prefix="itest-oidc-")), port=0)
    try:
        for _ in range(START_ATTEMPTS):
            server.port = free_port()
            if server.start_server():
                return server
        raise RuntimeError(f"the OpenID Connect provider did not start:\n{_log_tail(server.workdir / 'oidc.log')}")
    except BaseException:
        server.stop()
        raise


# --- The app's own processes --------------------------------------------------------------


def app_env(**overrides: str) -> dict[str, str]:
    """The environment of a manage.py or gunicorn subprocess: the simulator's demo accounts, no real keys."""
    env = dict(os.environ)
    for name in (
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "BATCH_ACCOUNTS_FILE",
        "DATABASE_URL",
        "REDIS_URL",
        "SIMULATOR_BASE_URL",
        "ACCESS_LOG",
        "DJANGO_SETTINGS_MODULE",
    ):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "SIMULATOR_ENABLED": "1",
            "DEBUG": "0",
            "SECRET_KEY": "integration-tests-only-" + "x" * 40,
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def _interpreter_environment(env) -> dict[str, str]:
    """The variables an interpreter reads as it starts (PYTHONPATH, PYTHONWARNINGS ...): a zygote's
    children start with its own. (Buffering does not matter: their output is read once they end.)"""
    return {name: value for name, value in env.items() if name.startswith("PYTHON") and name != "PYTHONUNBUFFERED"}


class _Zygote:
    """This test process's tests/zygote.py, started when first needed; it ends with this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.interpreter_environment: dict[str, str] = {}

    def run(self, argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float | None) -> dict | None:
        import pickle
        import struct

        if not self.lock.acquire(blocking=False):
            return None  # another thread's run is under way: the caller starts a process of its own
        try:
            if self.process is None or self.process.poll() is not None:
                self.process = subprocess.Popen(
                    [PYTHON, str(ROOT / "tests" / "zygote.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT
                )
                self.interpreter_environment = _interpreter_environment(os.environ)
                atexit.register(self.stop)
            if _interpreter_environment(env) != self.interpreter_environment:
                return None  # read by an interpreter as it starts (PYTHONPATH ...): the caller starts one
            request = pickle.dumps({"argv": argv, "env": env, "cwd": str(cwd), "timeout": timeout})
            self.process.stdin.write(struct.pack(">I", len(request)) + request)
            self.process.stdin.flush()
            header = self.process.stdout.read(4)
            if len(header) < 4:
                self.process = None
                raise RuntimeError("tests/zygote.py ended without an answer")
            return pickle.loads(self.process.stdout.read(struct.unpack(">I", header)[0]))  # noqa: S301
        finally:
            self.lock.release()

    def stop(self) -> None:
        """End of input ends it; waited for, so that it is not left behind."""
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_zygote = _Zygote()


def stop_zygote() -> None:
    """End this process's zygote, if it started one (at the end of the session)."""
    _zygote.stop()


def _text(output: bytes) -> str:
    """As subprocess.run(text=True) decodes a stream: the locale's encoding, universal newlines."""
    import locale

    return output.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


def run_python(*args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float | None = None):
    """`python ARGS` (a script and its arguments, or `-c CODE`) to its end, as `subprocess.run(...,
    capture_output=True, text=True)` runs it: a subprocess.CompletedProcess, or TimeoutExpired.

    The process is a fresh one for `env`, forked from a zygote that has imported Django but read
    no settings (tests/zygote.py): a third of a CPU-second less than a new interpreter. A second
    thread's run, while one is under way, starts a new interpreter instead."""
    command = [PYTHON, *args]
    answer = _zygote.run(list(args), env=env, cwd=cwd, timeout=timeout)
    if answer is None:
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    stdout, stderr = _text(answer["stdout"]), _text(answer["stderr"])
    if answer["timed_out"]:
        raise subprocess.TimeoutExpired(command, timeout, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(command, answer["returncode"], stdout, stderr)


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    """Run `manage.py ARGS`; its stdout, or a failure with both streams."""
    done = run_python("manage.py", *args, env=env, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def manage_commands(*commands: tuple[str, ...], env: dict[str, str], timeout: float = 120) -> str:
    """Run several management commands, in order, in one `manage.py shell` process (Django starts
    once, not once per command: a start costs about a CPU-second); their stdout, or a failure.
    For preparing a database; a test about a command's own process runs `manage`."""
    code = "from django.core.management import call_command\n" + "".join(
        f"call_command(*{list(command)!r})\n" for command in commands
    )
    return manage("shell", "-c", code, env=env, timeout=timeout)


# The variables that configure real accounts (what the provider modules' from_environment read, and the
# accounts file): a test that wants the simulator's demo accounts, or a clean deployment, clears them all.
ACCOUNT_ENVIRONMENT = (
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "AWS_BEDROCK_REGION",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "BATCH_ACCOUNTS_FILE",
)


def simulator_installed(env: dict[str, str]) -> bool:
    """Whether dashboard/settings.py installs the simulator app in `env`: the one thing that decides
    which tables a migrate makes (as SIMULATOR_ENABLED and REAL_ACCOUNTS_CONFIGURED there)."""
    from dashboard import providers

    real = bool(env.get("BATCH_ACCOUNTS_FILE")) or any(
        module.from_environment(env) for module in providers.PROVIDERS.values()
    )
    return env.get("SIMULATOR_ENABLED", str(not real)).strip().lower() in {"1", "true", "yes", "on"}


def migrated_sqlite_dir() -> Path:
    """Where this run keeps its migrated SQLite files: one folder for all of its xdist workers
    (removed by the conftest's pytest_sessionfinish in the process that started them)."""
    run = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()  # the workers' parent
    return Path(tempfile.gettempdir()) / f"batch-dashboard-migrated-{run}"


def made_once_per_run(name: str, make: Callable[[Path], None]) -> Path:
    """The file `name` in this run's folder (migrated_sqlite_dir), made by `make(path)` by whichever
    xdist worker first needs it, under a lock: the others wait for it, then use it as it is."""
    import fcntl

    folder = migrated_sqlite_dir()
    folder.mkdir(exist_ok=True)
    made = folder / name
    with (folder / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed; a worker that died releases it too
        if not made.exists():
            making = folder / f"{name}.{os.getpid()}"
            make(making)
            making.rename(made)  # complete or absent
    return made


def migrate_sqlite(env: dict[str, str]) -> None:
    """Give env's SQLITE_PATH every migration: a copy of a file migrated once per test run (by
    whichever worker first needs it, under a lock) with `manage.py migrate` for an environment that
    installs the same apps. A migrate process takes seconds; a copy, milliseconds. A test about
    migrating runs its own migrate."""
    assert not env.get("DATABASE_URL"), "DATABASE_URL would be migrated instead of SQLITE_PATH"

    def migrate(making: Path) -> None:
        manage("migrate", "--noinput", env={**env, "SQLITE_PATH": str(making)})
        assert not Path(f"{making}-wal").exists(), "the migrate process left its WAL unmerged"

    template = made_once_per_run(f"simulator-{'on' if simulator_installed(env) else 'off'}.sqlite3", migrate)
    target = Path(env["SQLITE_PATH"])
    assert not target.exists(), f"{target} exists already"
    shutil.copyfile(template, target)


def copy_sqlite(source: Path, target: Path) -> None:
    """Copy a prepared SQLite database with SQLite's online backup, so what its WAL holds comes
    along too: a test that needs a database several processes prepared (migrate, seed_demo,
    poll ...) takes a copy instead of running them again."""
    import sqlite3

    assert not target.exists(), f"{target} exists already"
    with sqlite3.connect(source) as origin, sqlite3.connect(target) as copy:
        origin.backup(copy)
    origin.close()
    copy.close()


# The demo's clocks start at seed_demo and its shortest batch ends two minutes later: a seeded
# database is shared only while it is this fresh.
SEEDED_FOR_SECONDS = 60
_seeded: dict[tuple[str, ...], tuple[float, Path]] = {}


def _per_test(name: str) -> bool:
    return name == "SQLITE_PATH" or name.startswith("PYTEST_")


def seed_sqlite(env: dict[str, str]) -> None:
    """Give env's SQLITE_PATH every migration and the simulator's demo batches (`seed_demo`): a copy
    of one this process migrated and seeded for the same environment less than SEEDED_FOR_SECONDS
    ago, or a new one. A seed_demo process costs about two CPU-seconds; a copy, milliseconds."""
    key = tuple(sorted(f"{name}={value}" for name, value in env.items() if not _per_test(name)))
    made = _seeded.get(key)
    if made is None or time.monotonic() - made[0] >= SEEDED_FOR_SECONDS:
        started = time.monotonic()
        folder = migrated_sqlite_dir()
        folder.mkdir(exist_ok=True)
        seeded = folder / f"seeded-{os.getpid()}-{uuid.uuid4().hex[:8]}.sqlite3"
        seeding = {**env, "SQLITE_PATH": str(seeded)}
        migrate_sqlite(seeding)
        manage("seed_demo", env=seeding)
        _seeded[key] = made = (started, seeded)
    copy_sqlite(made[1], Path(env["SQLITE_PATH"]))


@dataclass
class AppServer:
    """One gunicorn process of the dashboard (`--config python:dashboard.gunicorn dashboard.wsgi`)."""

    port: int
    process: subprocess.Popen = field(repr=False)
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def gunicorn_command() -> list[str]:
    beside_python = Path(PYTHON).parent / "gunicorn"
    launcher = [str(beside_python)] if beside_python.exists() else [PYTHON, "-m", "gunicorn"]
    return [*launcher, "--config", "python:dashboard.gunicorn", "dashboard.wsgi"]


def start_app_server(env: dict[str, str], log: Path, *, startup_timeout: float = 30) -> AppServer:
    """gunicorn on a free loopback port, answering /healthz (with any status) before this returns."""
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        with log.open("a") as out:
            process = subprocess.Popen(
                gunicorn_command(),
                cwd=ROOT,
                env={**env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_WORKERS": env.get("WEB_WORKERS", "1")},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = AppServer(port=port, process=process, log=log)

        def answering(server=server) -> bool:
            if server.process.poll() is not None:
                return True
            # gunicorn says so once it holds the port: until then an answer could come from someone else.
            if f"Listening at: {server.url} ({server.process.pid})" not in log.read_text(errors="replace"):
                return False
            try:
                httpx.get(server.url + "/healthz", timeout=2)
            except httpx.TransportError:
                return False
            return True

        wait_until(answering, timeout=startup_timeout, what=f"gunicorn on port {port}")
        if process.poll() is None:
            return server
        if attempt == START_ATTEMPTS - 1:
            pytest.fail(f"gunicorn exited {process.returncode}:\n{_log_tail(log)}")
    raise AssertionError("unreachable")


# --- Fixtures (registered in tests/integration/conftest.py) --------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One throwaway PostgreSQL per test session (per xdist worker); tests create their own databases in it."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """One throwaway Redis per test session (per xdist worker); tests take their own db numbers in it."""
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    """One OpenID Connect provider per test session (per xdist worker); tests give their users their own subjects."""
    server = start_oidc_provider()
    yield server
    server.stop()


@pytest.fixture
def postgres_factory() -> Iterator:
    """Start extra PostgreSQL servers that this test alone may stop and start; all are removed after it."""
    started: list[Postgres] = []

    def make() -> Postgres:
        server = start_postgres()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def redis_factory() -> Iterator:
    """Start extra Redis instances that this test alone may stop; all are stopped after it."""
    started: list[Redis] = []

    def make() -> Redis:
        server = start_redis()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
