"""SQLite's search objects made by hand in migrations, made again after every migrate that lost them.

Django knows only a model's own indexes: when a migration makes SQLite rebuild
`dashboard_storedbatch` (adding a column with a default does), the copy has none of the objects
migrations 0019 and 0024 made by hand (the list's search indexes, the trigram index's triggers).
Rather than have every such migration remember them, `heal` runs after each migrate (post_migrate)
and makes what is missing of the objects whose migration is applied; when the triggers were
missing, rows may have been written without them, so the trigram index is filled anew.

A migration that changes these objects (or drops them for good) changes what this module makes.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import connections, transaction
from django.db.migrations.recorder import MigrationRecorder

LIST_INDEXES = "0019_list_in_index_order"
TRIGRAMS = "0024_search_trigrams_sqlite"


def _migration(name: str) -> Any:
    return importlib.import_module(f"dashboard.migrations.{name}")


def trigrams_table() -> str:
    return _migration(TRIGRAMS).TABLE


def has_trigrams() -> bool:
    """Whether this SQLite has the trigram tokenizer (older ones search by walking the list's order)."""
    return _migration(TRIGRAMS).has_trigrams()


def heal(*, using: str = "default", **_: Any) -> list[str]:
    """Make the missing search objects on an SQLite database; the names of those made."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return []
    applied = {name for app, name in MigrationRecorder(connection).applied_migrations() if app == "dashboard"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'dashboard_storedbatch'")
        present = {name for (name,) in cursor.fetchall()}
        made = []
        for migration in (LIST_INDEXES, TRIGRAMS):
            if migration not in applied:
                continue
            for name, columns in _migration(migration).SQLITE_INDEXES.items():
                if name not in present:
                    cursor.execute(f"CREATE INDEX {name} ON dashboard_storedbatch ({columns})")
                    made.append(name)
        trigrams = _migration(TRIGRAMS)
        if TRIGRAMS in applied and trigrams.has_trigrams():
            missing = [name for name in trigrams.TRIGGERS if name not in present]
            if missing:
                with transaction.atomic(using=using):  # no write between the triggers and the filling
                    trigrams.create_index(cursor.execute)  # the triggers, and every row indexed anew
                made.extend(missing)
    return made


def connect() -> None:
    from django.apps import apps
    from django.db.models.signals import post_migrate

    post_migrate.connect(_after_migrate, sender=apps.get_app_config("dashboard"), dispatch_uid=__name__)


def _after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    heal(using=using)
