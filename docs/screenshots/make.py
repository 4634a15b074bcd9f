"""Screenshots of the list, detail and alarms pages at 1440 x 900, light and dark, in docs/screenshots/.

    .venv/bin/python docs/screenshots/make.py            # writes docs/screenshots/{list,detail,alarms}-{light,dark}.png
    .venv/bin/python docs/screenshots/make.py --serve    # the same dashboard, left running until Ctrl-C

As `make run` does, in a temporary directory: a fresh SQLite database, migrate, seed_demo,
ensure_operator, the production server (gunicorn) on the embedded simulator and the poller. Then
Debian's Chromium (Playwright) signs in and takes each page once the poller has filled the list.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from harness import base_env, manage, operator_password, start_gunicorn, start_poller  # noqa: E402

VIEWPORT = {"width": 1440, "height": 900}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROWS_WANTED = 25  # a full first page: the poller has listed every demo account


def take(base: str, password: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        detail_url = ""
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport=VIEWPORT, color_scheme=scheme, timezone_id="UTC")
            page = context.new_page()
            page.goto(base + "/login/")
            page.fill("#id_username", "operator")
            page.fill("#id_password", password)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            deadline = time.monotonic() + 90
            while page.locator("tr.batch-row").count() < ROWS_WANTED and time.monotonic() < deadline:
                time.sleep(1)
                page.reload()
            page.locator("table.list-summary").wait_for(state="attached")  # the header summary, loaded after the page
            if not detail_url:
                # An OpenAI batch still running: its detail page has a live row, Cancel and the progress chart.
                live = page.locator('tr.batch-row[data-status="in_progress"]:has(.provider-openai) a.batch-link').first
                detail_url = base + live.get_attribute("href")
            shots = {"list": base + "/", "detail": detail_url, "alarms": base + "/alarms/"}
            for name, url in shots.items():
                if page.url != url:
                    page.goto(url)
                # Pages keep polling (never network-idle): a moment for what htmx loads after them.
                page.wait_for_timeout(1500)
                path = out / f"{name}-{scheme}.png"
                page.screenshot(path=str(path))
                written.append(path)
            context.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="leave the dashboard running, no screenshots")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped like Ctrl-C: the server and poller too
    with tempfile.TemporaryDirectory(prefix="dashboard-screenshots-") as workdir:
        work = Path(workdir)
        env = base_env(work / "db.sqlite3")
        manage("migrate", "--noinput", env=env)
        manage("seed_demo", env=env)
        password = operator_password(env)
        server = start_gunicorn("dashboard", env, work / "dashboard.log")
        poller = start_poller(env, work / "poller.log", "screenshots")
        try:
            if args.serve:
                print(f"Dashboard: {server.url}/  (operator / {password}); Ctrl-C stops it", flush=True)
                while True:
                    server.check_alive()
                    poller.check_alive()
                    time.sleep(2)
            for path in take(server.url, password, args.out):
                print(path.relative_to(ROOT))
        except KeyboardInterrupt:
            pass
        finally:
            poller.stop()
            server.stop()


if __name__ == "__main__":
    main()
