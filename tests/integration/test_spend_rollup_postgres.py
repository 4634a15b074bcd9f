"""The spend rollup on PostgreSQL (plpgsql triggers, migration 0026): exact after random writes through the
store and the services (tests/spend/rollup_checks.py, as on SQLite), filled from what is stored when the
migration is applied, gone when it is reversed, exact when two transactions race a batch's end against a
recount of its tokens, and read without a sequential scan of the store (plans on an ANALYZEd store)."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest

from tests.services import app_env, manage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROPERTY = """
from tests.spend import rollup_checks
from tests.spend.test_rollup import SOME_WRITES
rollup_checks.property_check(max_examples=40)()
rollup_checks.check(SOME_WRITES)
print("EXACT")
"""

# Written on a database migrated to 0025 (no rollup yet): 0026 must add up what is there.
BEFORE_ROLLUP = """
from tests.spend import rollup_checks
from tests.spend.test_rollup import SOME_WRITES
for write in SOME_WRITES:
    rollup_checks.apply(write)
print("WRITTEN")
"""

CHECK = """
from tests.spend import rollup_checks
rollup_checks.assert_rollup_exact()
print("EXACT")
"""

# 20,000 batches over 8 accounts with tokens, one in ten of the last two days' running (as bench/spend.py's
# store: older ones have ended), ANALYZEd; the plan of each spend read.
PLANS = """
import json
from datetime import UTC, datetime, timedelta
from django.db import connection
from django.test.utils import CaptureQueriesContext
from dashboard.models import BatchTokens, StoredBatch
from dashboard.spend.selectors import spend_report, spent_today, stored_tokens

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
keys = [f"anthropic-team{n}" for n in range(8)]
rows = []
for n in range(20_000):
    created = T0 - timedelta(seconds=37 * n)
    running = n % 10 == 0 and created > T0 - timedelta(days=2)
    rows.append(StoredBatch(
        account=keys[n % 8], provider="anthropic", batch_id=f"msgbatch_{n:07d}",
        status="in_progress" if running else "ended", is_ended=not running, processing=5 if running else 0,
        created_at=created, ended_at=None if running else created + timedelta(minutes=30), raw={},
        first_seen_at=T0, last_fetched_at=T0, last_changed_at=T0))
StoredBatch.objects.bulk_create(rows, batch_size=2000)
BatchTokens.objects.bulk_create(
    (BatchTokens(batch_id=pk, model="claude-opus-4-1", input=1000, output=200, requests=100)
     for pk in StoredBatch.objects.values_list("pk", flat=True)), batch_size=2000)
with connection.cursor() as cursor:
    cursor.execute("VACUUM ANALYZE")
day = T0.date()
with CaptureQueriesContext(connection) as captured:
    spend_report(account_keys=keys, start=day - timedelta(days=29), end=day, today=day)
    spent_today(account_keys=keys, today=day)
    stored_tokens()
plans = []
for query in captured.captured_queries:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + query["sql"])
        plans.append({"sql": query["sql"], "plan": cursor.fetchone()[0][0]["Plan"]})
print("PLANS" + json.dumps(plans))
"""


def nodes(plan: dict) -> list[dict]:
    return [plan, *(node for child in plan.get("Plans", []) for node in nodes(child))]


def shown(item: dict) -> str:
    """A plan in a line per node: what a failure says."""
    lines = [item["sql"]]
    for node in nodes(item["plan"]):
        where = node.get("Relation Name", "") + " " + node.get("Index Name", "")
        lines.append(f"{node['Node Type']} {where.strip()} rows={node.get('Plan Rows')} {node.get('Index Cond', '')}")
    return "\n".join(lines)


def test_random_writes_keep_the_rollup_equal_to_the_per_row_queries(postgres_server):
    env = app_env(DATABASE_URL=postgres_server.create_database(migrated=True))
    assert "EXACT" in manage("shell", "-c", PROPERTY, env=env, timeout=600)


def test_the_migration_adds_up_what_is_stored_and_its_reversal_leaves_nothing_behind(postgres_server):
    url = postgres_server.create_database()
    env = app_env(DATABASE_URL=url)
    manage("migrate", "--noinput", "dashboard", "0025", env=env)
    assert "WRITTEN" in manage("shell", "-c", BEFORE_ROLLUP, env=env)
    manage("migrate", "--noinput", env=env)
    assert "EXACT" in manage("shell", "-c", CHECK, env=env)
    with psycopg.connect(url.replace("postgres://", "postgresql://")) as db:
        assert db.execute("SELECT count(*) FROM dashboard_spendday WHERE batches > 0").fetchone()[0] >= 4

    manage("migrate", "--noinput", "dashboard", "0025", env=env)
    with psycopg.connect(url.replace("postgres://", "postgresql://")) as db:
        triggers = db.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'spend_day%'").fetchall()
        functions = db.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'spend_day%'").fetchall()
        tables = db.execute("SELECT to_regclass('dashboard_spendday')").fetchone()
    assert (triggers, functions, tables) == ([], [], (None,))
    manage("migrate", "--noinput", env=env)
    assert "EXACT" in manage("shell", "-c", CHECK, env=env)


NEW_BATCH = (
    "INSERT INTO dashboard_storedbatch (account, provider, batch_id, status, is_ended, total, processing, succeeded,"
    " errored, canceled, expired, counts_known, created_at, timestamps, metadata, raw, search_text, first_seen_at,"
    " seen_running, last_fetched_at, last_changed_at, tokens_source, tokens_note) VALUES ('anthropic-ops',"
    " 'anthropic', 'msgbatch_race', 'in_progress', false, 1, 1, 0, 0, 0, 0, true, now(), '{}', '{}', '{}', '',"
    " now(), true, now(), now(), '', '') RETURNING id"
)
TOKENS = (
    "INSERT INTO dashboard_batchtokens (batch_id, model, input, cache_read, cache_write, output, reasoning, requests)"
    " VALUES (%s, 'claude-opus-4-1', %s, 0, 0, %s, 0, 1)"
)
END = "UPDATE dashboard_storedbatch SET is_ended = true, processing = 0, ended_at = '2026-11-25 10:00+00' WHERE id = %s"


def race(conninfo: str, pk: int, *, first: str) -> list[Exception]:
    """The batch ended (the poller) and its tokens counted again (deleted, written anew) in two transactions:
    `first` writes and holds its transaction open for half a second; the other writes meanwhile (and waits)."""
    wrote, errors = threading.Event(), []

    def transaction(name: str, statements: list[tuple[str, list]]) -> None:
        try:
            with psycopg.connect(conninfo) as conn:
                if name != first:
                    wrote.wait(10)
                for sql, params in statements:
                    conn.execute(sql, params)
                if name == first:
                    wrote.set()
                    threading.Event().wait(0.5)
        except Exception as error:
            errors.append(error)

    count = [("DELETE FROM dashboard_batchtokens WHERE batch_id = %s", [pk]), (TOKENS, [pk, 700, 300])]
    workers = [
        threading.Thread(target=transaction, args=("end", [(END, [pk])])),
        threading.Thread(target=transaction, args=("count", count)),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    return errors


@pytest.mark.parametrize("first", ["end", "count"])
def test_a_batch_ending_while_its_tokens_are_counted_again_is_added_up_once(postgres_server, first):
    url = postgres_server.create_database(migrated=True)
    conninfo = url.replace("postgres://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as db:
        pk = db.execute(NEW_BATCH).fetchone()[0]
        db.execute(TOKENS, [pk, 5, 5])
        assert race(conninfo, pk, first=first) == []
        held = db.execute("SELECT day::text, input, output, batches FROM dashboard_spendday WHERE batches <> 0")
        assert held.fetchall() == [("2026-11-25", 700, 300, 1)]
    assert "EXACT" in manage("shell", "-c", CHECK, env=app_env(DATABASE_URL=url))


@pytest.fixture(scope="module")
def plans(postgres_server) -> list[dict]:
    env = app_env(DATABASE_URL=postgres_server.create_database(migrated=True))
    out = manage("shell", "-c", PLANS, env=env, timeout=600)
    return json.loads(out.split("PLANS", 1)[1])


def test_spend_is_read_from_the_rollup_and_the_running_batches_never_by_scanning_the_store(plans):
    assert len(plans) == 10  # report: rollup, running batches, their rows; header: the same; metrics: 4
    for item in plans:
        every = nodes(item["plan"])
        scanned = {node.get("Relation Name") for node in every if node["Node Type"] == "Seq Scan"}
        assert not scanned & {"dashboard_storedbatch", "dashboard_batchtokens"}, shown(item)
    assert "dashboard_batchtokens" not in plans[0]["sql"] and "dashboard_spendday" in plans[0]["sql"]
