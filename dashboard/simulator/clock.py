"""The simulator's only source of "now", so tests can move time instead of waiting for it."""

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
