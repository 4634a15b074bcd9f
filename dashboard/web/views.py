"""Thin views: read the request, call a service, render the page or, for htmx, just the row."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import UTC
from itertools import chain
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from .. import providers
from ..access.models import Role
from ..accounts import Account, configured_accounts, provider_for
from ..alarms import selectors as alarm_selectors
from ..batches import charts, eta, feed, header_figures, selectors, services
from ..batches.results import CSV_COLUMNS, RESULT_TYPES, csv_row, matches
from ..bulk import operations as bulk
from ..models import CancelAttempt
from ..providers.base import ProviderError
from ..spend import selectors as spend_selectors
from . import alarm_views, live, rows
from .alarm_badge import badge_context
from .common import (
    ROLE_REFUSALS,
    access,
    account_or_404,
    alarm_accounts,
    list_filters,
    require_role,
    status_choices,
    visible_accounts,
)

logger = logging.getLogger(__name__)

RESULT_PAGE_SIZE = 50
MAX_RESULT_OFFSET = 10_000_000  # past any batch's last line (the APIs allow 100,000 requests)


def not_stored(account: Account, batch_id: str) -> str:
    """Why a batch is not in the store, in an operator's words."""
    reason = selectors.unreadable_reason(account=account, batch_id=batch_id)
    if reason:
        return f"The poller could not read this batch from {account.label}: {reason}"
    return (
        f"{account.label} has no batch {batch_id} in the dashboard's store (yet): the poller lists each "
        "account newest first and reads older history a page per cycle."
    )


def stored_or_404(account: Account, batch_id: str) -> selectors.StoredView:
    view = selectors.batch_row(account=account, batch_id=batch_id)
    if view is None:
        raise Http404(not_stored(account, batch_id))
    if view.gone_at is not None:
        raise Http404(
            f"{account.label} answers 404 for batch {batch_id} since {view.gone_at:%Y-%m-%d %H:%M:%S} UTC: "
            f"deleted upstream or not found. It was last seen {view.batch.status}."
        )
    return view


def row_context(
    request: HttpRequest,
    *,
    account_key: str,
    batch_id: str,
    view: selectors.StoredView | None,
    error: str = "",
    notice: str = "",
) -> dict:
    return {
        "row": view,
        "row_account": account_key,
        "row_batch_id": batch_id,
        "row_error": error,
        "notice": notice,
        **cancel_context(request, [account_key]),
        "poll_seconds": settings.ROW_POLL_SECONDS,
        "refresh_seconds": settings.POLL_SECONDS,
    }


def cancel_context(request: HttpRequest, account_keys: list[str]) -> dict:
    """Where the user may cancel among these accounts: the rows' Cancel buttons ask
    `cancel_accounts`; `cancel_scope` says it in one string, for a feed's cursor and cached rows."""
    user_access = access(request)
    operated = sorted(key for key in account_keys if user_access.may(Role.OPERATOR, key))
    return {"cancel_accounts": set(operated), "cancel_scope": ",".join(operated)}


def render_row(request: HttpRequest, context: dict) -> HttpResponse:
    view = context["row"]
    content = rows.row_html(view, context)
    if view is not None and view.is_final:
        # The swapped-in row has no trigger already; 286 also tells htmx to stop polling.
        return HttpResponseStopPolling(content)
    return HttpResponse(content)


@require_GET
def batch_list(request: HttpRequest) -> HttpResponse:
    accounts = visible_accounts(request)
    filters = list_filters(request, accounts=accounts)
    context = {
        **cancel_context(request, [account.key for account in accounts]),
        "poll_seconds": settings.ROW_POLL_SECONDS,
        "refresh_seconds": settings.POLL_SECONDS,
        "filter_query": filters.query(),
    }
    if live.is_feed(request):
        return list_feed(request, accounts=accounts, filters=filters, context=context)

    listing = selectors.list_batches(
        accounts=accounts,
        before=request.GET.get("before") or None,
        after=request.GET.get("after") or None,
        limit=settings.LIST_PAGE_SIZE,
        **filters.fields(),
    )
    badge = badge_context(request, live=True)
    top = listing.top if listing.newer is None else ""
    return render(
        request,
        "batches/list.html",
        {
            **context,
            "rows": listing.rows,
            "feed_cursor": list_cursor(
                rows=feed.watching(listing.rows),
                top=top,
                seen=feed.stored_up_to(top) if top else 0,
                cancel_scope=context["cancel_scope"],
                badge=badge,
            ),
            "badge": badge,
            "notices": selectors.account_notices(accounts=accounts, now=timezone.now()),
            "accounts": accounts,
            "has_access": access(request).has_any,
            "any_configured": bool(configured_accounts()),
            "access_contact": settings.ACCESS_CONTACT,
            "providers": providers.labels(),
            "status_choices": status_choices(),
            "selected": filters.query_params(),
            "next_url": f"?{filters.query(before=listing.older)}" if listing.older else "",
            "previous_url": f"?{filters.query(after=listing.newer)}" if listing.newer else "",
        },
    )


def list_cursor(*, rows: dict[int, str], top: str, cancel_scope: str, badge: dict, seen: int = 0) -> str:
    """The list's feed cursor; "" when there is nothing to watch (a later page whose rows all ended).
    `top`: where the first page's top is (selectors.newer_batches); `seen`: the store's newest key the
    feed has looked above the top for."""
    if not rows and not top:
        return ""
    return live.cursor(
        page="list", rows=rows, top=top, seen=seen, cancel_scope=cancel_scope, badge=badge_fingerprint(badge)
    )


def badge_fingerprint(badge: dict) -> list[int]:
    return [badge["counts"].open, badge["counts"].unacknowledged]


def list_feed(
    request: HttpRequest, *, accounts: list[Account], filters: selectors.ListFilters, context: dict
) -> HttpResponse:
    """The list's live answer (live.py): its watched rows that changed, out of band; the batches
    stored since above its first row (first page only, with the page's filters); the header badge
    if its counts moved; 204 when none of these. What it reads first: the watched rows' columns
    and one query for the store's newest key and the badge's counts."""
    parts = live.read_cursor(request)
    if parts is None or parts.get("page") != "list":
        return live.unreadable()
    cancel_scope = context["cancel_scope"]
    watched = live.watched_rows(parts)
    if parts.get("cancel_scope") != cancel_scope:
        watched = dict.fromkeys(watched, "")  # the Cancel button comes or goes on every row
    changes = feed.row_changes(accounts=accounts, watched=watched)
    marks = feed.store_marks(accounts=alarm_accounts(request))
    badge = badge_context(
        request,
        live=True,
        counts=alarm_selectors.OpenCounts(open=marks.open_alarms, unacknowledged=marks.unacknowledged_alarms),
    )
    top, seen = str(parts.get("top") or ""), parts.get("seen") or 0
    arrived = None
    if top and marks.newest > seen:
        arrived = selectors.newer_batches(
            accounts=accounts, newer_than=top, limit=settings.LIST_PAGE_SIZE, **filters.fields()
        )
        # A batch stored since that does not show here never will, unless its status or metadata
        # can still change into the filters': then it is looked for again next time.
        if not filters.status and not filters.search:
            seen = marks.newest
    badge_moved = parts.get("badge") != badge_fingerprint(badge)
    if not changes.changed and not (arrived and arrived.rows) and not badge_moved and seen == parts.get("seen"):
        return live.unchanged()

    def answer() -> HttpResponse:
        rows = dict(changes.watching)
        changed_rows = live.changed_rows_html(
            accounts=accounts, changed=changes.changed, context=context, watching=rows
        )
        rows.update(feed.watching(arrived.rows if arrived else []))
        return render(
            request,
            "batches/list.html#feed_answer",
            {
                **context,
                "feed_cursor": list_cursor(
                    rows=rows, top=arrived.top if arrived else top, cancel_scope=cancel_scope, badge=badge, seen=seen
                ),
                "arrived": arrived,
                "changed_rows": changed_rows,
                "badge": badge if badge_moved else None,
            },
        )

    if arrived and (arrived.rows or arrived.more):
        return answer()  # new rows: read whole, as they are now
    return live.shared_answer(
        request,
        answer,
        accounts=[account.key for account in accounts],
        context=[context[name] for name in ("cancel_scope", "poll_seconds", "refresh_seconds", "filter_query")],
        changed=[(row.pk, row.fingerprint, row.is_final) for row in changes.changed],
        top=arrived.top if arrived else top,
        seen=seen,
        badge=badge_fingerprint(badge) if badge_moved else None,
    )


@require_GET
def list_header(request: HttpRequest) -> HttpResponse:
    """The list page's header, loaded (and refreshed) by htmx: every account's numbers, whatever the
    filters, and for those who may cancel, "Cancel N batches…" for the filters' cancelable batches."""
    accounts = visible_accounts(request)
    filters = list_filters(request, accounts=accounts)
    operated = access(request).accounts(Role.OPERATOR, accounts)
    context = {
        "figures": header_figures.header_figures(accounts=accounts),
        "spent_today": spend_selectors.spent_today(
            account_keys=[account.key for account in accounts], today=timezone.now().astimezone(UTC).date()
        ),
        "can_cancel": bool(operated),
        "cancelable": bulk.count_cancelable(accounts=operated, filters=filters) if operated else 0,
        "filter_query": filters.query(),
        "filtered": bool(filters),
        "selected_account": filters.account_key,
        "max_batches": bulk.MAX_BATCHES,
    }
    return render(request, "batches/_header_figures.html", context)


@require_GET
def batch_row(request: HttpRequest, account_key: str, batch_id: str) -> HttpResponse:
    account = account_or_404(request, account_key, batch_id)
    view = selectors.batch_row(account=account, batch_id=batch_id)
    error = ""
    if view is None:
        reason = selectors.unreadable_reason(account=account, batch_id=batch_id)
        error = f"the poller could not read this batch: {reason}" if reason else "not in the dashboard's store yet"
        error += "; still watching"
    return render_row(request, row_context(request, account_key=account_key, batch_id=batch_id, view=view, error=error))


@require_POST
def batch_cancel(request: HttpRequest, account_key: str, batch_id: str) -> HttpResponse:
    account = account_or_404(request, account_key, batch_id)
    if not services.may_cancel(request.user, account_key=account.key):
        services.record_refused_cancel(
            account_key=account.key, batch_id=batch_id, actor=request.user.get_username(), user=request.user
        )
        if request.htmx:  # the row says why (dashboard.js shows a refusal's text in the row)
            return HttpResponse(
                ROLE_REFUSALS[Role.OPERATOR] + "\n", status=403, content_type="text/plain; charset=utf-8"
            )
        require_role(request, account, Role.OPERATOR)
    result = services.cancel_batch(
        account=account, batch_id=batch_id, actor=request.user.get_username(), user=request.user
    )
    if not request.htmx:
        level = messages.SUCCESS if result.outcome == "accepted" else messages.WARNING
        messages.add_message(request, level, f"{batch_id}: {result.message}")
        return redirect("batch-list")
    view = selectors.batch_row(account=account, batch_id=batch_id)
    return render_row(
        request,
        row_context(
            request,
            account_key=account_key,
            batch_id=batch_id,
            view=view,
            error="" if view else result.message,
            notice=result.message,
        ),
    )


def line_sources(account: Account) -> tuple[str, ...]:
    """The result sources a line of this account's batches may name (none if its lines do not say)."""
    module = providers.module(account.provider)
    return module.RESULT_SOURCES if module.LINES_NAME_SOURCE else ()


def result_filters(request: HttpRequest, account: Account) -> dict:
    kind = request.GET.get("type", "")
    source = request.GET.get("source", "")
    return {
        "kind": kind if kind in (*RESULT_TYPES, "invalid") else "",
        "source": source if source in line_sources(account) else "",
        "custom_id": request.GET.get("q", "").strip()[:64],
    }


@require_GET
def batch_detail(request: HttpRequest, account_key: str, batch_id: str) -> HttpResponse:
    account = account_or_404(request, account_key, batch_id)
    if live.is_feed(request):
        return detail_feed(request, account=account, batch_id=batch_id)
    view = stored_or_404(account, batch_id)
    batch = view.batch
    attempts = services.cancel_attempts(account_key=account.key, batch_id=batch_id)
    context = {
        **row_context(request, account_key=account_key, batch_id=batch_id, view=view),
        "account": account,
        "attempts": attempts,
        "history": selectors.changes(account_key=account.key, batch_id=batch_id),
        "filters": result_filters(request, account),
        "line_sources": line_sources(account),
        "results": None,
        "results_error": "",
        "raw_json": json.dumps(batch.raw, indent=2, sort_keys=True),
        "story": services.cancel_story(batch=batch, attempts=attempts),
        "sources": provider_sources(account, batch),
        "results_elsewhere": provider_for(account).results_elsewhere(batch),
        **progress_context(account, view),
        **alarm_views.batch_alarms_context(request, account_key=account.key, batch_id=batch_id),
        "next": request.get_full_path(),
        "badge": badge_context(request, live=True),
        "live_feed": True,
        "may_read_results": access(request).may(Role.RESULTS, account.key),
        "batch_spend": spend_selectors.batch_spend(stored_batch_pk=view.pk, provider=account.provider),
    }
    context["feed_cursor"] = detail_cursor(
        account=account,
        batch_id=batch_id,
        rows=feed.watching([view]),
        cancel_scope=context["cancel_scope"],
        alarms=alarm_views.batch_alarms_fingerprint(account_key=account.key, batch_id=batch_id),
        badge=context["badge"],
    )
    if batch.is_ended and not context["results_elsewhere"] and context["may_read_results"]:
        try:
            offset = min(MAX_RESULT_OFFSET, max(0, int(request.GET.get("offset", "0")[:20])))
        except ValueError:
            offset = 0
        filters = context["filters"]
        try:
            context["results"] = services.results_page(
                account=account, batch=batch, offset=offset, size=RESULT_PAGE_SIZE, **filters
            )
        except ProviderError as failure:
            context["results_error"] = failure.message
        query = {
            k: v
            for k, v in (("type", filters["kind"]), ("source", filters["source"]), ("q", filters["custom_id"]))
            if v
        }
        context["filter_query"] = urlencode(query)
        context["previous_query"] = urlencode({**query, "offset": max(0, offset - RESULT_PAGE_SIZE)})
        context["next_query"] = urlencode({**query, "offset": offset + RESULT_PAGE_SIZE})
        context["page_size"] = RESULT_PAGE_SIZE
    if request.htmx and request.htmx.target == "results":
        return render(request, "batches/detail.html#results", context)
    return render(request, "batches/detail.html", context)


def detail_cursor(
    *, account: Account, batch_id: str, rows: dict[int, str], cancel_scope: str, alarms: str, badge: dict
) -> str:
    return live.cursor(
        page=f"detail:{account.key}/{batch_id}",
        rows=rows,
        cancel_scope=cancel_scope,
        alarms=alarms,
        badge=badge_fingerprint(badge),
    )


def detail_feed(request: HttpRequest, *, account: Account, batch_id: str) -> HttpResponse:
    """A batch's detail page's live answer (live.py): its row while it has not ended, its alarms and
    the header badge, each out of band when it changed; 204 when none did."""
    parts = live.read_cursor(request)
    if parts is None or parts.get("page") != f"detail:{account.key}/{batch_id}":
        return live.unreadable()
    cancel_scope = cancel_context(request, [account.key])["cancel_scope"]
    watched = live.watched_rows(parts)
    if parts.get("cancel_scope") != cancel_scope:
        watched = dict.fromkeys(watched, "")
    changes = feed.row_changes(accounts=[account], watched=watched)
    alarms = alarm_views.batch_alarms_fingerprint(account_key=account.key, batch_id=batch_id)
    marks = feed.store_marks(accounts=alarm_accounts(request))
    badge = badge_context(
        request,
        live=True,
        counts=alarm_selectors.OpenCounts(open=marks.open_alarms, unacknowledged=marks.unacknowledged_alarms),
    )
    alarms_moved = parts.get("alarms") != alarms
    badge_moved = parts.get("badge") != badge_fingerprint(badge)
    if not changes.changed and not alarms_moved and not badge_moved:
        return live.unchanged()
    context = row_context(request, account_key=account.key, batch_id=batch_id, view=None)
    rows = dict(changes.watching)
    context.update(
        {
            "changed_rows": live.changed_rows_html(
                accounts=[account], changed=changes.changed, context=context, watching=rows
            ),
            "badge": badge if badge_moved else None,
            "live_feed": True,
            "feed_cursor": detail_cursor(
                account=account, batch_id=batch_id, rows=rows, cancel_scope=cancel_scope, alarms=alarms, badge=badge
            ),
        }
    )
    if alarms_moved:
        context["batch_alarms_changed"] = True
        context.update(alarm_views.batch_alarms_context(request, account_key=account.key, batch_id=batch_id))
        context["next"] = request.htmx.current_url_abs_path or ""
    return render(request, "_live_answer.html", context)


def progress_context(account: Account, view: selectors.StoredView) -> dict:
    """The detail page's progress: the chart of its history, the estimate of what is left and its
    expiry. Two queries for the history (its count and its sampled changes); for a batch whose
    outcomes come only at its end, one more for how long the account's ended batches took."""
    batch, now = view.batch, timezone.now()
    as_of = min(now, view.fetched_at)
    points, stored = charts.history_points(account_key=account.key, batch_id=batch.id)
    final_only = batch.progress_is_unseen and not batch.is_ended
    run_times = eta.run_times_for(account_key=account.key, provider=batch.provider) if final_only else []
    return {
        "chart": charts.chart(
            points,
            start=batch.created_at,
            end=view.fetched_at,
            stored=stored,
            final_only=batch.progress_is_unseen,
            ended=batch.is_ended,
            markers=((batch.cancel_initiated_at, "cancel requested"), (batch.ended_at, "ended")),
        ),
        "estimate": eta.estimate(batch, points=points, run_times=run_times, as_of=as_of, now=now),
        "expiry": "" if view.is_final else eta.expiry(batch.expires_at, now),
    }


def provider_sources(account: Account, batch) -> list[str]:
    return provider_for(account).result_sources(batch)


def ended_batch_or_404(account: Account, batch_id: str):
    view = stored_or_404(account, batch_id)
    if not view.batch.is_ended:
        raise Http404("Results exist only once the batch has ended.")
    return view.batch


@require_GET
def batch_results_summary(request: HttpRequest, account_key: str, batch_id: str) -> HttpResponse:
    account = account_or_404(request, account_key, batch_id)
    require_role(request, account, Role.RESULTS)
    view = stored_or_404(account, batch_id)
    if not view.batch.is_ended:
        raise Http404("Results exist only once the batch has ended.")
    context = {"summary": None, "summary_error": ""}
    try:
        context["summary"] = services.error_summary(account=account, batch=view.batch)
    except ProviderError as failure:
        context["summary_error"] = failure.message
    else:
        # The pass that counted the errors counted the tokens too: the page's tokens and cost, drawn
        # before it, are swapped for what it found.
        context.update(
            batch=view.batch,
            batch_spend=spend_selectors.batch_spend(stored_batch_pk=view.pk, provider=account.provider),
            spend_out_of_band=True,
        )
    return render(request, "batches/detail.html#summary", context)


@require_GET
def batch_results_download(request: HttpRequest, account_key: str, batch_id: str) -> HttpResponse:
    account = account_or_404(request, account_key, batch_id)
    require_role(request, account, Role.RESULTS)
    source = request.GET.get("source", providers.module(account.provider).DEFAULT_RESULT_SOURCE)
    try:
        batch = ended_batch_or_404(account, batch_id)
        if source not in provider_sources(account, batch):
            raise Http404("This batch has no such results file.")
        body = services.open_download(account=account, batch=batch, source=source)
    except ProviderError as failure:
        return HttpResponse(
            f"Could not download the results: {failure.message}\n", status=502, content_type="text/plain; charset=utf-8"
        )
    response = StreamingHttpResponse(body, content_type="application/x-jsonl")
    # The bytes are upstream's as they came: their encoding (a gzip the browser undoes) and length go with them.
    if body.encoding:
        response["Content-Encoding"] = body.encoding
    if body.length is not None:
        response["Content-Length"] = str(body.length)
    suffix = "" if source == "results" else f"_{source}"
    response["Content-Disposition"] = f'attachment; filename="{batch_id}{suffix}.jsonl"'
    return response


EXPORT_CHUNK_CHARACTERS = 64 * 1024  # the CSV export is sent in chunks of whole rows of about this size


def _drained(buffer: io.StringIO) -> bytes:
    """What `buffer` holds, as UTF-8 (result lines' text is made safe to encode), and `buffer` emptied."""
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode()


@require_GET
def batch_results_export(request: HttpRequest, account_key: str, batch_id: str) -> HttpResponse:
    account = account_or_404(request, account_key, batch_id)
    require_role(request, account, Role.RESULTS)
    filters = result_filters(request, account)
    try:
        batch = ended_batch_or_404(account, batch_id)
        lines = services.iter_results(account=account, batch=batch)
        # Open the upstream stream now: a failure is a 502, not a CSV cut short after its header row.
        first = next(lines, None)
    except ProviderError as failure:
        return HttpResponse(
            f"Could not export the results: {failure.message}\n", status=502, content_type="text/plain; charset=utf-8"
        )
    selected = (lambda line: matches(line, **filters)) if any(filters.values()) else None

    def rows():
        # Rows are written to a buffer and sent ~64 KiB at a time, each chunk whole rows: a chunk
        # per row made a 100,000-line export 100,001 writes to the client.
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        read = 0
        try:
            for line in chain([] if first is None else [first], lines):
                read = line.number
                if selected is None or selected(line):
                    writer.writerow(csv_row(line))
                    if buffer.tell() >= EXPORT_CHUNK_CHARACTERS:
                        yield _drained(buffer)
        except Exception as error:
            # The header has gone out with HTTP 200: the file itself must say it is incomplete.
            message = error.message if isinstance(error, ProviderError) else f"an unexpected {type(error).__name__}"
            logger.warning("CSV export of %s/%s stopped after line %d: %s", account.key, batch_id, read, message)
            writer.writerow(
                ["ERROR", f"The export stopped after result line {read}: {message}. This file is incomplete."]
            )
        yield _drained(buffer)

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{batch_id}_results.csv"'
    return response


@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    """Cancel attempts on the accounts the user may see (every attempt, for a superuser)."""
    attempts = CancelAttempt.objects.select_related("user")
    if not access(request).everything:
        attempts = attempts.filter(account__in=[account.key for account in visible_accounts(request)])
    batch_id = request.GET.get("batch", "").strip()
    if batch_id:
        attempts = attempts.filter(batch_id=batch_id)
    page = Paginator(attempts, 50).get_page(request.GET.get("page"))
    return render(request, "audit.html", {"page": page, "batch_filter": batch_id})
