"""On SQLite, the list's search reads the search text from an index instead of each row.

`search_text` is the last column of a row whose provider JSON comes before it, so a substring
search (LIKE '%term%', which no index can seek) read every row through its overflow pages: about
14 ms for 10,000 batches. With the text in an index beside (account, created_at), the scan reads
the index alone. PostgreSQL limits a b-tree entry's size (metadata may be kilobytes), so there
the index is not made; a trigram index (pg_trgm) is the way there.
"""

from django.db import migrations

NAME = "stored_batch_search_sqlite"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {NAME} ON dashboard_storedbatch (account, created_at DESC, search_text)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0011_bulk_cancel")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
