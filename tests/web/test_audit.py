"""The cancel audit trail: what a CancelAttempt records for every outcome, when it is written, and who
can read it (the staff-only /audit/ page, the batch detail page, the read-only admin).

Batches are made with the official SDKs, which reach the simulator in process (tests/factories.py);
the dashboard reaches the simulator through its own httpx clients, in process, exactly as in
production by default. A hanging provider is tested over a real socket (the live server).
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from dashboard.accounts import find_account
from dashboard.batches import selectors, services
from dashboard.models import AccountState, CancelAttempt
from tests.factories import HTMX, anthropic_batch, created_ago, fault, openai_batch, poll_store, text, time_passes

# --- helpers -------------------------------------------------------------------------------


def running_batch(provider: str, anthropic_sdk, openai_sdk, **options) -> str:
    if provider == "anthropic":
        return anthropic_batch(anthropic_sdk, **options).id
    return openai_batch(openai_sdk, **options).id


def story_cell(response, heading: str) -> str:
    match = re.search(rf"<tr><th>{re.escape(heading)}</th><td>(.*?)</td></tr>", text(response), re.S)
    assert match, f"no {heading!r} row in the cancel story"
    return match.group(1)


ACCOUNT = {"anthropic": "anthropic-ops", "openai": "openai-ops"}
CANCELING = {"anthropic": "canceling", "openai": "cancelling"}
PROVIDER_CLASS = {
    "anthropic": "dashboard.providers.anthropic.AnthropicProvider.cancel",
    "openai": "dashboard.providers.openai.OpenAIProvider.cancel",
}


@pytest.fixture
def staff_client(db):
    from tests.conftest import make_user

    user = make_user("auditor", can_cancel=False, roles=("viewer",))  # every account, viewer only
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser_client(db):
    user = get_user_model().objects.create_superuser(username="root-admin", password=None, email="root@example.invalid")
    client = Client()
    client.force_login(user)
    return client


def attempt(**fields) -> CancelAttempt:
    defaults = {
        "actor": "someone",
        "via": "web",
        "account": "anthropic-ops",
        "batch_id": "msgbatch_01abc",
        "outcome": CancelAttempt.Outcome.ACCEPTED,
        "status_after": "canceling",
        "message": "ok",
        "finished_at": timezone.now(),
    }
    return CancelAttempt.objects.create(**{**defaults, **fields})


# --- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_web_cancel_records_one_accepted_attempt(
    operator_client, operator, embedded_upstream, anthropic_sdk, openai_sdk, provider
):
    batch_id = running_batch(provider, anthropic_sdk, openai_sdk, count=3)
    created_ago(batch_id, seconds=5)  # OpenAI: past validating (which reports total 0), still in progress
    before = timezone.now()
    response = operator_client.post(f"/batches/{ACCOUNT[provider]}/{batch_id}/cancel", **HTMX)
    after = timezone.now()
    assert response.status_code == 200

    row = CancelAttempt.objects.get()
    assert row.outcome == "accepted"
    assert row.actor == "operator" and row.user_id == operator.pk and row.via == "web"
    assert (row.account, row.batch_id) == (ACCOUNT[provider], batch_id)
    assert row.finished_at is not None
    assert before <= row.requested_at <= row.finished_at <= after
    assert row.status_after == CANCELING[provider]
    assert row.message == f"Cancel accepted; status is now {CANCELING[provider]}."
    assert isinstance(row.counts_at_cancel, dict)
    if provider == "openai":
        assert set(row.counts_at_cancel) == {"total", "completed", "failed"}
        assert row.counts_at_cancel["total"] == 3
    else:
        assert row.counts_at_cancel == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_service_cancel_records_one_accepted_attempt(
    operator, settings, embedded_upstream, anthropic_sdk, openai_sdk, provider
):
    settings.POLL_SECONDS = 60  # what was just stored is fresh, however slow this run
    batch_id = running_batch(provider, anthropic_sdk, openai_sdk, count=2)
    # Polled once as running, so the store holds the pre-cancel state.
    poll_store()
    account = find_account(ACCOUNT[provider])
    assert not selectors.batch_row(account=account, batch_id=batch_id).batch.status.startswith("cancel")
    # An idle account would wait for its next poll: the cancel must wake the poller for it.
    AccountState.objects.filter(account=account.key).update(next_poll_at=timezone.now() + timedelta(hours=1))

    result = services.cancel_batch(account=account, batch_id=batch_id, actor="operator", user=operator)
    assert result.outcome == "accepted"
    assert result.status_after == CANCELING[provider]
    row = CancelAttempt.objects.get()
    assert (row.outcome, row.actor, row.user, row.via) == ("accepted", "operator", operator, "web")
    assert (row.account, row.batch_id, row.status_after) == (ACCOUNT[provider], batch_id, CANCELING[provider])
    assert row.requested_at <= row.finished_at
    # The cancel wrote its answer into the store: the next read is the new state, not the pre-cancel one,
    # with no poll in between, and the counts recorded are those of that answer.
    stored = selectors.batch_row(account=account, batch_id=batch_id)
    assert stored.batch.status == CANCELING[provider] and not stored.is_stale
    assert row.counts_at_cancel == dict(stored.batch.raw["request_counts"])
    assert AccountState.objects.get(account=account.key).next_poll_at is None


# --- already ended ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider, refusal", [("anthropic", "HTTP 400"), ("openai", "HTTP 409")])
def test_cancel_of_ended_batch_is_recorded_as_already_ended(
    operator_client, embedded_upstream, anthropic_sdk, openai_sdk, provider, refusal
):
    batch_id = running_batch(provider, anthropic_sdk, openai_sdk)
    created_ago(batch_id, hours=1)
    response = operator_client.post(f"/batches/{ACCOUNT[provider]}/{batch_id}/cancel", **HTMX)
    assert response.status_code == 286  # the ended row, which stops polling; not an error
    row = CancelAttempt.objects.get()
    assert row.outcome == "already_ended"
    assert row.message.startswith(f"Batch {batch_id} had already ended; nothing was canceled.")
    assert refusal in row.message  # the provider's own refusal (400 Anthropic, 409 OpenAI) is kept
    assert row.status_after == ("ended" if provider == "anthropic" else "completed")
    assert row.counts_at_cancel is None
    assert row.finished_at is not None and row.requested_at <= row.finished_at
    assert "had already ended" in text(response)


# --- upstream failed -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "provider, message",
    [
        ("anthropic", "Anthropic HTTP 500 api_error: Internal server error"),
        ("openai", "OpenAI HTTP 500 server_error"),
    ],
)
def test_cancel_while_upstream_answers_500_is_recorded(
    operator_client, embedded_upstream, anthropic_sdk, openai_sdk, provider, message
):
    batch_id = running_batch(provider, anthropic_sdk, openai_sdk)
    fault(provider, "ops", "500")
    response = operator_client.post(f"/batches/{ACCOUNT[provider]}/{batch_id}/cancel", **HTMX)
    assert response.status_code == 200
    assert message in text(response)
    row = CancelAttempt.objects.get()
    assert row.outcome == "upstream_error"
    assert row.message.startswith(message)
    assert row.finished_at is not None and row.requested_at <= row.finished_at
    assert (row.status_after, row.counts_at_cancel) == ("", None)


def test_cancel_while_upstream_hangs_is_recorded_as_a_timeout(
    operator_client, settings, fresh_http_clients, dashboard_upstream, anthropic_client
):
    batch_id = anthropic_batch(anthropic_client).id
    settings.UPSTREAM_TIMEOUT_SECONDS = 0.5
    settings.SIMULATOR_HANG_SECONDS = 2
    fault("anthropic", "ops", "hang")
    started = time.monotonic()
    try:
        response = operator_client.post(f"/batches/anthropic-ops/{batch_id}/cancel", **HTMX)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert elapsed < 1.9, f"the cancel waited {elapsed:.1f} s for a hanging provider"
        row = CancelAttempt.objects.get()
        assert row.outcome == "upstream_error"
        assert "did not answer within 0.5 seconds" in row.message
        assert row.finished_at is not None and row.requested_at <= row.finished_at
        assert "did not answer within 0.5 seconds" in text(response)
    finally:
        # Let the simulator's hanging requests finish before the database is flushed.
        time.sleep(max(0.0, 2.3 - (time.monotonic() - started)))


# --- written before the upstream call ---------------------------------------------------------


def crashing_cancel(batch_id: str, seen: list):
    def cancel(self, requested_id):
        assert requested_id == batch_id
        pending = CancelAttempt.objects.filter(batch_id=batch_id, outcome="pending", finished_at__isnull=True)
        assert pending.count() == 1, "the attempt was not recorded before the upstream call"
        seen.append(pending.get().pk)
        raise RuntimeError("the process died mid-call")

    return cancel


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_attempt_is_written_before_the_upstream_call_and_survives_a_crash(
    operator, monkeypatch, embedded_upstream, anthropic_sdk, openai_sdk, provider
):
    batch_id = running_batch(provider, anthropic_sdk, openai_sdk)
    seen: list[int] = []
    monkeypatch.setattr(PROVIDER_CLASS[provider], crashing_cancel(batch_id, seen))
    result = services.cancel_batch(
        account=find_account(ACCOUNT[provider]), batch_id=batch_id, actor="operator", user=operator
    )
    # `seen` holds the pk of the pending row that existed while the (crashing) upstream call ran.
    assert len(seen) == 1
    row = CancelAttempt.objects.get()
    assert row.pk == seen[0]
    assert (row.outcome, row.actor, row.user, row.batch_id) == ("upstream_error", "operator", operator, batch_id)
    assert row.finished_at is not None and "RuntimeError" in row.message and "unknown" in row.message
    assert result.outcome == "upstream_error" and result.message == row.message


def test_crash_during_web_cancel_answers_a_row_and_completes_the_attempt(
    operator, monkeypatch, embedded_upstream, anthropic_sdk
):
    batch_id = anthropic_batch(anthropic_sdk).id
    seen: list[int] = []
    monkeypatch.setattr(PROVIDER_CLASS["anthropic"], crashing_cancel(batch_id, seen))
    client = Client(raise_request_exception=False)
    client.force_login(operator)
    response = client.post(f"/batches/anthropic-ops/{batch_id}/cancel", **HTMX)
    # Never a Django 500: the answer is the row, saying the outcome is unknown.
    assert response.status_code == 200
    body = text(response)
    assert body.lstrip().startswith("<tr") and batch_id in body and "failed unexpectedly" in body
    assert len(seen) == 1
    row = CancelAttempt.objects.get()
    assert (row.pk, row.outcome, row.via) == (seen[0], "upstream_error", "web")
    assert row.finished_at is not None
    operator.is_staff = True
    operator.save()
    page = client.get("/audit/")
    assert page.status_code == 200
    assert batch_id in text(page) and "upstream error" in text(page)


# --- the audit page --------------------------------------------------------------------------


def test_audit_page_lists_every_attempt_on_the_accounts_one_sees_and_filters_by_batch(staff_client):
    first = attempt(batch_id="msgbatch_01first", actor="alice")
    attempt(
        batch_id="msgbatch_01first",
        actor="root",
        via="cli",
        outcome="already_ended",
        status_after="ended",
        message="Batch msgbatch_01first had already ended; nothing was canceled.",
    )
    attempt(
        account="openai-research",
        batch_id="batch_second",
        actor="bob",
        outcome="upstream_error",
        status_after="",
        message="OpenAI HTTP 500 server_error: boom",
    )
    attempt(batch_id="msgbatch_01third", actor="carol", outcome="pending", finished_at=None, message="")

    response = staff_client.get("/audit/")
    assert response.status_code == 200
    body = text(response)
    for needle in (
        "msgbatch_01first",
        "batch_second",
        "msgbatch_01third",
        "alice",
        "bob",
        "carol",
        'root <span class="muted">(cli)</span>',
        "already ended",
        "upstream error",
        "pending (no answer recorded)",
        "OpenAI HTTP 500 server_error: boom",
    ):
        assert needle in body, needle
    assert body.count("<tr>") - 1 == 4  # header row + four attempts
    assert f'href="/batches/{first.account}/{first.batch_id}/"' in body
    assert 'href="/batches/openai-research/batch_second/"' in body

    filtered = staff_client.get("/audit/", {"batch": "msgbatch_01first"})
    assert filtered.status_code == 200
    body = text(filtered)
    assert body.count("<tr>") - 1 == 2
    assert "alice" in body and "root" in body
    assert "batch_second" not in body and "msgbatch_01third" not in body
    assert 'value="msgbatch_01first"' in body

    nothing = staff_client.get("/audit/", {"batch": "msgbatch_01nothere"})
    assert nothing.status_code == 200 and "No cancel attempts yet." in text(nothing)


def test_the_audit_page_shows_the_attempts_on_one_s_own_accounts_only(db):
    from tests.conftest import make_user

    attempt(actor="alice")  # anthropic-ops
    attempt(account="openai-research", batch_id="batch_second", actor="bob")
    research = Client()
    research.force_login(make_user("researcher", can_cancel=False, roles=("viewer",), accounts="openai-*"))
    body = text(research.get("/audit/"))
    assert "batch_second" in body and "bob" in body
    assert "alice" not in body and "anthropic-ops" not in body
    nobody = Client()
    nobody.force_login(make_user("newcomer", can_cancel=False, roles=()))
    empty = nobody.get("/audit/")
    assert empty.status_code == 200 and "alice" not in text(empty) and "bob" not in text(empty)


def test_audit_page_redirects_anonymous_to_login(client, db):
    attempt(actor="alice")
    response = client.get("/audit/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/") and "next=/audit/" in response["Location"]


def test_detail_page_lists_the_attempts_of_that_batch_only(operator_client, embedded_upstream, anthropic_sdk):
    batch_id = anthropic_batch(anthropic_sdk).id
    other_id = anthropic_batch(anthropic_sdk).id
    poll_store()
    url = f"/batches/anthropic-ops/{batch_id}/"
    before = operator_client.get(url)
    assert before.status_code == 200
    assert "Nobody has tried to cancel this batch through the dashboard." in text(before)

    assert operator_client.post(f"{url}cancel", **HTMX).status_code == 200
    attempt(batch_id=batch_id, actor="night-shift", via="cli", message="recorded by the CLI")
    attempt(batch_id=other_id, actor="someone-else", message="another batch")

    response = operator_client.get(url)
    assert response.status_code == 200
    body = text(response)
    audit = body.split("<h2>Audit trail</h2>", 1)[1]
    assert 'operator <span class="muted">(web)</span>' in audit
    assert "Cancel accepted; status is now canceling." in audit
    assert 'night-shift <span class="muted">(cli)</span>' in audit and "recorded by the CLI" in audit
    assert "someone-else" not in body and "another batch" not in body
    assert audit.split("</table>", 1)[0].count("<tr>") == 3  # header + two attempts


# --- the admin -------------------------------------------------------------------------------


def test_admin_shows_attempts_but_allows_no_change(superuser_client):
    row = attempt(actor="alice", batch_id="msgbatch_01admin")
    base = "/admin/dashboard/cancelattempt/"

    changelist = superuser_client.get(base)
    assert changelist.status_code == 200
    assert "msgbatch_01admin" in text(changelist) and "alice" in text(changelist)
    assert "delete_selected" not in text(changelist)  # no bulk delete action
    assert f'href="{base}add/"' not in text(changelist)

    assert superuser_client.get(f"{base}add/").status_code == 403
    assert (
        superuser_client.post(f"{base}add/", {"actor": "mallory", "account": "x", "batch_id": "y"}).status_code == 403
    )

    change = superuser_client.get(f"{base}{row.pk}/change/")
    assert change.status_code == 200
    body = text(change)
    assert "msgbatch_01admin" in body
    assert 'name="actor"' not in body and 'name="outcome"' not in body and 'name="batch_id"' not in body
    assert 'name="_save"' not in body and f"{base}{row.pk}/delete/" not in body

    tampered = superuser_client.post(f"{base}{row.pk}/change/", {"actor": "mallory", "outcome": "accepted"})
    assert tampered.status_code == 403
    assert superuser_client.get(f"{base}{row.pk}/delete/").status_code == 403
    assert superuser_client.post(f"{base}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = superuser_client.post(base, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"})
    assert bulk.status_code in (200, 302)
    row.refresh_from_db()
    assert row.actor == "alice"
    assert CancelAttempt.objects.count() == 1


def test_admin_lists_which_attempts_were_reconciled_after_their_process_died(superuser_client):
    from django.utils import timezone

    attempt(actor="alice", batch_id="msgbatch_01answered")
    reconciled = attempt(actor="bob", batch_id="msgbatch_01reconciled")
    CancelAttempt.objects.filter(pk=reconciled.pk).update(reconciled_at=timezone.now())
    base = "/admin/dashboard/cancelattempt/"
    assert "Reconciled at" in text(superuser_client.get(base))
    only = text(superuser_client.get(f"{base}?reconciled_at__isempty=0"))
    assert "msgbatch_01reconciled" in only and "msgbatch_01answered" not in only


def test_admin_is_closed_to_the_operator(operator_client):
    attempt(actor="alice")
    response = operator_client.get("/admin/dashboard/cancelattempt/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- the cancel story on the detail page ------------------------------------------------------


def test_cancel_story_of_openai_batch_canceled_through_the_dashboard(operator_client, embedded_upstream, openai_sdk):
    batch_id = openai_batch(openai_sdk, seconds=100, count=100).id
    created_ago(batch_id, seconds=3 + 30)  # validating 3 s, then a third of the way through processing
    poll_store()
    assert operator_client.post(f"/batches/openai-ops/{batch_id}/cancel", **HTMX).status_code == 200
    row = CancelAttempt.objects.get()
    assert row.outcome == "accepted"
    done_then = row.counts_at_cancel["completed"] + row.counts_at_cancel["failed"]
    assert 20 <= done_then <= 40

    time_passes(batch_id, seconds=20)  # past the 8 s the simulator keeps finishing in-flight requests
    final = openai_sdk().batches.retrieve(batch_id)
    assert final.status == "cancelled"
    done_at_end = final.request_counts.completed + final.request_counts.failed
    assert done_at_end > done_then  # requests did finish after the cancel was accepted

    poll_store()  # the poller brings the store up to the end
    response = operator_client.get(f"/batches/openai-ops/{batch_id}/")
    assert response.status_code == 200
    assert story_cell(response, "Canceling took") == "8 s"
    assert story_cell(response, "Finished after the cancel") == f"{done_at_end - done_then} requests"
    assert story_cell(response, "Canceled") == f"{100 - done_at_end} requests"
    assert f"{done_then} requests had finished when the cancel was accepted (recorded in our audit trail)." in text(
        response
    )


def test_cancel_story_of_openai_batch_canceled_elsewhere_says_counts_are_unknown(
    operator_client, embedded_upstream, openai_sdk
):
    batch_id = openai_batch(openai_sdk, seconds=100, count=10).id
    created_ago(batch_id, seconds=10)
    poll_store()
    openai_sdk().batches.cancel(batch_id)  # not through the dashboard: no audit row
    time_passes(batch_id, seconds=20)
    poll_store()
    assert selectors.batch_row(account=find_account("openai-ops"), batch_id=batch_id).batch.status == "cancelled"
    response = operator_client.get(f"/batches/openai-ops/{batch_id}/")
    assert response.status_code == 200
    assert story_cell(response, "Finished after the cancel") == "unknown"
    assert "The cancel was not made through this dashboard" in text(response)


def test_cancel_story_of_anthropic_batch_says_the_provider_does_not_tell(
    operator_client, embedded_upstream, anthropic_sdk
):
    batch_id = anthropic_batch(anthropic_sdk, seconds=100, count=20).id
    created_ago(batch_id, seconds=30)
    poll_store()
    assert operator_client.post(f"/batches/anthropic-ops/{batch_id}/cancel", **HTMX).status_code == 200
    assert CancelAttempt.objects.get().outcome == "accepted"

    # No poll since: the page shows the cancel's own answer, which the cancel wrote into the store.
    canceling = operator_client.get(f"/batches/anthropic-ops/{batch_id}/")
    assert story_cell(canceling, "Canceling took") == "still canceling"
    assert story_cell(canceling, "Ended") == "not yet"

    time_passes(batch_id, seconds=20)
    poll_store()
    response = operator_client.get(f"/batches/anthropic-ops/{batch_id}/")
    assert response.status_code == 200
    assert story_cell(response, "Canceling took") == "8 s"
    assert story_cell(response, "Finished after the cancel") == "unknown"
    assert "Anthropic reports outcomes only once a batch has ended, so it does not say which requests" in text(response)
    final = anthropic_sdk().messages.batches.retrieve(batch_id)
    assert final.processing_status == "ended" and final.request_counts.canceled > 0
    assert story_cell(response, "Canceled") == f"{final.request_counts.canceled} requests"
