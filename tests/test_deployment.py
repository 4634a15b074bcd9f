"""Deployment: settings from the environment, the simulator switch, check --deploy, the production
server, the health endpoint and the lock files.

Settings are read once per process, so each environment is tried in a fresh Python process; a check
of settings alone (`settings_in`) imports them without `django.setup()`, which costs most of such a
process's CPU. The database those processes use is a copy of one migrated once per run
(tests/services.py `migrate_sqlite`); `test_database_url_takes_sqlite_urls` migrates its own.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dashboard.providers import PROVIDERS
from tests.services import (
    ACCOUNT_ENVIRONMENT,
    copy_sqlite,
    manage_commands,
    migrate_sqlite,
    run_python,
    start_app_server,
)

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ACCOUNT_VARIABLES = (
    *ACCOUNT_ENVIRONMENT,
    "SIMULATOR_ENABLED",
    "SIMULATOR_BASE_URL",
    "DATABASE_URL",
    "REDIS_URL",
    "DEBUG",
)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ACCOUNT_VARIABLES and not key.startswith(("SECURE_", "PYTEST_", "DJANGO_ALLOW"))
    }
    env.update(
        SQLITE_PATH=str(tmp_path / "db.sqlite3"),
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        ALLOWED_HOSTS="testserver,127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def in_django(code: str, env: dict[str, str]) -> dict:
    """Run `code` in a fresh Django process; it sets `result`, which comes back as JSON."""
    program = "import django, json\ndjango.setup()\nresult = None\n" + code + "\nprint(json.dumps(result))\n"
    finished = run_python("-c", program, env=env, timeout=60)
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout.strip().splitlines()[-1])


def settings_in(code: str, env: dict[str, str]) -> dict:
    """Run `code`, which reads `django.conf.settings` (or the connection settings made from them)
    and sets `result`, in a fresh process for `env`, without `django.setup()`: settings come from
    the environment when they are first read, and no app, model or URL is needed to read them."""
    program = "import json\nresult = None\n" + code + "\nprint(json.dumps(result))\n"
    finished = run_python("-c", program, env=env, timeout=60)
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout.strip().splitlines()[-1])


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_python("manage.py", *args, env=env, timeout=120)


SIMULATOR_STATE = """
from django.test import Client
from django.conf import settings
from dashboard.accounts import configured_accounts
client = Client()
result = {
    "enabled": settings.SIMULATOR_ENABLED,
    "installed": "dashboard.simulator" in settings.INSTALLED_APPS,
    "api_status": client.get("/simulator/anthropic/v1/messages/batches",
                             headers={"x-api-key": "sk-ant-sim-ops", "anthropic-version": "2023-06-01"}).status_code,
    "accounts": [account.key for account in configured_accounts()],
}
"""


@pytest.mark.slow
def test_simulator_is_on_with_its_demo_accounts_when_no_real_account_is_configured(tmp_path):
    env = clean_env(tmp_path)
    migrate_sqlite(env)
    state = in_django(SIMULATOR_STATE, env)
    assert state == {
        "enabled": True,
        "installed": True,
        "api_status": 200,
        "accounts": [f"{name}-{account}" for name, module in PROVIDERS.items() for account in module.SIMULATOR_KEYS],
    }


@pytest.mark.parametrize(
    ("variable", "account"),
    [
        ("ANTHROPIC_API_KEY", "anthropic-default"),
        ("OPENAI_API_KEY", "openai-default"),
        ("GEMINI_API_KEY", "gemini-default"),
        ("GOOGLE_API_KEY", "gemini-default"),  # google-genai reads either
    ],
)
def test_a_real_account_turns_the_simulator_off_404_and_no_demo_accounts(tmp_path, variable, account):
    state = in_django(SIMULATOR_STATE, clean_env(tmp_path, **{variable: "sk-real-key-123456789"}))
    assert state["enabled"] is False
    assert state["installed"] is False
    assert state["api_status"] == 404
    assert state["accounts"] == [account]


def test_an_account_configured_wrongly_turns_the_simulator_off_and_says_what_is_missing(tmp_path):
    code = """
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from dashboard.accounts import configured_accounts
try:
    configured_accounts()
    problem = None
except ImproperlyConfigured as error:
    problem = str(error)
result = {"enabled": settings.SIMULATOR_ENABLED, "problem": problem}
"""
    state = in_django(code, clean_env(tmp_path, AZURE_OPENAI_API_KEY="azure-real-key-123456789"))  # no endpoint
    assert state["enabled"] is False  # a real account was meant: no demo accounts in its place
    assert "AZURE_OPENAI_ENDPOINT" in state["problem"]


def test_an_accounts_file_also_turns_the_simulator_off(tmp_path):
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"name": "prod", "provider": "openai", "api_key_env": "PROD_OPENAI"}]))
    state = in_django(
        SIMULATOR_STATE, clean_env(tmp_path, BATCH_ACCOUNTS_FILE=str(accounts), PROD_OPENAI="sk-prod-123456789")
    )
    assert (state["enabled"], state["api_status"], state["accounts"]) == (False, 404, ["openai-prod"])


def test_simulator_enabled_0_without_accounts_means_no_accounts_at_all(tmp_path):
    state = in_django(SIMULATOR_STATE, clean_env(tmp_path, SIMULATOR_ENABLED="0"))
    assert (state["enabled"], state["api_status"], state["accounts"]) == (False, 404, [])


def test_with_no_account_at_all_the_list_says_how_to_configure_one(tmp_path):
    env = clean_env(tmp_path, SIMULATOR_ENABLED="0")
    migrate_sqlite(env)
    code = """
from django.contrib.auth import get_user_model
from django.test import Client
client = Client()
client.force_login(get_user_model().objects.create_user("ops"))
page = client.get("/")
result = [page.status_code, "No account is configured" in page.content.decode()]
"""
    assert in_django(code, env) == [200, True]


def test_simulator_enabled_1_mounts_it_beside_real_accounts_without_demo_accounts(tmp_path):
    env = clean_env(tmp_path, SIMULATOR_ENABLED="1", OPENAI_API_KEY="sk-real-123456789")
    migrate_sqlite(env)
    state = in_django(SIMULATOR_STATE, env)
    assert (state["enabled"], state["api_status"], state["accounts"]) == (True, 200, ["openai-default"])


def test_seed_demo_says_there_is_nothing_to_seed_when_the_simulator_is_off(tmp_path):
    env = clean_env(tmp_path, SIMULATOR_ENABLED="0")
    migrate_sqlite(env)
    seeded = manage("seed_demo", env=env)
    assert seeded.returncode == 0
    assert "simulator is off" in seeded.stdout


def test_database_url_takes_sqlite_urls(tmp_path):
    database = tmp_path / "from-url.sqlite3"
    env = clean_env(tmp_path, DATABASE_URL=f"sqlite:///{database}")
    assert manage("migrate", "--noinput", env=env).returncode == 0
    assert database.exists() and database.stat().st_size > 0
    state = settings_in("from django.db import connection\nresult = connection.settings_dict['NAME']", env)
    assert state == str(database)


def test_database_url_takes_postgres_urls_with_quoted_passwords(tmp_path):
    code = (
        "from django.conf import settings\nd = settings.DATABASES['default']\n"
        "result = [d['ENGINE'], d['NAME'], d['USER'], d['PASSWORD'], d['HOST'], d['PORT'], d['CONN_MAX_AGE']]"
    )
    state = settings_in(code, clean_env(tmp_path, DATABASE_URL="postgres://ops:p%40ss%2Fword@db.internal:6543/batches"))
    assert state == ["django.db.backends.postgresql", "batches", "ops", "p@ss/word", "db.internal", 6543, 60]


# --- check --deploy and the production environment ----------------------------------------


def production_env() -> dict[str, str]:
    values = {}
    for line in (ROOT / "production.env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_production_env_example_passes_check_deploy_at_warning_level(tmp_path):
    env = clean_env(tmp_path, **production_env())
    env.pop("SQLITE_PATH")
    checked = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no issues" in checked.stdout


def test_check_deploy_fails_without_the_production_environment(tmp_path):
    checked = manage("check", "--deploy", "--fail-level", "WARNING", env=clean_env(tmp_path, DEBUG="0"))
    assert checked.returncode != 0
    for warning in ("W004", "W008", "W012", "W016"):
        assert warning in checked.stderr


def test_production_env_example_sets_every_https_setting():
    env = production_env()
    assert env["DEBUG"] == "0"
    assert env["SIMULATOR_ENABLED"] == "0"
    assert env["SECURE_PROXY_SSL_HEADER"] == "HTTP_X_FORWARDED_PROTO,https"
    assert int(env["SECURE_HSTS_SECONDS"]) >= 31536000
    assert env["CSRF_TRUSTED_ORIGINS"].startswith("https://")
    assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://")
    assert all("REPLACE_ME" in env[name] for name in ("SECRET_KEY", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"))


def test_https_settings_come_from_the_environment(tmp_path):
    code = (
        "from django.conf import settings as s\nresult = [s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_HSTS_INCLUDE_SUBDOMAINS, list(s.SECURE_PROXY_SSL_HEADER), s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.CSRF_TRUSTED_ORIGINS]"
    )
    state = settings_in(
        code,
        clean_env(
            tmp_path,
            SECURE_SSL_REDIRECT="1",
            SECURE_HSTS_SECONDS="600",
            SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
            SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
            SECURE_COOKIES="1",
            CSRF_TRUSTED_ORIGINS="https://a.example,https://b.example",
        ),
    )
    assert state == [
        True,
        600,
        True,
        ["HTTP_X_FORWARDED_PROTO", "https"],
        True,
        True,
        ["https://a.example", "https://b.example"],
    ]


def test_postgresql_and_redis_that_stop_answering_cannot_hang_a_process(tmp_path):
    code = (
        "from django.conf import settings as s\nresult = [s.DATABASES['default']['OPTIONS'].get('connect_timeout'), "
        "s.CACHES['default']['OPTIONS']]"
    )
    env = clean_env(tmp_path, DATABASE_URL="postgres://u:p@192.0.2.1:5432/x", REDIS_URL="redis://192.0.2.1:6379/0")
    env.pop("SQLITE_PATH", None)
    assert settings_in(code, env) == [5, {"socket_connect_timeout": 5, "socket_timeout": 5}]
    env.update(DATABASE_URL="postgres://u:p@192.0.2.1:5432/x?connect_timeout=2", REDIS_TIMEOUT_SECONDS="1")
    assert settings_in(code, env) == [2, {"socket_connect_timeout": 1, "socket_timeout": 1}], "the URL's own wins"


def test_behind_a_tls_proxy_pages_redirect_to_https_but_healthz_answers_plain_http(tmp_path):
    code = """
from django.test import Client
client = Client()
result = [
    client.get("/login/").status_code,
    client.get("/login/")["Location"],
    client.get("/login/", headers={"x-forwarded-proto": "https"}).status_code,
    client.get("/healthz").status_code,
    client.get("/login/", headers={"x-forwarded-proto": "https"}).get("Strict-Transport-Security"),
]
"""
    env = clean_env(
        tmp_path,
        SECURE_SSL_REDIRECT="1",
        SECURE_HSTS_SECONDS="600",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
    )
    migrate_sqlite(env)
    assert in_django(code, env) == [301, "https://testserver/login/", 200, 200, "max-age=600"]


# --- the production server -------------------------------------------------------------------


def signed_in(base: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=20, follow_redirects=True)
    client.get("/login/")
    client.post(
        "/login/",
        data={"username": "operator", "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
    )
    return client


# One poll, then the pages: a slow machine may take longer than three poll intervals to get there,
# which the pages rightly call a lagging poller; that is not what the deadlock test is about.
EMBEDDED_DEFAULT = {"SIMULATOR_PROCESSING_SECONDS": "600", "POLL_SECONDS": "120", "POLL_IDLE_SECONDS": "120"}


# The demo's clocks start at seed_demo (its shortest batch ends two minutes later) and the pages call
# a poll lagging after three intervals: a prepared database is shared only while it is this fresh.
PREPARED_FOR_SECONDS = 60


@pytest.fixture(scope="module")
def polled_embedded_default(tmp_path_factory):
    """The embedded default's SQLite after `seed_demo`, one `poll --once` and `ensure_operator`,
    made by those commands (in one process) once and shared by this module's tests (each serves its own copy)
    while fresh. Call it for the prepared file and the operator's password."""
    prepared: list[tuple[float, Path, str]] = []

    def prepare() -> tuple[Path, str]:
        if prepared and time.monotonic() - prepared[-1][0] < PREPARED_FOR_SECONDS:
            return prepared[-1][1:]
        started = time.monotonic()
        env = clean_env(tmp_path_factory.mktemp("embedded-default"), **EMBEDDED_DEFAULT)
        migrate_sqlite(env)
        made = manage_commands(("seed_demo",), ("poll", "--once"), ("ensure_operator",), env=env)
        prepared.append((started, Path(env["SQLITE_PATH"]), re.search(r"password: (\S+)", made).group(1)))
        return prepared[-1][1:]

    return prepare


@pytest.mark.slow
@pytest.mark.parametrize(
    "worker_options",
    [
        {"WEB_WORKER_CLASS": "sync", "WEB_WORKERS": "1", "WEB_THREADS": "1"},  # gunicorn's plain default
        {"WEB_THREADS": "1", "WEB_WORKERS": "2"},
    ],
)
def test_the_embedded_default_cannot_deadlock_on_itself_whatever_the_workers(
    tmp_path, worker_options, polled_embedded_default
):
    """One sync worker that calls its own simulator over HTTP would wait on itself forever. Pages
    read the store; a cancel and the results still go upstream from the web process."""
    prepared, password = polled_embedded_default()
    env = clean_env(tmp_path, **EMBEDDED_DEFAULT)
    copy_sqlite(prepared, Path(env["SQLITE_PATH"]))  # its own copy: this test's cancel stays in it
    server = start_app_server({**env, **worker_options}, tmp_path / "server.log")
    try:
        worker_class = worker_options.get("WEB_WORKER_CLASS", "gthread")
        assert f"Using worker: {worker_class}" in server.log.read_text()
        client = signed_in(server.url, password)
        page = client.get("/")
        assert page.status_code == 200
        rows = [
            f"{link}row"
            for link in re.findall(r' data-live[^>]*>.*?<a [^>]*?href="(/batches/[^"]+/)"', page.text, re.S)
        ]
        assert len(rows) >= 10, "the list shows the simulator's live demo batches"
        assert "account-notice" not in page.text, "no account is failing, lagging or unpolled"
        for row in rows[:5]:
            answer = client.get(row, headers={"HX-Request": "true"})
            assert answer.status_code in (200, 286) and 'class="batch-row' in answer.text
            assert "is-stale" not in answer.text
        token = re.search(r'"X-CSRFToken": "([^"]+)"', page.text).group(1)
        cancel = re.findall(r'hx-post="([^"]+/cancel)"', page.text)[0]
        answer = client.post(cancel, headers={"HX-Request": "true", "X-CSRFToken": token})
        assert answer.status_code == 200 and "Cancel accepted" in answer.text
        # The completed ones: the list's first page may hold only running batches and some canceled
        # before they ran (nothing to read) once there are more demo accounts.
        completed = client.get("/", params={"status": "completed"}).text
        ended = [
            link for link in re.findall(r'<a [^>]*?href="(/batches/[^"]+/)"', completed) if link + "row" not in rows
        ]
        details = [client.get(link) for link in ended[:3]]
        assert any('class="batches results-table"' in detail.text for detail in details), "results read upstream"
    finally:
        server.stop()


@pytest.mark.slow
def test_the_production_server_serves_static_files_and_security_headers(tmp_path):
    env = clean_env(tmp_path)
    migrate_sqlite(env)
    server = start_app_server(env, tmp_path / "server.log")
    base = server.url
    try:
        login = httpx.get(base + "/login/")
        assert login.status_code == 200
        assert "'unsafe-inline'" not in login.headers["content-security-policy"]
        assert "script-src 'self'" in login.headers["content-security-policy"]
        assert login.headers["x-frame-options"] == "DENY"
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', login.text):
            served = httpx.get(base + asset)
            assert served.status_code == 200, asset
        scripts = re.findall(r'<script[^>]*src="([^"]+)"', login.text)
        assert any(re.fullmatch(r"/static/django_htmx/.*htmx.*\.js", src) for src in scripts), scripts
        assert all(src.startswith("/static/") for src in scripts), "no script from a CDN"
    finally:
        server.stop()


# --- /healthz ----------------------------------------------------------------------------------


def test_healthz_needs_no_login_makes_no_upstream_call_and_says_ok(client, db, upstream_calls):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "cache": "ok"}
    assert response["Cache-Control"] == "no-store"
    assert upstream_calls == []


def test_healthz_is_503_when_the_cache_is_unreachable(client, db, monkeypatch):
    from django.core.cache import cache

    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(cache, "set", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "failing", "database": "ok", "cache": "unreachable (ConnectionError)"}


def test_healthz_is_503_when_the_database_is_unreachable(client, db, monkeypatch):
    from dashboard.web import health

    class Unreachable:
        def cursor(self):
            raise OSError("disk gone")

    monkeypatch.setattr(health, "connection", Unreachable())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable (OSError)"


def test_healthz_answers_whatever_host_a_load_balancer_sends_and_pages_still_refuse_it(client, db, settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["batches.example.com"]
    for host in ("10.0.3.7:8000", "[fd00::7]", "internal-lb-1234.elb.example", "batches.example.com"):
        response = client.get("/healthz", HTTP_HOST=host)
        assert response.status_code == 200, host
        assert response.json()["status"] == "ok"
    assert client.get("/login/", HTTP_HOST="10.0.3.7:8000").status_code == 400
    assert client.get("/login/", HTTP_HOST="batches.example.com").status_code == 200
    assert client.post("/healthz", HTTP_HOST="10.0.3.7:8000").status_code == 405, "GET only, as before"


# --- lock files ----------------------------------------------------------------------------------


def pins(lock: str) -> dict[str, str]:
    found = {}
    for line in (ROOT / ".ci" / lock).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def declared(extra: str | None = None) -> list[Requirement]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    for name, texts in project["optional-dependencies"].items():
        if extra in (name, "all"):
            requirements += [Requirement(text) for text in texts if not text.startswith("batch-dashboard")]
    return requirements


@pytest.mark.parametrize(("lock", "extra"), [("requirements.txt", None), ("requirements-test.txt", "all")])
def test_lock_files_pin_every_declared_package_within_its_range_with_hashes(lock, extra):
    pinned = pins(lock)
    for requirement in declared(extra):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is declared but not locked in {lock}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside pyproject's {requirement.specifier}: run `make lock`"
        )
    text = (ROOT / ".ci" / lock).read_text()
    assert text.count("--hash=sha256:") >= len(pinned)


def test_production_lock_has_the_postgres_and_redis_drivers():
    assert {"psycopg", "psycopg-binary", "redis", "gunicorn", "dj-database-url"} <= set(pins("requirements.txt"))


def imported_top_level_modules() -> set[str]:
    """Every absolute import in our code, found by parsing it (a docstring line that reads
    "from the store ..." is not an import)."""
    modules = set()
    for folder in ("dashboard", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    return modules


def test_every_third_party_package_the_code_imports_is_declared_and_locked():
    from importlib.metadata import packages_distributions

    distributions = packages_distributions()
    # Ours: the packages, and the bench scripts' sibling modules (a script imports its folder's files).
    own = {"dashboard", "tests", "bench", "__future__", *(path.stem for path in (ROOT / "bench").glob("*.py"))}
    locked = set(pins("requirements-test.txt"))
    declared_names = {canonicalize_name(r.name) for r in declared("all")}
    for module in sorted(imported_top_level_modules() - own - set(sys.stdlib_module_names)):
        providers = {canonicalize_name(name) for name in distributions.get(module, [])}
        assert providers, f"`import {module}` comes from no installed distribution"
        assert providers & locked, f"`import {module}` ({providers}) is not in the test lock file"
        direct = providers & declared_names
        assert direct, f"`import {module}` ({providers}) is used but not declared"


def test_the_models_and_their_migrations_agree(tmp_path):
    checked = manage("makemigrations", "--check", "--dry-run", env=clean_env(tmp_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
