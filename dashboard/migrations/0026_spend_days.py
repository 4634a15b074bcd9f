"""The spend rollup (SpendDay): ended batches' tokens per account, day, provider and model, kept by
triggers on every write of dashboard_batchtokens and of dashboard_storedbatch's account, provider,
is_ended and ended_at (and deletes), so every write path keeps it exact: the store, results counting,
a recount that deletes and writes a batch's rows again, a batch's end moving, a delete.

A batch counts on the UTC day of its ended_at, when it has ended and has one; a running batch is not in
the rollup (the spend page reads the few running ones from the store). An addition is an upsert; a
subtraction only ever updates a row there (a missing row means the rollup was emptied, as a flush does:
there is nothing to take away). On PostgreSQL a trigger on a BatchTokens row first takes a share lock
on its batch, so a concurrent change of the batch's end waits for it (or it for that change), and each
sees the other's rows once committed: neither misses a row.

On SQLite a trigger whose body names another table stops Django from rebuilding that table (its
ALTER TABLE ... RENAME checks every trigger, and finds the table gone): so on SQLite the triggers are
never there while migrations run. dashboard/spend/rollup.py drops them before a migrate that applies
anything (pre_migrate) and makes them again after it, filling the rollup anew (post_migrate); this
migration makes only the table. On PostgreSQL it makes the triggers and fills the rollup from what
is stored.
"""

from django.db import migrations, models

KINDS = ("input", "cache_read", "cache_write", "output", "reasoning")
ROLLUP = "dashboard_spendday"
KEY = "account, day, provider, model"
DAY = {"sqlite": "DATE({})", "postgresql": "(({}) AT TIME ZONE 'UTC')::date"}
ENDED = "{0}.is_ended AND {0}.ended_at IS NOT NULL"


def _add(vendor: str, batch: str, tokens: str, source: str, where: str) -> str:
    """Upsert the tokens of `tokens` (a BatchTokens row) under the key of `batch` (a StoredBatch row)."""
    values = ", ".join(f"{tokens}.{kind}" for kind in KINDS)
    sums = ", ".join(f"{kind} = {ROLLUP}.{kind} + excluded.{kind}" for kind in (*KINDS, "batches"))
    return (
        f"INSERT INTO {ROLLUP} ({KEY}, {', '.join(KINDS)}, batches) "  # noqa: S608
        f"SELECT {batch}.account, {DAY[vendor].format(batch + '.ended_at')}, {batch}.provider, {tokens}.model, "
        f"{values}, 1 FROM {source} WHERE {where} AND {ENDED.format(batch)} "
        f"ON CONFLICT ({KEY}) DO UPDATE SET {sums};"
    )


def _subtract(vendor: str, batch: str, tokens: str, source: str, where: str) -> str:
    values = ", ".join(f"{kind} = {ROLLUP}.{kind} - {tokens}.{kind}" for kind in KINDS)
    return (
        f"UPDATE {ROLLUP} SET {values}, batches = {ROLLUP}.batches - 1 FROM {source} "  # noqa: S608
        f"WHERE {where} AND {ENDED.format(batch)} AND {ROLLUP}.account = {batch}.account "
        f"AND {ROLLUP}.day = {DAY[vendor].format(batch + '.ended_at')} AND {ROLLUP}.provider = {batch}.provider "
        f"AND {ROLLUP}.model = {tokens}.model;"
    )


def tokens_added(vendor: str, row: str) -> str:
    return _add(vendor, "b", row, "dashboard_storedbatch b", f"b.id = {row}.batch_id")


def tokens_taken(vendor: str, row: str) -> str:
    return _subtract(vendor, "b", row, "dashboard_storedbatch b", f"b.id = {row}.batch_id")


def batch_added(vendor: str, row: str) -> str:
    return _add(vendor, row, "t", "dashboard_batchtokens t", f"t.batch_id = {row}.id")


def batch_taken(vendor: str, row: str) -> str:
    return _subtract(vendor, row, "t", "dashboard_batchtokens t", f"t.batch_id = {row}.id")


TOKENS_CHANGED = " OR ".join(f"old.{name} IS NOT new.{name}" for name in ("batch_id", "model", *KINDS))
BATCH_CHANGED = " OR ".join(
    f"old.{name} IS NOT new.{name}" for name in ("id", "account", "provider", "is_ended", "ended_at")
)

SQLITE_TRIGGERS = {
    "spend_day_tokens_insert": f"AFTER INSERT ON dashboard_batchtokens BEGIN {tokens_added('sqlite', 'new')} END",
    "spend_day_tokens_delete": f"AFTER DELETE ON dashboard_batchtokens BEGIN {tokens_taken('sqlite', 'old')} END",
    "spend_day_tokens_update": f"AFTER UPDATE ON dashboard_batchtokens WHEN {TOKENS_CHANGED} BEGIN "
    f"{tokens_taken('sqlite', 'old')} {tokens_added('sqlite', 'new')} END",
    "spend_day_batch_update": "AFTER UPDATE OF id, account, provider, is_ended, ended_at ON dashboard_storedbatch "
    f"WHEN {BATCH_CHANGED} BEGIN {batch_taken('sqlite', 'old')} {batch_added('sqlite', 'new')} END",
    "spend_day_batch_delete": f"AFTER DELETE ON dashboard_storedbatch BEGIN {batch_taken('sqlite', 'old')} END",
}

POSTGRESQL_FUNCTIONS = {
    "spend_day_tokens_changed": f"""
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                PERFORM 1 FROM dashboard_storedbatch WHERE id = OLD.batch_id FOR SHARE;
                {tokens_taken("postgresql", "OLD")}
            END IF;
            IF TG_OP <> 'DELETE' THEN
                PERFORM 1 FROM dashboard_storedbatch WHERE id = NEW.batch_id FOR SHARE;
                {tokens_added("postgresql", "NEW")}
            END IF;
            RETURN NULL;
        END""",
    "spend_day_batch_changed": f"""
        BEGIN
            {batch_taken("postgresql", "OLD")}
            IF TG_OP = 'UPDATE' THEN
                {batch_added("postgresql", "NEW")}
            END IF;
            RETURN NULL;
        END""",
}
POSTGRESQL_TRIGGERS = {
    "spend_day_tokens": "AFTER INSERT OR UPDATE OR DELETE ON dashboard_batchtokens FOR EACH ROW "
    "EXECUTE FUNCTION spend_day_tokens_changed()",
    "spend_day_batch_update": "AFTER UPDATE OF id, account, provider, is_ended, ended_at ON dashboard_storedbatch "
    f"FOR EACH ROW WHEN ({BATCH_CHANGED.replace(' IS NOT ', ' IS DISTINCT FROM ')}) "
    "EXECUTE FUNCTION spend_day_batch_changed()",
    "spend_day_batch_delete": "AFTER DELETE ON dashboard_storedbatch FOR EACH ROW EXECUTE FUNCTION spend_day_batch_changed()",
}


def fill_sql(vendor: str) -> str:
    """Every ended batch's tokens, added up: the rollup as the triggers keep it."""
    sums = ", ".join(f"SUM(t.{kind})" for kind in KINDS)
    return (
        f"INSERT INTO {ROLLUP} ({KEY}, {', '.join(KINDS)}, batches) "  # noqa: S608
        f"SELECT b.account, {DAY[vendor].format('b.ended_at')}, b.provider, t.model, {sums}, COUNT(*) "
        "FROM dashboard_batchtokens t JOIN dashboard_storedbatch b ON b.id = t.batch_id "
        f"WHERE {ENDED.format('b')} GROUP BY 1, 2, 3, 4"
    )


def create_sqlite_triggers(execute) -> None:
    for name, body in SQLITE_TRIGGERS.items():
        execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")


def drop_sqlite_triggers(execute) -> None:
    for name in SQLITE_TRIGGERS:
        execute(f"DROP TRIGGER IF EXISTS {name}")


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite: made after the migrate (see above)
    for name, body in POSTGRESQL_FUNCTIONS.items():
        schema_editor.execute(f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$")
    for name, body in POSTGRESQL_TRIGGERS.items():
        schema_editor.execute(f"CREATE TRIGGER {name} {body}")
    schema_editor.execute("LOCK TABLE dashboard_batchtokens, dashboard_storedbatch IN SHARE MODE")
    schema_editor.execute(f"DELETE FROM {ROLLUP}")  # noqa: S608
    schema_editor.execute(fill_sql("postgresql"))


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, body in POSTGRESQL_TRIGGERS.items():
            table = body.split(" ON ")[1].split()[0]
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for name in POSTGRESQL_FUNCTIONS:
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {name}()")
    elif schema_editor.connection.vendor == "sqlite":
        drop_sqlite_triggers(schema_editor.execute)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0025_poller_heartbeats"),
    ]

    operations = [
        migrations.CreateModel(
            name="SpendDay",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("account", models.CharField(max_length=100)),
                ("day", models.DateField(help_text="The UTC day the batches ended.")),
                ("provider", models.CharField(max_length=32)),
                ("model", models.CharField(blank=True, default="", max_length=200)),
                ("input", models.BigIntegerField(default=0)),
                ("cache_read", models.BigIntegerField(default=0)),
                ("cache_write", models.BigIntegerField(default=0)),
                ("output", models.BigIntegerField(default=0)),
                ("reasoning", models.BigIntegerField(default=0)),
                ("batches", models.BigIntegerField(default=0)),
            ],
            options={
                "verbose_name_plural": "spend days",
            },
        ),
        migrations.AddIndex(
            model_name="storedbatch",
            index=models.Index(
                condition=models.Q(("ended_at", None), ("is_ended", True)),
                fields=["ended_at", "account", "provider"],
                name="stored_batch_ended_undated",
            ),
        ),
        migrations.AddConstraint(
            model_name="spendday",
            constraint=models.UniqueConstraint(
                fields=("account", "day", "provider", "model"), name="one_spend_day_per_key"
            ),
        ),
        migrations.RunPython(create, drop, elidable=False),
    ]
