"""Bulk cancel (dashboard/bulk/operations.py, web/bulk_views.py): preview, typed confirmation, one audited
operation whose items are claimed, canceled through services.cancel_batch(via="bulk") by its task, run
again by a worker's sweep when the worker that ran it died; against the embedded simulator."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard import background
from dashboard.batches import poller, services
from dashboard.bulk import operations
from dashboard.models import BulkCancel, BulkCancelItem, CancelAttempt, StoredBatch
from tests import bulk_deaths
from tests.bulk_deaths import Killed
from tests.factories import HTMX, anthropic_batch, created_ago, fault, openai_batch, poll_store, text

State = BulkCancelItem.State


# --- helpers -------------------------------------------------------------------------------------


def preview(client, query: str = "") -> tuple[object, list[str], str]:
    """GET the preview: the response, the batches it lists ("account/id", in order) and its token."""
    response = client.get("/bulk-cancel/preview" + (f"?{query}" if query else ""))
    body = text(response)
    listed = re.findall(r'<input type="checkbox" name="batch" value="([^"]+)"', body)
    token = re.search(r'name="token" value="([^"]*)"', body)
    return response, listed, token.group(1) if token else ""


def confirm(client, token: str, batches: list[str], typed: str | None = None):
    data = {"token": token, "batch": batches}
    if typed is not None:
        data["typed"] = typed
    return client.post("/bulk-cancel/confirm", data)


def operation_of(response) -> BulkCancel:
    assert response.status_code == 302, text(response)[:500]
    match = re.fullmatch(r"/bulk-cancel/(\d+)/", response["Location"])
    assert match, response["Location"]
    return BulkCancel.objects.get(pk=int(match.group(1)))


def finished(operation: BulkCancel) -> BulkCancel:
    """Run the tasks that are ready, here, as a worker would; the operation as it is then."""
    background.run_ready(worker_id="test-worker")
    operation.refresh_from_db()
    return operation


def states(operation: BulkCancel) -> dict[str, str]:
    return {item.batch_id: item.state for item in operation.items.all()}


def running_batches(anthropic_sdk, openai_sdk, *, anthropic: int = 2, openai: int = 2, seconds: int = 600) -> list[str]:
    """Running batches in the ops accounts, stored by a poll: ["account/id"], newest first."""
    made = [("anthropic-ops", anthropic_batch(anthropic_sdk, seconds=seconds).id) for _ in range(anthropic)]
    made += [("openai-ops", openai_batch(openai_sdk, seconds=seconds).id) for _ in range(openai)]
    for minutes, (_, batch_id) in enumerate(made, start=1):
        created_ago(batch_id, minutes=minutes)  # distinct creation times: the order is the list's
    poll_store()
    return [f"{account}/{batch_id}" for account, batch_id in made]


@pytest.fixture
def quiet_poller(settings):
    """No notifications or alarms in poller cycles run by these tests: only what they look at."""
    settings.ALARMS_ENABLED = False
    return settings


# --- preview -------------------------------------------------------------------------------------


def test_the_preview_lists_exactly_the_filters_cancelable_batches(operator_client, anthropic_sdk, openai_sdk):
    ops = running_batches(anthropic_sdk, openai_sdk, anthropic=3, openai=2)
    research = openai_batch(openai_sdk, "research", seconds=600, metadata={"job": "nightly-eval"}).id
    ended = anthropic_batch(anthropic_sdk, ended=True).id  # ended an hour ago
    canceling = anthropic_batch(anthropic_sdk, seconds=600).id
    anthropic_sdk().messages.batches.cancel(canceling)
    poll_store()
    assert StoredBatch.objects.get(batch_id=canceling).status == "canceling"
    assert StoredBatch.objects.get(batch_id=ended).is_ended

    response, listed, token = preview(operator_client, "account=anthropic-ops")
    assert response.status_code == 200 and token
    assert listed == [batch for batch in ops if batch.startswith("anthropic-ops/")]  # newest first, as the list
    assert "Cancel 3 batches" in text(response)

    _, listed, _ = preview(operator_client, "status=active")
    assert sorted(listed) == sorted([*ops, f"openai-research/{research}"])  # not the ended, not the canceling one
    _, listed, _ = preview(operator_client, "q=nightly-eval")
    assert listed == [f"openai-research/{research}"]
    _, listed, _ = preview(operator_client, "provider=openai&account=openai-ops")
    assert listed == [batch for batch in ops if batch.startswith("openai-ops/")]
    response, listed, token = preview(operator_client, "status=ended")
    assert listed == [] and token == ""
    assert "No batch these filters show can be canceled now" in text(response)
    # Previewing cancels nothing.
    assert CancelAttempt.objects.count() == 0 and BulkCancel.objects.count() == 0


def test_the_summary_offers_the_filters_cancelable_batches(operator_client, anthropic_sdk, openai_sdk):
    running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=1)
    body = text(operator_client.get("/summary?account=anthropic-ops", **HTMX))
    assert '<a class="bulk-cancel-link" href="/bulk-cancel/preview?account=anthropic-ops">Cancel 2 batches…</a>' in body
    body = text(operator_client.get("/summary?status=active", **HTMX))
    assert 'href="/bulk-cancel/preview?status=active">Cancel 3 batches…</a>' in body


def test_more_than_the_limit_is_refused_at_the_preview(operator_client, anthropic_sdk, openai_sdk, monkeypatch):
    running_batches(anthropic_sdk, openai_sdk, anthropic=3, openai=0)
    monkeypatch.setattr(operations, "MAX_BATCHES", 2)
    response, listed, token = preview(operator_client)
    assert listed == [] and token == ""
    assert "3 batches match: more than 2 cannot be canceled at once" in text(response)


# --- confirmation ----------------------------------------------------------------------------------


def test_above_three_batches_the_number_must_be_typed_and_the_server_checks_it(
    operator_client, anthropic_sdk, openai_sdk
):
    batches = running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=2)
    response, listed, token = preview(operator_client)
    assert listed == batches
    assert 'name="typed"' in text(response) and "type the number of batches to cancel" in text(response)

    for typed in (None, "", "3", "four", "40", " 4 x"):
        refused = confirm(operator_client, token, listed, typed)
        assert refused.status_code == 400, typed
        assert "type their number, 4, in the box" in text(refused)
        assert "Nothing was canceled" in text(refused)
    assert BulkCancel.objects.count() == 0 and CancelAttempt.objects.count() == 0

    operation = finished(operation_of(confirm(operator_client, token, listed, " 4 ")))
    assert (operation.total, operation.confirmed) == (4, True)
    assert set(states(operation).values()) == {State.CANCELED}


def test_three_batches_or_fewer_need_no_typing(operator_client, anthropic_sdk, openai_sdk):
    running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=1)
    response, listed, token = preview(operator_client)
    assert len(listed) == 3
    assert re.search(r'<p id="typed-confirmation" class="typed-confirmation" hidden>', text(response))
    operation = finished(operation_of(confirm(operator_client, token, listed)))
    assert (operation.total, operation.confirmed) == (3, False)
    assert set(states(operation).values()) == {State.CANCELED}


def test_a_selection_of_the_preview_cancels_only_those(operator_client, anthropic_sdk, openai_sdk):
    batches = running_batches(anthropic_sdk, openai_sdk, anthropic=3, openai=2)
    _, listed, token = preview(operator_client)
    kept = [listed[0], listed[3]]
    operation = finished(operation_of(confirm(operator_client, token, kept)))  # two: no typing
    assert [f"{item.account}/{item.batch_id}" for item in operation.items.all()] == kept
    assert operation.source["left_out"] == [batch for batch in batches if batch not in kept]
    assert operation.source["previewed"] == 5
    assert CancelAttempt.objects.count() == 2
    left = [batch.split("/")[1] for batch in batches if batch not in kept]
    assert set(StoredBatch.objects.filter(batch_id__in=left).values_list("status", flat=True)) <= {
        "in_progress",
        "validating",
    }


def test_only_previewed_batches_can_be_confirmed(operator_client, anthropic_sdk, openai_sdk):
    batches = running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=0)
    _, listed, token = preview(operator_client, "account=anthropic-ops")
    other = openai_batch(openai_sdk, seconds=600).id
    poll_store()
    refused = confirm(operator_client, token, [*listed, f"openai-ops/{other}"])
    assert refused.status_code == 400
    assert "Only batches of the preview can be canceled from it" in text(refused)
    refused = confirm(operator_client, token, [])
    assert refused.status_code == 400 and "No batch is selected" in text(refused)
    refused = confirm(operator_client, token[:-2] + "xx", listed)
    assert refused.status_code == 400 and "does not come from a preview" in text(refused)
    assert BulkCancel.objects.count() == 0 and CancelAttempt.objects.count() == 0
    assert batches == listed


def test_what_changed_since_the_preview_is_said_and_only_the_previewed_batches_are_canceled(
    operator_client, anthropic_sdk, openai_sdk
):
    running_batches(anthropic_sdk, openai_sdk, anthropic=3, openai=0)
    _, listed, token = preview(operator_client, "account=anthropic-ops")
    arrived = anthropic_batch(anthropic_sdk, seconds=600).id  # after the preview
    ended = listed[1].split("/")[1]
    created_ago(ended, hours=1)  # ended meanwhile: its processing is long over
    poll_store()

    operation = finished(operation_of(confirm(operator_client, token, listed)))
    assert "1 of the batches previewed can no longer be canceled" in operation.note
    assert "1 batch not in the preview now match the filter: not included" in operation.note
    assert arrived not in states(operation)
    assert states(operation) == {
        listed[0].split("/")[1]: State.CANCELED,
        ended: State.ALREADY_ENDED,
        listed[2].split("/")[1]: State.CANCELED,
    }
    assert anthropic_sdk().messages.batches.retrieve(arrived).processing_status == "in_progress"
    page = text(operator_client.get(f"/bulk-cancel/{operation.pk}/"))
    assert "Since the preview: 1 of the batches previewed can no longer be canceled" in page


# --- permission and CSRF ---------------------------------------------------------------------------


def test_a_bulk_cancel_takes_the_operator_role_and_its_progress_is_shown_to_those_who_see_its_accounts(
    viewer_client, operator, anthropic_sdk, openai_sdk, upstream_calls
):
    batches = running_batches(anthropic_sdk, openai_sdk, anthropic=1, openai=1)
    operator_client = Client()
    operator_client.force_login(operator)
    _, listed, token = preview(operator_client)
    operation = finished(operation_of(confirm(operator_client, token, listed[:1])))
    upstream_calls.clear()
    attempts = CancelAttempt.objects.count()

    assert viewer_client.get("/bulk-cancel/preview").status_code == 403
    # What was canceled is shown to whoever may see its accounts, as the audit trail is.
    assert viewer_client.get("/bulk-cancel/").status_code == 200
    assert viewer_client.get(f"/bulk-cancel/{operation.pk}/").status_code == 200
    # A direct POST, with the operator's own preview token even: refused before anything is made.
    assert confirm(viewer_client, token, listed, "2").status_code == 403
    from tests.conftest import make_user

    outsider = Client()
    outsider.force_login(make_user("outsider", can_cancel=True, accounts="gemini-*"))
    assert outsider.get(f"/bulk-cancel/{operation.pk}/").status_code == 404
    assert outsider.get(f"/bulk-cancel/{operation.pk}/", **HTMX).status_code == 404
    assert f"/bulk-cancel/{operation.pk}/" not in outsider.get("/bulk-cancel/").content.decode()
    assert outsider.get("/bulk-cancel/preview").status_code == 200, "an operator of its own accounts"
    assert confirm(outsider, token, listed, "2").status_code == 400, "not its preview, not its accounts"
    assert BulkCancel.objects.count() == 1 and CancelAttempt.objects.count() == attempts
    assert upstream_calls == []
    assert StoredBatch.objects.get(batch_id=batches[1].split("/")[1]).status in ("validating", "in_progress")


def test_a_preview_made_for_another_user_is_refused(operator_client, anthropic_sdk, openai_sdk):
    from tests.conftest import make_user

    running_batches(anthropic_sdk, openai_sdk, anthropic=1, openai=0)
    other = make_user("other-operator", can_cancel=True)
    other_client = Client()
    other_client.force_login(other)
    _, listed, token = preview(other_client)
    refused = confirm(operator_client, token, listed)
    assert refused.status_code == 400 and "made for another user" in text(refused)
    assert BulkCancel.objects.count() == 0


def test_the_confirmation_needs_the_csrf_token(operator, anthropic_sdk, openai_sdk):
    running_batches(anthropic_sdk, openai_sdk, anthropic=1, openai=0)
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response, listed, token = preview(client)
    assert confirm(client, token, listed).status_code == 403
    assert BulkCancel.objects.count() == 0 and CancelAttempt.objects.count() == 0
    # With the form's own token it goes through.
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text(response)).group(1)
    response = client.post("/bulk-cancel/confirm", {"token": token, "batch": listed, "csrfmiddlewaretoken": csrf})
    assert finished(operation_of(response)).total == 1


def test_a_user_who_lost_the_operator_role_before_the_work_gets_items_skipped(
    operator, operator_client, anthropic_sdk, openai_sdk
):
    running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=0)
    _, listed, token = preview(operator_client)
    operation, _ = operations.create(
        user=operator, accounts=_accounts(), token=token, selected=listed, typed="", worker="web-1"
    )
    operator.groups.clear()
    operations.run(operation_id=operation.pk, worker="web-1")
    operation.refresh_from_db()
    assert set(states(operation).values()) == {State.SKIPPED}
    assert operation.items.first().message == "Not canceled: operator is not an operator of anthropic-ops now."
    assert operation.finished_at is not None
    assert CancelAttempt.objects.count() == 0


def _accounts():
    from dashboard.accounts import configured_accounts

    return configured_accounts()


# --- the work: audited, each batch once, resumable --------------------------------------------------


def test_each_batch_is_canceled_once_and_audited_like_a_single_cancel(
    operator, operator_client, anthropic_sdk, openai_sdk
):
    batches = running_batches(anthropic_sdk, openai_sdk, anthropic=3, openai=2)
    _, listed, token = preview(operator_client)
    operation = finished(operation_of(confirm(operator_client, token, listed, "5")))

    assert operation.finished_at is not None and operation.actor == "operator" and operation.user == operator
    assert operation.source["filters"] == {"provider": "", "account_key": "", "status": "", "search": ""}
    items = list(operation.items.select_related("attempt"))
    assert [f"{item.account}/{item.batch_id}" for item in items] == batches
    for item in items:
        assert item.state == State.CANCELED and item.finished_at is not None and item.claimed_until is None
        attempt = item.attempt
        assert (attempt.via, attempt.actor, attempt.user, attempt.outcome) == ("bulk", "operator", operator, "accepted")
        assert (attempt.account, attempt.batch_id) == (item.account, item.batch_id)
        assert attempt.finished_at is not None
        assert item.message == attempt.message
    assert CancelAttempt.objects.count() == 5  # one each
    # The store has each cancel's answer, as after a single cancel.
    assert set(StoredBatch.objects.values_list("status", flat=True)) == {"canceling", "cancelling"}
    assert anthropic_sdk().messages.batches.retrieve(items[0].batch_id).processing_status == "canceling"


def test_already_ended_and_failing_upstream_items_are_recorded_as_such(operator_client, anthropic_sdk, openai_sdk):
    batches = running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=2)
    _, listed, token = preview(operator_client)
    ended = batches[0].split("/")[1]
    created_ago(ended, hours=1)  # ended upstream; the store does not know yet
    fault("openai", "ops", "500")

    operation = finished(operation_of(confirm(operator_client, token, listed, "4")))
    result = {item.batch_id: item for item in operation.items.select_related("attempt")}
    assert result[ended].state == State.ALREADY_ENDED
    assert result[ended].attempt.outcome == "already_ended"
    assert "had already ended" in result[ended].message
    assert result[batches[1].split("/")[1]].state == State.CANCELED
    for batch in batches[2:]:
        item = result[batch.split("/")[1]]
        assert item.state == State.FAILED and item.attempt.outcome == "upstream_error"
        assert "HTTP 500" in item.message
    assert operation.finished_at is not None
    page = text(operator_client.get(f"/bulk-cancel/{operation.pk}/"))
    assert re.search(r'class="total-failed">.*?<span class="n">2</span>', page, re.S)
    assert re.search(r'class="total-already_ended">.*?<span class="n">1</span>', page, re.S)
    fault("openai", "ops", "")


def test_a_worker_killed_mid_way_leaves_claims_and_its_task_runs_again_once_they_expire(
    operator, operator_client, anthropic_sdk, openai_sdk, quiet_poller, monkeypatch
):
    from django_tasks_db.models import DBTaskResult

    batches = running_batches(anthropic_sdk, openai_sdk, anthropic=3, openai=3)
    _, listed, token = preview(operator_client)
    operation, _ = operations.create(user=operator, accounts=_accounts(), token=token, selected=listed, typed="6")
    task = DBTaskResult.objects.get(pk=operation.task_id)
    assert (task.status, task.queue_name, task.args_kwargs["kwargs"]) == (
        "READY",
        "bulk",
        {"operation_id": operation.pk},
    )
    calls = []
    cancel_batch = services.cancel_batch

    def dies_after_the_third_call(**kwargs):
        result = cancel_batch(**kwargs)  # the third batch is canceled upstream and audited...
        calls.append(kwargs["batch_id"])
        if len(calls) == 3:
            raise Killed  # ...and the worker dies before recording it
        return result

    monkeypatch.setattr(services, "cancel_batch", dies_after_the_third_call)
    task.claim("worker-dead")  # a worker takes the task...
    with pytest.raises(Killed):
        operations.cancel_operation.call(operation_id=operation.pk)  # ...and dies running it
    monkeypatch.undo()
    task.refresh_from_db()
    assert (task.status, task.worker_ids) == ("RUNNING", ["worker-dead"])  # as a SIGKILL leaves it
    assert list(operation.items.values_list("state", flat=True)) == [State.CANCELED] * 2 + [State.PENDING] * 4
    pending = operation.items.filter(state=State.PENDING)
    dead = set(pending.values_list("claimed_by", flat=True))
    assert len(dead) == 1 and ":bulk:" in dead.pop()
    assert all(until > timezone.now() for until in pending.values_list("claimed_until", flat=True))

    # While the claims last, the sweep (and a poller) leave the operation alone: its worker may be alive.
    assert poller.run_cycle(owner="poller-1", now=timezone.now()) is not None
    assert operations.abandoned(timezone.now()) == []
    assert operations.recover(now=timezone.now()) == []
    assert background.run_ready() == 0
    page = text(operator_client.get(f"/bulk-cancel/{operation.pk}/"))
    assert 'data-task-status="RUNNING"' in page and "task running" in page

    # The claims expire (the dead worker renews nothing): the sweep makes its task ready again.
    long_ago = timezone.now() - timedelta(seconds=operations.claim_seconds() + 1)
    pending.update(claimed_until=timezone.now() - timedelta(seconds=1))
    DBTaskResult.objects.filter(pk=task.pk).update(started_at=long_ago)
    assert operations.abandoned(timezone.now()) == [operation.pk]
    assert operations.recover(now=timezone.now()) == [operation.pk]
    assert operations.recover(now=timezone.now()) == [], "made ready once"
    operation = finished(operation)
    assert operation.finished_at is not None
    assert set(states(operation).values()) == {State.CANCELED}
    task.refresh_from_db()
    assert (task.status, task.worker_ids) == ("SUCCESSFUL", ["worker-dead", "test-worker"])
    assert task.return_value == {"canceled": 6}
    # The third batch was canceled once: its item records the dead worker's accepted attempt.
    third = operation.items.get(position=2)
    assert third.attempt is not None and third.attempt.outcome == "accepted"
    for batch in batches:
        assert CancelAttempt.objects.filter(batch_id=batch.split("/")[1]).count() == 1, batch
    progress = operator_client.get(f"/bulk-cancel/{operation.pk}/", **HTMX)
    assert progress.status_code == 286
    assert "data-task-status" not in text(progress), "finished: the items say it all"


def test_a_failed_task_gives_up_its_claims_and_is_retried_by_the_sweep(
    operator, operator_client, anthropic_sdk, openai_sdk, monkeypatch
):
    from django_tasks_db.models import DBTaskResult

    running_batches(anthropic_sdk, openai_sdk, anthropic=1, openai=1)
    _, listed, token = preview(operator_client)
    operation, _ = operations.create(user=operator, accounts=_accounts(), token=token, selected=listed, typed="")

    def broken(**kwargs):
        raise RuntimeError("the cache is down")

    monkeypatch.setattr(services, "cancel_batch", broken)
    assert background.run_ready() == 1
    monkeypatch.undo()
    task = DBTaskResult.objects.get(pk=operation.task_id)
    assert task.status == "FAILED" and task.exception_class_path == "builtins.RuntimeError"
    assert not operation.items.exclude(claimed_by="").exists(), "its claims given up"
    page = text(operator_client.get(f"/bulk-cancel/{operation.pk}/"))
    assert "task failed (RuntimeError): it is retried" in page
    assert operations.recover(now=timezone.now()) == [], "not at once: its cause may last a while"
    later = timezone.now() + background.RETRY_FAILED_AFTER + timedelta(seconds=1)
    assert operations.recover(now=later) == [operation.pk]
    operation = finished(operation)
    assert set(states(operation).values()) == {State.CANCELED}
    task.refresh_from_db()
    assert task.status == "SUCCESSFUL" and len(task.worker_ids) == 2


def test_a_worker_told_to_stop_hands_the_items_left_back_and_the_sweep_has_them_run_again(
    operator, operator_client, anthropic_sdk, openai_sdk, monkeypatch
):
    from django_tasks_db.models import DBTaskResult

    running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=1)
    _, listed, token = preview(operator_client)
    operation, _ = operations.create(user=operator, accounts=_accounts(), token=token, selected=listed, typed="")
    cancel_batch = services.cancel_batch

    def stop_after_the_first(**kwargs):
        result = cancel_batch(**kwargs)
        background.stopping.set()  # SIGTERM to the worker, during its first cancel
        return result

    monkeypatch.setattr(services, "cancel_batch", stop_after_the_first)
    try:
        assert background.run_ready(worker_id="stopping") == 1
    finally:
        background.stopping.clear()
    monkeypatch.undo()
    task = DBTaskResult.objects.get(pk=operation.task_id)
    assert task.status == "SUCCESSFUL" and task.return_value == {"canceled": 1, "pending": 2}
    pending = operation.items.filter(state=State.PENDING)
    assert pending.count() == 2 and set(pending.values_list("claimed_by", flat=True)) == {""}, "handed back"
    assert operations.recover(now=timezone.now()) == [operation.pk]  # at once: nobody holds them
    operation = finished(operation)
    assert set(states(operation).values()) == {State.CANCELED}
    assert CancelAttempt.objects.filter(via="bulk").count() == 3


def test_an_operation_whose_task_is_gone_gets_a_new_one(operator, operator_client, anthropic_sdk, openai_sdk):
    from django_tasks_db.models import DBTaskResult

    running_batches(anthropic_sdk, openai_sdk, anthropic=1, openai=0)
    _, listed, token = preview(operator_client)
    operation, _ = operations.create(user=operator, accounts=_accounts(), token=token, selected=listed, typed="")
    DBTaskResult.objects.all().delete()  # pruned, or made before there were tasks
    assert operations.recover(now=timezone.now()) == [operation.pk]
    assert operations.recover(now=timezone.now()) == []
    operation = finished(operation)
    assert operation.task_id is not None and set(states(operation).values()) == {State.CANCELED}


def test_two_workers_racing_never_cancel_a_batch_twice(operator, operator_client, anthropic_sdk, openai_sdk):
    batches = running_batches(anthropic_sdk, openai_sdk, anthropic=4, openai=4)
    _, listed, token = preview(operator_client)
    operation, _ = operations.create(
        user=operator, accounts=_accounts(), token=token, selected=listed, typed="8", worker="x"
    )
    operation.items.update(claimed_by="", claimed_until=None)  # free for any worker, as a dead one's are
    calls: list[tuple[str, str]] = []
    lock = threading.Lock()

    def slow_cancel(**kwargs):
        with lock:
            calls.append((threading.current_thread().name, kwargs["batch_id"]))
        time.sleep(0.05)  # a cancel takes a while: the other worker tries to take the same item meanwhile
        return services.cancel_batch(**kwargs)

    def work(name: str) -> None:
        try:
            operations.run(operation_id=operation.pk, worker=name, cancel=slow_cancel)
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=work, args=(name,), name=name) for name in ("worker-a", "worker-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    operation.refresh_from_db()
    canceled = [batch_id for _, batch_id in calls]
    assert sorted(canceled) == sorted(batch.split("/")[1] for batch in batches)  # each exactly once
    assert CancelAttempt.objects.count() == 8
    assert set(states(operation).values()) == {State.CANCELED}
    assert operation.finished_at is not None
    assert {item.claimed_by for item in operation.items.all()} <= {"worker-a", "worker-b"}


def test_a_claim_is_taken_by_one_worker_and_taken_over_only_once_it_expired(
    operator, operator_client, anthropic_sdk, openai_sdk
):
    running_batches(anthropic_sdk, openai_sdk, anthropic=1, openai=0)
    _, listed, token = preview(operator_client)
    operation, _ = operations.create(
        user=operator, accounts=_accounts(), token=token, selected=listed, typed="", worker="a"
    )
    item = operation.items.get()
    now = timezone.now()
    assert operations.claim(item.pk, worker="a", now=now)  # its own reservation: renewed
    assert not operations.claim(item.pk, worker="b", now=now)  # held
    later = now + timedelta(seconds=operations.claim_seconds() + 1)
    assert operations.claim(item.pk, worker="b", now=later)  # expired: taken over
    assert not operations.claim(item.pk, worker="a", now=later)  # and then it is b's
    BulkCancelItem.objects.filter(pk=item.pk).update(state=State.CANCELED)
    assert not operations.claim(item.pk, worker="b", now=later + timedelta(days=1))  # done: never claimed again


# --- progress ----------------------------------------------------------------------------------------


def test_the_progress_page_polls_until_the_operation_has_finished(operator, operator_client, anthropic_sdk, openai_sdk):
    running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=0)
    _, listed, token = preview(operator_client)
    operation, _ = operations.create(
        user=operator, accounts=_accounts(), token=token, selected=listed, typed="", worker="w"
    )

    page = operator_client.get(f"/bulk-cancel/{operation.pk}/")
    assert page.status_code == 200
    assert f'hx-get="/bulk-cancel/{operation.pk}/" hx-trigger="every 1s"' in text(page)
    assert "<strong>Working</strong>: 0 of 2 done" in text(page)
    poll = operator_client.get(f"/bulk-cancel/{operation.pk}/", **HTMX)
    assert poll.status_code == 200 and "hx-trigger" in text(poll) and "<html" not in text(poll)
    assert text(poll).count('data-state="pending"') == 2

    operations.run(operation_id=operation.pk, worker="w")
    poll = operator_client.get(f"/bulk-cancel/{operation.pk}/", **HTMX)
    assert poll.status_code == 286  # htmx stops polling
    assert "hx-trigger" not in text(poll) and "<strong>Finished</strong>" in text(poll)
    assert text(poll).count('data-state="canceled"') == 2
    assert re.search(r'class="total-canceled">.*?<span class="n">2</span>', text(poll), re.S)
    page = operator_client.get(f"/bulk-cancel/{operation.pk}/")
    assert page.status_code == 200
    section = re.search(r'<section id="bulk-progress"[^>]*>', text(page)).group(0)
    assert "is-finished" in section and "hx-trigger" not in section
    listing = text(operator_client.get("/bulk-cancel/"))
    assert f'<a href="/bulk-cancel/{operation.pk}/">#{operation.pk}</a>' in listing


def test_a_refused_cancel_of_a_batch_already_being_canceled_counts_as_canceled(
    operator, operator_client, anthropic_sdk, openai_sdk
):
    batches = running_batches(anthropic_sdk, openai_sdk, anthropic=0, openai=2)
    _, listed, token = preview(operator_client)
    first = batches[0].split("/")[1]
    openai_sdk().batches.cancel(first)  # canceled meanwhile, elsewhere
    poll_store()
    operation, _ = operations.create(
        user=operator, accounts=_accounts(), token=token, selected=listed, typed="", worker="w"
    )

    def refuses_the_first(**kwargs):
        if kwargs["batch_id"] == first:  # as a provider that refuses a second cancel would answer
            return services.CancelResult(
                outcome="upstream_error", message="HTTP 409: already cancelling", status_after=""
            )
        return services.cancel_batch(**kwargs)

    operations.run(operation_id=operation.pk, worker="w", cancel=refuses_the_first)
    item = operation.items.get(batch_id=first)
    assert item.state == State.CANCELED
    assert item.message.startswith("Already being canceled (requested ")
    assert item.message.endswith("status cancelling): HTTP 409: already cancelling")
    assert operation.items.get(batch_id=batches[1].split("/")[1]).state == State.CANCELED


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/summary"),
        ("get", "/bulk-cancel/"),
        ("get", "/bulk-cancel/preview?status=active"),
        ("post", "/bulk-cancel/confirm"),
        ("get", "/bulk-cancel/1/"),
    ],
)
def test_anonymous_requests_go_to_sign_in(client, db, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert getattr(client, method)(path, **HTMX).status_code == 401  # htmx: the whole page goes to sign in
    assert BulkCancel.objects.count() == 0


def test_get_on_the_confirmation_is_405_and_an_unknown_operation_404(operator_client, db):
    assert operator_client.get("/bulk-cancel/confirm").status_code == 405
    assert operator_client.get("/bulk-cancel/999/").status_code == 404


def test_an_operation_whose_worker_died_after_its_last_item_is_marked_finished(
    operator, operator_client, anthropic_sdk, openai_sdk
):
    running_batches(anthropic_sdk, openai_sdk, anthropic=1, openai=0)
    _, listed, token = preview(operator_client)
    operation, _ = operations.create(
        user=operator, accounts=_accounts(), token=token, selected=listed, typed="", worker="w"
    )
    operation.items.update(state=State.CANCELED, claimed_until=None)  # recorded; then the process died
    assert operations.recover(now=timezone.now()) == []  # nothing left to cancel
    operation.refresh_from_db()
    assert operation.finished_at is not None


# --- once: a preview confirmed once, each item its own attempt, the typed number over a window -------


def accepted_attempts(batch_id: str) -> int:
    return CancelAttempt.objects.filter(batch_id=batch_id, outcome=CancelAttempt.Outcome.ACCEPTED).count()


def assert_each_item_links_its_own_attempt(operation: BulkCancel) -> None:
    """Every item links an attempt of its batch that no other item links, and every attempt of the
    operation's batches belongs to an item."""
    items = list(operation.items.all())
    linked = [item.attempt_id for item in items]
    assert None not in linked and len(set(linked)) == len(linked), linked
    for item in items:
        assert (item.attempt.account, item.attempt.batch_id) == (item.account, item.batch_id)
    attempts = CancelAttempt.objects.filter(batch_id__in=[item.batch_id for item in items])
    assert set(attempts.values_list("pk", flat=True)) == set(linked)


def test_a_preview_confirmed_twice_makes_one_operation_that_cancels_each_batch_once(
    operator, operator_client, anthropic_sdk, openai_sdk, upstream_calls
):
    batches = running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=1)
    _, listed, token = preview(operator_client)
    first = operation_of(confirm(operator_client, token, listed))
    # Again: a double click, the back button, another tab, another session of the same user...
    assert operation_of(confirm(operator_client, token, listed)).pk == first.pk
    other_session = Client()
    other_session.force_login(operator)
    assert operation_of(confirm(other_session, token, listed)).pk == first.pk
    # ...or another selection of the same preview: it was confirmed, it is not a new one.
    assert operation_of(confirm(other_session, token, listed[:1])).pk == first.pk
    operation = finished(first)

    assert BulkCancel.objects.count() == 1 and operation.preview_digest == operations.preview_digest(token)
    assert set(states(operation).values()) == {State.CANCELED}
    for batch in batches:
        assert accepted_attempts(batch.split("/")[1]) == 1, batch
    assert len([call for call in upstream_calls if call.startswith("POST") and "/cancel" in call]) == 3
    assert_each_item_links_its_own_attempt(operation)


def test_each_item_links_the_attempt_it_made_not_the_actors_newest(
    operator, operator_client, anthropic_sdk, openai_sdk
):
    running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=1)
    _, listed, token = preview(operator_client)
    operation, _ = operations.create(
        user=operator, accounts=_accounts(), token=token, selected=listed, typed="", worker="w"
    )

    def another_cancel_meanwhile(**kwargs):
        result = services.cancel_batch(**kwargs)
        # The same user canceling the same batch via another operation, right after: a newer attempt.
        services.cancel_batch(**{name: value for name, value in kwargs.items() if name != "attempt"})
        return result

    operations.run(operation_id=operation.pk, worker="w", cancel=another_cancel_meanwhile)
    for item in operation.items.all():
        own, other = CancelAttempt.objects.filter(batch_id=item.batch_id).order_by("id")
        assert (own.outcome, other.outcome) == ("accepted", "accepted")
        assert item.attempt_id == own.pk
        assert item.attempt.outcome == "accepted" and item.message == item.attempt.message


def test_the_typed_number_is_asked_for_everything_confirmed_within_the_window(
    operator, operator_client, anthropic_sdk, openai_sdk
):
    running_batches(anthropic_sdk, openai_sdk, anthropic=6, openai=6, seconds=3600)
    response, listed, token = preview(operator_client)
    assert len(listed) == 12
    first = finished(operation_of(confirm(operator_client, token, listed[:3])))  # three: nothing typed
    assert first.confirmed is False

    # The next three, from a new preview (the first three are being canceled: not in it).
    response, listed, token = preview(operator_client)
    assert len(listed) == 9
    body = text(response)
    assert re.search(r'<form [^>]*data-typed-above="0"', body)
    assert '<p id="typed-confirmation" class="typed-confirmation">' in body  # shown for any selection
    assert 'you confirmed <span class="recently-confirmed">3</span> in the last 10 minutes' in body
    refused = confirm(operator_client, token, listed[:3])
    assert refused.status_code == 400
    assert "You confirmed 3 batches in the last 10 minutes" in text(refused)
    assert "type their number, 3, in the box" in text(refused)
    assert BulkCancel.objects.count() == 1
    second = finished(operation_of(confirm(operator_client, token, listed[:3], "3")))
    assert (second.total, second.confirmed) == (3, True)

    # Past the window, three are three again.
    BulkCancel.objects.update(created_at=timezone.now() - operations.TYPED_WINDOW - timedelta(seconds=1))
    response, listed, token = preview(operator_client)
    assert re.search(r'<form [^>]*data-typed-above="3"', text(response))
    third = finished(operation_of(confirm(operator_client, token, listed[:3])))
    assert (third.total, third.confirmed) == (3, False)


def test_the_claim_seconds_are_read_from_the_environment():
    from tests.services import app_env, manage

    show = "from dashboard.bulk import operations; print(operations.claim_seconds())"

    def shown(**env: str) -> str:
        return manage("shell", "-c", show, env=app_env(**env)).strip().splitlines()[-1]

    assert shown(BULK_CANCEL_CLAIM_SECONDS="5") == "5.0"
    assert shown(UPSTREAM_TIMEOUT_SECONDS="30") == "132.0"  # unset: 4 × (30 + 3)


# --- kills: at every step of an item, the operation resumes and cancels each batch exactly once ----------


def killed_at(step: str, *, operation: BulkCancel, batch_id: str, kill, task_died: bool = False) -> None:
    """`kill(step, batch_id)` runs the operation's worker until it dies at `step` of that batch; then
    its claims expire and the sweep has its task run again (`task_died`: the killed worker ran the
    task; else it waits in the queue), which finishes the operation. Checks that each batch was
    canceled upstream exactly once, that every attempt was settled (the one in flight at the kill
    reconciled) and that each item links its own."""
    from django_tasks_db.models import DBTaskResult

    kill(step, batch_id)
    killed = operation.items.get(batch_id=batch_id)
    before = {item.batch_id: item.state for item in operation.items.all()}
    assert before[batch_id] == (State.CANCELED if step == "item_finished" else State.PENDING)
    assert list(before.values()).count(State.PENDING) >= 1  # the items after it wait too
    operation.items.filter(state=State.PENDING).update(claimed_until=timezone.now() - timedelta(seconds=1))
    task = DBTaskResult.objects.get(pk=operation.task_id)
    assert task.status == ("RUNNING" if task_died else "READY")
    long_ago = timezone.now() - timedelta(seconds=operations.claim_seconds() + 1)
    DBTaskResult.objects.filter(pk=task.pk, started_at__isnull=False).update(started_at=long_ago)
    assert operations.recover(now=timezone.now()) == ([operation.pk] if task_died else [])

    calls: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        from dashboard.providers.http import BatchAPI

        cancel = BatchAPI.cancel  # every provider's (test_provider_boundary: cancel is written once)

        def counted(self, this_batch):
            calls.append(this_batch)
            return cancel(self, this_batch)

        patch.setattr(BatchAPI, "cancel", counted)
        assert background.run_ready(worker_id="resumed") == 1
    task.refresh_from_db()
    assert (task.status, task.worker_ids) == ("SUCCESSFUL", ["killed-worker", "resumed"] if task_died else ["resumed"])

    operation.refresh_from_db()
    assert operation.finished_at is not None
    assert set(states(operation).values()) == {State.CANCELED}
    assert not CancelAttempt.objects.filter(outcome=CancelAttempt.Outcome.PENDING).exists()
    for item in operation.items.select_related("attempt"):
        assert accepted_attempts(item.batch_id) == 1, (step, item.batch_id)
        assert item.attempt.outcome == "accepted"
    # Resuming asked upstream to cancel exactly the batches not canceled before the kill.
    canceled_before = {batch for batch, state in before.items() if state != State.PENDING}
    if step in bulk_deaths.CANCELED_UPSTREAM:
        canceled_before.add(batch_id)
    assert sorted(calls) == sorted(set(before) - canceled_before)
    if step in bulk_deaths.LEFT_PENDING:
        reconciled = CancelAttempt.objects.get(pk=killed.attempt_id)
        assert reconciled.reconciled_at is not None
        expected = "accepted" if step == "upstream_accepted" else "upstream_error"
        assert (reconciled.outcome, reconciled.status_after != "") == (expected, True)
    killed.refresh_from_db()
    if step == "upstream_accepted":
        assert killed.attempt.reconciled_at is not None and "reconciled" in killed.message
    elif step in ("attempt_recorded", "before_upstream"):
        # The dead attempt never reached upstream: settled as not canceled, and a new one canceled the batch.
        assert CancelAttempt.objects.filter(batch_id=batch_id).count() == 2
    else:
        assert CancelAttempt.objects.filter(batch_id=batch_id).count() == 1
    assert {item.attempt_id for item in operation.items.all()} >= {killed.attempt_id}


@pytest.fixture
def three_batch_operation(operator, operator_client, anthropic_sdk, openai_sdk):
    running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=1)
    _, listed, token = preview(operator_client)
    operation, _ = operations.create(user=operator, accounts=_accounts(), token=token, selected=listed, typed="")
    return operation


@pytest.mark.parametrize("step", bulk_deaths.STEPS)
def test_a_worker_dying_at_any_step_of_an_item_never_cancels_it_twice_nor_leaves_its_attempt_pending(
    step, three_batch_operation, monkeypatch
):
    operation = three_batch_operation
    middle = operation.items.get(position=1).batch_id

    def kill(step: str, batch_id: str) -> None:
        with monkeypatch.context() as patch:
            bulk_deaths.die_at(step, batch_id=batch_id, die=bulk_deaths.raise_killed, patch=patch.setattr)
            with pytest.raises(Killed):
                operations.run(operation_id=operation.pk, worker="web-killed")

    killed_at(step, operation=operation, batch_id=middle, kill=kill)


@pytest.mark.slow
@pytest.mark.parametrize("step", bulk_deaths.STEPS)
def test_a_worker_process_sigkilled_at_any_step_of_an_item_has_its_task_run_again_cancelling_each_batch_once(
    step, three_batch_operation
):
    import subprocess
    import sys

    from django.db import connection

    from tests.services import ROOT, app_env

    operation = three_batch_operation
    middle = operation.items.get(position=1).batch_id

    def kill(step: str, batch_id: str) -> None:
        # Its own process on this test's database (the simulator's state is there too).
        env = app_env(SQLITE_PATH=connection.settings_dict["NAME"])
        command = [sys.executable, "-m", "tests.bulk_deaths", step, batch_id, str(operation.pk)]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == -9, f"exited {done.returncode}, not killed:\n{done.stdout}\n{done.stderr}"

    killed_at(step, operation=operation, batch_id=middle, kill=kill, task_died=True)


# --- settling the attempts a dead process left pending --------------------------------------------------


def pending_attempt(batch: str, *, via: str = "web") -> CancelAttempt:
    """An attempt left pending by a process that died during its cancel call, longer ago than a
    cancel call can take."""
    account, batch_id = batch.split("/")
    attempt = CancelAttempt.objects.create(actor="operator", via=via, account=account, batch_id=batch_id)
    long_ago = timezone.now() - timedelta(seconds=operations.claim_seconds() + 1)
    CancelAttempt.objects.filter(pk=attempt.pk).update(requested_at=long_ago)
    return attempt


def test_attempts_a_dead_process_left_pending_are_settled_from_upstream_and_marked_reconciled(
    operator, operator_client, anthropic_sdk, openai_sdk, upstream_calls
):
    accepted, not_reached = running_batches(anthropic_sdk, openai_sdk, anthropic=1, openai=1)
    unknown = f"openai-research/{openai_batch(openai_sdk, 'research', seconds=600).id}"
    poll_store()
    anthropic_sdk().messages.batches.cancel(accepted.split("/")[1])  # upstream accepted it; then the process died
    attempts = [pending_attempt(batch) for batch in (accepted, not_reached, unknown)]
    running = pending_attempt(not_reached)  # recent: its process may well be alive
    CancelAttempt.objects.filter(pk=running.pk).update(requested_at=timezone.now())
    fault("openai", "research", "500")  # upstream cannot say of the third
    upstream_calls.clear()

    operations.recover(now=timezone.now())
    fault("openai", "research", "")
    first, second, third = (CancelAttempt.objects.get(pk=attempt.pk) for attempt in attempts)
    assert (first.outcome, first.status_after) == ("accepted", "canceling")
    assert first.message.startswith("Cancel accepted (reconciled: its process died before recording the answer")
    assert second.outcome == "upstream_error" and second.status_after in ("validating", "in_progress")
    assert second.message.startswith("Not canceled (reconciled:")
    assert (third.outcome, third.status_after) == ("upstream_error", "")
    assert "whether it was canceled is unknown" in third.message
    for attempt in (first, second, third):
        assert attempt.reconciled_at is not None and attempt.finished_at is not None
    assert CancelAttempt.objects.get(pk=running.pk).outcome == "pending"
    # Asked, never canceled: a retrieve through each attempt's provider, no cancel.
    assert upstream_calls and not [call for call in upstream_calls if "/cancel" in call]
    assert StoredBatch.objects.get(batch_id=accepted.split("/")[1]).status == "canceling"
    operator.is_staff = True  # the audit trail is for staff
    operator.save(update_fields=["is_staff"])
    audit = text(operator_client.get("/audit/"))
    assert audit.count('<span class="reconciled"') == 3


def test_a_resumed_item_whose_dead_attempt_upstream_cannot_settle_fails_without_a_second_cancel(
    three_batch_operation, monkeypatch, upstream_calls
):
    operation = three_batch_operation
    first = operation.items.get(position=0)
    with monkeypatch.context() as patch:
        bulk_deaths.die_at(
            "upstream_accepted", batch_id=first.batch_id, die=bulk_deaths.raise_killed, patch=patch.setattr
        )
        with pytest.raises(Killed):
            operations.run(operation_id=operation.pk, worker="web-killed")
    operation.items.update(claimed_until=timezone.now() - timedelta(seconds=1))
    fault(first.account.split("-")[0], "ops", "500")
    upstream_calls.clear()
    canceled = []

    def cancel(**kwargs):
        canceled.append(kwargs["batch_id"])
        return services.cancel_batch(**kwargs)

    operations.run(operation_id=operation.pk, worker="poller-1:bulk:resumed", cancel=cancel)
    fault(first.account.split("-")[0], "ops", "")

    first.refresh_from_db()
    assert first.state == State.FAILED and "whether it was canceled is unknown" in first.message
    assert (first.attempt.outcome, first.attempt.status_after) == ("upstream_error", "")
    assert first.attempt.reconciled_at is not None
    assert first.batch_id not in canceled and canceled  # the others were tried
    assert CancelAttempt.objects.filter(batch_id=first.batch_id).count() == 1


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    deaths=st.lists(
        st.tuples(st.sampled_from(bulk_deaths.STEPS), st.integers(min_value=0, max_value=2)), min_size=1, max_size=3
    )
)
def test_whatever_workers_die_where_each_batch_is_canceled_once_and_every_attempt_settled(
    deaths, operator, operator_client, anthropic_sdk, openai_sdk
):
    made = running_batches(anthropic_sdk, openai_sdk, anthropic=2, openai=1)  # new ones each example
    _, listed, token = preview(operator_client)
    assert set(made) <= set(listed)
    operation, _ = operations.create(
        user=operator, accounts=_accounts(), token=token, selected=made, typed="3", worker="web"
    )
    positions = {item.position: item.batch_id for item in operation.items.all()}
    for number, (step, position) in enumerate(deaths):
        operation.items.filter(state=State.PENDING).update(claimed_until=timezone.now() - timedelta(seconds=1))
        with pytest.MonkeyPatch.context() as patch:
            bulk_deaths.die_at(step, batch_id=positions[position], die=bulk_deaths.raise_killed, patch=patch.setattr)
            try:
                operations.run(operation_id=operation.pk, worker=f"worker-{number}")
            except Killed:
                pass  # died there (unless that item was done before)
    operation.items.filter(state=State.PENDING).update(claimed_until=timezone.now() - timedelta(seconds=1))
    operations.run(operation_id=operation.pk, worker="last")

    operation.refresh_from_db()
    assert operation.finished_at is not None and set(states(operation).values()) == {State.CANCELED}
    batch_ids = list(positions.values())
    assert not CancelAttempt.objects.filter(batch_id__in=batch_ids, outcome="pending").exists()
    for item in operation.items.select_related("attempt"):
        assert accepted_attempts(item.batch_id) == 1
        assert item.attempt.outcome == "accepted" and item.attempt.batch_id == item.batch_id


# Each new provider's words for a batch whose cancel it accepted (Gemini: unchanged until it takes effect).
AFTER_CANCEL = {
    "azure-openai": {"cancelling", "cancelled"},
    "bedrock": {"Stopping", "Stopped"},
    "gemini": {"pending", "running", "cancelled"},
}


@pytest.mark.parametrize("provider", sorted(AFTER_CANCEL))
def test_a_bulk_cancel_of_a_new_providers_batches_cancels_each_through_its_own_api(
    operator_client, embedded_upstream, quiet_poller, provider
):
    """Issue 18: bulk cancel knows no provider; the seeded demo batches of each new one are canceled
    (Bedrock: stopped) through its module, and the store has each answer."""
    from dashboard.simulator.demo import seed_demo_batches

    seed_demo_batches()
    poll_store()
    _, listed, token = preview(operator_client, f"provider={provider}")
    assert listed and all(batch.split("/")[0].startswith(f"{provider}-") for batch in listed)
    operation = finished(operation_of(confirm(operator_client, token, listed, str(len(listed)))))
    assert {item.state for item in operation.items.all()} == {State.CANCELED}, [
        (item.batch_id, item.state, item.message) for item in operation.items.all()
    ]
    assert set(CancelAttempt.objects.values_list("via", "outcome")) == {("bulk", "accepted")}
    assert CancelAttempt.objects.count() == len(listed)
    stored = StoredBatch.objects.filter(provider=provider, batch_id__in=[batch.split("/")[1] for batch in listed])
    assert stored.count() == len(listed) and set(stored.values_list("status", flat=True)) <= AFTER_CANCEL[provider]
