"""The list walks its indexes in its own order: newest first, then by id (see _page_keys in
dashboard/batches/selectors.py), one account at a time; so each index the list reads ends with the
id, and PostgreSQL gets a trigram index for the search.

On SQLite the search reads its text from indexes beside the list's order (as 0012 and 0013 made
them, now with the id, and one for the batches not ended too): a substring search (LIKE '%term%')
can seek no B-tree, and reading the text from each row went through its overflow pages. On
PostgreSQL, whose B-tree entries have a size limit that metadata can pass, a GIN index of trigrams
(pg_trgm, a trusted extension since PostgreSQL 13) answers LIKE '%term%' for terms of three
characters or more. A later migration that makes SQLite rebuild the table drops SQLite's indexes
made here: it calls `create_search_indexes` again (as 0016 and 0017 did for 0012's and 0013's).
"""

from django.db import migrations, models

OLD_SQLITE_INDEXES = ("stored_batch_search_sqlite", "stored_batch_status_search_sqlite")
OLD_SQLITE_COLUMNS = ("account, created_at DESC, search_text", "account, status, created_at DESC, search_text")
SQLITE_INDEXES = {
    "stored_batch_search_list_sqlite": "account, created_at DESC, id DESC, search_text",
    "stored_batch_active_search_list_sqlite": "account, is_ended, created_at DESC, id DESC, search_text",
    "stored_batch_status_search_list_sqlite": "account, status, created_at DESC, id DESC, search_text",
}
TRIGRAM_INDEX = "stored_batch_search_trgm"


def create_search_indexes(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        for name in OLD_SQLITE_INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
        for name, columns in SQLITE_INDEXES.items():
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON dashboard_storedbatch ({columns})")
    elif vendor == "postgresql":
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {TRIGRAM_INDEX} ON dashboard_storedbatch USING gin (search_text gin_trgm_ops)"
        )


def drop_search_indexes(apps, schema_editor):
    """Back to 0016's: the extension stays (other objects may use it; it is harmless)."""
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        for name in SQLITE_INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
        for name, columns in zip(OLD_SQLITE_INDEXES, OLD_SQLITE_COLUMNS, strict=True):
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON dashboard_storedbatch ({columns})")
    elif vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {TRIGRAM_INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0018_access_grants"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="storedbatch", name="stored_batch_account_newest"),
        migrations.RemoveIndex(model_name="storedbatch", name="stored_batch_active_newest"),
        migrations.RemoveIndex(model_name="storedbatch", name="stored_batch_status_newest"),
        migrations.AddIndex(
            model_name="storedbatch",
            index=models.Index(fields=["account", "-created_at", "-id"], name="stored_batch_account_list"),
        ),
        migrations.AddIndex(
            model_name="storedbatch",
            index=models.Index(fields=["account", "is_ended", "-created_at", "-id"], name="stored_batch_active_list"),
        ),
        migrations.AddIndex(
            model_name="storedbatch",
            index=models.Index(fields=["account", "status", "-created_at", "-id"], name="stored_batch_status_list"),
        ),
        migrations.RunPython(create_search_indexes, drop_search_indexes, elidable=False),
    ]
