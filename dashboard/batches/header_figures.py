"""The list page's header: per configured account and in total, what is running and how the last day
went. Two aggregate queries over the store, whatever its size (no row is read whole):

- **not ended**: batches whose status is not final (`StoredBatch.is_ended` false);
- **in flight**: their requests not yet finished (`processing`, added up);
- **errored share, last 24 h**: of the requests that ran (succeeded + errored; canceled and expired
  requests never ran) in the batches that ended in the last 24 hours, the share that errored, as
  the alarms' error-rate rules count it; None when none ran;
- **ended, last 24 h**: the batches that ended in the last 24 hours (`ended_at` within
  (now − 24 h, now]) by final status, as their provider words it; a batch that ended after a
  cancel in a status that does not say so (Anthropic's `ended`) counts as "<status>, canceled".

Always over every configured account, whatever the list's filters (the header is the fleet's state;
the filters scope the rows below).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import BooleanField, Count, ExpressionWrapper, Q, Sum
from django.utils import timezone

from .. import providers
from ..accounts import Account
from ..models import StoredBatch

WINDOW = timedelta(hours=24)


@dataclass
class Line:
    """One account's numbers (or the total's)."""

    key: str  # the account's key; "" for the total
    label: str
    not_ended: int = 0
    in_flight: int = 0
    ran: int = 0  # requests that ran (succeeded + errored) in batches that ended within the window
    errored: int = 0
    ended: dict[str, int] = field(default_factory=dict)  # outcome -> batches that ended within the window
    by_outcome: list[tuple[str, int]] = field(default_factory=list)  # `ended` in the outcomes' order

    @property
    def errored_percent(self) -> float | None:
        return 100 * self.errored / self.ran if self.ran else None

    @property
    def ended_total(self) -> int:
        return sum(self.ended.values())


@dataclass(frozen=True)
class HeaderFigures:
    lines: list[Line]  # one per configured account, in the accounts' order
    total: Line
    outcomes: list[str]  # every outcome seen, in the providers' status order
    since: datetime
    now: datetime


def outcome_name(status: str, after_cancel: bool) -> str:
    return f"{status}, canceled" if after_cancel and "cancel" not in status else status


def _outcome_order() -> list[str]:
    order: list[str] = []
    for module in providers.PROVIDERS.values():
        for status in module.STATUSES:
            if status in module.ENDED:
                order += [status, outcome_name(status, True)]
    return list(dict.fromkeys(order))


def header_figures(*, accounts: list[Account], now: datetime | None = None) -> HeaderFigures:
    now = now or timezone.now()
    since = now - WINDOW
    keys = [account.key for account in accounts]
    lines = {account.key: Line(key=account.key, label=account.label) for account in accounts}
    total = Line(key="", label="All accounts")

    running = (
        StoredBatch.objects.filter(account__in=keys, is_ended=False)
        .values("account")
        .annotate(batches=Count("pk"), in_flight=Sum("processing"))
        .order_by()
    )
    for row in running:
        for line in (lines[row["account"]], total):
            line.not_ended += row["batches"]
            line.in_flight += row["in_flight"] or 0

    ended = (
        StoredBatch.objects.filter(account__in=keys, is_ended=True, ended_at__gt=since, ended_at__lte=now)
        .annotate(after_cancel=ExpressionWrapper(Q(cancel_initiated_at__isnull=False), output_field=BooleanField()))
        .values("account", "status", "after_cancel")
        .annotate(batches=Count("pk"), succeeded=Sum("succeeded"), errored=Sum("errored"))
        .order_by()
    )
    for row in ended:
        outcome = outcome_name(row["status"], bool(row["after_cancel"]))
        for line in (lines[row["account"]], total):
            line.ended[outcome] = line.ended.get(outcome, 0) + row["batches"]
            line.ran += (row["succeeded"] or 0) + (row["errored"] or 0)
            line.errored += row["errored"] or 0

    seen = {outcome for line in lines.values() for outcome in line.ended}
    order = [outcome for outcome in _outcome_order() if outcome in seen]
    order += sorted(seen - set(order))  # a status no provider module names (never expected)
    for line in (*lines.values(), total):
        line.by_outcome = [(outcome, line.ended[outcome]) for outcome in order if line.ended.get(outcome)]
    return HeaderFigures(lines=list(lines.values()), total=total, outcomes=order, since=since, now=now)
