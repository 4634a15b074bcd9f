"""Whether a batch's request counts were reported (Bedrock's are optional).

SQLite adds the column by rebuilding the table, which drops the indexes made by hand in 0012 and
0013 (Django knows only the model's own): they are made again here.
"""

import importlib

from django.db import migrations, models

SEARCH_INDEXES = [
    importlib.import_module(f"dashboard.migrations.{name}")
    for name in ("0012_search_index_sqlite", "0013_status_search_index_sqlite")
]


def recreate_search_indexes(apps, schema_editor):
    for migration in SEARCH_INDEXES:
        migration.create(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0015_backfill_cursor_is_text"),
    ]

    operations = [
        migrations.AddField(
            model_name="storedbatch",
            name="counts_known",
            field=models.BooleanField(
                default=True,
                help_text="False when the provider did not report request counts: the counts above are zeros.",
            ),
        ),
        migrations.RunPython(recreate_search_indexes, migrations.RunPython.noop, elidable=False),
    ]
