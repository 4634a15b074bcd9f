"""Every model of the app, for Django and the migrations: each feature package owns its own."""

from .access.models import AccessChange, AccessGrant, Role
from .alarms.models import Alarm, AlarmEvaluator, AlarmRule, AlarmThreshold
from .batches.models import (
    AccountState,
    BatchChange,
    BatchTokens,
    CancelAttempt,
    PollerHeartbeat,
    ResultsSummary,
    StoredBatch,
)
from .bulk.models import BulkCancel, BulkCancelItem
from .metrics.models import UPSTREAM_LATENCY_BUCKETS, UpstreamCallStats
from .notifications.models import (
    NOTIFY_ENV_NAME,
    Delivery,
    NotificationChannel,
    NotificationEvent,
    every_notification_event,
)
from .spend.models import SpendDay

__all__ = [
    "NOTIFY_ENV_NAME",
    "UPSTREAM_LATENCY_BUCKETS",
    "AccessChange",
    "AccessGrant",
    "AccountState",
    "Alarm",
    "AlarmEvaluator",
    "AlarmRule",
    "AlarmThreshold",
    "BatchChange",
    "BatchTokens",
    "BulkCancel",
    "BulkCancelItem",
    "CancelAttempt",
    "Delivery",
    "NotificationChannel",
    "NotificationEvent",
    "PollerHeartbeat",
    "ResultsSummary",
    "Role",
    "SpendDay",
    "StoredBatch",
    "UpstreamCallStats",
    "every_notification_event",
]
