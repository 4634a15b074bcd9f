"""In real Chromium, with the poller in a process of its own and a stuck threshold of seconds: a
running OpenAI batch is stalled in the simulator; on the list page, opened before, the header's
badge and the row's alarm note appear without a reload; on the alarms page the alarm is
acknowledged with a note (kept as typed while the list polls) and shows who acknowledged it;
released, the batch moves again and the alarm resolves, still without a reload."""

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from tests.factories import openai_batch, release, stall

pytestmark = pytest.mark.browser

STUCK_SECONDS = 6


@pytest.fixture
def poller_env():
    """The poller's alarms: stuck after STUCK_SECONDS without a change; no error-rate alarm (the
    simulator's random errors must not open a second alarm)."""
    return {"ALARM_STUCK_MINUTES": str(STUCK_SECONDS / 60), "ALARM_ERROR_RATE_PERCENT": "100"}


@pytest.fixture
def quick_live_pages(settings, dashboard_upstream):
    settings.ROW_POLL_SECONDS = 1
    return settings


@pytest.fixture
def alarm_operator(operator):
    operator.user_permissions.add(Permission.objects.get(codename="acknowledge_alarm"))
    return operator


@pytest.mark.slow
def test_a_stalled_batch_goes_stuck_is_acknowledged_and_resolves_without_a_reload(
    quick_live_pages, alarm_operator, openai_client, signed_in_page, poller_process, live_server
):
    page = signed_in_page
    # 1,200 requests over 10 minutes, created 10 s ago (past validating): two finish every second,
    # so every poll (1 s) sees the counts move and nothing is stuck until the stall.
    batch = openai_batch(openai_client, count=1200, seconds=600, ago={"seconds": 10})
    row = page.locator(f"#row-openai-ops-{batch.id}")
    expect(row.locator(".badge")).to_have_text("in_progress", timeout=15_000)
    badge = page.locator("#alarm-badge")
    expect(badge).to_have_text("Alarms")
    page.wait_for_timeout(STUCK_SECONDS * 1000 + 2000)  # longer than the threshold, counts moving
    expect(badge.locator(".alarm-count")).to_have_count(0)
    expect(row.locator(".alarm-note")).to_have_count(0)
    page.evaluate("window.__sameDocument = true")  # survives only if the page is never reloaded

    stall(batch.id)
    expect(badge.locator(".alarm-count")).to_have_text("1", timeout=STUCK_SECONDS * 1000 + 15_000)
    expect(row.locator(".alarm-note")).to_have_text("🔔 1 open alarm")
    assert page.evaluate("window.__sameDocument") is True

    # To the alarms page by the badge; the alarm, and its form.
    badge.click()
    page.wait_for_url(live_server.url + "/alarms/")
    page.evaluate("window.__sameDocument = true")
    alarm = page.locator("tr.alarm-open", has_text=batch.id)
    expect(alarm).to_have_count(1)
    expect(alarm.locator(".alarm-rule")).to_have_text("stuck")
    expect(alarm).to_contain_text("No change in status or counts")
    note = alarm.get_by_role("textbox", name="Note for acknowledging this alarm")
    note.click()
    page.keyboard.type("on it")
    page.wait_for_timeout(2500)  # the list polls (every second) while the note is typed: text and focus stay
    page.keyboard.type(": the upstream is looking")
    expect(note).to_have_value("on it: the upstream is looking")
    alarm.get_by_role("button", name="Acknowledge").click()

    expect(alarm).to_contain_text("Acknowledged by operator")
    expect(alarm.locator(".alarm-ack-note")).to_have_text("“on it: the upstream is looking”")
    expect(alarm.locator("form")).to_have_count(0)
    expect(page.locator("#alarm-badge .alarm-count")).to_have_count(0)
    expect(page.locator("#alarm-list")).to_contain_text("1 open, 0 not acknowledged")

    # Released, its counts move again: the alarm resolves by itself, acknowledgement kept.
    release(batch.id)
    resolved = page.locator("tr.alarm-resolved", has_text=batch.id)
    expect(resolved).to_have_count(1, timeout=15_000)
    expect(resolved).to_contain_text("Acknowledged by operator")
    expect(page.locator("tr.alarm-open")).to_have_count(0)
    expect(page.locator("#alarm-list")).to_contain_text("No open alarms.")
    assert page.evaluate("window.__sameDocument") is True

    # Its detail page: no open alarm now, the progress chart drawn from its history.
    page.goto(f"{live_server.url}/batches/openai-ops/{batch.id}/")
    expect(page.locator("#alarms")).to_contain_text("No open alarms about this batch.")
    expect(page.locator("svg.chart path.seg-succeeded")).to_have_count(1)
    expect(page.locator(".eta-headline")).not_to_be_empty()
