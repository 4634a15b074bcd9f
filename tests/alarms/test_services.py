"""Acknowledging an alarm (dashboard/alarms/services.py); the first acknowledgement stands
(tests/web/test_alarm_views.py: two people at once, and the refusals' words on the pages)."""

from __future__ import annotations

from datetime import timedelta

from dashboard.alarms import services
from tests.alarms.store_rows import T0, evaluate, openai_row


def test_acknowledging_keeps_the_alarm_open_and_records_who_when_and_a_redacted_note(db, operator, monkeypatch):
    key = "sk-ant-api03-ALARMnoteKEY0123456789abcdef"
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    openai_row(1, created=T0, at=T0 + timedelta(minutes=30))
    alarm = evaluate(T0 + timedelta(minutes=30)).opened[0]
    services.acknowledge(
        alarm=alarm, user=operator, note=f"  looking into it, key {key}  ", now=T0 + timedelta(minutes=31)
    )
    alarm.refresh_from_db()
    assert alarm.acknowledged_by == operator and alarm.acknowledged_at == T0 + timedelta(minutes=31)
    assert alarm.acknowledge_note == "looking into it, key [redacted]"
    assert alarm.is_open
    assert evaluate(T0 + timedelta(minutes=32)).still_open == 1
    alarm.refresh_from_db()
    assert alarm.is_open and alarm.acknowledged_by == operator, "an evaluation keeps the acknowledgement"
