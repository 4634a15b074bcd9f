"""The spend rollup's triggers on SQLite: never there while migrations run, made again after.

SQLite's ALTER TABLE ... RENAME, which Django's rebuild of a table ends with, checks every trigger
and fails on one whose body names a table that is, at that moment, gone (the one being rebuilt):
the rollup's triggers name dashboard_storedbatch and dashboard_batchtokens. So before a migrate that
applies anything (pre_migrate) they are dropped, and after every migrate (post_migrate) whatever is
missing is made again and, since writes made without them were not added up, the rollup is filled
anew from the store, in one transaction. PostgreSQL keeps triggers through any table change:
migration 0026 makes them there once.

A migration that changes the triggers (or drops them for good) changes what this module makes.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import connections, transaction
from django.db.migrations.recorder import MigrationRecorder

ROLLUP = "0026_spend_days"


def _migration() -> Any:
    return importlib.import_module(f"dashboard.migrations.{ROLLUP}")


def trigger_names() -> tuple[str, ...]:
    return tuple(_migration().SQLITE_TRIGGERS)


def present_triggers(using: str = "default") -> set[str]:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'spend_day_%'")
        return {name for (name,) in cursor.fetchall()}


def drop(*, using: str = "default") -> None:
    connection = connections[using]
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            _migration().drop_sqlite_triggers(cursor.execute)


def heal(*, using: str = "default", **_: Any) -> list[str]:
    """Make the missing triggers on an SQLite database, and fill the rollup anew; the names of those made."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return []
    applied = {name for app, name in MigrationRecorder(connection).applied_migrations() if app == "dashboard"}
    if ROLLUP not in applied:
        return []
    migration = _migration()
    missing = [name for name in migration.SQLITE_TRIGGERS if name not in present_triggers(using)]
    if not missing:
        return []
    with transaction.atomic(using=using), connection.cursor() as cursor:  # no write between triggers and filling
        migration.create_sqlite_triggers(cursor.execute)
        cursor.execute(f"DELETE FROM {migration.ROLLUP}")  # noqa: S608
        cursor.execute(migration.fill_sql("sqlite"))
    return missing


def connect() -> None:
    from django.apps import apps
    from django.db.models.signals import post_migrate, pre_migrate

    config = apps.get_app_config("dashboard")
    pre_migrate.connect(_before_migrate, sender=config, dispatch_uid=f"{__name__}.pre")
    post_migrate.connect(_after_migrate, sender=config, dispatch_uid=f"{__name__}.post")


def _before_migrate(sender: Any, using: str = "default", plan: Any = None, **kwargs: Any) -> None:
    if plan:
        drop(using=using)


def _after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    heal(using=using)
