"""Notification channels: those made in the admin, and those the NOTIFY_* environment variables make
(brought in step with the variables whenever the channels are read).

A webhook's signing secret and a URL that is a credential (a Slack webhook's) are read from
environment variables named NOTIFY_* at send time; the database holds their names only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from ..accounts import configured_secrets
from ..models import AlarmRule, NotificationChannel, NotificationEvent

logger = logging.getLogger(__name__)

Kind = NotificationChannel.Kind
Event = NotificationEvent

ENV_PREFIX = "env:"  # the names of the channels made from the environment


def env_value(name: str) -> str:
    """The value of the environment variable `name`, stripped ("" when it is not set or `name` is empty)."""
    return os.environ.get(name, "").strip() if name else ""


@dataclass(frozen=True)
class EnvironmentChannel:
    """A channel the NOTIFY_* variables make: `prefix`_RULES, _ACCOUNTS and _EVENTS filter it."""

    name: str
    kind: str
    target_env: str
    prefix: str
    secret_env: str = ""


ENVIRONMENT_CHANNELS = (
    EnvironmentChannel("env:slack", Kind.SLACK, "NOTIFY_SLACK_WEBHOOK_URL", "NOTIFY_SLACK"),
    EnvironmentChannel("env:webhook", Kind.WEBHOOK, "NOTIFY_WEBHOOK_URL", "NOTIFY_WEBHOOK", "NOTIFY_WEBHOOK_SECRET"),
    EnvironmentChannel("env:email", Kind.EMAIL, "NOTIFY_EMAIL_TO", "NOTIFY_EMAIL"),
)
SYNCED_FIELDS = ("kind", "target", "target_env", "secret_env", "rules", "accounts", "events", "enabled")


def _names(environ, name: str) -> list[str]:
    return [value.strip() for value in environ.get(name, "").split(",") if value.strip()]


def _unknown(fields: dict) -> list[str]:
    """The rules and events a channel's variables name that do not exist (they match nothing)."""
    return sorted((set(fields["rules"]) - set(AlarmRule.values)) | (set(fields["events"]) - set(Event.values)))


def environment_channels(environ=None) -> dict[str, dict]:
    """The channels the environment configures, by name: each one's fields (no value of a URL or a
    secret: the names of the variables that hold them)."""
    environ = os.environ if environ is None else environ
    found = {}
    for spec in ENVIRONMENT_CHANNELS:
        if not environ.get(spec.target_env, "").strip():
            continue
        found[spec.name] = {
            "kind": spec.kind,
            "target": "",
            "target_env": spec.target_env,
            "secret_env": spec.secret_env,
            # A name that is no rule or event is kept, and matches nothing: a typo never widens a filter.
            "rules": _names(environ, f"{spec.prefix}_RULES"),
            "accounts": _names(environ, f"{spec.prefix}_ACCOUNTS"),
            "events": _names(environ, f"{spec.prefix}_EVENTS") or list(Event.values),
            "enabled": True,
        }
    return found


def channels() -> list[NotificationChannel]:
    """Every enabled channel, the environment's brought in step with the NOTIFY_* variables first
    (made, changed, or switched off once their variable is gone). One query when nothing changed."""
    wanted = environment_channels()
    rows = list(NotificationChannel.objects.all())
    by_name = {row.name: row for row in rows}
    for name, fields in wanted.items():
        row = by_name.get(name)
        if row is not None and not row.from_environment:
            logger.warning("notifications: a channel made in the admin is named %s; the environment's is skipped", name)
            continue
        if row is not None and all(getattr(row, field) == value for field, value in fields.items()):
            continue
        if unknown := _unknown(fields):
            logger.warning(
                "notifications: channel %s names %s, no alarm rule or event: it matches nothing", name, unknown
            )
        if row is None:
            by_name[name] = NotificationChannel.objects.create(name=name, from_environment=True, **fields)
        else:
            for field, value in fields.items():
                setattr(row, field, value)
            row.save(update_fields=list(SYNCED_FIELDS))
    for row in rows:
        if row.from_environment and row.enabled and row.name not in wanted:
            row.enabled = False
            row.save(update_fields=["enabled"])
    return [row for row in by_name.values() if row.enabled]


def notification_secrets(rows: Iterable[NotificationChannel] | None = None) -> list[str]:
    """What the channels hold that must not be shown: every signing secret, and every URL (a Slack
    webhook's is its credential; any may carry a token), as their variables hold them now."""
    rows = NotificationChannel.objects.all() if rows is None else rows
    found = []
    for row in rows:
        names = [row.secret_env] + ([row.target_env] if row.kind != Kind.EMAIL else [])
        found += [value for name in names if (value := env_value(name))]
        if row.kind != Kind.EMAIL and row.target.strip():
            found.append(row.target.strip())
    return found


def all_secrets(rows: Iterable[NotificationChannel] | None = None) -> list[str]:
    """Every account's key and every channel's secret and URL: what errors and payloads are redacted of."""
    return configured_secrets() + notification_secrets(rows)
