"""What the dashboard saw running, and each account's first successful poll: a batch that had ended
before both is history, not an alarm (alarms/rules.py, ended badly).

Batches already stored count as seen running, so an upgrade leaves their alarms as they were.
SQLite adds the column by rebuilding the table, which drops the indexes made by hand in 0012 and
0013: they are made again here, as in 0016.
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
        ("dashboard", "0016_counts_known"),
    ]

    operations = [
        migrations.AddField(
            model_name="accountstate",
            name="first_success_at",
            field=models.DateTimeField(
                blank=True,
                help_text="The first successful poll: what ended before it is history, not an alarm.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="storedbatch",
            name="seen_running",
            field=models.BooleanField(
                default=True, help_text="The dashboard has seen it not ended (false: it had ended when first seen)."
            ),
        ),
        migrations.RunPython(recreate_search_indexes, migrations.RunPython.noop, elidable=False),
    ]
