"""Alarms in the pages (dashboard/web/alarm_views.py): the alarms page and its polled list, the header's
badge, acknowledging (who, when, a note; the permission; CSRF), a batch's alarms on its detail page,
and details and notes shown as text, never as markup."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from dashboard.models import Alarm, StoredBatch
from tests.conftest import make_user
from tests.factories import HTMX, stored_batch, text
from tests.services import ACCOUNT_ENVIRONMENT

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(autouse=True)
def demo_accounts_only(monkeypatch):
    """The four simulator demo accounts (openai-ops, anthropic-ops, ...): no real keys configured."""
    for name in ACCOUNT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def acknowledger(operator):
    operator.user_permissions.add(Permission.objects.get(codename="acknowledge_alarm"))
    return operator


@pytest.fixture
def ack_client(client, acknowledger):
    client.force_login(acknowledger)
    return client


def openai_batch_row(number: int, *, minutes_ago: float = 30, status: str = "in_progress", **counts) -> StoredBatch:
    """A stored OpenAI batch, created `minutes_ago`, read now."""
    now = timezone.now()
    return stored_batch(
        "openai-ops",
        f"batch_{number:032d}",
        created=now - timedelta(minutes=minutes_ago),
        fetched_at=now,
        status=status,
        request_counts={"total": 100, "completed": 10, "failed": 0, **counts},
    )


def alarm(batch: StoredBatch | None = None, *, rule: str = "stuck", account: str = "openai-ops", **fields) -> Alarm:
    now = timezone.now()
    values = {
        "opened_at": now - timedelta(minutes=5),
        "last_seen_at": now,
        "detail": "No change in status or counts since 12:00 UTC (alarm after 30 min without one).",
        **fields,
    }
    return Alarm.objects.create(rule=rule, account=account, batch=batch, **values)


def alarm_rows(body: str) -> dict[int, str]:
    return {int(pk): row for pk, row in re.findall(r'<tr id="alarm-(\d+)" class="alarm[^"]*">(.*?)</tr>', body, re.S)}


# --- the alarms page ----------------------------------------------------------------------------------


def test_the_alarms_page_needs_signing_in(client, db):
    response = client.get("/alarms/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert client.get("/alarms/badge", **HTMX).status_code == 401


def test_open_alarms_come_first_unacknowledged_before_acknowledged_then_the_recently_resolved(ack_client, acknowledger):
    batch = openai_batch_row(1)
    now = timezone.now()
    acknowledged = alarm(batch, rule="error_rate", acknowledged_by=acknowledger, acknowledged_at=now)
    stuck = alarm(batch, opened_at=now - timedelta(hours=2))
    failing = alarm(rule="account_failing", account="anthropic-ops", detail="Polls fail and none has succeeded yet.")
    resolved = alarm(batch, rule="expiring", resolved_at=now - timedelta(hours=1))
    long_ago = alarm(batch, rule="ended_badly", resolved_at=now - timedelta(hours=30))

    body = text(ack_client.get("/alarms/"))
    open_part, resolved_part = body.split("Resolved in the last 24 hours")
    assert list(alarm_rows(open_part)) == [failing.pk, stuck.pk, acknowledged.pk]
    assert list(alarm_rows(resolved_part)) == [resolved.pk]
    assert long_ago.pk not in alarm_rows(body)
    assert "3 open, 2 not acknowledged" in body

    rows = alarm_rows(body)
    stuck_row = rows[stuck.pk]
    assert ">stuck</span>" in stuck_row
    assert f'href="/batches/openai-ops/{batch.batch_id}/#alarms"' in stuck_row
    assert "OpenAI · ops" in stuck_row
    assert "No change in status or counts since 12:00 UTC" in stuck_row
    assert "<time datetime=" in stuck_row and "2 hours ago" in stuck_row
    assert f'action="/alarms/{stuck.pk}/acknowledge"' in stuck_row
    assert "Anthropic · ops" in rows[failing.pk] and "(the account)" in rows[failing.pk]
    assert "Acknowledged by <strong>operator</strong>" in rows[acknowledged.pk]
    assert "<form" not in rows[acknowledged.pk]


def test_the_list_comes_with_the_page_s_feed_and_alone_for_htmx(ack_client):
    alarm(openai_batch_row(1))
    page = text(ack_client.get("/alarms/"))
    assert '<div id="alarm-list">' in page  # the page's feed brings it again (tests/web/test_live.py)
    assert re.search(
        r'<div id="live-feed"[^>]*hx-get="/alarms/\?feed=[^"]+" hx-trigger="every 3s, alarms-changed', page
    )
    fragment = text(ack_client.get("/alarms/", HTTP_HX_TARGET="alarm-list", **HTMX))
    assert fragment.lstrip().startswith('<div id="alarm-list"') and "<html" not in fragment
    assert "No change in status or counts" in fragment


def test_no_alarms_says_so_and_that_the_poller_has_not_looked_yet(ack_client):
    body = text(ack_client.get("/alarms/"))
    assert "No open alarms." in body and "None resolved in the last 24 hours." in body
    assert "Alarms have not been looked for yet" in body


# --- the badge ----------------------------------------------------------------------------------------


def test_every_page_s_header_has_the_badge_counting_open_alarms_nobody_acknowledged(ack_client, acknowledger):
    batch = openai_batch_row(1)
    # A page without a feed of its own: the badge polls itself (on the live pages the feed brings it).
    body = text(ack_client.get("/bulk-cancel/"))
    badge = re.search(r'<a id="alarm-badge".*?</a>', body, re.S).group(0)
    assert 'href="/alarms/"' in badge and 'hx-get="/alarms/badge"' in badge
    assert 'hx-trigger="every 3s, alarms-changed from:body"' in badge
    assert "alarm-count" not in badge, "no alarm, no number"

    alarm(batch)
    alarm(batch, rule="error_rate", acknowledged_by=acknowledger, acknowledged_at=timezone.now())
    alarm(batch, rule="expiring", resolved_at=timezone.now())
    fragment = text(ack_client.get("/alarms/badge", **HTMX))
    assert fragment.strip().startswith('<a id="alarm-badge"')
    assert re.search(r'<span class="alarm-count"[^>]*>1</span>', fragment)
    assert 'title="2 open alarms, 1 not acknowledged"' in fragment


def test_a_badge_poll_is_one_query_beside_the_users_password_check(ack_client, django_assert_num_queries):
    alarm(openai_batch_row(1))
    ack_client.get("/alarms/badge", **HTMX)  # fills the session, user and permission caches
    with django_assert_num_queries(2):  # the user's password hash and active flag, then the badge's counts
        assert ack_client.get("/alarms/badge", **HTMX).status_code == 200


def test_signed_out_pages_have_no_badge(client, db):
    assert "alarm-badge" not in text(client.get("/login/"))


# --- acknowledging ------------------------------------------------------------------------------------


def test_acknowledging_records_who_when_and_the_note_and_tells_the_page_to_refresh(ack_client, acknowledger):
    stuck = alarm(openai_batch_row(1))
    before = timezone.now()
    response = ack_client.post(f"/alarms/{stuck.pk}/acknowledge", {"note": "  looking into it  "}, **HTMX)
    assert response.status_code == 204
    assert response["HX-Trigger"] == "alarms-changed"
    stuck.refresh_from_db()
    assert stuck.acknowledged_by == acknowledger and stuck.acknowledged_at >= before
    assert stuck.acknowledge_note == "looking into it"
    assert stuck.is_open, "acknowledged alarms stay open until their condition no longer holds"

    row = alarm_rows(text(ack_client.get("/alarms/")))[stuck.pk]
    assert "Acknowledged by <strong>operator</strong>" in row and "“looking into it”" in row
    assert "<form" not in row
    assert "alarm-count" not in text(ack_client.get("/alarms/badge", **HTMX))


def test_the_note_is_optional_and_the_form_without_javascript_returns_to_its_page(ack_client):
    batch = openai_batch_row(1)
    stuck = alarm(batch)
    detail = f"/batches/openai-ops/{batch.batch_id}/"
    response = ack_client.post(f"/alarms/{stuck.pk}/acknowledge", {"next": detail})
    assert response.status_code == 302 and response["Location"] == detail
    stuck.refresh_from_db()
    assert stuck.acknowledged_at is not None and stuck.acknowledge_note == ""
    followed = ack_client.get(detail)
    assert f"Acknowledged the stuck alarm of openai-ops/{batch.batch_id}." in text(followed)


def test_the_first_acknowledgement_stands_and_a_second_is_refused_saying_whose_it_is(ack_client, acknowledger):

    colleague = make_user("grace", can_cancel=True)
    stuck = alarm(openai_batch_row(1))
    assert ack_client.post(f"/alarms/{stuck.pk}/acknowledge", {"note": "mine"}, **HTMX).status_code == 204
    second = Client()
    second.force_login(colleague)
    refused = second.post(f"/alarms/{stuck.pk}/acknowledge", {"note": "no, mine"}, **HTMX)
    assert refused.status_code == 409
    assert refused["HX-Trigger"] == "alarms-changed", "the page refreshes to show who did"
    assert text(refused).startswith("Already acknowledged by operator at ")
    assert "that acknowledgement stands" in text(refused)
    without_javascript = second.post(f"/alarms/{stuck.pk}/acknowledge", {"note": "again"}, follow=True)
    assert "Already acknowledged by operator" in text(without_javascript)
    stuck.refresh_from_db()
    assert stuck.acknowledged_by == acknowledger and stuck.acknowledge_note == "mine"


def test_a_resolved_alarm_cannot_be_acknowledged(ack_client):
    resolved_at = timezone.now() - timedelta(minutes=5)
    gone = alarm(openai_batch_row(1), rule="expiring", resolved_at=resolved_at)
    refused = ack_client.post(f"/alarms/{gone.pk}/acknowledge", {"note": "late"}, **HTMX)
    assert refused.status_code == 409
    assert text(refused) == (
        f"This alarm resolved at {resolved_at:%Y-%m-%d %H:%M} UTC: there is nothing left to acknowledge.\n"
    )
    gone.refresh_from_db()
    assert gone.acknowledged_at is None and gone.acknowledge_note == ""


def test_of_two_acknowledgements_at_once_exactly_one_is_recorded(ack_client, acknowledger):
    """The conditional UPDATE decides, not a read before it: both callers hold the alarm unacknowledged."""
    from django.contrib.auth import get_user_model

    from dashboard.alarms import services

    colleague = get_user_model().objects.create_user(username="grace", password="x" * 20)
    stuck = alarm(openai_batch_row(1))
    first, second = Alarm.objects.get(pk=stuck.pk), Alarm.objects.get(pk=stuck.pk)
    services.acknowledge(alarm=first, user=acknowledger, note="first")
    with pytest.raises(services.AcknowledgeRefused):
        services.acknowledge(alarm=second, user=colleague, note="second")
    stuck.refresh_from_db()
    assert stuck.acknowledged_by == acknowledger and stuck.acknowledge_note == "first"


def test_the_form_never_returns_to_another_site(ack_client):
    stuck = alarm(openai_batch_row(1))
    response = ack_client.post(f"/alarms/{stuck.pk}/acknowledge", {"next": "https://evil.example/"})
    assert response["Location"] == "/alarms/"


def test_acknowledging_takes_the_operator_role_on_the_alarm_s_account(viewer_client, db):
    stuck = alarm(openai_batch_row(1))
    page = text(viewer_client.get("/alarms/"))
    row = alarm_rows(page)[stuck.pk]
    assert "<form" not in row and "not acknowledged" in row
    refused = viewer_client.post(f"/alarms/{stuck.pk}/acknowledge", {"note": "x"}, **HTMX)
    assert refused.status_code == 403
    assert text(refused).startswith("Cancelling and acknowledging on this account takes the operator role")
    assert viewer_client.post(f"/alarms/{stuck.pk}/acknowledge", {"note": "x"}).status_code == 403
    elsewhere = Client()
    elsewhere.force_login(make_user("anthropic-op", can_cancel=True, accounts="anthropic-*"))
    assert stuck.pk not in alarm_rows(text(elsewhere.get("/alarms/"))), "an account it may not see"
    assert elsewhere.post(f"/alarms/{stuck.pk}/acknowledge", {"note": "x"}, **HTMX).status_code == 404
    stuck.refresh_from_db()
    assert stuck.acknowledged_at is None


def test_acknowledging_is_a_post_with_a_csrf_token(acknowledger):
    stuck = alarm(openai_batch_row(1))
    client = Client(enforce_csrf_checks=True)
    client.force_login(acknowledger)
    assert client.get(f"/alarms/{stuck.pk}/acknowledge").status_code == 405
    refused = client.post(f"/alarms/{stuck.pk}/acknowledge", {"note": "x"}, **HTMX)
    assert refused.status_code == 403
    stuck.refresh_from_db()
    assert stuck.acknowledged_at is None
    page = text(client.get("/alarms/"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', alarm_rows(page)[stuck.pk]).group(1)
    accepted = client.post(f"/alarms/{stuck.pk}/acknowledge", {"note": "x", "csrfmiddlewaretoken": token}, **HTMX)
    assert accepted.status_code == 204
    stuck.refresh_from_db()
    assert stuck.acknowledged_at is not None


def test_an_unknown_alarm_is_a_404(ack_client):
    assert ack_client.post("/alarms/999999/acknowledge", {"note": "x"}).status_code == 404


def test_the_note_is_kept_as_typed_while_the_list_polls(ack_client):
    stuck = alarm(openai_batch_row(1))
    row = alarm_rows(text(ack_client.get("/alarms/")))[stuck.pk]
    assert re.search(rf'<input type="text" id="ack-note-{stuck.pk}" name="note"[^>]* hx-preserve>', row)


# --- the detail page ----------------------------------------------------------------------------------


def test_the_detail_page_shows_this_batch_s_open_alarms_with_the_form(ack_client):
    batch, other = openai_batch_row(1), openai_batch_row(2)
    stuck = alarm(batch)
    alarm(other, rule="error_rate")
    alarm(batch, rule="expiring", resolved_at=timezone.now())
    body = text(ack_client.get(f"/batches/openai-ops/{batch.batch_id}/"))
    section = re.search(r'<section id="alarms".*?</section>', body, re.S).group(0)
    assert "hx-get" not in section  # the page's feed brings it again when it changes
    assert list(alarm_rows(section)) == [stuck.pk]
    assert f'action="/alarms/{stuck.pk}/acknowledge"' in section
    assert f'name="next" value="/batches/openai-ops/{batch.batch_id}/"' in section
    # The row above says so too, and links here.
    assert "🔔 1 open alarm" in body and f'href="/batches/openai-ops/{batch.batch_id}/#alarms"' in body

    fragment = text(ack_client.get(f"/batches/openai-ops/{batch.batch_id}/alarms", **HTMX))
    assert fragment.strip().startswith('<section id="alarms"') and list(alarm_rows(fragment)) == [stuck.pk]
    assert f'hx-get="/batches/openai-ops/{batch.batch_id}/alarms"' in fragment  # alone, it polls itself


def test_a_batch_without_alarms_says_so_and_still_has_the_anchor(ack_client):
    batch = openai_batch_row(1)
    body = text(ack_client.get(f"/batches/openai-ops/{batch.batch_id}/"))
    assert '<section id="alarms"' in body and "No open alarms about this batch." in body
    assert ack_client.get("/batches/nowhere/batch_x/alarms", **HTMX).status_code == 404


def test_details_and_notes_are_text_never_markup(ack_client, acknowledger):
    batch = openai_batch_row(1)
    shown = alarm(batch, detail=f"upstream said {XSS}", acknowledged_by=acknowledger, acknowledged_at=timezone.now())
    shown.acknowledge_note = f"note {XSS}"
    shown.save()
    for path in ("/alarms/", f"/batches/openai-ops/{batch.batch_id}/"):
        body = text(ack_client.get(path))
        assert XSS not in body
        assert "upstream said &lt;img src=x onerror=alert(1)&gt;" in body
        assert "note &lt;img src=x onerror=alert(1)&gt;" in body


# --- who may acknowledge ----------------------------------------------------------------------------------


def test_the_operator_make_run_creates_may_acknowledge_alarms(db):
    import io

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from dashboard.access.selectors import access_for

    call_command("ensure_operator", stdout=io.StringIO())
    operator = get_user_model().objects.get(username="operator")
    assert all(access_for(user=operator).may("operator", key) for key in ("openai-ops", "gemini-research"))
    assert operator.has_perm("dashboard.view_alarm")


def test_a_budget_alarm_of_every_account_together_is_one_like_the_others_for_one_who_sees_every_account(
    ack_client, acknowledger, viewer
):
    from dashboard.alarms.rules import ALL_ACCOUNTS

    everyone = alarm(rule="budget_day_over", account=ALL_ACCOUNTS, detail="All accounts together spent ...")
    # The badge counts it, on every page and in the live pages' feeds.
    badge = text(ack_client.get("/alarms/badge", **HTMX))
    assert re.search(r'<span class="alarm-count"[^>]*>1</span>', badge)
    # Listed with the acknowledgement form, and acknowledged like any other.
    row = alarm_rows(text(ack_client.get("/alarms/")))[everyone.pk]
    assert "All accounts (every account together)" in " ".join(re.sub(r"<[^>]+>", " ", row).split())
    assert "<form" in row
    assert ack_client.post(f"/alarms/{everyone.pk}/acknowledge", {"note": "budget raised"}, **HTMX).status_code == 204
    everyone.refresh_from_db()
    assert everyone.acknowledged_by == acknowledger and everyone.acknowledge_note == "budget raised"
    assert "alarm-count" not in text(ack_client.get("/alarms/badge", **HTMX)), "acknowledged: no longer counted"

    # One who sees every account but is no operator sees it and may not acknowledge it.
    viewer_client = Client()
    viewer_client.force_login(viewer)
    unacknowledged = alarm(rule="budget_month_over", account=ALL_ACCOUNTS)
    assert re.search(r'<span class="alarm-count"[^>]*>1</span>', text(viewer_client.get("/alarms/badge", **HTMX)))
    assert "<form" not in alarm_rows(text(viewer_client.get("/alarms/")))[unacknowledged.pk]
    assert viewer_client.post(f"/alarms/{unacknowledged.pk}/acknowledge", {"note": "x"}, **HTMX).status_code == 403

    # One who sees some accounts only, or whose grant's pattern matches the name "*" but no account, sees none
    # of it: not counted, not listed, a 404.
    for name, pattern in (("anthropic-op", "anthropic-*"), ("one-letter-op", "?")):
        some = Client()
        some.force_login(make_user(name, can_cancel=True, accounts=pattern))
        assert "alarm-count" not in text(some.get("/alarms/badge", **HTMX))
        assert unacknowledged.pk not in alarm_rows(text(some.get("/alarms/")))
        assert some.post(f"/alarms/{unacknowledged.pk}/acknowledge", {"note": "x"}, **HTMX).status_code == 404
    unacknowledged.refresh_from_db()
    assert unacknowledged.acknowledged_at is None
