"""The spend page (/spend/): estimated spend of the accounts one may see, per account, model and day, over
the last 30 days or a chosen range, with a chart and a CSV export. Read from the store, priced at read time."""

from __future__ import annotations

import csv
import datetime as dt
import io

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from ..batches.results import safe_cell
from ..spend import charts
from ..spend.prices import KINDS
from ..spend.selectors import SpendReport, spend_report
from .common import visible_accounts

DEFAULT_DAYS = 30
MAX_DAYS = 366
CSV_HEADER = [
    "day",
    "account",
    "provider",
    "model",
    *KINDS,
    "batches",
    "running",
    "estimated_cost_usd",
    "priced",
    "price_as_of",
]


def chosen_range(request: HttpRequest, today: dt.date) -> tuple[dt.date, dt.date, str]:
    """The range asked for (`start`, `end`: ISO days, both included), else the last 30 days; and what was
    wrong with the one asked for, if anything."""
    default = (today - dt.timedelta(days=DEFAULT_DAYS - 1), today)
    start_text, end_text = request.GET.get("start", "").strip(), request.GET.get("end", "").strip()
    if not start_text and not end_text:
        return (*default, "")
    try:
        start = dt.date.fromisoformat(start_text[:10]) if start_text else default[0]
        end = dt.date.fromisoformat(end_text[:10]) if end_text else today
    except ValueError:
        return (*default, "Dates are written YYYY-MM-DD: showing the last 30 days.")
    end = min(end, today)  # nothing is spent in the future
    if end < start:
        return (*default, "The range ends before it starts, or starts after today: showing the last 30 days.")
    if (end - start).days + 1 > MAX_DAYS:
        return (
            end - dt.timedelta(days=MAX_DAYS - 1),
            end,
            f"A range is at most {MAX_DAYS} days: showing the last {MAX_DAYS} up to its end.",
        )
    return start, end, ""


@require_GET
def spend_page(request: HttpRequest) -> HttpResponse:
    today = timezone.now().astimezone(dt.UTC).date()
    start, end, range_error = chosen_range(request, today)
    accounts = visible_accounts(request)
    labels = {account.key: account.label for account in accounts}
    report = spend_report(account_keys=list(labels), start=start, end=end, today=today)
    if request.GET.get("format") == "csv":
        return spend_csv(report)
    by_day = report.by_day()
    return render(
        request,
        "spend/spend.html",
        {
            "report": report,
            "start": start,
            "end": end,
            "today": today,
            "range_error": range_error,
            "by_account": [(labels.get(total.key, total.key), total) for total in report.by_account()],
            "by_model": report.by_model(),
            "by_day": list(reversed(by_day)),
            "chart": charts.daily_bars([(dt.date.fromisoformat(total.key), total.cost) for total in by_day]),
            "csv_query": f"start={start.isoformat()}&end={end.isoformat()}&format=csv",
            "has_accounts": bool(accounts),
        },
    )


def spend_csv(report: SpendReport) -> HttpResponse:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    for group in report.groups:
        estimate = group.estimate
        writer.writerow(
            [
                group.day.isoformat(),
                safe_cell(group.account),
                safe_cell(group.provider),
                safe_cell(group.model),
                *(str(group.tokens[kind]) for kind in KINDS),
                str(group.batches),
                "yes" if group.running else "no",
                format(estimate.total.normalize(), "f") if estimate else "",
                "all" if group.priced_fully else ("partly" if estimate else "no"),
                estimate.entry.as_of.isoformat() if estimate else "",
            ]
        )
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="spend_{report.start}_{report.end}.csv"'
    return response
