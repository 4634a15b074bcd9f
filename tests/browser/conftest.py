import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

# Playwright's sync API runs an event loop in the test thread; Django's ORM must still be usable there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

# expect() waits 5 s by default: a poller process's first cycle, or a loaded machine (a parallel
# run), can take longer to bring a row in. Tests that wait for longer say so themselves.
expect.set_options(timeout=15_000)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium package).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page; at the end, no Content-Security-Policy violation and no script error may have occurred."""
    context = browser.new_context(timezone_id="Europe/Berlin")
    # Reported by the page itself, so every navigation keeps listening; the console is checked too.
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation', (e) => "
        "console.error('CSP violation: ' + e.violatedDirective + ' ' + (e.blockedURI || 'inline')));"
    )
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error"
            and ("Content Security Policy" in message.text or "CSP violation" in message.text)
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.set_default_timeout(10_000)
    yield page
    context.close()
    assert problems == [], "the page broke its Content-Security-Policy or raised a script error"


@pytest.fixture
def signed_in_page(page, live_server, operator):
    operator.set_password("correct horse battery staple")
    operator.save()
    page.goto(live_server.url + "/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "correct horse battery staple")
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")
    return page


@pytest.fixture
def poller_env() -> dict[str, str]:
    """More environment for `poller_process` (its settings): a test module overrides this fixture,
    e.g. with ALARM_STUCK_MINUTES for alarms that open within seconds."""
    return {}


@pytest.fixture
def poller_process(dashboard_upstream, live_server, settings, tmp_path, poller_env):
    """`manage.py poll` in a process of its own, as `make run` starts it: same database (the test
    database file the live server uses), the simulator over the live server's HTTP, a 1 s cycle
    (and `poller_env`, if a test gives one)."""
    from django.db import connection

    from tests.services import app_env

    database = connection.settings_dict["NAME"]
    assert Path(database).is_file(), "the browser tests need a file database the poller can open too"
    env = app_env(
        SQLITE_PATH=database,
        SIMULATOR_BASE_URL=dashboard_upstream,
        POLL_SECONDS="1",
        POLL_IDLE_SECONDS="1",
        UPSTREAM_TIMEOUT_SECONDS="2",
        **poller_env,
    )
    log = tmp_path / "poller.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "poll", "--owner", "browser-test-poller", "-v", "2"],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    yield process
    process.send_signal(signal.SIGTERM)  # the poller releases its leases and stops
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    assert process.returncode in (0, -signal.SIGTERM), log.read_text()


@pytest.fixture
def worker_process(dashboard_upstream, live_server, settings, tmp_path):
    """`manage.py work` in a process of its own, as `make run` starts it: same database (the test
    database file the live server uses), the simulator over the live server's HTTP; its sweep every
    second (a bulk cancel's task is taken within a second anyway)."""
    from django.db import connection

    from tests.services import app_env

    database = connection.settings_dict["NAME"]
    assert Path(database).is_file(), "the browser tests need a file database the worker can open too"
    env = app_env(
        SQLITE_PATH=database,
        SIMULATOR_BASE_URL=dashboard_upstream,
        UPSTREAM_TIMEOUT_SECONDS="2",
        WORKER_SWEEP_SECONDS="1",
    )
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "work", "--name", "browser-test-worker"],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    yield process
    process.send_signal(signal.SIGTERM)  # the task under way ends first
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    assert process.returncode == 0, log.read_text()
