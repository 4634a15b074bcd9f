"""The dashboard's views through Django's test client (with htmx headers), against the embedded simulator.

Batches are made with the official SDKs, which reach the simulator in process (tests/factories.py);
the views under test run in the test thread and reach the simulator through the dashboard's own
httpx clients, in process too, as they do by default. Where a real socket matters (a hanging
account and the client's timeout), the dashboard reaches the simulator over the live server.
"""

from __future__ import annotations

import html
import re
import time
from datetime import timedelta

import httpx
import pytest
from django.test import Client
from django.utils import timezone

from dashboard.models import AccountState, CancelAttempt, StoredBatch
from dashboard.simulator.models import SimAccount
from tests import factories
from tests.factories import (
    DEMO_ACCOUNTS,
    HTMX,
    anthropic_batch,
    assert_no_keys,
    created_ago,
    fault,
    openai_batch,
    poll_store,
    text,
)

ROW = re.compile(
    r'<tr id="row-(?P<account>(?:anthropic|openai)-[a-z0-9-]+?)-(?P<id>(?:msgbatch|batch)_[A-Za-z0-9_-]+)"'
    r' class="(?P<cls>[^"]*)" data-status="(?P<status>[^"]*)"'
)


# --- helpers -------------------------------------------------------------------------------


def rows(response) -> list[dict]:
    return [match.groupdict() for match in ROW.finditer(response.content.decode())]


def ids(response) -> list[str]:
    return [row["id"] for row in rows(response)]


def assert_is_row_fragment(response) -> str:
    body = text(response).strip()
    assert body.startswith("<tr") and body.endswith("</tr>"), body[:200]
    assert "<html" not in body and "<body" not in body
    assert body.count("<tr") == 1
    return body


def banners(response) -> list[str]:
    """The account banners that say its polls fail or lag."""
    return re.findall(r'<div class="banner banner-\w+ account-notice" role="alert">(.*?)</div>', text(response), re.S)


def row_html(response, batch_id: str) -> str:
    match = re.search(rf'<tr id="row-[a-z0-9-]+-{batch_id}".*?</tr>', text(response), re.S)
    assert match, f"no row of {batch_id}"
    return match.group(0)


def link(response, rel: str) -> str:
    match = re.search(rf'<a href="([^"]*)" rel="{rel}">', text(response))
    return html.unescape(match.group(1)) if match else ""


@pytest.fixture
def other_operator_client(operator):
    client = Client()
    client.force_login(operator)
    return client


# --- login ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/"),
        ("get", "/batches/anthropic-ops/msgbatch_01abc/row"),
        ("post", "/batches/anthropic-ops/msgbatch_01abc/cancel"),
        ("post", "/batches/openai-ops/batch_abc/cancel"),
    ],
)
def test_anonymous_requests_redirect_to_login(client, db, upstream_calls, method, path):
    # Without htmx; an htmx request gets a 401 with HX-Redirect instead (tests/web/test_truthful_pages.py).
    response = getattr(client, method)(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
    assert "next=" in response["Location"]
    assert upstream_calls == []
    assert CancelAttempt.objects.count() == 0


def test_login_page_renders_for_anonymous(client, db):
    response = client.get("/login/")
    assert response.status_code == 200
    assert 'name="username"' in text(response) and 'name="password"' in text(response)


def test_simulator_api_needs_no_login(client, demo_accounts):
    response = client.get(
        "/simulator/anthropic/v1/messages/batches", HTTP_X_API_KEY="sk-ant-sim-ops", HTTP_ANTHROPIC_VERSION="2023-06-01"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["data"] == []
    # Without a key it is the API's own 401, still not a login redirect.
    response = client.get("/simulator/anthropic/v1/messages/batches", HTTP_ANTHROPIC_VERSION="2023-06-01")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


# --- list ----------------------------------------------------------------------------------


def test_list_shows_every_account_newest_first_with_status_badges(operator_client, four_accounts):
    response = operator_client.get("/")
    assert response.status_code == 200
    found = rows(response)
    assert [(row["account"], row["id"]) for row in found] == four_accounts
    assert {row["status"] for row in found} == {"in_progress"}
    body = text(response)
    assert body.count('<span class="badge status-in_progress">in_progress</span>') == 4
    assert 'class="provider provider-anthropic"' in body and 'class="provider provider-openai"' in body
    assert banners(response) == []
    # Every running row is live (the page's one feed keeps them current: tests/web/test_live.py) and
    # offers the operator a Cancel button.
    assert body.count(" data-live") == 4 and 'hx-trigger="every 3s, alarms-changed from:body"' in body
    assert body.count('/cancel"') == 4
    assert body.count("live · refreshed every 3 s") == 4  # each row says how fresh it is
    assert_no_keys(response)


def test_list_status_badges_of_ended_batches(operator_client, embedded_upstream, anthropic_sdk, openai_sdk):
    ended = anthropic_batch(anthropic_sdk, seconds=60).id
    completed = openai_batch(openai_sdk, seconds=60).id
    created_ago(ended, hours=1)
    created_ago(completed, hours=1)
    poll_store()
    response = operator_client.get("/")
    assert response.status_code == 200
    by_id = {row["id"]: row["status"] for row in rows(response)}
    assert by_id == {ended: "ended", completed: "completed"}
    body = text(response)
    assert '<span class="badge status-ended">ended</span>' in body
    assert '<span class="badge status-completed">completed</span>' in body
    for batch_id in (ended, completed):
        assert "hx-trigger" not in row_html(response, batch_id)  # ended rows do not poll
        assert "final · fetched" in row_html(response, batch_id)
    assert "/cancel" not in body  # and cannot be canceled


def test_list_filter_by_provider(operator_client, four_accounts):
    response = operator_client.get("/", {"provider": "openai"})
    assert response.status_code == 200
    assert [(row["account"], row["id"]) for row in rows(response)] == [four_accounts[1], four_accounts[3]]
    assert '<option value="openai" selected>' in text(response)


def test_list_filter_by_account(operator_client, four_accounts):
    response = operator_client.get("/", {"account": "anthropic-research"})
    assert response.status_code == 200
    assert [(row["account"], row["id"]) for row in rows(response)] == [four_accounts[2]]
    assert '<option value="anthropic-research" selected>' in text(response)


def test_list_unknown_filter_values_are_ignored(operator_client, four_accounts):
    response = operator_client.get("/", {"provider": "nope", "account": "nope-x", "status": "<b>"})
    assert response.status_code == 200
    assert len(rows(response)) == 4
    assert "<b>" not in text(response).split("<table", 1)[1]


def test_list_filter_by_status(operator_client, embedded_upstream, anthropic_sdk, openai_sdk):
    running = anthropic_batch(anthropic_sdk, "ops", seconds=600).id
    ended = anthropic_batch(anthropic_sdk, "research", seconds=60).id
    completed = openai_batch(openai_sdk, "ops", seconds=60).id
    created_ago(ended, hours=1)
    created_ago(completed, hours=2)
    poll_store()

    assert set(ids(operator_client.get("/"))) == {running, ended, completed}
    response = operator_client.get("/", {"status": "ended"})
    assert response.status_code == 200
    assert ids(response) == [ended]
    assert ids(operator_client.get("/", {"status": "active"})) == [running]
    assert ids(operator_client.get("/", {"status": "completed"})) == [completed]
    response = operator_client.get("/", {"status": "canceling"})
    assert ids(response) == []
    assert "No batches match these filters." in text(response)


def test_list_cursor_pagination_older_and_newer(operator_client, settings, four_accounts, anthropic_sdk):
    settings.LIST_PAGE_SIZE = 2
    oldest = anthropic_batch(anthropic_sdk, "ops", seconds=600).id
    created_ago(oldest, minutes=5)
    poll_store()
    expected = [batch_id for _, batch_id in four_accounts] + [oldest]

    first = operator_client.get("/")
    assert first.status_code == 200
    assert ids(first) == expected[:2]
    assert link(first, "prev") == ""
    older = link(first, "next")
    assert older.startswith("?before=")

    second = operator_client.get("/" + older)
    assert second.status_code == 200
    assert ids(second) == expected[2:4]
    assert 'rel="prev">← Newer</a>' in text(second) and 'rel="next">Older →</a>' in text(second)

    third = operator_client.get("/" + link(second, "next"))
    assert third.status_code == 200
    assert ids(third) == expected[4:]
    assert link(third, "next") == ""

    # "← Newer" walks back page by page.
    back_to_second = operator_client.get("/" + link(third, "prev"))
    assert ids(back_to_second) == expected[2:4]
    back_to_first = operator_client.get("/" + link(second, "prev"))
    assert ids(back_to_first) == expected[:2]
    assert link(back_to_first, "prev") == ""


def test_new_batches_do_not_shift_the_older_pages(operator_client, settings, four_accounts, openai_sdk):
    settings.LIST_PAGE_SIZE = 2
    expected = [batch_id for _, batch_id in four_accounts]
    first = operator_client.get("/")
    newest = openai_batch(openai_sdk, "research", seconds=600).id
    poll_store()
    # The link from the page rendered before the new batch still leads to the same older batches.
    assert ids(operator_client.get("/" + link(first, "next"))) == expected[2:4]
    assert ids(operator_client.get("/")) == [newest, expected[0]]


def test_list_pagination_keeps_filters(operator_client, settings, four_accounts, openai_sdk):
    settings.LIST_PAGE_SIZE = 1
    response = operator_client.get("/", {"provider": "openai"})
    assert ids(response) == [four_accounts[1][1]]
    older = link(response, "next")
    assert "provider=openai" in older
    second = operator_client.get("/" + older)
    assert ids(second) == [four_accounts[3][1]]
    assert {row["account"] for row in rows(second)} == {"openai-research"}


@pytest.mark.parametrize(
    "cursor", ["!!not-a-cursor!!", "WzFd", "eyJhIjoxfQ", "%%%", "ünïcode", "e", "bnVsbA", "x" * 5000]
)
@pytest.mark.parametrize("direction", ["before", "after"])
def test_list_unreadable_cursor_starts_from_first_page(operator_client, four_accounts, cursor, direction):
    response = operator_client.get("/", {direction: cursor})
    assert response.status_code == 200
    assert ids(response) == [batch_id for _, batch_id in four_accounts]
    assert banners(response) == []


def test_list_search_finds_ids_and_metadata_values(operator_client, embedded_upstream, openai_sdk, anthropic_sdk):
    nightly = openai_batch(openai_sdk, metadata={"job": "Nightly-Evals"}).id
    other = openai_batch(openai_sdk, metadata={"job": "ingest"}).id
    anthropic_id = anthropic_batch(anthropic_sdk).id
    poll_store()
    assert ids(operator_client.get("/", {"q": "nightly-evals"})) == [nightly]
    assert ids(operator_client.get("/", {"q": anthropic_id[-10:].upper()})) == [anthropic_id]
    assert set(ids(operator_client.get("/", {"q": "ingest", "provider": "openai"}))) == {other}
    response = operator_client.get("/", {"q": "%"})  # LIKE's wildcard is searched for, not used
    assert ids(response) == [] and "No batches match these filters." in text(response)
    assert 'value="%"' in text(response)


# --- new batches arrive at the top --------------------------------------------------------------


def feed_url(response) -> str:
    match = re.search(r'<tr id="live-feed"[^>]*hx-get="([^"]+)"', text(response))
    assert match, "the first page has no live feed"
    return html.unescape(match.group(1))


def test_new_batches_arrive_above_the_first_row(operator_client, four_accounts, anthropic_sdk, openai_sdk):
    page = operator_client.get("/", {"provider": "anthropic"})
    url = feed_url(page)
    assert "provider=anthropic" in url
    assert operator_client.get(url, **HTMX).status_code == 204  # nothing new

    newer_anthropic = anthropic_batch(anthropic_sdk, "research", seconds=600).id
    openai_batch(openai_sdk, "ops", seconds=600)  # filtered out of this page
    poll_store()
    arrived = operator_client.get(url, **HTMX)
    assert arrived.status_code == 200
    body = text(arrived).strip()
    assert body.startswith('<tr id="live-feed"')  # the feed first, then the new rows below it
    assert ids(arrived) == [newer_anthropic]
    assert " data-live" in row_html(arrived, newer_anthropic)
    # Next time the feed asks only for what is newer still.
    assert operator_client.get(feed_url(arrived), **HTMX).status_code == 204


def test_an_empty_first_page_takes_in_the_first_batch(operator_client, embedded_upstream, anthropic_sdk):
    page = operator_client.get("/")
    assert 'class="empty-row"' in text(page)
    batch_id = anthropic_batch(anthropic_sdk).id
    poll_store()
    assert ids(operator_client.get(feed_url(page), **HTMX)) == [batch_id]


def test_more_new_batches_than_a_page_say_reload(operator_client, settings, four_accounts, anthropic_sdk):
    settings.LIST_PAGE_SIZE = 2
    url = feed_url(operator_client.get("/"))
    made = [anthropic_batch(anthropic_sdk, seconds=600).id for _ in range(3)]
    poll_store()
    arrived = operator_client.get(url, **HTMX)
    assert set(ids(arrived)) <= set(made) and len(ids(arrived)) == 2
    assert "More new batches arrived than can be added here" in text(arrived)


# --- escaping ------------------------------------------------------------------------------


def test_metadata_is_escaped(operator_client, embedded_upstream, openai_sdk):
    batch = openai_batch(openai_sdk, metadata={"job": "<script>alert(1)</script>"})
    poll_store()
    for response in (operator_client.get("/"), operator_client.get(f"/batches/openai-ops/{batch.id}/row", **HTMX)):
        assert response.status_code == 200
        body = text(response)
        assert batch.id in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
        assert "<script>alert(1)" not in body


# --- row poll ------------------------------------------------------------------------------


def test_row_poll_of_running_batch_keeps_polling(operator_client, embedded_upstream, anthropic_sdk, openai_sdk):
    made = (("anthropic-ops", anthropic_batch(anthropic_sdk).id), ("openai-ops", openai_batch(openai_sdk).id))
    poll_store()
    for account, batch_id in made:
        response = operator_client.get(f"/batches/{account}/{batch_id}/row", **HTMX)
        assert response.status_code == 200
        body = assert_is_row_fragment(response)
        assert f'id="row-{account}-{batch_id}"' in body
        assert " data-live" in body  # the page's feed sends it again when it changes
        assert "hx-get" not in body and "hx-trigger" not in body
        assert f'hx-post="/batches/{account}/{batch_id}/cancel"' in body
        assert_no_keys(response)


def test_row_poll_of_ended_batch_stops_polling(operator_client, embedded_upstream, anthropic_sdk, openai_sdk):
    ended = anthropic_batch(anthropic_sdk).id
    completed = openai_batch(openai_sdk).id
    created_ago(ended, hours=1)
    created_ago(completed, hours=1)
    poll_store()
    for account, batch_id, status in (("anthropic-ops", ended, "ended"), ("openai-ops", completed, "completed")):
        response = operator_client.get(f"/batches/{account}/{batch_id}/row", **HTMX)
        assert response.status_code == 286
        body = assert_is_row_fragment(response)
        assert f'data-status="{status}"' in body
        assert "hx-trigger" not in body and "hx-get" not in body
        assert "hx-post" not in body
        assert response["Content-Type"].startswith("text/html")


def test_row_poll_follows_the_batch_to_its_end(operator_client, fast_simulator, embedded_upstream, anthropic_sdk):
    batch = anthropic_sdk().messages.batches.create(
        requests=[
            {
                "custom_id": "a1",
                "params": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            }
        ]
    )
    url = f"/batches/anthropic-ops/{batch.id}/row"
    poll_store()
    assert operator_client.get(url, **HTMX).status_code == 200
    deadline = time.monotonic() + 6
    while (response := operator_client.get(url, **HTMX)).status_code == 200:
        assert time.monotonic() < deadline, "the row never reported the end"
        time.sleep(0.2)
        poll_store()  # the poller, every POLL_SECONDS
    assert response.status_code == 286
    assert 'data-status="ended"' in text(response)


# --- cancel --------------------------------------------------------------------------------


def test_cancel_anthropic_batch(operator_client, embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk)
    poll_store()
    AccountState.objects.filter(account="anthropic-ops").update(next_poll_at=timezone.now() + timedelta(hours=1))
    url = f"/batches/anthropic-ops/{batch.id}/cancel"
    response = operator_client.post(url, **HTMX)
    assert response.status_code == 200
    body = assert_is_row_fragment(response)
    assert 'data-status="canceling"' in body
    assert '<span class="badge status-canceling">canceling</span>' in body
    assert "Cancel accepted; status is now canceling." in body
    assert "hx-post" not in body  # a canceling batch offers no second cancel
    assert " data-live" in body  # and stays live until it has ended
    assert_no_keys(response)

    attempt = CancelAttempt.objects.get()
    assert (attempt.account, attempt.batch_id, attempt.outcome, attempt.status_after, attempt.actor, attempt.via) == (
        "anthropic-ops",
        batch.id,
        "accepted",
        "canceling",
        "operator",
        "web",
    )
    assert attempt.finished_at is not None
    assert anthropic_sdk().messages.batches.retrieve(batch.id).processing_status == "canceling"
    # The cancel's answer went into the store: the next row poll shows it before any poller cycle.
    assert 'data-status="canceling"' in text(operator_client.get(f"/batches/anthropic-ops/{batch.id}/row", **HTMX))
    # And the poller takes this account first in its next cycle.
    assert AccountState.objects.get(account="anthropic-ops").next_poll_at is None


def test_cancel_openai_batch(operator_client, embedded_upstream, openai_sdk):
    batch = openai_batch(openai_sdk)
    poll_store()
    # Stored as running before the cancel.
    assert 'data-status="validating"' in text(operator_client.get(f"/batches/openai-ops/{batch.id}/row", **HTMX))
    response = operator_client.post(f"/batches/openai-ops/{batch.id}/cancel", **HTMX)
    assert response.status_code == 200
    body = assert_is_row_fragment(response)
    assert 'data-status="cancelling"' in body
    assert '<span class="badge status-cancelling">cancelling</span>' in body
    assert "hx-post" not in body
    assert_no_keys(response)
    attempt = CancelAttempt.objects.get()
    assert (attempt.outcome, attempt.status_after, attempt.account) == ("accepted", "cancelling", "openai-ops")
    assert openai_sdk().batches.retrieve(batch.id).status == "cancelling"
    assert 'data-status="cancelling"' in text(operator_client.get(f"/batches/openai-ops/{batch.id}/row", **HTMX))


def test_cancel_without_htmx_redirects_with_a_message(operator_client, embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk)
    response = operator_client.post(f"/batches/anthropic-ops/{batch.id}/cancel")
    assert response.status_code == 302 and response["Location"] == "/"
    page = operator_client.get("/")
    assert f"{batch.id}: Cancel accepted; status is now canceling." in text(page)
    assert CancelAttempt.objects.get().outcome == "accepted"


def test_cancel_of_ended_anthropic_batch_says_so(operator_client, embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk)
    created_ago(batch.id, hours=1)
    response = operator_client.post(f"/batches/anthropic-ops/{batch.id}/cancel", **HTMX)
    # Not a 500. The row of an ended batch always answers 286, the htmx "stop polling" code, which is
    # a success code: htmx 2 still swaps the row in (responseHandling "[23].." swaps) and only stops polling.
    assert response.status_code == 286
    body = assert_is_row_fragment(response)
    assert f"Batch {batch.id} had already ended; nothing was canceled." in body
    assert 'data-status="ended"' in body and "hx-post" not in body and "hx-trigger" not in body
    attempt = CancelAttempt.objects.get()
    assert (attempt.outcome, attempt.status_after) == ("already_ended", "ended")
    assert_no_keys(response)


def test_cancel_of_completed_openai_batch_is_already_ended(operator_client, embedded_upstream, openai_sdk):
    batch = openai_batch(openai_sdk)
    created_ago(batch.id, hours=1)
    response = operator_client.post(f"/batches/openai-ops/{batch.id}/cancel", **HTMX)
    assert response.status_code == 286
    body = assert_is_row_fragment(response)
    assert 'data-status="completed"' in body and "hx-post" not in body
    assert "Cannot cancel a batch with status &#x27;completed&#x27;" in body
    attempt = CancelAttempt.objects.get()
    assert (attempt.outcome, attempt.status_after) == ("already_ended", "completed")


def test_cancel_of_finalizing_openai_batch_is_refused_without_a_500(operator_client, embedded_upstream, openai_sdk):
    batch = openai_batch(openai_sdk, seconds=60)
    created_ago(batch.id, seconds=64.5)  # validating 3 s + processing 60 s, finalizing for 3 s
    assert openai_sdk().batches.retrieve(batch.id).status == "finalizing"
    response = operator_client.post(f"/batches/openai-ops/{batch.id}/cancel", **HTMX)
    assert response.status_code == 200  # not ended: the row keeps polling
    body = assert_is_row_fragment(response)
    assert 'data-status="finalizing"' in body and " data-live" in body and "hx-post" not in body
    assert "Cannot cancel a batch with status &#x27;finalizing&#x27;" in body
    attempt = CancelAttempt.objects.get()
    assert attempt.outcome != "accepted" and attempt.status_after == "finalizing"
    # The refusal came with the batch as it is now (never stored before): the store has it.
    assert StoredBatch.objects.get(batch_id=batch.id).status == "finalizing"


def test_cancel_while_upstream_fails_is_recorded_not_a_500(operator_client, embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk)
    fault("anthropic", "ops", "500")
    response = operator_client.post(f"/batches/anthropic-ops/{batch.id}/cancel", **HTMX)
    assert response.status_code == 200
    body = assert_is_row_fragment(response)
    # Never polled, so nothing is stored: the row says what the cancel got and keeps asking the store.
    assert "⚠ Anthropic HTTP 500 api_error: Internal server error" in body
    assert 'hx-trigger="every 3s"' in body
    attempt = CancelAttempt.objects.get()
    assert (attempt.outcome, attempt.status_after) == ("upstream_error", "")
    fault("anthropic", "ops", "")
    assert anthropic_sdk().messages.batches.retrieve(batch.id).processing_status == "in_progress"


def test_viewer_cannot_cancel_and_sees_no_cancel_button(
    viewer_client, other_operator_client, embedded_upstream, anthropic_sdk, openai_sdk, upstream_calls
):
    anthropic_id = anthropic_batch(anthropic_sdk).id
    openai_id = openai_batch(openai_sdk).id
    poll_store()
    upstream_calls.clear()
    for account, batch_id in (("anthropic-ops", anthropic_id), ("openai-ops", openai_id)):
        response = viewer_client.post(f"/batches/{account}/{batch_id}/cancel", **HTMX)
        assert response.status_code == 403 and "takes the operator role" in text(response)
    assert upstream_calls == []
    refused = CancelAttempt.objects.order_by("id").values_list("account", "batch_id", "outcome", "actor", "via")
    assert list(refused) == [
        ("anthropic-ops", anthropic_id, "refused", "viewer", "web"),
        ("openai-ops", openai_id, "refused", "viewer", "web"),
    ], "refused, and audited as refused"
    assert all(attempt.finished_at for attempt in CancelAttempt.objects.all())
    assert anthropic_sdk().messages.batches.retrieve(anthropic_id).processing_status == "in_progress"
    assert openai_sdk().batches.retrieve(openai_id).status == "validating"

    viewer_page = viewer_client.get("/")
    assert viewer_page.status_code == 200
    assert set(ids(viewer_page)) == {anthropic_id, openai_id}
    assert "hx-post" not in text(viewer_page) and "/cancel" not in text(viewer_page)
    viewer_row = viewer_client.get(f"/batches/anthropic-ops/{anthropic_id}/row", **HTMX)
    assert viewer_row.status_code == 200 and "hx-post" not in text(viewer_row)
    # The same page for an operator does carry the buttons.
    operator_page = other_operator_client.get("/")
    assert f'hx-post="/batches/anthropic-ops/{anthropic_id}/cancel"' in text(operator_page)
    assert f'hx-post="/batches/openai-ops/{openai_id}/cancel"' in text(operator_page)


def test_get_on_cancel_url_is_405(operator_client, db, upstream_calls):
    response = operator_client.get("/batches/anthropic-ops/msgbatch_01abc/cancel", **HTMX)
    assert response.status_code == 405
    assert upstream_calls == [] and CancelAttempt.objects.count() == 0


def test_cancel_without_csrf_token_is_403(operator, embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk)
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    url = f"/batches/anthropic-ops/{batch.id}/cancel"
    assert client.post(url, **HTMX).status_code == 403
    assert CancelAttempt.objects.count() == 0
    assert anthropic_sdk().messages.batches.retrieve(batch.id).processing_status == "in_progress"
    # With the token the page hands out (hx-headers on <body>), the same POST goes through.
    page = client.get("/")
    token = re.search(r'"X-CSRFToken": "([^"]+)"', text(page)).group(1)
    response = client.post(url, HTTP_X_CSRFTOKEN=token, **HTMX)
    assert response.status_code == 200
    assert 'data-status="canceling"' in text(response)


# --- malformed ids and unknown accounts ------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/batches/anthropic-ops/not-an-id/row",
        "/batches/openai-ops/batch_x%2F..%2Ffoo/row",
        "/batches/openai-ops/batch_x..foo/row",
        "/batches/nope-x/msgbatch_01abc/row",
        "/batches/openai-ops/msgbatch_01abc/row",
        "/batches/anthropic-ops/batch_abc/row",
        "/batches/anthropic-ops/msgbatch_01abc%3F/row",
    ],
)
def test_bad_batch_urls_are_404_without_upstream_request(operator_client, embedded_upstream, upstream_calls, path):
    response = operator_client.get(path, **HTMX)
    assert response.status_code == 404
    assert upstream_calls == []
    cancel = operator_client.post(path.removesuffix("/row") + "/cancel", **HTMX)
    assert cancel.status_code == 404
    assert upstream_calls == []
    assert CancelAttempt.objects.count() == 0


def test_a_row_poll_reads_the_store_and_never_goes_upstream(
    operator_client, embedded_upstream, anthropic_sdk, upstream_calls
):
    """The control for the test above: a well-formed id passes the check, and is looked up in the
    store only. Not there yet, the row says so and keeps polling."""
    response = operator_client.get("/batches/anthropic-ops/msgbatch_01abc/row", **HTMX)
    assert response.status_code == 200
    body = assert_is_row_fragment(response)
    assert "Not in the dashboard&#x27;s store yet; still watching" in body
    assert 'hx-trigger="every 3s"' in body  # not stored, so no feed watches it: it asks on its own
    batch = anthropic_batch(anthropic_sdk)
    poll_store()
    upstream_calls.clear()
    for _ in range(5):
        assert 'data-status="in_progress"' in text(
            operator_client.get(f"/batches/anthropic-ops/{batch.id}/row", **HTMX)
        )
    assert operator_client.get("/").status_code == 200
    assert upstream_calls == []


# --- upstream failures: the poller records them, the pages say so --------------------------


def test_list_with_one_account_overloaded(operator_client, four_accounts):
    fault("anthropic", "ops", "529")
    poll_store()
    response = operator_client.get("/")
    assert response.status_code == 200
    [banner] = banners(response)
    assert "<strong>Anthropic · ops</strong>: polls are failing (1 in a row" in banner
    assert "529" in banner and "Overloaded" in banner and "Last good poll:" in banner
    # Its batch is still listed, as last fetched, marked stale; the other accounts' rows are fresh.
    assert [(row["account"], row["id"]) for row in rows(response)] == four_accounts
    stale = [row["id"] for row in rows(response) if "is-stale" in row["cls"]]
    assert stale == [four_accounts[0][1]]
    assert "Polls of this account are failing" in row_html(response, four_accounts[0][1])
    assert_no_keys(response)
    # Once the account recovers, the next poll clears the banner and the stale mark.
    fault("anthropic", "ops", "")
    poll_store()
    response = operator_client.get("/")
    assert banners(response) == [] and not any("is-stale" in row["cls"] for row in rows(response))


def test_row_of_seen_batch_is_stale_when_its_account_fails(operator_client, embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk)
    poll_store()
    fault("anthropic", "ops", "529")
    poll_store()
    response = operator_client.get(f"/batches/anthropic-ops/{batch.id}/row", **HTMX)
    assert response.status_code == 200
    body = assert_is_row_fragment(response)
    assert "is-stale" in body and "Stale" in body and "Overloaded" in body
    assert 'data-status="in_progress"' in body
    assert " data-live" in body
    # Cancel goes upstream at once, whatever the poller could read: it stays on offer.
    assert f'hx-post="/batches/anthropic-ops/{batch.id}/cancel"' in body
    assert_no_keys(response)


def test_a_row_not_refreshed_for_three_poll_intervals_is_stale(
    operator_client, settings, embedded_upstream, anthropic_sdk
):
    batch = anthropic_batch(anthropic_sdk)
    poll_store(now=timezone.now() - timedelta(seconds=3 * settings.POLL_SECONDS + 2))
    body = text(operator_client.get(f"/batches/anthropic-ops/{batch.id}/row", **HTMX))
    assert "is-stale" in body and "is the poller running?" in body
    page = operator_client.get("/")
    [banner] = banners(page)
    assert "Anthropic · ops" in banner
    # In seconds: "not polled since just now" said the opposite of what it meant.
    assert re.search(r"last polled <time [^>]+>1\d s ago</time>, more than three poll intervals ago", banner), banner


def test_an_ended_row_is_final_even_while_its_account_fails(operator_client, embedded_upstream, anthropic_sdk):
    batch = anthropic_batch(anthropic_sdk)
    created_ago(batch.id, hours=1)
    poll_store()
    fault("anthropic", "ops", "500")
    poll_store()
    response = operator_client.get(f"/batches/anthropic-ops/{batch.id}/row", **HTMX)
    assert response.status_code == 286  # nothing about an ended batch changes: no polling, not stale
    body = assert_is_row_fragment(response)
    assert 'data-status="ended"' in body and "Stale" not in body and "hx-trigger" not in body


def test_an_account_never_polled_says_so(operator_client, embedded_upstream, anthropic_sdk):
    anthropic_batch(anthropic_sdk)
    response = operator_client.get("/")
    assert response.status_code == 200 and rows(response) == []
    notes = re.findall(r'account-notice" role="status"><strong>(.*?)</strong>: not polled yet', text(response))
    assert notes == [label for _, label in DEMO_ACCOUNTS]


def test_hanging_account_is_cut_at_the_deadline_and_never_slows_the_page(
    operator_client, settings, fresh_http_clients, dashboard_upstream, anthropic_client, openai_client, monkeypatch
):
    four_accounts = factories.four_accounts(anthropic_client, openai_client)  # all over real HTTP
    settings.UPSTREAM_TIMEOUT_SECONDS = 0.5
    settings.SIMULATOR_HANG_SECONDS = 2
    poll_store()
    fault("anthropic", "ops", "hang")
    poll_store()  # cut at 0.5 s: had it waited the 2 s out, the poll would have succeeded and said nothing
    asked = []
    monkeypatch.setattr(httpx.Client, "send", lambda client, request, **_: asked.append(request.url))
    response = operator_client.get("/")
    monkeypatch.undo()
    assert response.status_code == 200
    assert asked == [], "the list page waited on upstream"  # so a hanging account cannot slow it
    [banner] = banners(response)
    assert "Anthropic · ops" in banner and "did not answer within 0.5 seconds" in banner
    assert [(row["account"], row["id"]) for row in rows(response)] == four_accounts
    time.sleep(2.2)  # let the simulator's hanging request finish before teardown


def test_non_json_answer_gives_a_banner(operator_client, four_accounts):
    fault("openai", "research", "non-json")
    poll_store()
    response = operator_client.get("/")
    assert response.status_code == 200
    [banner] = banners(response)
    assert "OpenAI · research" in banner and "not a JSON object" in banner
    assert [(row["account"], row["id"]) for row in rows(response)] == four_accounts


def test_rate_limited_account_banner_mentions_retry(operator_client, four_accounts):
    fault("openai", "ops", "429")
    poll_store()
    response = operator_client.get("/")
    assert response.status_code == 200
    [banner] = banners(response)
    assert "OpenAI · ops" in banner and "429" in banner
    assert "retry after 2 s" in banner
    assert len(rows(response)) == 4


def test_every_account_failing_still_renders(operator_client, four_accounts):
    SimAccount.objects.update(fault="500")
    poll_store()
    response = operator_client.get("/")
    assert response.status_code == 200
    assert len(banners(response)) == len(DEMO_ACCOUNTS)
    assert len(rows(response)) == 4 and all("is-stale" in row["cls"] for row in rows(response))
    assert_no_keys(response)


# --- secrets -------------------------------------------------------------------------------


def test_api_keys_never_rendered(operator_client, embedded_upstream, anthropic_sdk, openai_sdk):
    anthropic_id = anthropic_batch(anthropic_sdk).id
    ended_id = anthropic_batch(anthropic_sdk).id
    openai_id = openai_batch(openai_sdk).id
    created_ago(ended_id, hours=1)
    poll_store()
    responses = [
        operator_client.get("/"),
        operator_client.get(f"/batches/anthropic-ops/{anthropic_id}/row", **HTMX),
        operator_client.get(f"/batches/openai-ops/{openai_id}/row", **HTMX),
        operator_client.post(f"/batches/anthropic-ops/{anthropic_id}/cancel", **HTMX),
        operator_client.post(f"/batches/openai-ops/{openai_id}/cancel", **HTMX),
        operator_client.post(f"/batches/anthropic-ops/{ended_id}/cancel", **HTMX),
        operator_client.get("/batches/anthropic-ops/not-an-id/row"),
    ]
    SimAccount.objects.update(fault="529")
    poll_store()
    responses += [
        operator_client.get("/"),
        operator_client.get(f"/batches/anthropic-ops/{anthropic_id}/row", **HTMX),
        operator_client.post(f"/batches/openai-ops/{openai_id}/cancel", **HTMX),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 286, 404, 200, 200, 200]
    for response in responses:
        assert_no_keys(response)
