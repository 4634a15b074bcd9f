"""What people do to alarms: acknowledge one (the rules open and resolve them, evaluation.py)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.utils import timezone

from ..accounts import configured_secrets
from ..redaction import redact
from .models import Alarm

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

NOTE_LIMIT = 2000


class AcknowledgeRefused(Exception):
    """An acknowledgement that changed nothing; its message says why, in an operator's words."""


def acknowledge(*, alarm: Alarm, user: AbstractBaseUser, note: str = "", now: datetime | None = None) -> Alarm:
    """`user` has seen `alarm`: who, when and their note (redacted) are kept; it stays open until
    its condition no longer holds. The first acknowledgement stands: an alarm already acknowledged,
    or one that has resolved, is left as it is and AcknowledgeRefused says so (one conditional
    UPDATE, so of two people acknowledging at once exactly one is recorded)."""
    now = now or timezone.now()
    note = redact(note.strip(), configured_secrets())[:NOTE_LIMIT]
    recorded = Alarm.objects.filter(pk=alarm.pk, acknowledged_at=None, resolved_at=None).update(
        acknowledged_by=user, acknowledged_at=now, acknowledge_note=note
    )
    if not recorded:
        alarm.refresh_from_db()
        if alarm.acknowledged_at is not None:
            who = alarm.acknowledged_by.get_username() if alarm.acknowledged_by else "a deleted user"
            raise AcknowledgeRefused(
                f"Already acknowledged by {who} at {alarm.acknowledged_at:%Y-%m-%d %H:%M} UTC: "
                "that acknowledgement stands."
            )
        raise AcknowledgeRefused(
            f"This alarm resolved at {alarm.resolved_at:%Y-%m-%d %H:%M} UTC: there is nothing left to acknowledge."
        )
    alarm.acknowledged_by, alarm.acknowledged_at, alarm.acknowledge_note = user, now, note
    return alarm
