"""What the pages read of the alarms: the open ones (all, an account's, a batch's, a page of
batches'), the header badge's counts, the alarms page's recent history and the evaluator's state."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, QuerySet

from .models import EVALUATOR_PK, Alarm, AlarmEvaluator


def _with_subject(alarms: QuerySet[Alarm]) -> QuerySet[Alarm]:
    return alarms.select_related("batch", "acknowledged_by").defer("batch__raw", "batch__search_text")


def open_alarms(*, accounts: Iterable[str] | None = None) -> QuerySet[Alarm]:
    """Every open alarm (of these accounts), newest first, with its batch (if any) and who acknowledged it."""
    return _with_subject(_of(Alarm.objects.filter(resolved_at=None), accounts)).order_by("-opened_at", "-id")


def _of(alarms: QuerySet[Alarm], accounts: Iterable[str] | None) -> QuerySet[Alarm]:
    return alarms if accounts is None else alarms.filter(account__in=list(accounts))


def open_alarms_for_account(*, account: str) -> QuerySet[Alarm]:
    """The open alarms of one account: its own and its batches'."""
    return open_alarms().filter(account=account)


def open_alarms_for_batch(*, account: str, batch_id: str) -> QuerySet[Alarm]:
    """The open alarms of one batch (the upstream id, as in the URLs)."""
    return open_alarms().filter(account=account, batch__batch_id=batch_id)


def open_alarms_by_batch(*, batch_pks: Iterable[int]) -> dict[int, list[Alarm]]:
    """For a page of stored batches (their primary keys): each one's open alarms, in one query."""
    found: dict[int, list[Alarm]] = defaultdict(list)
    for alarm in Alarm.objects.filter(resolved_at=None, batch_id__in=list(batch_pks)).order_by("-opened_at", "-id"):
        found[alarm.batch_id].append(alarm)
    return dict(found)


@dataclass(frozen=True)
class OpenCounts:
    open: int
    unacknowledged: int


def open_alarm_counts(*, accounts: Iterable[str] | None = None) -> OpenCounts:
    """For the header's badge: open alarms (of these accounts), and how many of them nobody has
    acknowledged. One query."""
    counts = _of(Alarm.objects.filter(resolved_at=None), accounts).aggregate(
        open=Count("pk"), unacknowledged=Count("pk", filter=Q(acknowledged_at=None))
    )
    return OpenCounts(open=counts["open"], unacknowledged=counts["unacknowledged"])


def recent_alarms(*, since: datetime, accounts: Iterable[str] | None = None) -> QuerySet[Alarm]:
    """Open alarms and those resolved since `since` (of these accounts), newest first (the alarms
    page's history)."""
    alarms = Alarm.objects.filter(Q(resolved_at=None) | Q(resolved_at__gte=since))
    return _with_subject(_of(alarms, accounts)).order_by("-opened_at", "-id")


def evaluator() -> AlarmEvaluator | None:
    """When alarms were last evaluated, by whom, and whether that failed (None: never)."""
    return AlarmEvaluator.objects.filter(pk=EVALUATOR_PK).first()
