"""On SQLite, a search finds its batches through a trigram index, whatever the store holds; a common
term by walking one index of the whole store.

A substring search (LIKE '%term%') can seek no B-tree: 0019 walks the list's indexes newest first
until a page is full, which is cheap for a common term and reads every entry of the store for a
rare one. An FTS5 table with the trigram tokenizer (SQLite 3.34 or later) indexes every three
characters of `search_text`: a term of three characters or more finds its few rows wherever they
are (dashboard/batches/selectors.py picks the walk or the index for each search).

Triggers keep it in step with every insert, delete and change of `search_text`. The table keeps
its own copy of the text (a few bytes a batch): an FTS5 table that read the store's instead
(external content) is corrupted by any write it missed, where this one is at worst behind. A migration that
makes SQLite rebuild the table drops the triggers with the old table (and 0019's indexes):
dashboard/batches/search_index.py makes them again after every migrate, and fills the index anew.
On an SQLite older than 3.34 nothing is made and the search walks as before.
"""

import sqlite3

from django.db import migrations

TABLE = "stored_batch_search_trigrams"
TRIGGERS = {
    "stored_batch_search_trigrams_insert": """AFTER INSERT ON dashboard_storedbatch BEGIN
        INSERT INTO stored_batch_search_trigrams (rowid, search_text) VALUES (new.id, new.search_text);
    END""",
    "stored_batch_search_trigrams_delete": """AFTER DELETE ON dashboard_storedbatch BEGIN
        DELETE FROM stored_batch_search_trigrams WHERE rowid = old.id;
    END""",
    # The poller saves a row whenever the batch changes, its text seldom: only a new text is indexed.
    "stored_batch_search_trigrams_update": """AFTER UPDATE OF id, search_text ON dashboard_storedbatch
        WHEN old.id IS NOT new.id OR old.search_text IS NOT new.search_text BEGIN
        DELETE FROM stored_batch_search_trigrams WHERE rowid = old.id;
        INSERT INTO stored_batch_search_trigrams (rowid, search_text) VALUES (new.id, new.search_text);
    END""",
}
MIN_SQLITE = (3, 34, 0)  # the trigram tokenizer
# A common term (or one shorter than a trigram) is found by walking the whole store newest first,
# reading what it tests (the account, status, text) from this index, until the page is full: per
# account, as 0019 walked, an account without the term had every entry read.
SQLITE_INDEXES = {
    "stored_batch_search_newest_sqlite": "created_at DESC, id DESC, account, is_ended, status, search_text",
}


def has_trigrams() -> bool:
    return sqlite3.sqlite_version_info >= MIN_SQLITE


def create_triggers(execute) -> None:
    for name, body in TRIGGERS.items():
        execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")


def create_index(execute) -> None:
    """The trigram table, its triggers, and every stored row indexed (anew, if the table was there)."""
    execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS stored_batch_search_trigrams USING fts5(search_text, tokenize='trigram')"
    )
    create_triggers(execute)
    execute("DELETE FROM stored_batch_search_trigrams")
    execute(
        "INSERT INTO stored_batch_search_trigrams (rowid, search_text) SELECT id, search_text FROM dashboard_storedbatch"
    )


def drop_index(execute) -> None:
    for name in TRIGGERS:
        execute(f"DROP TRIGGER IF EXISTS {name}")
    execute("DROP TABLE IF EXISTS stored_batch_search_trigrams")


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for name, columns in SQLITE_INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON dashboard_storedbatch ({columns})")
    if has_trigrams():
        create_index(schema_editor.execute)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        drop_index(schema_editor.execute)
        for name in SQLITE_INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0023_tokens_to_count"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
