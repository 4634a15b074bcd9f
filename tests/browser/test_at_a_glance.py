"""In real Chromium, on the seeded demo (every provider's demo accounts, as `make run` shows them):
the list reads at a glance on a desktop and a wall screen (one line per batch, at least 15 rows
above the fold at 1440 x 900), nothing breaks inside a word on any page, a phone never scrolls
sideways, dark mode is applied, and the page title carries the count of unacknowledged alarms."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from dashboard.models import AccountState, Alarm, BulkCancel, BulkCancelItem, CancelAttempt, StoredBatch
from tests.browser import measure
from tests.factories import poll_store

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1440, "height": 900}
WALL = {"width": 1920, "height": 1080}
PHONE = {"width": 390, "height": 844}
ROW_HEIGHT_MAX = 40  # px: one line of text and the compact progress bar
ONE_LINE_MAX = 44  # px: no row of the demo has a second line


@pytest.fixture
def seeded_demo(dashboard_upstream, settings):
    """`make run`'s store: the simulator's demo batches (seed_demo), listed and refreshed by one poll
    of every demo account. Rows refresh themselves every second."""
    from dashboard.simulator.demo import seed_demo_batches

    settings.ROW_POLL_SECONDS = 1
    # No poller runs here: the one poll below stays fresh for the test (no account lags, no row is stale).
    settings.POLL_SECONDS = 600
    seed_demo_batches()
    poll_store()
    assert StoredBatch.objects.count() >= 50, "the demo store is smaller than `make run` shows"
    return settings


def open_list(page, live_server, viewport) -> None:
    page.set_viewport_size(viewport)
    page.goto(live_server.url + "/")
    expect(page.locator("table.batches tr.batch-row")).to_have_count(25)
    # The header summary (loaded by htmx after the page) takes its place above the rows.
    expect(page.locator("#list-summary table.list-summary")).to_have_count(1)


def assert_reads_without_breaks(page, where: str) -> None:
    broken = measure.broken_words(page)
    assert broken == [], f"{where}: {len(broken)} words broken across lines: {broken[:10]}"


def assert_no_sideways_scroll(page, where: str) -> None:
    width = measure.page_width(page)
    assert width["scroll"] <= width["window"], f"{where}: the page is {width['scroll']} px wide in {width['window']}"


@pytest.mark.parametrize("viewport, above_fold", [(DESKTOP, 15), (WALL, 20)], ids=["1440x900", "1920x1080"])
def test_the_list_is_one_line_per_batch_and_shows_many_above_the_fold(
    seeded_demo, signed_in_page, live_server, viewport, above_fold
):
    page = signed_in_page
    open_list(page, live_server, viewport)

    rows = measure.rows(page)
    assert rows["median"] <= ROW_HEIGHT_MAX, rows
    assert rows["tallest"] <= ONE_LINE_MAX, rows
    assert rows["above_fold"] >= above_fold, rows
    assert_reads_without_breaks(page, f"the list at {viewport['width']} px")
    assert_no_sideways_scroll(page, f"the list at {viewport['width']} px")

    # The times are short ("in 1 d 23 h"), also once the browser has counted them on, and whole in their cells.
    page.wait_for_timeout(1500)
    times = page.evaluate(
        """() => Array.from(document.querySelectorAll("table.batch-list td.time")).map((cell) => ({
            text: cell.textContent.trim(),
            cut: cell.scrollWidth > cell.clientWidth,
        }))"""
    )
    short = re.compile(r"^(—|just now|in a moment|(in )?\d+ (min|h|d)( \d+ (min|h))?( ago)?)$")
    assert times and all(short.match(time["text"]) and not time["cut"] for time in times), times


def test_ids_are_shortened_in_the_middle_copied_whole_and_the_header_stays(seeded_demo, signed_in_page, live_server):
    page = signed_in_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    # One account's polls fail, and a batch of another has an alarm: their rows say so, still on one line.
    AccountState.objects.filter(account="openai-ops").update(
        consecutive_failures=3, last_error="OpenAI HTTP 500 server_error: it failed", last_error_at=timezone.now()
    )
    alarmed = StoredBatch.objects.filter(account="anthropic-ops", is_ended=False).first()
    now = timezone.now()
    Alarm.objects.create(
        rule="stuck", account=alarmed.account, batch=alarmed, opened_at=now, last_seen_at=now, detail="No change."
    )
    open_list(page, live_server, {"width": 1280, "height": 900})
    stale = page.locator("tr.batch-row.is-stale .stale-note")
    expect(stale.first).to_be_visible()
    expect(stale.first).to_have_text(re.compile(r"^⚠ Stale: Polls of this account are failing \(OpenAI HTTP 500"))
    expect(page.locator(f"#row-anthropic-ops-{alarmed.batch_id} .alarm-note")).to_have_text("🔔 1 open alarm")
    rows = measure.rows(page)
    assert rows["tallest"] <= ONE_LINE_MAX, rows
    assert_reads_without_breaks(page, "the list at 1280 px with stale and alarmed rows")
    longest = page.evaluate(
        """() => {
            const links = Array.from(document.querySelectorAll("tr.batch-row a.batch-link"));
            const link = links.sort((a, b) => b.title.length - a.title.length)[0];
            const head = link.querySelector(".id-head");
            const tail = link.querySelector(".id-tail");
            return {
                id: link.title,
                row: link.closest("tr").id,
                text: link.textContent,
                cut: head.scrollWidth > head.clientWidth,
                tail: tail.textContent,
                tailShown: tail.getBoundingClientRect().right <= link.closest("td").getBoundingClientRect().right,
            };
        }"""
    )
    # Too long for its cell at 1280 px: cut in its middle, its end still shown, the whole id its text.
    assert longest["cut"] and longest["tailShown"], longest
    assert longest["text"] == longest["id"] and longest["id"].endswith(longest["tail"]), longest

    # The column headers stay in sight while the list scrolls under them.
    page.evaluate("window.scrollTo(0, document.scrollingElement.scrollHeight)")
    tops = page.evaluate(
        """() => ({
            table: document.querySelector("table.batch-list").getBoundingClientRect().top,
            header: document.querySelector("table.batch-list thead th").getBoundingClientRect().top,
        })"""
    )
    assert tops["table"] < 0 and tops["header"] == pytest.approx(0, abs=1), tops
    page.evaluate("window.scrollTo(0, 0)")

    page.locator(f"#{longest['row']} button.copy").click()
    for _ in range(50):  # the copy is asynchronous (and the row may be swapped by its poll meanwhile)
        if page.evaluate("navigator.clipboard.readText()") == longest["id"]:
            break
        page.wait_for_timeout(100)
    assert page.evaluate("navigator.clipboard.readText()") == longest["id"]


def test_on_a_phone_the_list_is_cards_that_never_scroll_sideways(seeded_demo, signed_in_page, live_server):
    page = signed_in_page
    open_list(page, live_server, PHONE)
    assert_no_sideways_scroll(page, "the list at 390 px")
    assert_reads_without_breaks(page, "the list at 390 px")
    # Each batch is a card within the screen, its status and Cancel in sight.
    boxes = page.evaluate(
        """() => Array.from(document.querySelectorAll("tr.batch-row")).slice(0, 5).map((row) => ({
            right: row.getBoundingClientRect().right,
            badge: row.querySelector(".badge").getBoundingClientRect().right,
        }))"""
    )
    assert all(box["right"] <= PHONE["width"] and box["badge"] <= PHONE["width"] for box in boxes), boxes


def test_dark_mode_follows_the_system(seeded_demo, signed_in_page, live_server):
    page = signed_in_page
    colours = """() => {
        const lum = (colour) => {
            const [r, g, b] = colour.match(/\\d+(\\.\\d+)?/g).map(Number);
            return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
        };
        const style = (selector) => getComputedStyle(document.querySelector(selector));
        return {
            page: lum(style("body").backgroundColor),
            text: lum(style("body").color),
            table: lum(style("table.batch-list td").backgroundColor === "rgba(0, 0, 0, 0)"
                ? style("table.batch-list").backgroundColor : style("table.batch-list td").backgroundColor),
            cell_text: lum(style("table.batch-list td").color),
        };
    }"""
    open_list(page, live_server, DESKTOP)
    light = page.evaluate(colours)
    assert light["page"] > 0.8 and light["text"] < 0.3, light

    page.emulate_media(color_scheme="dark")
    dark = page.evaluate(colours)
    assert dark["page"] < 0.15 and dark["table"] < 0.2, dark
    assert dark["text"] > 0.7 and dark["cell_text"] > 0.7, dark
    assert_reads_without_breaks(page, "the list in dark mode")


def test_the_title_counts_the_unacknowledged_alarms_and_follows_the_badge(seeded_demo, signed_in_page, live_server):
    page = signed_in_page
    batches = list(StoredBatch.objects.filter(is_ended=False)[:2])
    now = timezone.now()
    alarms = [
        Alarm.objects.create(
            rule="stuck",
            account=batch.account,
            batch=batch,
            opened_at=now,
            last_seen_at=now,
            detail="No change in status or counts since 12:00 UTC (alarm after 30 min without one).",
        )
        for batch in batches
    ]
    open_list(page, live_server, DESKTOP)
    expect(page).to_have_title("(2) Batches · Batch dashboard")

    # Someone acknowledges one (elsewhere): the badge refreshes itself, and the title with it, without a reload.
    page.evaluate("window.__sameDocument = true")
    Alarm.objects.filter(pk=alarms[0].pk).update(acknowledged_at=timezone.now())
    expect(page.locator("#alarm-badge .alarm-count")).to_have_text("1", timeout=15_000)
    expect(page).to_have_title("(1) Batches · Batch dashboard")
    Alarm.objects.filter(pk=alarms[1].pk).update(resolved_at=timezone.now())
    expect(page.locator("#alarm-badge .alarm-count")).to_have_count(0, timeout=15_000)
    expect(page).to_have_title("Batches · Batch dashboard")
    assert page.evaluate("window.__sameDocument") is True

    # Every page says so.
    Alarm.objects.filter(pk=alarms[0].pk).update(acknowledged_at=None)
    page.goto(live_server.url + "/alarms/")
    expect(page).to_have_title("(1) Alarms · Batch dashboard")


def other_pages(live_server) -> dict[str, str]:
    """The detail page of a running and of an ended batch, the alarms page, the audit trail, the
    bulk cancels, a bulk preview and a bulk cancel's progress, each with something to show."""
    running = StoredBatch.objects.filter(is_ended=False).order_by("-created_at").first()
    # An OpenAI batch that ended with errors: its detail page counts them from the provider's results.
    ended = StoredBatch.objects.filter(provider="openai", status="completed", errored__gt=0).first()
    now = timezone.now()
    for batch, rule, detail in (
        (running, "stuck", "No change in status or counts since 2026-12-07 06:36 UTC (alarm after 30 min)."),
        (ended, "ended_badly", "Ended failed: 12 of 400 requests errored (3.0%), more than the 10% allowed."),
        (None, "account_failing", "Polls of this account have failed for 12 minutes: HTTP 529 overloaded_error."),
    ):
        Alarm.objects.create(
            rule=rule,
            account=(batch.account if batch else "anthropic-ops"),
            batch=batch,
            opened_at=now - timedelta(minutes=14),
            last_seen_at=now,
            detail=detail,
        )
    attempts = [
        CancelAttempt.objects.create(
            actor="operator",
            via=via,
            account=batch.account,
            batch_id=batch.batch_id,
            outcome=outcome,
            status_after=status,
            finished_at=now,
            message=message,
        )
        for batch, via, outcome, status, message in (
            (running, "web", "accepted", "canceling", "Cancel accepted; status is now canceling."),
            (ended, "bulk", "already_ended", "completed", f"Batch {ended.batch_id} had already ended; none canceled."),
            (running, "cli", "upstream_error", "", "Anthropic HTTP 529 overloaded_error: Overloaded (retry later)"),
        )
    ]
    operation = BulkCancel.objects.create(
        created_at=now, actor="operator", source={"filters": {"status": "active"}, "previewed": 2}, total=2
    )
    operation.finished_at = now
    operation.save()
    BulkCancelItem.objects.create(
        operation=operation,
        position=0,
        account=running.account,
        batch_id=running.batch_id,
        state="canceled",
        attempt=attempts[0],
        finished_at=now,
    )
    BulkCancelItem.objects.create(
        operation=operation,
        position=1,
        account=ended.account,
        batch_id=ended.batch_id,
        state="already_ended",
        message=attempts[1].message,
        attempt=attempts[1],
        finished_at=now,
    )
    return {
        "detail (running)": f"/batches/{running.account}/{running.batch_id}/",
        "detail (ended)": f"/batches/{ended.account}/{ended.batch_id}/",
        "alarms": "/alarms/",
        "audit trail": "/audit/",
        "bulk cancels": "/bulk-cancel/",
        "bulk preview": "/bulk-cancel/preview?status=active",
        "bulk progress": f"/bulk-cancel/{operation.pk}/",
        "spend": "/spend/",
    }


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1440x900", "390x844"])
def test_the_other_pages_read_without_breaks_and_fit_a_phone(seeded_demo, signed_in_page, live_server, viewport):
    page = signed_in_page
    page.set_viewport_size(viewport)
    for name, path in other_pages(live_server).items():
        page.goto(live_server.url + path)
        expect(page.locator("main h1").first).to_be_visible()
        if name == "detail (ended)":
            expect(page.locator("section#summary h3")).to_have_text("Error summary")  # loaded after the page
        where = f"{name} at {viewport['width']} px"
        assert_reads_without_breaks(page, where)
        assert_no_sideways_scroll(page, where)
        if name == "alarms":
            expect(page.locator("tr.alarm-open")).to_have_count(3)
        if name.startswith("detail"):
            assert re.match(r"\(\d+\) ", page.title()), page.title()
            assert_chart_labels_apart(page, where)
        if name == "spend":
            expect(page.locator(".history-chart svg rect.spend-bar")).to_have_count(30)
            assert_chart_labels_apart(page, where)
        if name in ("spend", "detail (ended)"):
            assert_codes_on_one_line(page, "#spend-by-model code, .tokens-by-model code, .cost-by-model code", where)
        if name.startswith("detail"):
            assert_fields_readable(page, where)


def assert_codes_on_one_line(page, selector: str, where: str) -> None:
    """Names shown as code (models) are one token each: on one line, not broken at their hyphens, and
    not cut short by their cell either."""
    shown = page.eval_on_selector_all(
        selector,
        "els => els.map(e => [e.textContent, e.getClientRects().length,"
        " e.getBoundingClientRect().right - e.closest('td').getBoundingClientRect().right])",
    )
    assert shown, f"{where}: no model names to measure"
    for text, lines, past_its_cell in shown:
        assert lines == 1, f"{where}: {text!r} is broken over {lines} lines"
        assert past_its_cell <= 1, f"{where}: {text!r} runs {past_its_cell:.0f} px past its cell"


def assert_fields_readable(page, where: str) -> None:
    """The Fields table fits its card (nothing past its right edge), ids and other code values are on
    one line (not broken at their hyphens), and a value too wide for its cell scrolls there, never
    cut off for good."""
    table = page.eval_on_selector("table.fields", "e => e.scrollWidth - e.clientWidth")
    assert table <= 1, f"{where}: the Fields table runs {table} px past its card"
    names = page.eval_on_selector_all(
        "table.fields th", "els => els.map(e => [e.textContent, e.scrollWidth - e.clientWidth])"
    )
    for name, hidden in names:
        assert hidden <= 1, f"{where}: the field name {name!r} is cut off {hidden} px short"
    cells = page.eval_on_selector_all(
        "table.fields td",
        "els => els.map(e => [e.textContent.trim(), e.scrollWidth - e.clientWidth, getComputedStyle(e).overflowX,"
        " Array.from(e.querySelectorAll('code'), c => c.getClientRects().length)])",
    )
    assert cells, f"{where}: no values to measure"
    for text, hidden, overflow, code_lines in cells:
        assert hidden <= 1 or overflow in ("auto", "scroll"), f"{where}: {text!r} is cut off {hidden} px short"
        assert all(lines == 1 for lines in code_lines), f"{where}: {text!r} is broken over lines {code_lines}"


def assert_chart_labels_apart(page, where: str) -> None:
    """No text of the history chart (axis titles, ticks, markers' labels) drawn over another."""
    boxes = page.eval_on_selector_all(
        ".history-chart svg text",
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return [e.textContent, r.left, r.top, r.right, r.bottom]; })",
    )
    assert boxes, f"{where}: the chart has its labels"
    for index, (text, left, top, right, bottom) in enumerate(boxes):
        for other, o_left, o_top, o_right, o_bottom in boxes[index + 1 :]:
            overlap = min(right, o_right) - max(left, o_left) > 1 and min(bottom, o_bottom) - max(top, o_top) > 1
            assert not overlap, f"{where}: the chart's {text!r} is drawn over {other!r}"
