"""The alarms in the pages: the alarms page, the header's badge, a batch's alarms on its detail
page, and acknowledging one (who, when, a note). Alarms are opened and resolved by the poller
(dashboard/alarms/evaluation.py); these views only read them, and record acknowledgements.

The alarms page and a batch's detail page keep their alarms current through the page's feed
(web/live.py) every ROW_POLL_SECONDS, and at once when the page acknowledges one (the `alarms-changed`
event, sent as HX-Trigger by the acknowledgement); a fragment asked for alone (the badge, a batch's
alarms) polls itself the same way: an alarm appears, is acknowledged and resolves without a reload.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from ..access.models import Role
from ..accounts import configured_accounts
from ..alarms import selectors as alarm_selectors
from ..alarms import services as alarm_services
from ..alarms.rules import ALL_ACCOUNTS
from ..batches import feed
from ..models import Alarm
from . import live
from .alarm_badge import CHANGED_EVENT, badge_context
from .common import ROLE_REFUSALS, account_or_404, alarm_accounts, may_on_alarm, visible_accounts

RESOLVED_HOURS = 24  # the alarms page lists alarms resolved this recently
OPEN_LIMIT = 500  # alarms listed at most, of each kind: the counts say how many there are
RESOLVED_LIMIT = 200


def _common(request: HttpRequest) -> dict:
    """What every alarm fragment needs: the accounts the user may see (their labels) and those where
    they may acknowledge (operators)."""
    accounts = visible_accounts(request)
    return {
        "poll_seconds": settings.ROW_POLL_SECONDS,
        "acknowledge_accounts": set(alarm_accounts(request, Role.OPERATOR)),
        "account_labels": account_labels(accounts),
        "changed_event": CHANGED_EVENT,
        "note_limit": alarm_services.NOTE_LIMIT,
    }


def account_labels(accounts: list) -> dict[str, str]:
    """The accounts' labels by key; and, for one who sees every configured account, the budget alarms of
    all accounts together (alarms/rules.py, ALL_ACCOUNTS)."""
    labels = {account.key: account.label for account in accounts}
    if accounts and set(labels) >= {account.key for account in configured_accounts()}:
        labels[ALL_ACCOUNTS] = "All accounts"
    return labels


def _unacknowledged_first(rows):
    """Open alarms nobody has acknowledged first, then the acknowledged; newest first in each."""
    return rows.order_by(F("acknowledged_at").asc(nulls_first=True), "-opened_at", "-id")


def _labelled(rows, labels: dict[str, str]) -> list[Alarm]:
    rows = list(rows)
    for alarm in rows:
        alarm.account_label = labels.get(alarm.account, alarm.account)
        alarm.every_account = alarm.account == ALL_ACCOUNTS
    return rows


def listed_alarms(request: HttpRequest, now):
    """What the alarms page lists: the open alarms of the accounts the user may see, and those
    resolved in the last RESOLVED_HOURS."""
    recent = Q(resolved_at=None) | Q(resolved_at__gte=now - timedelta(hours=RESOLVED_HOURS))
    return Alarm.objects.filter(recent, account__in=alarm_accounts(request))


@require_GET
def alarm_list(request: HttpRequest) -> HttpResponse:
    """Open alarms (those nobody has acknowledged first), then those resolved in the last
    RESOLVED_HOURS. Its feed (live.py) sends the lists, out of band, when they changed."""
    now = timezone.now()
    if live.is_feed(request):
        return alarms_feed(request, now=now)
    context = alarm_list_context(request, now=now)
    context.update(
        {
            "evaluator": alarm_selectors.evaluator(),
            "badge": badge_context(request, live=True),
            "live_feed": True,
        }
    )
    context["feed_cursor"] = live.cursor(
        page="alarms",
        alarms=feed.alarms_fingerprint(listed_alarms(request, now)),
        badge=_badge_fingerprint(context["badge"]),
    )
    if request.htmx and request.htmx.target == "alarm-list":
        return render(request, "alarms/alarms.html#list", context)
    return render(request, "alarms/alarms.html", context)


def _badge_fingerprint(badge: dict) -> list[int]:
    return [badge["counts"].open, badge["counts"].unacknowledged]


def alarm_list_context(request: HttpRequest, *, now) -> dict:
    context = _common(request)
    labels = context["account_labels"]
    open_rows = alarm_selectors.open_alarms(accounts=labels)
    resolved_rows = (
        alarm_selectors.recent_alarms(since=now - timedelta(hours=RESOLVED_HOURS), accounts=labels)
        .exclude(resolved_at=None)
        .order_by("-resolved_at", "-id")
    )
    counts = alarm_selectors.open_alarm_counts(accounts=labels)
    context.update(
        {
            "open_alarms": _labelled(_unacknowledged_first(open_rows)[:OPEN_LIMIT], labels),
            "counts": counts,
            "open_limit": OPEN_LIMIT,
            "resolved_alarms": _labelled(resolved_rows[:RESOLVED_LIMIT], labels),
            "resolved_hours": RESOLVED_HOURS,
            "resolved_limit": RESOLVED_LIMIT,
            "next": request.get_full_path() if not request.htmx else request.htmx.current_url_abs_path or "",
        }
    )
    return context


def alarms_feed(request: HttpRequest, *, now) -> HttpResponse:
    """The alarms page's live answer: its lists and the header badge, out of band, when they changed."""
    parts = live.read_cursor(request)
    if parts is None or parts.get("page") != "alarms":
        return live.unreadable()
    alarms = feed.alarms_fingerprint(listed_alarms(request, now))
    badge = badge_context(request, live=True)
    alarms_moved = parts.get("alarms") != alarms
    badge_moved = parts.get("badge") != _badge_fingerprint(badge)
    if not alarms_moved and not badge_moved:
        return live.unchanged()
    context = alarm_list_context(request, now=now) if alarms_moved else _common(request)
    context.update(
        {
            "alarm_list_changed": alarms_moved,
            "badge": badge if badge_moved else None,
            "live_feed": True,
            "feed_cursor": live.cursor(page="alarms", alarms=alarms, badge=_badge_fingerprint(badge)),
        }
    )
    return render(request, "_live_answer.html", context)


@require_GET
def alarm_badge(request: HttpRequest) -> HttpResponse:
    """The header's badge alone, for its poll: one query (session and user come from the cache)."""
    return render(request, "alarms/_badge.html", badge_context(request))


def batch_alarms_fingerprint(*, account_key: str, batch_id: str) -> str:
    """What the detail page's alarms section shows, as a short digest (feed.alarms_fingerprint)."""
    return feed.alarms_fingerprint(
        Alarm.objects.filter(resolved_at=None, account=account_key, batch__batch_id=batch_id)
    )


def batch_alarms_context(request: HttpRequest, *, account_key: str, batch_id: str) -> dict:
    """What the detail page's alarms section shows: the batch's open alarms."""
    context = _common(request)
    rows = _unacknowledged_first(alarm_selectors.open_alarms_for_batch(account=account_key, batch_id=batch_id))
    context.update(
        {
            "batch_alarms": _labelled(rows[:OPEN_LIMIT], context["account_labels"]),
            "alarms_account": account_key,
            "alarms_batch_id": batch_id,
        }
    )
    return context


@require_GET
def batch_alarms(request: HttpRequest, account_key: str, batch_id: str) -> HttpResponse:
    """The detail page's alarms section alone, for its poll."""
    account = account_or_404(request, account_key, batch_id)
    context = batch_alarms_context(request, account_key=account.key, batch_id=batch_id)
    context["next"] = request.htmx.current_url_abs_path if request.htmx else ""
    return render(request, "alarms/_batch.html", context)


def _back(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return "alarm-list"


@require_POST
def alarm_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    """Record that the signed-in user has seen this alarm, with their note: it stays open until its
    condition no longer holds. For htmx, 204 and the `alarms-changed` event (every alarm fragment on
    the page fetches itself anew); otherwise back to the page the form was on, with a message."""
    alarm = get_object_or_404(Alarm.objects.select_related("batch"), pk=pk)
    if not may_on_alarm(request, Role.VIEWER, alarm.account):
        raise Http404("No such alarm.")
    if not may_on_alarm(request, Role.OPERATOR, alarm.account):
        if request.htmx:
            return HttpResponse(
                ROLE_REFUSALS[Role.OPERATOR] + "\n", status=403, content_type="text/plain; charset=utf-8"
            )
        raise PermissionDenied(ROLE_REFUSALS[Role.OPERATOR])
    try:
        alarm_services.acknowledge(alarm=alarm, user=request.user, note=request.POST.get("note", ""))
    except alarm_services.AcknowledgeRefused as refused:
        if request.htmx:  # 409 with the reason (the page's notice shows it) and every fragment refreshed
            response = HttpResponse(f"{refused}\n", status=409, content_type="text/plain; charset=utf-8")
            response["HX-Trigger"] = CHANGED_EVENT
            return response
        messages.error(request, str(refused))
        return redirect(_back(request))
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Trigger"] = CHANGED_EVENT
        return response
    subject = alarm.account if alarm.batch is None else f"{alarm.account}/{alarm.batch.batch_id}"
    messages.success(request, f"Acknowledged the {alarm.get_rule_display()} alarm of {subject}.")
    return redirect(_back(request))
