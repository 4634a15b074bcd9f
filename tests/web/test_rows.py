"""A batch's row, rendered once per process and state (web/rows.py): shown again, it is not rendered
again, yet its relative times are as of each request, a change shows at once, and a viewer who may
not cancel never gets a row rendered for one who may. Its timestamps are written as the `date`
filter writes them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.template.loader import render_to_string as real_render_to_string
from django.utils import timezone
from django.utils.formats import date_format
from hypothesis import given
from hypothesis import strategies as st

from dashboard.accounts import configured_accounts
from dashboard.batches import selectors
from dashboard.templatetags.batches import stamps
from dashboard.web import rows
from tests.factories import iso, stored_batch, text
from tests.providers.test_providers import ANTHROPIC_RUNNING

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham")


def stored_running(batch_id: str, *, age: timedelta, **fields):
    """An Anthropic batch created `age` ago, running, fetched now."""
    created = timezone.now() - age
    moments = {"created_at": iso(created), "expires_at": iso(created + timedelta(hours=24))}
    return stored_batch(
        "anthropic-ops", batch_id, fetched_at=timezone.now(), body=ANTHROPIC_RUNNING, **{**moments, **fields}
    )


def row_of(body: str, batch_id: str) -> str:
    match = re.search(rf'<tr id="row-[a-z0-9-]+-{batch_id}".*?</tr>', body, re.S)
    assert match, f"no row of {batch_id}"
    return match.group(0)


def view_of(batch_id: str) -> selectors.StoredView:
    account = next(account for account in configured_accounts() if account.key == "anthropic-ops")
    view = selectors.batch_row(account=account, batch_id=batch_id)
    assert view is not None
    return view


@pytest.fixture
def renders(monkeypatch):
    """The ids of the batches whose row was rendered from its template."""
    rows.FRAMES.clear()
    rendered = []

    def counted(name, context, *args, **kwargs):
        rendered.append(context["row"].batch.id if context["row"] else None)
        return real_render_to_string(name, context, *args, **kwargs)

    monkeypatch.setattr("dashboard.web.rows.render_to_string", counted)
    return rendered


def test_a_row_shown_again_is_not_rendered_again_and_a_change_is(operator_client, demo_accounts, renders):
    stored_running("msgbatch_rows1", age=timedelta(minutes=5))
    stored_running("msgbatch_rows2", age=timedelta(minutes=7))
    first = text(operator_client.get("/"))
    assert sorted(renders) == ["msgbatch_rows1", "msgbatch_rows2"]
    renders.clear()
    second = text(operator_client.get("/"))
    assert renders == []
    assert row_of(second, "msgbatch_rows1") == row_of(first, "msgbatch_rows1")
    assert "5 min ago" in row_of(second, "msgbatch_rows1")

    stored_running("msgbatch_rows2", age=timedelta(minutes=7), processing_status="canceling")
    third = text(operator_client.get("/"))
    assert renders == ["msgbatch_rows2"]
    assert 'data-status="canceling"' in row_of(third, "msgbatch_rows2")
    assert row_of(third, "msgbatch_rows1") == row_of(first, "msgbatch_rows1")


def test_a_row_kept_says_its_relative_times_as_of_each_request(demo_accounts, renders):
    stored_running("msgbatch_rows3", age=timedelta(minutes=5))
    view = view_of("msgbatch_rows3")
    context = {"cancel_accounts": {"anthropic-ops"}, "refresh_seconds": 3.0}
    now = timezone.now()
    at_first = rows.row_html(view, context, now=now)
    later = rows.row_html(view, context, now=now + timedelta(hours=3))
    assert renders == ["msgbatch_rows3"]  # once
    assert ">5 min ago</time>" in at_first and ">3 h 5 min ago</time>" in later
    assert "running 5 minutes, 23 hours left before expiry" in at_first
    assert "running 3 hours, 20 hours left before expiry" in later
    rows.FRAMES.clear()
    assert rows.row_html(view, context, now=now + timedelta(hours=3)) == later  # as if rendered then
    assert renders == ["msgbatch_rows3", "msgbatch_rows3"]


def test_who_may_not_cancel_never_gets_the_row_of_one_who_may(client, operator, viewer, demo_accounts, renders):
    stored_running("msgbatch_rows4", age=timedelta(minutes=5))
    client.force_login(operator)
    assert "hx-post" in row_of(text(client.get("/")), "msgbatch_rows4")
    client.force_login(viewer)
    assert "hx-post" not in row_of(text(client.get("/")), "msgbatch_rows4")
    client.force_login(operator)
    assert "hx-post" in row_of(text(client.get("/")), "msgbatch_rows4")
    assert renders == ["msgbatch_rows4", "msgbatch_rows4"]  # once for each


def test_a_cancel_answer_says_what_it_did_and_is_not_kept(demo_accounts, renders):
    stored_running("msgbatch_rows5", age=timedelta(minutes=5))
    view = view_of("msgbatch_rows5")
    context = {"cancel_accounts": {"anthropic-ops"}, "refresh_seconds": 3.0}
    assert "Cancel requested." in rows.row_html(view, {**context, "notice": "Cancel requested."})
    assert "Cancel requested." not in rows.row_html(view, context)
    assert renders == ["msgbatch_rows5", "msgbatch_rows5"]


@given(
    value=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2199, 12, 31), timezones=st.just(UTC)),
    zone=st.sampled_from(ZONES),
)
def test_timestamps_are_written_as_the_date_filter_writes_them(value, zone):
    with timezone.override(zone):
        local = timezone.localtime(value)
        iso_text, title = stamps(value)
        assert iso_text == date_format(local, "c")
        # The filter leaves the zone's name out of an hour a clock change makes ambiguous; the title names it.
        if local.replace(fold=1 - local.fold).utcoffset() == local.utcoffset():
            assert title == date_format(local, "Y-m-d H:i:s T")
        else:
            assert title == f"{date_format(local, 'Y-m-d H:i:s')} {local.tzname()}"
