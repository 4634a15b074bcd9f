"""Stalling a simulated batch: its processing stops (counts freeze, its end moves away) until released.

A fault to inject, as an upstream that stops making progress on one batch would: the dashboard's
"stuck" alarm is tested with it. Released, the batch resumes where it stopped and ends that much
later (progression.Plan.stalled_at / stalled_seconds). Reached by `manage.py simulator_stall`, the
admin's actions on simulated batches, and tests.factories.stall / release.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from . import clock
from .models import SimBatch


def stall(public_id: str, *, now: datetime | None = None) -> bool:
    """Stall the batch from `now` (the simulator's clock by default); False if it already was.
    SimBatch.DoesNotExist if there is no such batch."""
    with transaction.atomic():
        batch = SimBatch.objects.select_for_update().get(public_id=public_id)
        return batch.stall(now or clock.now())


def release(public_id: str, *, now: datetime | None = None) -> bool:
    """Let a stalled batch go on from where it stopped; False if it was not stalled."""
    with transaction.atomic():
        batch = SimBatch.objects.select_for_update().get(public_id=public_id)
        return batch.release(now or clock.now())
