"""The store: one row per batch with its latest state, a history row per change, keys redacted."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.batches import store
from dashboard.models import BatchChange, StoredBatch
from dashboard.providers import anthropic, openai
from tests.providers.test_providers import ANTHROPIC_ENDED, ANTHROPIC_RUNNING, OPENAI_COMPLETED, OPENAI_IN_PROGRESS

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def a_batch(data: dict, account: str = "anthropic-ops"):
    return anthropic.parse_batch(data, account=account)


def o_batch(data: dict, account: str = "openai-ops"):
    return openai.parse_batch(data, account=account)


def test_a_new_batch_is_stored_with_every_column_and_a_first_history_row(db):
    batch = a_batch(ANTHROPIC_RUNNING)
    row, changed = store.record(batch, fetched_at=T0)
    assert changed
    row.refresh_from_db()
    assert (row.account, row.provider, row.batch_id, row.status, row.is_ended) == (
        "anthropic-ops",
        "anthropic",
        batch.id,
        "in_progress",
        False,
    )
    assert (row.total, row.processing, row.succeeded) == (120, 120, 0)
    assert row.created_at == batch.created_at and row.expires_at == batch.expires_at
    assert row.timestamps["created_at"] == batch.created_at.isoformat()
    assert row.first_seen_at == row.last_fetched_at == row.last_changed_at == T0
    assert list(row.changes.values_list("status", "processing")) == [("in_progress", 120)]


def test_the_stored_batch_reads_back_as_the_same_batch(db):
    for batch in (
        a_batch(ANTHROPIC_RUNNING),
        a_batch(ANTHROPIC_ENDED),
        o_batch(OPENAI_IN_PROGRESS),
        o_batch(OPENAI_COMPLETED),
    ):
        row, _ = store.record(batch, fetched_at=T0)
        assert store.as_batch(StoredBatch.objects.get(pk=row.pk)) == batch


def test_an_unchanged_answer_moves_last_fetched_only_and_a_change_adds_history(db):
    running = a_batch(ANTHROPIC_RUNNING)
    store.record(running, fetched_at=T0)
    row, changed = store.record(running, fetched_at=T0 + timedelta(seconds=3))
    assert not changed
    assert (row.last_fetched_at, row.last_changed_at) == (T0 + timedelta(seconds=3), T0)
    ended = a_batch({**ANTHROPIC_ENDED, "id": ANTHROPIC_RUNNING["id"]})
    row, changed = store.record(ended, fetched_at=T0 + timedelta(seconds=6))
    assert changed and row.is_ended and row.status == "ended"
    assert row.last_changed_at == T0 + timedelta(seconds=6)
    assert list(BatchChange.objects.values_list("status", flat=True)) == ["in_progress", "ended"]
    assert StoredBatch.objects.count() == 1


def test_counts_alone_changing_is_a_change(db):
    store.record(o_batch(OPENAI_IN_PROGRESS), fetched_at=T0)
    progressed = copy.deepcopy(OPENAI_IN_PROGRESS)
    progressed["request_counts"]["completed"] += 1
    _, changed = store.record(o_batch(progressed), fetched_at=T0 + timedelta(seconds=3))
    assert changed
    assert BatchChange.objects.count() == 2


def test_a_late_older_answer_never_undoes_a_newer_one(db):
    ended = a_batch({**ANTHROPIC_ENDED, "id": ANTHROPIC_RUNNING["id"]})
    store.record(ended, fetched_at=T0 + timedelta(seconds=10))
    row, changed = store.record(a_batch(ANTHROPIC_RUNNING), fetched_at=T0)
    assert not changed
    assert row.status == "ended" and StoredBatch.objects.get().status == "ended"


def test_the_same_id_in_two_accounts_is_two_batches(db):
    store.record(a_batch(ANTHROPIC_RUNNING, "anthropic-ops"), fetched_at=T0)
    store.record(a_batch(ANTHROPIC_RUNNING, "anthropic-research"), fetched_at=T0)
    assert StoredBatch.objects.count() == 2


def test_configured_keys_are_redacted_from_the_stored_json_and_metadata(db, monkeypatch):
    key = "sk-proj-OPSkey0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    echo = copy.deepcopy(OPENAI_IN_PROGRESS)
    echo["metadata"] = {"note": f"sent with {key.upper()}", key: "as a key too"}
    echo["errors"] = {"data": [{"message": f"bad key {key}"}]}
    row, _ = store.record(o_batch(echo), fetched_at=T0)
    row.refresh_from_db()
    stored = f"{row.raw} {row.metadata}"
    assert key.lower() not in stored.lower()
    assert row.metadata["note"] == "sent with [redacted]"


def test_many_writers_of_one_new_batch_make_one_row(transactional_db):
    """Pollers racing on a batch first seen by both: the unique constraint and a retry keep one row."""
    batch = o_batch(OPENAI_IN_PROGRESS)
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        from django.db import connection

        try:
            store.record(batch, fetched_at=T0 + timedelta(milliseconds=offset))
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert StoredBatch.objects.count() == 1
    assert BatchChange.objects.count() == 1


@pytest.mark.parametrize("field", ["created_at", "expires_at", "ended_at", "cancel_initiated_at"])
def test_every_main_timestamp_has_its_column(db, field):
    batch = a_batch(ANTHROPIC_ENDED)
    row, _ = store.record(batch, fetched_at=T0)
    assert getattr(row, field) == getattr(batch, field)


def test_staff_can_read_the_store_in_the_admin_and_nobody_can_change_it(client, db):
    from django.contrib.auth import get_user_model

    admin_user = get_user_model().objects.create_superuser("root", password=None)
    client.force_login(admin_user)
    row, _ = store.record(a_batch(ANTHROPIC_RUNNING), fetched_at=T0)
    listing = client.get("/admin/dashboard/storedbatch/")
    assert listing.status_code == 200 and row.batch_id in listing.content.decode()
    assert client.get("/admin/dashboard/accountstate/").status_code == 200
    assert client.get("/admin/dashboard/storedbatch/add/").status_code == 403
    assert client.post(f"/admin/dashboard/storedbatch/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert StoredBatch.objects.filter(pk=row.pk).exists()


def test_the_search_text_is_the_id_and_the_redacted_metadata_values_lowercased(db, monkeypatch):
    key = "sk-proj-SEARCHkey0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    echo = copy.deepcopy(OPENAI_IN_PROGRESS)
    echo["metadata"] = {"Team": "Search-Quality", "note": f"with {key}"}
    row, _ = store.record(o_batch(echo), fetched_at=T0)
    assert row.search_text == "batch_abc123\nsearch-quality\nwith [redacted]"


def test_the_migration_fills_the_search_text_of_rows_stored_before_it(db):
    from importlib import import_module

    from django.apps import apps

    row, _ = store.record(o_batch(OPENAI_IN_PROGRESS), fetched_at=T0)
    StoredBatch.objects.update(search_text="")
    import_module("dashboard.migrations.0004_search_text").fill_search_text(apps, None)
    row.refresh_from_db()
    assert row.search_text == "batch_abc123\nuser_123456789\nnightly eval job"


def test_a_cancel_writes_its_answer_into_the_store_and_wakes_the_poller(operator, embedded_upstream, anthropic_sdk):
    from dashboard.accounts import find_account
    from dashboard.batches import services
    from dashboard.models import AccountState
    from tests.factories import anthropic_batch

    batch_id = anthropic_batch(anthropic_sdk, seconds=600).id
    account = find_account("anthropic-ops")
    AccountState.objects.create(account=account.key, provider="anthropic", next_poll_at=T0 + timedelta(days=1))
    result = services.cancel_batch(account=account, batch_id=batch_id, actor="operator", user=operator)
    assert result.outcome == "accepted"
    row = StoredBatch.objects.get(account="anthropic-ops", batch_id=batch_id)
    assert (row.status, row.is_ended) == ("canceling", False)
    assert row.cancel_initiated_at is not None
    assert AccountState.objects.get(account="anthropic-ops").next_poll_at is None, "polled on the next cycle"


def test_a_store_failure_after_a_cancel_still_answers_and_audits(
    operator, embedded_upstream, anthropic_sdk, monkeypatch
):
    from dashboard.accounts import find_account
    from dashboard.batches import services
    from dashboard.models import CancelAttempt
    from tests.factories import anthropic_batch

    batch_id = anthropic_batch(anthropic_sdk, seconds=600).id

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(store, "record", broken)
    result = services.cancel_batch(account=find_account("anthropic-ops"), batch_id=batch_id, actor="operator")
    assert result.outcome == "accepted" and result.status_after == "canceling"
    assert CancelAttempt.objects.get().outcome == "accepted"


def test_many_unchanged_answers_move_last_fetched_in_one_update_and_changes_still_count(
    db, django_assert_max_num_queries
):
    running = [a_batch({**ANTHROPIC_RUNNING, "id": f"msgbatch_01{n:022d}"}, account="anthropic-ops") for n in range(50)]
    assert store.record_many(running, fetched_at=T0) == 50
    with django_assert_max_num_queries(3):  # the read of the stored rows, one UPDATE (and a savepoint at most)
        assert store.record_many(running, fetched_at=T0 + timedelta(seconds=3)) == 0
    assert set(StoredBatch.objects.values_list("last_fetched_at", flat=True)) == {T0 + timedelta(seconds=3)}
    assert BatchChange.objects.count() == 50, "no history row for an answer that says nothing new"

    ended = a_batch({**ANTHROPIC_ENDED, "id": running[7].id})
    assert store.record_many([*running[:7], ended, *running[8:]], fetched_at=T0 + timedelta(seconds=6)) == 1
    assert StoredBatch.objects.get(batch_id=ended.id).status == "ended"
    assert BatchChange.objects.count() == 51
    # A late answer from before never moves a row back in time.
    assert store.record_many(running[:3], fetched_at=T0 + timedelta(seconds=1)) == 0
    assert StoredBatch.objects.get(batch_id=running[0].id).last_fetched_at == T0 + timedelta(seconds=6)
