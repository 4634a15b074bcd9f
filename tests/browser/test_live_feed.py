"""In real Chromium: a list of 25 live rows costs one request per poll interval, whatever the rows,
and the rows that change still change on the page (dashboard/web/live.py)."""

from __future__ import annotations

import itertools
import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.factories import stored_batch

pytestmark = pytest.mark.browser

ROWS = 25
INTERVALS = 5


def store_running(batch_id: str, *, created, completed: int = 0) -> None:
    """What the poller writes for a running OpenAI batch of 100 requests, `completed` of them done."""
    stored_batch(
        "openai-ops",
        batch_id,
        created=created,
        fetched_at=timezone.now(),
        request_counts={"total": 100, "completed": completed, "failed": 0},
    )


def test_a_list_of_25_live_rows_makes_one_request_per_interval_and_its_rows_change_live(
    settings, dashboard_upstream, signed_in_page, live_server
):
    settings.ROW_POLL_SECONDS = 1
    settings.POLL_SECONDS = 600  # no poller runs here: rows must not turn stale during the test
    settings.LIST_PAGE_SIZE = ROWS
    now = timezone.now()
    ids = [f"batch_{number:032d}" for number in range(1, ROWS + 1)]
    created = {batch_id: now - timedelta(minutes=number) for number, batch_id in enumerate(ids, start=1)}
    for batch_id in ids:
        store_running(batch_id, created=created[batch_id])
    page = signed_in_page
    page.goto(live_server.url + "/")
    expect(page.locator("tr.batch-row[data-live]")).to_have_count(ROWS)
    page.wait_for_load_state("networkidle")  # the page's own loads (the header's summary) are done

    requests: list[tuple[float, str]] = []
    answers: list[int] = []
    page.on("request", lambda request: requests.append((time.monotonic(), request.url)))
    page.on("response", lambda response: answers.append(response.status) if "feed=" in response.url else None)
    page.wait_for_timeout(INTERVALS * 1000)

    feed = [moment for moment, url in requests if "feed=" in url]
    others = [url for _, url in requests if "feed=" not in url]
    assert others == [], f"requests besides the feed: {others}"
    assert INTERVALS - 1 <= len(feed) <= INTERVALS + 1, f"{len(feed)} feed requests in {INTERVALS} intervals"
    gaps = [later - earlier for earlier, later in itertools.pairwise(feed)]
    assert min(gaps) > 0.5, f"two feed requests within one interval: {gaps}"
    assert set(answers) == {204}, "nothing changed: every answer is empty"

    # Two batches move on in the store: their rows change, the other 23 stay as they were.
    still = page.locator(f"#row-openai-ops-{ids[0]}")
    still.evaluate("element => { element.dataset.untouched = 'yes'; }")
    store_running(ids[3], created=created[ids[3]], completed=40)
    stored_batch(
        "openai-ops",
        ids[7],
        created=created[ids[7]],
        fetched_at=timezone.now(),
        status="completed",
        completed_at=int(timezone.now().timestamp()),
        request_counts={"total": 100, "completed": 100, "failed": 0},
    )
    moved = page.locator(f"#row-openai-ops-{ids[3]}")
    expect(moved.locator(".progress")).to_have_attribute("title", re.compile(r"\bsucceeded 40\b"))
    ended = page.locator(f"#row-openai-ops-{ids[7]}")
    expect(ended.locator(".badge")).to_have_text("completed")
    expect(ended).not_to_have_attribute("data-live", "")
    expect(page.locator("tr.batch-row[data-live]")).to_have_count(ROWS - 1)
    assert still.get_attribute("data-untouched") == "yes", "an unchanged row was sent again"
    assert page.locator("tr.batch-row").count() == ROWS
