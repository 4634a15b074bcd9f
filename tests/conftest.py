import glob
import os
from pathlib import Path

import httpx
import pytest
from hypothesis import settings as hypothesis_settings

from dashboard.simulator.demo import ensure_demo_accounts
from tests import factories
from tests.factories import (
    ANTHROPIC_KEYS,
    GEMINI_KEYS,
    OPENAI_KEYS,
    embedded_anthropic,
    embedded_openai,
    embedded_simulator_url,
)
from tests.services import ACCOUNT_ENVIRONMENT, oidc_provider

# oidc_provider: one OpenID Connect provider per session for the access and the browser tests alike
# (registered here once: a fixture registered in two places starts two).
__all__ = ["ANTHROPIC_KEYS", "GEMINI_KEYS", "OPENAI_KEYS", "oidc_provider"]


# No example has a deadline: hypothesis's 200 ms per example is a wall-clock assertion, which fails
# by chance on a busy 2-core machine (pytest-xdist runs four workers on it). CI explores a fixed set
# of examples, so a run is repeatable and never fails by chance on an example nobody has seen;
# elsewhere hypothesis explores anew each run (and remembers failures).
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, database=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_sessionfinish(session):
    """SQLite leaves the test database's -wal and -shm files behind; remove this process's. The
    process that started the run (not an xdist worker) removes the run's migrated SQLite files."""
    import shutil
    from glob import glob

    from django.conf import settings as django_settings

    from tests.services import migrated_sqlite_dir, stop_zygote

    stop_zygote()
    if not hasattr(session.config, "workerinput"):
        shutil.rmtree(migrated_sqlite_dir(), ignore_errors=True)

    name = django_settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name and django_settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        for leftover in glob(f"{name}*"):
            os.remove(leftover)


@pytest.hookimpl(optionalhook=True)  # also runs with -p no:xdist
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: two workers per CPU, at most eight. Much of the suite waits rather than computes
    (simulated batches progressing, hanging answers, servers starting in subprocesses, a browser),
    so a second worker per CPU overlaps those waits. PYTEST_XDIST_AUTO_NUM_WORKERS still decides."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(2 * cpus, 8)


# Tests that share a server, by the start of their node ids, and their group: one worker runs all of
# a group, so the server starts once (see pytest_xdist_make_scheduler). The integration tests share
# a worker's PostgreSQL (`postgres_server`: initdb, and a migrated template made by a migrate
# process): in two groups of about 40 s each, two workers start one, not every worker.
ONE_WORKER_EACH = {
    # `server`: PostgreSQL, a prepared database, gunicorn
    "tests/integration/test_unstorable_text.py::": "integration-1",
    # `stack`: three gunicorns and a poller
    "tests/integration/test_postgres_redis.py::": "integration-1",
    "tests/integration/test_bulk_cancel_race.py::": "integration-1",
    "tests/integration/test_spend_rollup_postgres.py::": "integration-1",
    "tests/integration/test_background_postgres.py::": "integration-1",
    "tests/integration/test_outages.py::": "integration-2",
    "tests/integration/test_pollers.py::": "integration-2",
    "tests/integration/test_list_plans_postgres.py::": "integration-2",
    # `oidc_provider`: an OpenID Connect provider process (some 1.2 CPU-s to start)
    "tests/access/test_sso.py::": "oidc",
    "tests/browser/test_sign_in_with_sso.py::": "oidc",
    # `polled_embedded_default`: a database prepared by seed_demo, poll --once and ensure_operator
    "tests/test_deployment.py::test_the_embedded_default_cannot_deadlock_on_itself_whatever_the_workers[": "deadlock",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n` alone means `--dist load`, which hands each worker a run of consecutive tests up front (a
    quarter of its share: 106 of 1,702 on four workers) and never takes them back: one worker got
    every slow test and ran them one after another for 200 s, while the others finished at 120 s.
    Instead, tests are handed out one at a time as workers free up, in collection order (slow first),
    except that each group of ONE_WORKER_EACH goes to one worker as a whole (groups first). An
    explicit --dist still decides. (xdist's own `loadgroup` cannot be used: it renames a node id
    through an attribute pytest 9 no longer has.)"""
    explicit = config.option.distload or any(arg.startswith("--dist") for arg in config.invocation_params.args)
    if config.option.dist != "load" or explicit:
        return None
    from xdist.scheduler import LoadScopeScheduling

    class OneTestAtATime(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return next((group for start, group in ONE_WORKER_EACH.items() if nodeid.startswith(start)), nodeid)

    return OneTestAtATime(config, log)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs for many seconds, so it is scheduled first")
    if not hasattr(config, "workerinput") and config.getoption("numprocesses", None):
        rewrite_test_modules_before_the_workers_start(config)


def rewrite_test_modules_before_the_workers_start(config) -> None:
    """pytest rewrites each test module's asserts when it first imports it and keeps the result in
    __pycache__. On a fresh clone every xdist worker would rewrite all of them at once (some 7 CPU-s
    each, a worker's largest start-up cost); the process that starts the workers does it once
    instead, as a worker would, before they start. Through pytest's own (private) functions: should
    they change, the workers simply rewrite as before."""
    import sys
    from pathlib import Path

    try:
        from _pytest.assertion.rewrite import (
            PYC_TAIL,
            _read_pyc,
            _rewrite_test,
            _write_pyc,
            assertstate_key,
            get_cache_dir,
            try_makedirs,
        )

        state = config.stash[assertstate_key]
    except (ImportError, KeyError):  # KeyError: --assert=plain
        return
    if sys.dont_write_bytecode:
        return
    patterns = config.getini("python_files")
    for module in sorted(Path(__file__).parent.rglob("*.py")):
        if module.name != "conftest.py" and not any(module.match(pattern) for pattern in patterns):
            continue
        cache_dir = get_cache_dir(module)
        pyc = cache_dir / (module.name[:-3] + PYC_TAIL)
        if _read_pyc(module, pyc, state.trace) is not None or not try_makedirs(cache_dir):
            continue
        try:
            source_hash, code = _rewrite_test(module, config)
        except SyntaxError:
            continue  # the worker that imports it reports it
        _write_pyc(state, code, source_hash, pyc)


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run first: with pytest-xdist they then run beside the many short tests
    instead of starting late and leaving one worker busy after the others have finished."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def django_db_setup(
    request,
    django_test_environment,
    django_db_blocker,
    django_db_use_migrations,
    django_db_keepdb,
    django_db_createdb,
    django_db_modify_db_settings,
):
    """pytest-django's, except that the migrated SQLite test database is made once per run, not once
    per xdist worker: the first worker to need it migrates its own as pytest-django would and keeps a
    copy; the others start from that copy, on which migrate then finds nothing to do (a migrate of
    every app costs each worker some two CPU-seconds, all of them at once as the run starts)."""
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases
    from pytest_django.fixtures import _disable_migrations, _get_databases_for_setup

    from tests.services import copy_sqlite, made_once_per_run

    if not django_db_use_migrations:
        _disable_migrations()
    aliases, serialized_aliases = _get_databases_for_setup(request.session.items)
    reused = django_db_keepdb and not django_db_createdb

    def setup(*, keepdb: bool):
        with django_db_blocker.unblock():
            return setup_databases(
                verbosity=request.config.option.verbose,
                interactive=False,
                aliases=aliases,
                serialized_aliases=serialized_aliases,
                keepdb=keepdb,
            )

    default = connections["default"]
    test_name = default.creation._get_test_db_name() if default.vendor == "sqlite" else None
    copyable = (
        aliases == {"default"}
        and test_name
        and not default.creation.is_in_memory_db(test_name)
        and django_db_use_migrations
        and not reused
    )
    if not copyable:
        db_cfg = setup(keepdb=reused)
    else:
        made_here = []

        def migrate(template: Path) -> None:
            made_here.append(setup(keepdb=False))
            copy_sqlite(Path(test_name), template)

        template = made_once_per_run("test-database.sqlite3", migrate)
        if made_here:
            db_cfg = made_here[0]
        else:
            for leftover in glob.glob(f"{test_name}*"):
                os.remove(leftover)
            copy_sqlite(template, Path(test_name))
            db_cfg = setup(keepdb=True)

    yield

    if not django_db_keepdb:
        with django_db_blocker.unblock():
            teardown_databases(db_cfg, verbosity=request.config.option.verbose)


@pytest.fixture(scope="session", autouse=True)
def live_server_without_nagle():
    """Django's live server sends a response's headers and its body in separate writes: with Nagle's
    algorithm on, each response then waits for the client's delayed ACK, some 40 ms. Off, as
    production servers (gunicorn) have it, a request over the live server takes a few ms."""
    from django.core.servers.basehttp import WSGIRequestHandler

    before = WSGIRequestHandler.disable_nagle_algorithm
    WSGIRequestHandler.disable_nagle_algorithm = True
    yield
    WSGIRequestHandler.disable_nagle_algorithm = before


@pytest.fixture(scope="session", autouse=True)
def static_files_listed_once():
    """Django's test client builds its middleware anew for every client, and WhiteNoise (with
    WHITENOISE_USE_FINDERS) then lists, stats and describes every static file again: 170 with the
    admin's, some 20 ms a client, for about a thousand clients a run. They do not change during a
    run, and a deployed process lists them once: so does each test process, for the same settings."""
    from django.conf import settings
    from whitenoise.middleware import WhiteNoiseMiddleware

    original = WhiteNoiseMiddleware.add_files_from_finders
    listed: dict[tuple, dict] = {}

    def add_files_from_finders(self) -> None:
        key = (
            *(repr(getattr(self, name)) for name in ("static_prefix", "max_age", "allow_all_origins", "charset")),
            *(repr(getattr(self, name)) for name in ("index_file", "add_headers_function")),
            *(repr(getattr(settings, name)) for name in ("INSTALLED_APPS", "STATICFILES_DIRS", "STATICFILES_FINDERS")),
            *(repr(getattr(settings, name, None)) for name in ("STORAGES", "WHITENOISE_MIMETYPES")),
            repr(getattr(settings, "WHITENOISE_IMMUTABLE_FILE_TEST", None)),
        )
        if key not in listed:
            before = dict(self.files)
            original(self)
            listed[key] = {url: file for url, file in self.files.items() if before.get(url) is not file}
        self.files.update(listed[key])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WhiteNoiseMiddleware, "add_files_from_finders", add_files_from_finders)
        yield


# What migrate's post_migrate handlers make (contenttypes, auth) and nothing else writes.
KEPT_BY_FLUSH = frozenset({"django_content_type", "auth_permission"})


@pytest.fixture(scope="session", autouse=True)
def flush_keeps_content_types_and_permissions():
    """A transactional test (transactional_db, live_server, embedded_upstream) ends with a flush of
    every table, after which post_migrate makes every content type and permission again: 26 ms a
    test, twenty times the flush itself. The flush leaves those two tables as migrate made them (with
    the same ids), so there is nothing to make again; every other table is emptied as before."""
    from django.core.management.commands import flush
    from django.db.models.signals import post_migrate

    making_what_is_kept = {
        ("django.contrib.contenttypes.management", "create_contenttypes"),
        ("django.contrib.auth.management", "create_permissions"),
        ("dashboard.batches.search_index", "_after_migrate"),  # makes only what a table rebuild lost
    }
    original_post_migrate = flush.emit_post_migrate_signal

    def sql_flush(style, connection, reset_sequences=True, allow_cascade=False):
        tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
        kept = [table for table in tables if table not in KEPT_BY_FLUSH]
        return connection.ops.sql_flush(style, kept, reset_sequences=reset_sequences, allow_cascade=allow_cascade)

    def emit_post_migrate_signal(verbosity, interactive, db, **kwargs):
        receivers = [receiver for _, reference, *_ in post_migrate.receivers if (receiver := reference())]
        if any((receiver.__module__, receiver.__name__) not in making_what_is_kept for receiver in receivers):
            original_post_migrate(verbosity, interactive, db, **kwargs)  # one that makes something else

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flush, "sql_flush", sql_flush)
        patch.setattr(flush, "emit_post_migrate_signal", emit_post_migrate_signal)
        yield


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing():
    """Django's PBKDF2 takes half a CPU-second a password, for each user made with one (pytest-django's
    admin_user, the browser tests' operator) and each sign-in. Tests in this process hash with MD5;
    the production hasher still signs in every app server the integration tests start."""
    from django.test import override_settings

    cheap = override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
    cheap.enable()
    yield
    cheap.disable()


@pytest.fixture(scope="session", autouse=True)
def polls_count_no_results():
    """The poller counts the results of ended batches after each poll (POLL_RESULTS_PER_CYCLE): tests
    have a poll read only what they ask of it, and turn that on where they test it
    (tests/batches/test_tokens.py, tests/simulator/test_simulator_tokens_sdk.py)."""
    from django.test import override_settings

    off = override_settings(POLL_RESULTS_PER_CYCLE=0)
    off.enable()
    yield
    off.disable()


@pytest.fixture
def demo_accounts(db):
    """The four documented simulator accounts (flushed between transactional tests, so re-made)."""
    return ensure_demo_accounts()


@pytest.fixture
def fast_simulator(settings):
    """Simulated batches that finish in seconds, so tests can watch them end over real HTTP."""
    settings.SIMULATOR_PROCESSING_SECONDS = 1.5
    settings.SIMULATOR_CANCEL_SECONDS = 1.0
    settings.SIMULATOR_VALIDATING_SECONDS = 0.5
    settings.SIMULATOR_FINALIZING_SECONDS = 0.5
    settings.SIMULATOR_HANG_SECONDS = 3
    return settings


@pytest.fixture
def simulator(live_server, transactional_db, demo_accounts):
    """Base URL of the simulator served over real HTTP by Django's live server."""
    return live_server.url + "/simulator"


def _reused(make):
    """`make(key, **options)`, one client per key and options: building an SDK client costs tens of ms."""
    clients: dict = {}

    def get(key: str, **options):
        cache_key = (key, repr(sorted(options.items())))
        if cache_key not in clients:
            clients[cache_key] = make(key, **options)
        return clients[cache_key]

    return get, clients


@pytest.fixture
def anthropic_client(simulator):
    """The official Anthropic SDK over real HTTP (the live server): `anthropic_client(key, **options)`."""
    import anthropic

    def build(key, **options):
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 20)
        return anthropic.Anthropic(api_key=key, base_url=simulator + "/anthropic", **options)

    get, clients = _reused(build)
    yield lambda key=ANTHROPIC_KEYS["ops"], **options: get(key, **options)
    for client in clients.values():
        client.close()


@pytest.fixture
def gemini_client(simulator):
    """The official google-genai SDK over real HTTP (the live server): `gemini_client(key, **options)`."""
    from google import genai
    from google.genai import types

    def build(key, **options):
        options.setdefault("timeout", 20_000)  # milliseconds
        return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=simulator + "/gemini", **options))

    get, clients = _reused(build)
    yield lambda key=GEMINI_KEYS["ops"], **options: get(key, **options)
    for client in clients.values():
        client.close()


@pytest.fixture
def openai_client(simulator):
    """The official OpenAI SDK over real HTTP (the live server): `openai_client(key, **options)`."""
    import openai

    def build(key, **options):
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 20)
        return openai.OpenAI(api_key=key, base_url=simulator + "/openai/v1", **options)

    get, clients = _reused(build)
    yield lambda key=OPENAI_KEYS["ops"], **options: get(key, **options)
    for client in clients.values():
        client.close()


# The in-process SDK clients hold no socket and no state between calls: one per key and options
# serves every test of a worker.
_embedded_anthropic, _ = _reused(embedded_anthropic)
_embedded_openai, _ = _reused(embedded_openai)


@pytest.fixture
def anthropic_sdk(embedded_upstream):
    """The official Anthropic SDK reaching the simulator in process: `anthropic_sdk(key, **options)`."""
    return lambda key=ANTHROPIC_KEYS["ops"], **options: _embedded_anthropic(key, **options)


@pytest.fixture
def openai_sdk(embedded_upstream):
    """The official OpenAI SDK reaching the simulator in process: `openai_sdk(key, **options)`."""
    return lambda key=OPENAI_KEYS["ops"], **options: _embedded_openai(key, **options)


@pytest.fixture(autouse=True)
def fresh_cache():
    """Upstream answers are cached between requests; tests must not see each other's."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def _default_accounts(monkeypatch) -> None:
    for name in ACCOUNT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def dashboard_upstream(simulator, settings, monkeypatch):
    """The dashboard's default accounts (the four simulator demo accounts) served over real HTTP.

    For what needs a real socket between the dashboard and the simulator (timeouts, hanging
    answers) and for the browser tests; everything else can use `embedded_upstream`.
    """
    _default_accounts(monkeypatch)
    settings.SIMULATOR_BASE_URL = simulator
    settings.UPSTREAM_TIMEOUT_SECONDS = 2
    return simulator


@pytest.fixture
def embedded_upstream(transactional_db, demo_accounts, settings, monkeypatch):
    """The dashboard's default accounts reaching the simulator in process, as they do by default.

    No live server and no socket: the simulator answers on its own thread pool, with its own
    database connections, hence `transactional_db`.
    """
    _default_accounts(monkeypatch)
    settings.SIMULATOR_BASE_URL = ""
    if settings.EMBEDDED_SIMULATOR_HOST not in settings.ALLOWED_HOSTS:  # set up for another SIMULATOR_BASE_URL
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, settings.EMBEDDED_SIMULATOR_HOST]
    settings.UPSTREAM_TIMEOUT_SECONDS = 2
    return embedded_simulator_url()


def make_user(username: str, *, can_cancel: bool, roles: tuple[str, ...] | None = None, accounts: str = "*"):
    """A user holding roles on `accounts` through a group of its own: by default, as before grants
    existed, every account's batches and results, and cancelling (operator) when `can_cancel`."""
    from django.contrib.auth import get_user_model

    from dashboard.access import services as access

    # No usable password: tests sign in with force_login, and hashing one costs ~0.5 s.
    user = get_user_model().objects.create_user(username=username, password=None)
    if roles is None:
        roles = ("operator", "results") if can_cancel else ("viewer", "results")
    for role in roles:
        access.grant(
            group_name=f"{username}-team",
            patterns=access.account_patterns(accounts),
            role=role,
            actor="tests",
            via="cli",
        )
    if roles:
        user.groups.add(user.groups.model.objects.get(name=f"{username}-team"))
    return user


@pytest.fixture
def operator(db):
    return make_user("operator", can_cancel=True)


@pytest.fixture
def viewer(db):
    return make_user("viewer", can_cancel=False)


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def upstream_calls(monkeypatch):
    """Every HTTP request sent from now on by any httpx client: the dashboard's (the SDKs use httpx2)."""
    calls: list[str] = []
    original = httpx.Client.send

    def recording_send(self, request, *args, **kwargs):
        calls.append(f"{request.method} {request.url}")
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", recording_send)
    return calls


@pytest.fixture
def fresh_http_clients(monkeypatch):
    """New per-account httpx clients for this test, closed afterwards."""
    from dashboard import accounts

    clients: dict = {}
    monkeypatch.setattr(accounts, "_clients", clients)
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def four_accounts(embedded_upstream, anthropic_sdk, openai_sdk):
    """One running batch in each account, created 1..4 minutes ago (newest first: A-ops, O-ops, A-res, O-res),
    and the store filled by a poller cycle."""
    made = factories.four_accounts(anthropic_sdk, openai_sdk)
    factories.poll_store()
    return made
