"""What a channel is told of an alarm change: the payload stored with each delivery (no secret in it:
the alarm's detail is redacted once more as it is written), and what each kind of channel sends of
it: Slack's text, the webhook's JSON body, an email's subject and text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from django.conf import settings
from django.urls import NoReverseMatch, reverse

from ..alarms.rules import ALL_ACCOUNTS
from ..models import Alarm, AlarmRule
from ..redaction import redact


def utc_iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


SPEND_RULES = {
    AlarmRule.BUDGET_DAY_NEAR,
    AlarmRule.BUDGET_DAY_OVER,
    AlarmRule.BUDGET_MONTH_NEAR,
    AlarmRule.BUDGET_MONTH_OVER,
}


def _link(account: str, batch_id: str | None, rule: str = "") -> str | None:
    """The alarm's page in the dashboard (its batch's, the list for an account's, the spend page for a
    budget's), if DASHBOARD_URL is set."""
    base = settings.DASHBOARD_URL.rstrip("/")
    if not base:
        return None
    if rule in SPEND_RULES:
        return base + reverse("spend")
    try:
        if batch_id is None:
            return base + reverse("batch-list")
        return base + reverse("batch-detail", kwargs={"account_key": account, "batch_id": batch_id})
    except NoReverseMatch:  # an upstream id the URL cannot hold (a slash): the list, then
        return base + reverse("batch-list")


def payload_for(alarm: Alarm, event: str, *, batch_id: str | None, secrets: Sequence[str]) -> dict:
    """What a channel is told of one alarm change, stored with the delivery: no secret, the detail
    (upstream's words among ours) redacted once more."""
    return {
        "event": event,
        "alarm": {
            "id": alarm.pk,
            "rule": alarm.rule,
            "rule_label": AlarmRule(alarm.rule).label,
            "account": alarm.account,
            "batch_id": batch_id,
            "detail": redact(alarm.detail, list(secrets)),
            "opened_at": utc_iso(alarm.opened_at),
            "resolved_at": utc_iso(alarm.resolved_at),
            "url": _link(alarm.account, batch_id, alarm.rule),
        },
    }


SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _slack(text: str | None) -> str:
    """Untrusted text made inert in Slack's mrkdwn: no <!channel> mention, no <url|link> of upstream's."""
    return (text or "").translate(SLACK_ESCAPES)


def _headline(alarm: dict, event: str) -> str:
    account = "all accounts" if alarm["account"] == ALL_ACCOUNTS else alarm["account"]
    subject = account + (f", batch {alarm['batch_id']}" if alarm.get("batch_id") else "")
    return f"Alarm {event}: {alarm['rule_label']} — {subject}"


def slack_body(payload: dict) -> dict:
    alarm, event = payload["alarm"], payload["event"]
    lines = [f"*{_slack(_headline(alarm, event))}*"]
    if alarm.get("detail"):
        lines.append(_slack(alarm["detail"]))
    if alarm.get("url"):
        lines.append(f"<{_slack(alarm['url'])}|Open in the dashboard>")
    return {"text": "\n".join(lines)}


def webhook_body(payload: dict, now: datetime) -> bytes:
    body = {"event": payload["event"], "alarm": payload["alarm"], "sent_at": utc_iso(now)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def email_message(payload: dict) -> tuple[str, str]:
    """Subject (one line: no header can be injected) and plain-text body."""
    alarm, event = payload["alarm"], payload["event"]
    subject = re.sub(r"[\r\n\t]+", " ", f"[batch dashboard] {_headline(alarm, event)}")[:200]
    lines = [
        _headline(alarm, event),
        "",
        f"Rule:     {alarm['rule_label']}",
        f"Account:  {alarm['account']}",
        f"Batch:    {alarm.get('batch_id') or '(the account)'}",
        f"Opened:   {alarm.get('opened_at')}",
    ]
    if alarm.get("resolved_at"):
        lines.append(f"Resolved: {alarm['resolved_at']}")
    if alarm.get("detail"):
        lines += ["", alarm["detail"]]
    if alarm.get("url"):
        lines += ["", alarm["url"]]
    return subject, "\n".join(lines) + "\n"
