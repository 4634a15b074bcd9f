"""In real Chromium: what the operator sees when things go wrong while watching the list.

Signed out in another tab, the whole page goes to sign in and comes back; a refused or failed
cancel says why in its row and the button still works; a long metadata value never widens the list.
"""

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from dashboard.models import CancelAttempt
from tests.factories import anthropic_batch, openai_batch, poll_store
from tests.web.test_truthful_pages import CSRF_WORDS, stored_openai

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1440, "height": 900}
WAIT = 15_000  # ms: a loaded machine (a parallel run) can take seconds to answer a poll or a cancel


@pytest.fixture
def quick_rows(settings, dashboard_upstream):
    settings.ROW_POLL_SECONDS = 1
    return settings


def sign_in(page):
    page.fill("#id_username", "operator")
    page.fill("#id_password", "correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()  # signed in already, the header has a Sign out button too


def in_another_tab(page, live_server, action: str) -> None:
    """Sign out, or sign in again, in another tab of the same browser (same cookies)."""
    other = page.context.new_page()
    other.goto(live_server.url + ("/" if action == "sign out" else "/login/"))
    if action == "sign out":
        other.get_by_role("button", name="Sign out").click()
    else:
        sign_in(other)
        other.wait_for_url(live_server.url + "/")
    other.wait_for_load_state()
    other.close()


def test_signed_out_in_another_tab_the_whole_page_signs_in_and_comes_back(
    quick_rows, anthropic_client, signed_in_page, live_server
):
    page = signed_in_page
    running = anthropic_batch(anthropic_client, seconds=300)
    poll_store()
    watched = live_server.url + "/?status=active"
    page.goto(watched)
    row = page.locator(f"#row-anthropic-ops-{running.id}")
    expect(row.locator(".badge")).to_have_text("in_progress", timeout=WAIT)
    # The page's feed (its one live request) is what asks next: its 401 moves the page.
    poll_answers: list[tuple[int, str | None]] = []
    page.on(
        "response",
        lambda response: (
            poll_answers.append((response.status, response.headers.get("hx-redirect")))
            if response.request.headers.get("hx-request") == "true"
            else None
        ),
    )

    in_another_tab(page, live_server, "sign out")

    # The next poll moves the whole page to sign in: no sign-in form lands in the table. Two polls
    # answered at once both move it (the second navigation aborts the first): watch where it ends.
    expect(page).to_have_url(re.compile(r"/login/\?next=%2F%3Fstatus%3Dactive$"), timeout=WAIT)
    expect(page.locator("input[name=password]")).to_have_count(1, timeout=WAIT)
    expect(page.locator("table.batches")).to_have_count(0, timeout=WAIT)
    assert (401, "/login/?next=%2F%3Fstatus%3Dactive") in poll_answers

    sign_in(page)
    expect(page).to_have_url(watched, timeout=WAIT)
    expect(row.locator(".badge")).to_have_text("in_progress", timeout=WAIT)
    expect(page.locator("table.batches input[name=password]")).to_have_count(0, timeout=WAIT)


def test_a_failed_cancel_says_so_in_the_row_and_the_button_still_works(
    quick_rows, anthropic_client, signed_in_page, live_server
):
    page = signed_in_page
    running = anthropic_batch(anthropic_client, seconds=300)
    poll_store()
    page.goto(live_server.url + "/")
    page.on("dialog", lambda dialog: dialog.accept())
    row = page.locator(f"#row-anthropic-ops-{running.id}")
    button = row.get_by_role("button", name="Cancel")
    message = row.locator(".row-error")
    expect(row.locator(".badge")).to_have_text("in_progress", timeout=WAIT)
    cancel_url = f"**/batches/anthropic-ops/{running.id}/cancel"

    # The dashboard answers 500.
    page.route(
        cancel_url, lambda route: route.fulfill(status=500, content_type="text/html", body="<h1>Server Error</h1>")
    )
    button.click()
    expect(message).to_have_text("⚠ The dashboard failed to answer (HTTP 500). Try again.", timeout=WAIT)
    expect(message).to_have_attribute("role", "status", timeout=WAIT)
    # The page's feed (every second) goes on: the message stays, so does the button.
    page.wait_for_timeout(2500)
    expect(message).to_contain_text("HTTP 500", timeout=WAIT)
    expect(button).to_be_enabled(timeout=WAIT)
    page.unroute(cancel_url)

    # The network fails.
    page.route(cancel_url, lambda route: route.abort("connectionrefused"))
    button.click()
    expect(message).to_have_text("⚠ Could not reach the dashboard. Check your connection and try again.", timeout=WAIT)
    expect(button).to_be_enabled(timeout=WAIT)
    page.unroute(cancel_url)
    assert CancelAttempt.objects.count() == 0  # neither reached the dashboard

    # Tried again, the cancel goes through and the message goes.
    button.click()
    expect(row.locator(".badge")).to_have_text("canceling", timeout=WAIT)
    expect(message).to_have_text("", timeout=WAIT)


def test_a_cancel_refused_for_a_stale_token_says_why_and_works_after_a_reload(
    quick_rows, anthropic_client, signed_in_page, live_server
):
    page = signed_in_page
    running = anthropic_batch(anthropic_client, seconds=300)
    poll_store()
    page.goto(live_server.url + "/")
    page.on("dialog", lambda dialog: dialog.accept())
    row = page.locator(f"#row-anthropic-ops-{running.id}")
    expect(row.locator(".badge")).to_have_text("in_progress", timeout=WAIT)

    in_another_tab(page, live_server, "sign in again")  # the session's CSRF token changes

    with page.expect_response(lambda response: response.url.endswith("/cancel"), timeout=WAIT) as answer:
        row.get_by_role("button", name="Cancel").click()
    assert answer.value.status == 403
    expect(row.locator(".row-error")).to_have_text(f"⚠ {CSRF_WORDS}", timeout=WAIT)
    expect(row.get_by_role("button", name="Cancel")).to_be_enabled(timeout=WAIT)
    expect(row.locator(".badge")).to_have_text("in_progress", timeout=WAIT)
    assert CancelAttempt.objects.count() == 0
    assert anthropic_client().messages.batches.retrieve(running.id).processing_status == "in_progress"

    # As the message says: reload, and the cancel goes through.
    page.reload()
    row.get_by_role("button", name="Cancel").click()
    expect(row.locator(".badge")).to_have_text("canceling", timeout=WAIT)
    expect(row.locator(".row-error")).to_have_text("", timeout=WAIT)


def test_long_values_keep_the_pages_within_the_viewport(dashboard_upstream, openai_client, signed_in_page, live_server):
    page = signed_in_page
    page.set_viewport_size(VIEWPORT)
    long = openai_batch(openai_client, metadata={"job": "J" * 512, "owner": "o" * 512}, seconds=300)
    poll_store()
    page.goto(live_server.url + "/")
    row = page.locator(f"#row-openai-ops-{long.id}")
    expect(row.get_by_role("button", name="Cancel")).to_be_visible(timeout=WAIT)

    # Measured in one go: the row may be swapped by its poll between two calls.
    widths = page.evaluate(
        """(id) => {
            const row = document.getElementById(id);
            const right = (el) => el.getBoundingClientRect().right;
            return {
                table: document.querySelector("table.batches").scrollWidth,
                page: document.documentElement.scrollWidth,
                status: right(row.querySelector(".badge")),
                requests: right(row.querySelector(".progress-cell")),
                cancel: right(row.querySelector("button.danger")),
            };
        }""",
        f"row-openai-ops-{long.id}",
    )
    # The list, the page, and Status, Requests and Cancel of the row all stay within the viewport.
    assert all(width <= VIEWPORT["width"] for width in widths.values()), widths
    # The whole value is there on hover.
    expect(row.locator(".job .clipped")).to_have_attribute("title", "J" * 512, timeout=WAIT)

    # A detail page of huge fields (a 50,000-character model name and error message) stays as wide.
    stored_openai(
        "batch_hugeFields1",
        age=timedelta(minutes=1),
        model="m" * 50_000,
        metadata={"job": "J" * 512},
        errors={"object": "list", "data": [{"code": "duplicate_custom_id", "line": 2, "message": "c" * 50_000}]},
    )
    page.goto(live_server.url + "/batches/openai-ops/batch_hugeFields1/")
    page.locator("details.raw summary").click()
    page_width = page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= VIEWPORT["width"], f"the detail page is {page_width} px wide"


def test_a_failed_request_outside_a_row_says_so_on_the_page_until_one_answers(
    quick_rows, anthropic_client, signed_in_page, live_server
):
    page = signed_in_page
    anthropic_batch(anthropic_client, seconds=300)
    poll_store()
    page.goto(live_server.url + "/")
    notice = page.locator("#page-notice")
    expect(notice).to_be_hidden(timeout=WAIT)

    # The list's feed (every second) gets a 502 from a proxy in between.
    probe = re.compile(r"/\?.*feed=")
    page.route(probe, lambda route: route.fulfill(status=502, content_type="text/html", body="<h1>Bad gateway</h1>"))
    expect(notice).to_have_text("The dashboard failed to answer (HTTP 502). It will retry.", timeout=WAIT)
    expect(notice).to_have_attribute("role", "status")
    page.unroute(probe)
    expect(notice).to_be_hidden(timeout=WAIT)
