"""On SQLite, a search within one status reads its text from an index too (see 0012)."""

from django.db import migrations

NAME = "stored_batch_status_search_sqlite"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {NAME} ON dashboard_storedbatch (account, status, created_at DESC, search_text)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0012_search_index_sqlite")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
