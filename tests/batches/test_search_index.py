"""SQLite's trigram index of the search text (migration 0024) follows the store through every write,
exists after the latest migration, and is made again, with every row indexed, after a migration
that rebuilds the table (dashboard/batches/search_index.py, on post_migrate)."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from dashboard.batches import search_index, selectors, store
from dashboard.models import StoredBatch
from dashboard.spend import rollup
from tests.batches.test_selectors import ACCOUNTS, O_OPS, O_RES, T0, put

TRIGRAMS = importlib.import_module("dashboard.migrations.0024_search_trigrams_sqlite")
LIST_INDEXES = importlib.import_module("dashboard.migrations.0019_list_in_index_order")
HAND_MADE = {*TRIGRAMS.TRIGGERS, *TRIGRAMS.SQLITE_INDEXES, *LIST_INDEXES.SQLITE_INDEXES}


def matched(term: str) -> set[str]:
    """The batch ids whose indexed text holds `term`, as the trigram index alone says."""
    table = search_index.trigrams_table()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH %s", [f'"{term}"'])  # noqa: S608
        rowids = [rowid for (rowid,) in cursor.fetchall()]
    return set(StoredBatch.objects.filter(pk__in=rowids).values_list("batch_id", flat=True))


def assert_index_agrees_with_the_store() -> None:
    """Every row's text indexed as the row has it, and nothing else; FTS5's own check of its index."""
    table = search_index.trigrams_table()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT rowid, search_text FROM {table} ORDER BY rowid")  # noqa: S608
        assert cursor.fetchall() == list(StoredBatch.objects.order_by("pk").values_list("pk", "search_text"))
        cursor.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")  # noqa: S608


def hand_made_present() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'dashboard_storedbatch'")
        return {name for (name,) in cursor.fetchall()} & HAND_MADE


@pytest.fixture(autouse=True)
def on_sqlite():
    if connection.vendor != "sqlite":
        pytest.fail("these tests run on the test settings' SQLite")


@pytest.mark.django_db
def test_every_object_is_there_after_the_latest_migration():
    assert hand_made_present() == HAND_MADE
    assert search_index.heal() == []  # nothing to make


@pytest.mark.django_db
def test_the_index_follows_every_insert_change_and_delete():
    assert_index_agrees_with_the_store()
    put(O_OPS, "batch_one", T0, metadata={"team": "Nightly-Evals"})
    kept = put(O_RES, "batch_two", T0 - timedelta(minutes=1), metadata={"team": "ingest"})
    assert matched("nightly") == {"batch_one"} and matched("ingest") == {"batch_two"}

    put(O_OPS, "batch_one", T0, metadata={"team": "billing"})  # the poller saw its metadata change
    assert matched("nightly") == set() and matched("billing") == {"batch_one"}
    StoredBatch.objects.filter(pk=kept.pk).update(search_text=store.search_text("batch_two", {"team": "support"}))
    assert matched("ingest") == set() and matched("support") == {"batch_two"}
    StoredBatch.objects.filter(pk=kept.pk).update(status="completed")  # the text unchanged: not indexed anew
    assert matched("support") == {"batch_two"}

    StoredBatch.objects.filter(pk=kept.pk).delete()
    assert matched("support") == set() and matched("batch_") == {"batch_one"}
    assert_index_agrees_with_the_store()


@pytest.mark.django_db(transaction=True)
def test_after_a_table_rebuild_migrate_makes_the_objects_again_and_indexes_what_was_written_meanwhile():
    put(O_OPS, "batch_before", T0, metadata={"team": "rebuilt"})
    rollup.drop()  # as a migrate with something to apply does first (dashboard/spend/rollup.py)
    with connection.schema_editor() as editor:
        editor._remake_table(StoredBatch)  # as SQLite's AddField of a column with a default does
    assert hand_made_present() == set()  # what the rebuild loses
    put(O_RES, "batch_meanwhile", T0 - timedelta(minutes=1), metadata={"team": "rebuilt"})

    call_command("migrate", verbosity=0)  # nothing to apply: post_migrate still runs

    assert hand_made_present() == HAND_MADE
    assert_index_agrees_with_the_store()
    assert matched("rebuilt") == {"batch_before", "batch_meanwhile"}
    listed = selectors.list_batches(accounts=ACCOUNTS, now=T0, search="REBUILT")
    assert [row.batch.id for row in listed.rows] == ["batch_before", "batch_meanwhile"]
    put(O_OPS, "batch_after", T0 - timedelta(minutes=2), metadata={"team": "rebuilt"})  # the triggers again
    assert matched("rebuilt") == {"batch_before", "batch_meanwhile", "batch_after"}


@pytest.mark.django_db(transaction=True)
def test_the_migration_is_reversible():
    put(O_OPS, "batch_one", T0, metadata={"team": "reversible"})
    with connection.schema_editor() as editor:
        TRIGRAMS.drop(None, editor)  # 0024 reversed
    assert hand_made_present() == HAND_MADE - {*TRIGRAMS.TRIGGERS, *TRIGRAMS.SQLITE_INDEXES}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'stored_batch_search_trigrams%'")
        assert cursor.fetchone() == (0,)
    put(O_RES, "batch_two", T0, metadata={"team": "reversible"})  # no trigger, no table: stored all the same
    with connection.schema_editor() as editor:
        TRIGRAMS.create(None, editor)  # 0024 again: every stored row indexed
    assert hand_made_present() == HAND_MADE
    assert matched("reversible") == {"batch_one", "batch_two"}
    assert_index_agrees_with_the_store()
