"""The spend rollup (SpendDay, migration 0026) on SQLite: kept exact by its triggers through every write
path (a property test against the per-row queries it replaced), read without scanning the store (the
plans), and made again, filled anew, after a migrate that rebuilt the tables (dashboard/spend/rollup.py).
tests/integration/test_spend_rollup_postgres.py proves the same on PostgreSQL."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.db.models.signals import pre_migrate
from django.test.utils import CaptureQueriesContext

from dashboard.models import BatchTokens, SpendDay, StoredBatch
from dashboard.spend import rollup, table
from dashboard.spend.selectors import spend_report, spent_today, stored_tokens
from tests.spend import rollup_checks
from tests.spend.rollup_checks import ACCOUNTS, TODAY, apply, assert_rollup_exact

ROLLUP = importlib.import_module("dashboard.migrations.0026_spend_days")
TRIGGERS = set(ROLLUP.SQLITE_TRIGGERS)

# A store touching every case: ended on several days and accounts, running, counted again, gone, moved.
SOME_WRITES = [
    ("store", 0, "anthropic-ops", (0, 3), "", (0,) * 5),
    ("count", 0, [("claude-opus-4-1", (100, 20, 3, 50, 0)), ("claude-3-5-haiku-20241022", (7, 0, 0, 9, 0))]),
    ("store", 1, "openai-ops", (1, 23), "gpt-4o-2024-08-06", (1000, 200, 0, 300, 40)),
    ("store", 2, "openai-research", None, "gpt-4o-2024-08-06", (5, 5, 0, 5, 5)),  # running, with usage
    ("store", 3, "anthropic-research", (2, 0), "", (0,) * 5),
    ("count", 3, [("unpriced-model", (11, 0, 0, 12, 0))]),
    ("store", 4, "anthropic-ops", None, "", (0,) * 5),
    ("row_changes", 4, "claude-opus-4-1", (1, 2, 3, 4, 5)),
    ("store", 5, "openai-ops", (3, 12), "", (9, 0, 0, 9, 0)),
]


@pytest.fixture(autouse=True)
def on_sqlite():
    if connection.vendor != "sqlite":
        pytest.fail("these tests run on the test settings' SQLite")
    table._table.cache_clear()
    yield
    table._table.cache_clear()


def write(*writes) -> None:
    for item in writes:
        apply(item)


@pytest.mark.django_db
def test_the_triggers_are_there_after_the_latest_migration():
    assert rollup.present_triggers() == TRIGGERS
    assert rollup.heal() == []


@pytest.mark.django_db
def test_random_writes_through_the_store_and_the_services_keep_every_figure_equal_to_the_per_row_queries():
    rollup_checks.property_check(max_examples=60)()


@pytest.mark.django_db
def test_each_write_path_moves_the_rollup_and_the_figures_with_it():
    write(*SOME_WRITES)
    assert_rollup_exact()
    day0 = SpendDay.objects.get(account="anthropic-ops", model="claude-opus-4-1")
    assert (day0.day, day0.input, day0.cache_read, day0.batches) == (TODAY, 100, 20, 1)
    write(("count", 0, [("claude-opus-4-1", (1, 0, 0, 1, 0))]))  # counted again: the haiku row goes
    assert not SpendDay.objects.filter(model="claude-3-5-haiku-20241022", batches__gt=0).exists()
    write(("end_moves", 0, (4, 1)), ("account", 1, "openai-research"), ("gone", 4), ("model_renamed", 3, ""))
    assert SpendDay.objects.get(account="anthropic-ops", model="claude-opus-4-1", batches=1).day == TODAY - timedelta(
        days=4
    )
    assert_rollup_exact()
    write(*[("delete", number) for number in range(6)])
    assert not SpendDay.objects.filter(batches__gt=0).exists()
    assert stored_tokens() == {} and BatchTokens.objects.count() == 0
    assert_rollup_exact()


@pytest.mark.django_db
def test_the_report_the_header_and_metrics_read_the_rollup_and_a_few_running_rows():
    write(*SOME_WRITES)
    with CaptureQueriesContext(connection) as captured:
        spend_report(account_keys=list(ACCOUNTS), start=TODAY - timedelta(days=29), end=TODAY, today=TODAY)
        spent_today(account_keys=list(ACCOUNTS), today=TODAY)
        stored_tokens()
    statements = [query["sql"] for query in captured.captured_queries]
    # the report: the rollup, the running batches, their rows; the header: the same; metrics: the rollup,
    # the batches it does not hold (running, ended without an end time), their rows
    assert len(statements) == 10
    for sql in statements:
        lines = plan(sql)
        for line in lines:
            if line.startswith("SCAN"):  # only ever the rollup or a partial index of the batches it does not hold
                assert "dashboard_spendday" in line or "stored_batch_running_counts" in line, (sql, lines)
    rollup_read, running, their_rows = statements[:3]
    assert "dashboard_batchtokens" not in rollup_read and "dashboard_storedbatch" not in rollup_read
    assert any("(account=? AND day>? AND day<?)" in line for line in plan(rollup_read)), plan(rollup_read)
    assert any("stored_batch_running_counts (account=? AND processing>?)" in line for line in plan(running))
    assert plan(their_rows) == [
        "SEARCH dashboard_batchtokens USING INDEX dashboard_batchtokens_batch_id_035712e6 (batch_id=?)"
    ]
    assert any("stored_batch_running_counts" in line for line in plan(statements[7])), plan(statements[7])
    assert plan(statements[8]) == ["SEARCH dashboard_storedbatch USING INDEX stored_batch_ended_undated (ended_at=?)"]


def plan(sql: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return [row[3] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_a_migrate_that_rebuilds_the_tables_gets_the_triggers_back_and_counts_what_was_written_meanwhile():
    write(*SOME_WRITES[:3])
    # A migrate with something to apply drops the triggers first (SQLite's rename of a rebuilt table fails
    # on a trigger naming it); here the rebuilds stand for such a migration's operations.
    config = apps.get_app_config("dashboard")
    pre_migrate.send(
        sender=config, app_config=config, verbosity=0, interactive=False, using="default", plan=[("0026", False)]
    )
    assert rollup.present_triggers() == set()
    with connection.schema_editor() as editor:
        editor._remake_table(StoredBatch)  # as SQLite's AddField of a column with a default does
        editor._remake_table(BatchTokens)
    write(*SOME_WRITES[3:])  # written while no trigger adds it up

    call_command("migrate", verbosity=0)  # nothing to apply: post_migrate still runs

    assert rollup.present_triggers() == TRIGGERS
    assert_rollup_exact()
    write(("count", 5, [("gpt-4o-2024-08-06", (3, 0, 0, 3, 0))]), ("delete", 0))  # the triggers again
    assert_rollup_exact()


@pytest.mark.django_db(transaction=True)
def test_the_migration_is_reversible_and_fills_the_rollup_from_the_store_when_applied():
    write(*SOME_WRITES)
    call_command("migrate", "dashboard", "0025", verbosity=0)
    assert rollup.present_triggers() == set()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE '%spendday%' OR name LIKE 'spend_day_%'")
        assert cursor.fetchone() == (0,)
    write(("delete", 5), ("count", 0, [("claude-opus-4-1", (8, 0, 0, 8, 0))]))  # no rollup: stored all the same
    call_command("migrate", verbosity=0)
    assert rollup.present_triggers() == TRIGGERS
    assert SpendDay.objects.filter(batches__gt=0).exists()
    assert_rollup_exact()
