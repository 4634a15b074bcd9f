"""Alarms (dashboard/alarms/rules.py): every rule with a fake clock, their life in the store (open once,
stay open, resolve, open anew), one evaluator at a time, and an end-to-end run on the embedded
simulator, whose batches can be stalled (dashboard/simulator/stall.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from dashboard.alarms import rules
from dashboard.batches import poller, store
from dashboard.models import AccountState, Alarm, AlarmThreshold, StoredBatch
from dashboard.models import AlarmRule as Rule
from tests.factories import anthropic_batch, openai_batch, release, stall, time_passes

# --- the simulator's stall, over the providers' APIs --------------------------------------------


def test_a_stalled_openai_batch_keeps_its_counts_until_released_then_resumes_where_it_stopped(openai_sdk):
    client = openai_sdk()
    batch = openai_batch(openai_sdk, count=100, seconds=1000)
    time_passes(batch.id, seconds=3 + 200)  # validated, then 200 s of 1,000
    stall(batch.id)
    stopped = client.batches.retrieve(batch.id).request_counts
    assert 19 <= stopped.completed + stopped.failed <= 21
    time_passes(batch.id, hours=2)
    still = client.batches.retrieve(batch.id)
    assert still.status == "in_progress" and still.request_counts == stopped
    release(batch.id)
    assert client.batches.retrieve(batch.id).request_counts == stopped, "no jump at the release"
    time_passes(batch.id, seconds=100)
    resumed = client.batches.retrieve(batch.id).request_counts
    assert resumed.completed + resumed.failed == stopped.completed + stopped.failed + 10


def test_a_stalled_anthropic_batch_stays_in_progress_past_its_end_until_released(anthropic_sdk):
    client = anthropic_sdk()
    batch = anthropic_batch(anthropic_sdk, count=3, seconds=60)
    stall(batch.id)
    time_passes(batch.id, minutes=10)
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    release(batch.id)
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    time_passes(batch.id, seconds=61)
    assert client.messages.batches.retrieve(batch.id).processing_status == "ended"


def test_the_stall_command_stalls_and_releases_and_says_so(openai_sdk, capsys):
    batch = openai_batch(openai_sdk, count=2, seconds=600)
    call_command("simulator_stall", batch.id)
    call_command("simulator_stall", batch.id)
    call_command("simulator_stall", batch.id, "--release")
    call_command("simulator_stall", batch.id, "--release")
    assert capsys.readouterr().out.splitlines() == [
        f"{batch.id}: stalled until released.",
        f"{batch.id} is already stalled.",
        f"{batch.id}: released.",
        f"{batch.id} was not stalled.",
    ]
    with pytest.raises(CommandError, match="No simulated batch"):
        call_command("simulator_stall", "batch_nope")


def test_the_admin_stalls_and_releases_the_selected_batches(openai_sdk, admin_client):
    from dashboard.simulator.models import SimBatch

    batch = openai_batch(openai_sdk, count=2, seconds=600)
    pk = SimBatch.objects.get(public_id=batch.id).pk
    url = "/admin/simulator/simbatch/"
    admin_client.post(url, {"action": "stall_batches", "_selected_action": [pk]})
    assert SimBatch.objects.get(pk=pk).stalled_at is not None
    admin_client.post(url, {"action": "release_batches", "_selected_action": [pk]})
    assert SimBatch.objects.get(pk=pk).stalled_at is None


# --- the rules, pure: a snapshot and a fake clock in, what holds out -----------------------------

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=30)  # "read after every instant below": rules judge as of the last read
LIMITS = rules.Limits(
    stuck_minutes=30,
    stuck_min_history=20,
    expiring_hours=2,
    error_rate_percent=10,
    error_rate_min_outcomes=50,
    ended_badly_percent=10,
    ended_badly_hours=24,
    account_failing_minutes=10,
)
S = timedelta(seconds=1)


def facts(**changes) -> rules.BatchFacts:
    """A running batch of 1,000 requests created at T0, last changed at T0."""
    values = dict(
        pk=1,
        account="openai-ops",
        batch_id="batch_1",
        status="in_progress",
        is_ended=False,
        total=1000,
        processing=1000,
        succeeded=0,
        errored=0,
        canceled=0,
        expired=0,
        created_at=T0,
        expires_at=T0 + timedelta(hours=24),
        ended_at=None,
        last_changed_at=T0,
        last_fetched_at=LATER,
    )
    return rules.BatchFacts(**{**values, **changes})


def ended(**changes) -> rules.BatchFacts:
    """A batch of 1,000 requests that completed at T0 + 1 h: 950 succeeded, 50 errored."""
    values = dict(
        status="completed", is_ended=True, processing=0, succeeded=950, errored=50, ended_at=T0 + timedelta(hours=1)
    )
    return facts(**{**values, **changes})


def test_stuck_after_exactly_the_minutes_without_a_change():
    batch = facts(last_changed_at=T0 + timedelta(minutes=5))
    assert rules.stuck(batch, LIMITS, (), T0 + timedelta(minutes=35) - S) is None
    detail = rules.stuck(batch, LIMITS, (), T0 + timedelta(minutes=35))
    assert detail == "No change in status or counts since 2026-11-25 12:05 UTC (alarm after 30 min without one)."


def test_stuck_is_not_for_ended_batches_and_a_change_resets_it():
    assert rules.stuck(ended(last_changed_at=T0), LIMITS, (), T0 + timedelta(hours=5)) is None
    changed = facts(last_changed_at=T0 + timedelta(hours=5) - timedelta(minutes=29))
    assert rules.stuck(changed, LIMITS, (), T0 + timedelta(hours=5)) is None


def test_stuck_is_judged_as_of_the_last_read_so_failing_polls_do_not_make_batches_stuck():
    batch = facts(last_fetched_at=T0 + timedelta(minutes=10))
    assert rules.stuck(batch, LIMITS, (), T0 + timedelta(hours=3)) is None
    assert rules.stuck(facts(last_fetched_at=T0 + timedelta(minutes=30)), LIMITS, (), T0 + timedelta(hours=3))


def test_percentile_is_the_nearest_rank():
    assert rules.percentile(range(1, 21)) == 19
    assert rules.percentile(range(1, 101)) == 95
    assert rules.percentile([7.0]) == 7.0
    assert rules.percentile([5, 1, 3]) == 5
    with pytest.raises(ValueError):
        rules.percentile([])


def history(count: int, *, size: int = 1000, minutes: float = 10) -> list[tuple[int, float]]:
    """`count` ended batches of `size` requests that took 1..count x `minutes`/count (the slowest: `minutes`)."""
    return [(size, minutes * 60 * (i + 1) / count) for i in range(count)]


def test_final_only_batches_are_stuck_past_the_95th_percentile_of_similar_ended_batches():
    batch = facts(final_only=True)
    past = history(20, size=800, minutes=20)  # 60 s .. 1,200 s; the 95th percentile: 1,140 s (19 min)
    assert rules.usual_duration(1000, past, 20) == (1140.0, "its last 20 ended batches of 500 to 2,000 requests")
    assert rules.stuck(batch, LIMITS, past, T0 + timedelta(seconds=1140)) is None
    detail = rules.stuck(batch, LIMITS, past, T0 + timedelta(seconds=1140) + S)
    assert detail == (
        "Running since 2026-11-25 12:00 UTC: longer than 95% of its last 20 ended batches of 500 to 2,000 "
        "requests took (19 min)."
    )


def test_final_only_batches_use_every_ended_batch_when_too_few_are_of_a_similar_size():
    batch = facts(final_only=True, total=10, processing=10)
    past = history(15, size=1000, minutes=60) + history(5, size=10, minutes=2)
    seconds, which = rules.usual_duration(10, past, 20)
    assert which == "its last 20 ended batches"
    assert seconds == rules.percentile(s for _, s in past)
    assert rules.stuck(batch, LIMITS, past, T0 + timedelta(seconds=seconds)) is None
    assert rules.stuck(batch, LIMITS, past, T0 + timedelta(seconds=seconds + 1))


def test_final_only_batches_fall_back_to_the_fixed_minutes_with_too_little_history():
    batch = facts(final_only=True)
    past = history(19, minutes=1)
    assert rules.usual_duration(1000, past, 20) is None
    assert rules.stuck(batch, LIMITS, past, T0 + timedelta(minutes=30) - S) is None
    assert "No change in status or counts" in rules.stuck(batch, LIMITS, past, T0 + timedelta(minutes=30))


def test_final_only_batches_with_history_are_not_stuck_for_counts_that_never_move():
    batch = facts(final_only=True)
    past = history(20, minutes=120)
    assert rules.stuck(batch, LIMITS, past, T0 + timedelta(minutes=90)) is None


def test_expiring_when_less_than_the_hours_are_left_with_requests_unfinished():
    batch = facts()  # expires at T0 + 24 h
    assert rules.expiring(batch, LIMITS, T0 + timedelta(hours=22)) is None
    detail = rules.expiring(batch, LIMITS, T0 + timedelta(hours=22) + S)
    assert detail == "Requests unfinished and it expires at 2026-11-26 12:00 UTC (alarm from 2 h before)."
    late = rules.expiring(batch, LIMITS, T0 + timedelta(hours=25))
    assert late == "Its window ended at 2026-11-26 12:00 UTC with requests unfinished; its end is not seen yet."


def test_expiring_needs_unfinished_requests_and_an_expiry():
    soon = T0 + timedelta(hours=23)
    assert rules.expiring(facts(status="finalizing", processing=0, succeeded=1000), LIMITS, soon) is None
    assert rules.expiring(facts(status="validating", total=0, processing=0), LIMITS, soon), "no counts yet"
    assert rules.expiring(ended(), LIMITS, soon) is None
    assert rules.expiring(facts(expires_at=None), LIMITS, soon) is None


def test_error_rate_above_the_percent_once_enough_requests_have_an_outcome():
    now = T0 + timedelta(minutes=5)
    assert rules.error_rate(facts(succeeded=0, errored=49, processing=951), LIMITS, now) is None, "49 < 50"
    assert rules.error_rate(facts(succeeded=45, errored=5, processing=950), LIMITS, now) is None, "10% is not above"
    detail = rules.error_rate(facts(succeeded=44, errored=6, processing=950), LIMITS, now)
    assert detail == "6 of the 50 requests with an outcome errored (12.0%; alarm above 10% once 50 have one)."
    assert rules.error_rate(facts(succeeded=900, errored=101, processing=0), LIMITS, now)


def test_error_rate_is_for_running_batches_and_not_for_counts_that_come_at_the_end():
    now = T0 + timedelta(minutes=5)
    assert rules.error_rate(ended(succeeded=500, errored=500), LIMITS, now) is None
    assert rules.error_rate(facts(final_only=True), LIMITS, now) is None
    lenient = replace(LIMITS, error_rate_min_outcomes=0)
    assert rules.error_rate(facts(), lenient, now) is None, "nothing ran: no rate"


def test_ended_badly_failed_expired_or_too_many_errors():
    now = T0 + timedelta(hours=2)
    assert rules.ended_badly(ended(), LIMITS, now) is None, "5% errored"
    assert rules.ended_badly(ended(succeeded=900, errored=100), LIMITS, now) is None, "10% is not above"
    assert rules.ended_badly(ended(succeeded=899, errored=101), LIMITS, now) == (
        "101 of the 1,000 requests with an outcome errored (10.1%; alarm above 10%) (ended 2026-11-25 13:00 UTC)."
    )
    failed = ended(status="failed", total=0, succeeded=0, errored=0, failed_status=True)
    assert rules.ended_badly(failed, LIMITS, now) == "It ended failed (ended 2026-11-25 13:00 UTC)."
    expired = ended(status="expired", succeeded=300, errored=0, expired=700, failed_status=True)
    assert rules.ended_badly(expired, LIMITS, now) == (
        "It ended expired; 700 of 1,000 requests expired before they ran (ended 2026-11-25 13:00 UTC)."
    )
    anthropic_expired = ended(status="ended", succeeded=990, errored=0, expired=10)
    assert rules.ended_badly(anthropic_expired, LIMITS, now).startswith("10 of 1,000 requests expired")
    cancelled = ended(status="cancelled", succeeded=100, errored=5, canceled=895)
    assert rules.ended_badly(cancelled, LIMITS, now) is None
    assert rules.ended_badly(facts(errored=500, succeeded=0), LIMITS, now) is None, "not ended"


def test_ended_badly_holds_for_the_hours_after_the_end_then_resolves():
    batch = ended(status="failed", failed_status=True)
    assert rules.ended_badly(batch, LIMITS, T0 + timedelta(hours=25) - S)
    assert rules.ended_badly(batch, LIMITS, T0 + timedelta(hours=25)) is None
    unknown_end = ended(status="failed", failed_status=True, ended_at=None, last_changed_at=T0)
    assert rules.ended_badly(unknown_end, LIMITS, T0 + timedelta(hours=24) - S), "seen ended at its last change"
    assert rules.ended_badly(unknown_end, LIMITS, T0 + timedelta(hours=24)) is None


def test_account_failing_after_the_minutes_without_a_success():
    account = rules.AccountFacts(
        "anthropic-ops", consecutive_failures=4, last_success_at=T0, last_error="500 from Anthropic"
    )
    assert rules.account_failing(account, LIMITS, T0 + timedelta(minutes=10) - S) is None
    assert rules.account_failing(account, LIMITS, T0 + timedelta(minutes=10)) == (
        "Polls have failed since the last success at 2026-11-25 12:00 UTC. The last error: 500 from Anthropic"
    )
    healthy = rules.AccountFacts("anthropic-ops", consecutive_failures=0, last_success_at=T0)
    assert rules.account_failing(healthy, LIMITS, T0 + timedelta(hours=5)) is None


def test_an_account_never_polled_successfully_is_failing_at_once():
    account = rules.AccountFacts("anthropic-ops", consecutive_failures=1, last_error="401")
    assert rules.account_failing(account, LIMITS, T0) == "Polls fail and none has succeeded yet. The last error: 401"


def test_overrides_replace_one_account_s_thresholds_and_can_switch_a_rule_off():
    overrides = [
        AlarmThreshold(account="openai-ops", rule=Rule.STUCK, value=5),
        AlarmThreshold(account="openai-ops", rule=Rule.ERROR_RATE, value=2.5, min_outcomes=10),
        AlarmThreshold(account="openai-ops", rule=Rule.EXPIRING, enabled=False),
    ]
    mine = rules.account_limits(LIMITS, overrides)["openai-ops"]
    assert (mine.stuck_minutes, mine.error_rate_percent, mine.error_rate_min_outcomes) == (5, 2.5, 10)
    assert mine.expiring_hours == 2 and not mine.on(Rule.EXPIRING) and mine.on(Rule.STUCK)
    snapshot = rules.Snapshot(
        batches=[facts(pk=1, account="openai-ops"), facts(pk=2, account="openai-research")],
        limits={"openai-ops": mine},
        defaults=LIMITS,
    )
    assert set(rules.conditions(snapshot, T0 + timedelta(minutes=6))) == {("stuck", "openai-ops", 1)}
    late = set(rules.conditions(snapshot, T0 + timedelta(hours=23)))
    assert late == {("stuck", "openai-ops", 1), ("stuck", "openai-research", 2), ("expiring", "openai-research", 2)}


def test_conditions_gathers_every_rule_of_every_subject():
    snapshot = rules.Snapshot(
        batches=[
            facts(pk=1, succeeded=10, errored=90, processing=900, last_changed_at=T0 + timedelta(hours=23)),
            ended(pk=2, status="failed", failed_status=True, ended_at=T0 + timedelta(hours=22)),
        ],
        accounts=[rules.AccountFacts("openai-ops", consecutive_failures=2, last_success_at=T0)],
        defaults=LIMITS,
    )
    assert set(rules.conditions(snapshot, T0 + timedelta(hours=23))) == {
        ("expiring", "openai-ops", 1),
        ("error_rate", "openai-ops", 1),
        ("ended_badly", "openai-ops", 2),
        ("account_failing", "openai-ops", None),
    }


# --- evaluating against the store: open once, stay open, resolve, open anew ------------------------

KEYS = ["anthropic-ops", "openai-ops"]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def anthropic_row(number: int, *, created: datetime, at: datetime, ended_after: timedelta | None = None, **counts):
    """Store what Anthropic would say of batch `number` at `at` (ended `ended_after` its creation),
    as a poller that has read it since its creation."""
    from dashboard.providers import anthropic

    is_ended = ended_after is not None
    data = {
        "id": f"msgbatch_{number:024d}",
        "type": "message_batch",
        "processing_status": "ended" if is_ended else "in_progress",
        "request_counts": {
            "processing": 0 if is_ended else 100,
            "succeeded": 100 if is_ended else 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
            **counts,
        },
        "ended_at": iso(created + ended_after) if is_ended else None,
        "created_at": iso(created),
        "expires_at": iso(created + timedelta(hours=24)),
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": None,
    }
    return seen(anthropic.parse_batch(data, account="anthropic-ops"), created, at)


def openai_row(number: int, *, created: datetime, at: datetime, status: str = "in_progress", **counts):
    """Store what OpenAI would say of batch `number` at `at`, as a poller that has read it since its creation."""
    from dashboard.providers import openai

    counts = {"total": 100, "completed": 0, "failed": 0, **counts}
    data = {
        "id": f"batch_{number:032d}",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-abc",
        "completion_window": "24h",
        "status": status,
        "created_at": int(created.timestamp()),
        "expires_at": int((created + timedelta(hours=24)).timestamp()),
        "failed_at": int(at.timestamp()) if status == "failed" else None,
        "completed_at": int(at.timestamp()) if status == "completed" else None,
        "request_counts": counts,
        "metadata": None,
    }
    return seen(openai.parse_batch(data, account="openai-ops"), created, at)


def seen(batch, created: datetime, at: datetime) -> StoredBatch:
    """Recorded at its creation (unless it is stored already), then at `at`."""
    store.record(batch, fetched_at=created)
    return store.record(batch, fetched_at=at)[0]


def evaluate(at: datetime) -> rules.Evaluation:
    return rules.evaluate(at, accounts=KEYS)


def test_an_alarm_opens_once_stays_open_while_its_condition_holds_and_resolves_by_itself(db):
    row = openai_row(1, created=T0, at=T0, completed=10)
    assert evaluate(T0 + timedelta(minutes=29)).opened == []
    openai_row(1, created=T0, at=T0 + timedelta(minutes=30), completed=10)
    first = evaluate(T0 + timedelta(minutes=30))
    assert [(alarm.rule, alarm.account, alarm.batch_id) for alarm in first.opened] == [("stuck", "openai-ops", row.pk)]
    alarm = first.opened[0]
    assert alarm.pk and alarm.opened_at == alarm.last_seen_at == T0 + timedelta(minutes=30) and alarm.is_open
    assert "since 2026-11-25 12:00 UTC" in alarm.detail

    openai_row(1, created=T0, at=T0 + timedelta(minutes=40), completed=10)
    again = evaluate(T0 + timedelta(minutes=40))
    assert (again.opened, again.resolved, again.still_open) == ([], [], 1)
    alarm.refresh_from_db()
    assert alarm.opened_at == T0 + timedelta(minutes=30) and alarm.last_seen_at == T0 + timedelta(minutes=40)
    assert Alarm.objects.count() == 1

    openai_row(1, created=T0, at=T0 + timedelta(minutes=41), completed=11)
    done = evaluate(T0 + timedelta(minutes=41))
    assert [resolved.pk for resolved in done.resolved] == [alarm.pk] and done.opened == []
    alarm.refresh_from_db()
    assert alarm.resolved_at == T0 + timedelta(minutes=41) and not alarm.is_open
    assert alarm.last_seen_at == T0 + timedelta(minutes=40), "the last time it held"


def test_a_condition_that_holds_again_after_resolving_opens_a_new_alarm(db):
    openai_row(1, created=T0, at=T0, completed=10)
    openai_row(1, created=T0, at=T0 + timedelta(minutes=30), completed=10)
    first = evaluate(T0 + timedelta(minutes=30)).opened[0]
    openai_row(1, created=T0, at=T0 + timedelta(minutes=31), completed=11)
    evaluate(T0 + timedelta(minutes=31))
    openai_row(1, created=T0, at=T0 + timedelta(minutes=61), completed=11)
    second = evaluate(T0 + timedelta(minutes=61)).opened[0]
    assert second.pk != first.pk
    assert list(Alarm.objects.order_by("id").values_list("resolved_at", flat=True)) == [
        T0 + timedelta(minutes=31),
        None,
    ]


def test_acknowledging_keeps_the_alarm_open_and_records_who_when_and_a_redacted_note(db, operator, monkeypatch):
    key = "sk-ant-api03-ALARMnoteKEY0123456789abcdef"
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    openai_row(1, created=T0, at=T0 + timedelta(minutes=30))
    alarm = evaluate(T0 + timedelta(minutes=30)).opened[0]
    rules.acknowledge(alarm, operator, f"  looking into it, key {key}  ", now=T0 + timedelta(minutes=31))
    alarm.refresh_from_db()
    assert alarm.acknowledged_by == operator and alarm.acknowledged_at == T0 + timedelta(minutes=31)
    assert alarm.acknowledge_note == "looking into it, key [redacted]"
    assert alarm.is_open
    assert evaluate(T0 + timedelta(minutes=32)).still_open == 1
    alarm.refresh_from_db()
    assert alarm.is_open and alarm.acknowledged_by == operator, "an evaluation keeps the acknowledgement"


def test_the_database_allows_one_open_alarm_per_rule_and_subject(db):
    from django.db import IntegrityError, transaction

    row = openai_row(1, created=T0, at=T0)
    fields = dict(opened_at=T0, last_seen_at=T0)
    Alarm.objects.create(rule="stuck", account="openai-ops", batch=row, **fields)
    Alarm.objects.create(rule="expiring", account="openai-ops", batch=row, **fields)
    Alarm.objects.create(rule="stuck", account="openai-ops", batch=row, resolved_at=T0, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Alarm.objects.create(rule="stuck", account="openai-ops", batch=row, **fields)
    Alarm.objects.create(rule="account_failing", account="openai-ops", **fields)
    Alarm.objects.create(rule="account_failing", account="anthropic-ops", **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Alarm.objects.create(rule="account_failing", account="openai-ops", **fields)


def test_details_follow_the_facts_while_the_alarm_stays_open(db):
    openai_row(1, created=T0, at=T0, completed=40, failed=10)
    alarm = evaluate(T0).opened[0]
    assert alarm.rule == "error_rate" and alarm.detail.startswith("10 of the 50 requests")
    openai_row(1, created=T0, at=T0 + timedelta(minutes=1), completed=50, failed=20)
    assert evaluate(T0 + timedelta(minutes=1)).opened == []
    alarm.refresh_from_db()
    assert alarm.detail.startswith("20 of the 70 requests") and alarm.is_open


def test_gone_batches_and_accounts_not_configured_have_no_alarms(db):
    row = openai_row(1, created=T0, at=T0 + timedelta(minutes=30))
    alarm = evaluate(T0 + timedelta(minutes=30)).opened[0]
    store.mark_gone(account_key="openai-ops", batch_id=row.batch_id, at=T0 + timedelta(minutes=31))
    assert [resolved.pk for resolved in evaluate(T0 + timedelta(minutes=31)).resolved] == [alarm.pk]
    openai_row(2, created=T0, at=T0)
    assert rules.evaluate(T0 + timedelta(hours=1), accounts=["anthropic-ops"]).opened == []
    AccountState.objects.create(account="openai-research", provider="openai", consecutive_failures=3)
    assert rules.evaluate(T0, accounts=KEYS).opened == []


def test_account_failing_opens_and_resolves_from_the_account_s_health(db):
    state = AccountState.objects.create(
        account="anthropic-ops", provider="anthropic", last_success_at=T0, consecutive_failures=3, last_error="529"
    )
    opened = evaluate(T0 + timedelta(minutes=10)).opened
    assert [(alarm.rule, alarm.account, alarm.batch) for alarm in opened] == [
        ("account_failing", "anthropic-ops", None)
    ]
    assert opened[0].detail.endswith("The last error: 529")
    state.consecutive_failures, state.last_success_at = 0, T0 + timedelta(minutes=11)
    state.save()
    assert len(evaluate(T0 + timedelta(minutes=11)).resolved) == 1


def test_an_account_s_threshold_rows_apply_at_the_next_evaluation(db):
    openai_row(1, created=T0, at=T0 + timedelta(minutes=10))
    assert evaluate(T0 + timedelta(minutes=10)).opened == []
    AlarmThreshold.objects.create(account="openai-ops", rule=Rule.STUCK, value=5)
    assert [alarm.rule for alarm in evaluate(T0 + timedelta(minutes=10)).opened] == ["stuck"]
    AlarmThreshold.objects.filter(account="openai-ops").update(enabled=False)
    assert len(evaluate(T0 + timedelta(minutes=11)).resolved) == 1


def test_an_anthropic_batch_is_stuck_past_the_95th_percentile_of_the_account_s_history(db):
    for number in range(1, 21):  # ended in 1..20 minutes
        anthropic_row(number, created=T0 - timedelta(hours=5), at=T0, ended_after=timedelta(minutes=number))
    anthropic_row(99, created=T0, at=T0 + timedelta(minutes=19))
    assert evaluate(T0 + timedelta(minutes=19)).opened == [], "the 95th percentile: 19 minutes"
    anthropic_row(99, created=T0, at=T0 + timedelta(minutes=19, seconds=1))
    opened = evaluate(T0 + timedelta(minutes=19, seconds=1)).opened
    assert [alarm.rule for alarm in opened] == ["stuck"]
    assert "longer than 95% of its last 20 ended batches of 50 to 200 requests took (19 min)" in opened[0].detail


def test_an_anthropic_batch_without_enough_history_is_stuck_after_the_fixed_minutes(db):
    for number in range(1, 20):  # 19 ended: one short
        anthropic_row(number, created=T0 - timedelta(hours=5), at=T0, ended_after=timedelta(minutes=1))
    anthropic_row(99, created=T0, at=T0 + timedelta(minutes=29))
    assert evaluate(T0 + timedelta(minutes=29)).opened == []
    anthropic_row(99, created=T0, at=T0 + timedelta(minutes=30))
    assert [alarm.rule for alarm in evaluate(T0 + timedelta(minutes=30)).opened] == ["stuck"]


def test_an_ended_batch_s_alarm_resolves_after_the_ended_badly_hours(db):
    openai_row(1, created=T0, at=T0 + timedelta(hours=1), status="failed", total=0)
    opened = evaluate(T0 + timedelta(hours=1)).opened
    assert [alarm.rule for alarm in opened] == ["ended_badly"] and "It ended failed" in opened[0].detail
    assert evaluate(T0 + timedelta(hours=25) - S).resolved == []
    assert len(evaluate(T0 + timedelta(hours=25)).resolved) == 1


def test_ended_batches_with_too_many_errors_are_found_at_the_account_s_own_threshold(db):
    end = T0 + timedelta(hours=1)
    openai_row(1, created=T0, at=end, status="completed", completed=90, failed=10)  # 10%: not above
    openai_row(2, created=T0, at=end, status="completed", completed=89, failed=11)
    openai_row(3, created=T0, at=end, status="completed", completed=97, failed=3)
    assert {alarm.batch.batch_id[-1] for alarm in evaluate(end).opened} == {"2"}
    AlarmThreshold.objects.create(account="openai-ops", rule=Rule.ENDED_BADLY, value=2.5)
    assert {alarm.batch.batch_id[-1] for alarm in evaluate(end).opened} == {"1", "3"}


def test_an_evaluation_reads_the_store_in_a_few_queries_whatever_the_number_of_batches(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    rounds = iter(range(1, 100))

    def queries(batches: int) -> int:
        # A clean slate without deleting: the earlier rounds' alarms resolved, their batches gone.
        Alarm.objects.update(resolved_at=T0)
        StoredBatch.objects.update(gone_at=T0, is_ended=True)
        first = next(rounds) * 1000
        for number in range(first, first + batches):
            openai_row(number, created=T0, at=T0 + timedelta(hours=1), completed=10, failed=number % 3 * 20)
            anthropic_row(number, created=T0, at=T0 + timedelta(hours=1))
        with CaptureQueriesContext(connection) as captured:
            result = evaluate(T0 + timedelta(hours=1))
        assert len(result.opened) >= batches * 2
        # The new alarms' INSERTs aside: SQLite takes at most 999 values a statement.
        return sum(not query["sql"].startswith('INSERT INTO "dashboard_alarm"') for query in captured)

    queries(1)  # the first: the evaluator's row is made, a provider's traits are read once
    assert queries(3) == queries(60) <= 12


def test_the_selectors_read_open_alarms_all_per_account_and_per_batch(db, operator, django_assert_num_queries):
    first = openai_row(1, created=T0, at=T0 + timedelta(minutes=30))
    second = openai_row(2, created=T0, at=T0 + timedelta(minutes=30), completed=40, failed=20)
    AccountState.objects.create(account="anthropic-ops", provider="anthropic", consecutive_failures=1)
    evaluate(T0 + timedelta(minutes=30))
    with django_assert_num_queries(1):
        everything = [(alarm.rule, alarm.batch.batch_id if alarm.batch else None) for alarm in rules.open_alarms()]
    assert sorted(everything, key=str) == sorted(
        [
            ("account_failing", None),
            ("stuck", first.batch_id),
            ("stuck", second.batch_id),
            ("error_rate", second.batch_id),
        ],
        key=str,
    )
    assert [alarm.rule for alarm in rules.open_alarms_for_account("anthropic-ops")] == ["account_failing"]
    assert sorted(alarm.rule for alarm in rules.open_alarms_for_batch("openai-ops", second.batch_id)) == [
        "error_rate",
        "stuck",
    ]
    with django_assert_num_queries(1):
        by_batch = rules.open_alarms_by_batch([first.pk, second.pk])
    assert {pk: len(found) for pk, found in by_batch.items()} == {first.pk: 1, second.pk: 2}
    rules.acknowledge(rules.open_alarms_for_account("anthropic-ops").get(), operator)
    with django_assert_num_queries(1):
        assert rules.open_alarm_counts() == rules.OpenCounts(open=4, unacknowledged=3)
    openai_row(1, created=T0, at=T0 + timedelta(minutes=31), completed=1)
    evaluate(T0 + timedelta(minutes=31))
    assert rules.open_alarm_counts().open == 3
    assert len(rules.recent_alarms(since=T0)) == 4
    assert len(rules.recent_alarms(since=T0 + timedelta(hours=1))) == 3
    assert rules.evaluator().last_evaluated_at == T0 + timedelta(minutes=31)


def test_every_change_goes_through_the_one_notification_hook_inside_the_transaction(db, monkeypatch):
    from django.db import connection

    calls = []

    def hook(opened, resolved):
        calls.append(([a.rule for a in opened], [a.rule for a in resolved], connection.in_atomic_block))

    monkeypatch.setattr(rules, "alarms_changed", hook)
    openai_row(1, created=T0, at=T0 + timedelta(minutes=30))
    evaluate(T0 + timedelta(minutes=30))
    evaluate(T0 + timedelta(minutes=31))  # nothing changed: not called
    openai_row(1, created=T0, at=T0 + timedelta(minutes=32), completed=1)
    evaluate(T0 + timedelta(minutes=32))
    assert calls == [(["stuck"], [], True), ([], ["stuck"], True)]


# --- the poller evaluates, one at a time, and an alarm's failure never stops it ---------------------


def test_one_poller_holds_the_evaluator_until_its_lease_expires(db):
    assert rules.claim_evaluator("a", now=T0, seconds=30)
    assert not rules.claim_evaluator("b", now=T0 + timedelta(seconds=29), seconds=30)
    assert rules.claim_evaluator("a", now=T0 + timedelta(seconds=10), seconds=30), "renewed by its holder"
    assert not rules.claim_evaluator("b", now=T0 + timedelta(seconds=39), seconds=30)
    assert rules.claim_evaluator("b", now=T0 + timedelta(seconds=41), seconds=30), "a dead poller's lease"
    rules.release_evaluator("b")
    assert rules.claim_evaluator("a", now=T0 + timedelta(seconds=42), seconds=30)


@pytest.fixture
def evaluations(monkeypatch, settings):
    """alarms.evaluate, recorded: (when, accounts) per evaluation."""
    settings.POLL_LEASE_SECONDS = 30
    seen: list[tuple[datetime, list[str]]] = []
    monkeypatch.setattr(rules, "evaluate", lambda now, accounts: seen.append((now, accounts)) or rules.Evaluation())
    return seen


def test_after_each_cycle_the_lease_holder_evaluates_even_with_nothing_due(db, evaluations):
    assert poller.run_cycle(owner="a", now=T0, accounts=[]) == []
    assert poller.run_cycle(owner="b", now=T0 + timedelta(seconds=3), accounts=[]) == []
    assert poller.run_cycle(owner="a", now=T0 + timedelta(seconds=6), accounts=[]) == []
    assert [now for now, _ in evaluations] == [T0, T0 + timedelta(seconds=6)], "b waits while a holds it"
    poller.run_cycle(owner="b", now=T0 + timedelta(seconds=37), accounts=[])
    assert evaluations[-1][0] == T0 + timedelta(seconds=37), "a stopped renewing: b takes over"


def test_the_poller_evaluates_the_accounts_it_was_given(db, evaluations, monkeypatch):
    from dashboard.accounts import Account

    account = Account(name="ops", provider="openai", base_url="https://api.openai.com/v1", api_key="sk-x" * 4)
    monkeypatch.setattr(poller, "poll_account", lambda account, now: poller.PollResult(account=account.key))
    assert [result.account for result in poller.run_cycle(owner="a", now=T0, accounts=[account])] == ["openai-ops"]
    assert evaluations == [(T0, ["openai-ops"])]


def test_alarms_can_be_switched_off(db, evaluations, settings):
    settings.ALARMS_ENABLED = False
    poller.run_cycle(owner="a", now=T0, accounts=[])
    assert evaluations == []


def test_a_failing_evaluation_is_logged_and_noted_and_polling_goes_on(db, monkeypatch, caplog):
    from dashboard.accounts import Account

    account = Account(name="ops", provider="openai", base_url="https://api.openai.com/v1", api_key="sk-x" * 4)
    monkeypatch.setattr(poller, "poll_account", lambda account, now: poller.PollResult(account=account.key, listed=3))

    def broken(now, accounts):
        raise RuntimeError("the alarm rules broke")

    monkeypatch.setattr(rules, "evaluate", broken)
    results = poller.run_cycle(owner="a", now=T0, accounts=[account])
    assert [(result.account, result.listed) for result in results] == [("openai-ops", 3)]
    assert "alarm evaluation failed (polling goes on)" in caplog.text
    assert rules.evaluator().last_error == "RuntimeError: the alarm rules broke"


def in_threads(count: int, work) -> list:
    """`work(i)` on `count` threads started together; their results (or exceptions), in order."""
    import threading

    from django.db import connections

    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as error:  # reported to the test
            results[i] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_pollers_cycling_at_once_evaluate_one_at_a_time(transactional_db, monkeypatch, settings):
    import threading
    import time as clock

    settings.POLL_LEASE_SECONDS = 30
    running, most, lock = [0], [0], threading.Lock()

    def slow(now, accounts):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        clock.sleep(0.2)
        with lock:
            running[0] -= 1
        return rules.Evaluation()

    monkeypatch.setattr(rules, "evaluate", slow)
    results = in_threads(4, lambda i: poller.evaluate_alarms(owner=f"poller-{i}", now=T0, accounts=[]))
    assert sum(isinstance(result, rules.Evaluation) for result in results) == 1
    assert results.count(None) == 3 and most[0] == 1


def test_evaluations_at_once_never_open_an_alarm_twice(transactional_db):
    openai_row(1, created=T0, at=T0 + timedelta(minutes=30))
    results = in_threads(4, lambda i: evaluate(T0 + timedelta(minutes=30)))
    assert not [result for result in results if isinstance(result, Exception)]
    assert sum(len(result.opened) for result in results) == 1
    assert Alarm.objects.count() == 1


# --- end to end: the embedded simulator, the poller's cycles and a fake clock ----------------------


def test_a_stalled_openai_batch_goes_stuck_after_the_minutes_and_resolves_once_released(openai_sdk, settings):
    from django.utils import timezone

    settings.ALARM_STUCK_MINUTES = 30
    batch = openai_batch(openai_sdk, count=100, seconds=1000)
    time_passes(batch.id, seconds=3 + 100)  # validated, then 10 of 100 requests done
    start = timezone.now()

    def cycle(minutes: float) -> list[tuple[str, str]]:
        """A poller cycle `minutes` after the start; the open alarms: (rule, batch id or account)."""
        poller.run_cycle(owner="test", now=start + timedelta(minutes=minutes))
        return [(a.rule, a.batch.batch_id if a.batch else a.account) for a in rules.open_alarms()]

    assert cycle(0) == []
    stall(batch.id)
    assert cycle(1) == []
    assert cycle(29) == [], "no change for 28 or 29 minutes (the stall came between the first reads)"
    assert cycle(31) == [("stuck", batch.id)]
    stuck = Alarm.objects.get()
    assert cycle(45) == [("stuck", batch.id)]
    assert Alarm.objects.get().pk == stuck.pk, "open once, kept open"

    release(batch.id)
    time_passes(batch.id, seconds=20)  # two more requests done
    assert cycle(46) == []
    stuck.refresh_from_db()
    assert stuck.resolved_at == start + timedelta(minutes=46)
    assert stuck.last_seen_at == start + timedelta(minutes=45)


def test_an_account_whose_polls_fail_alarms_after_the_minutes_and_resolves_when_they_succeed(embedded_upstream):
    from django.utils import timezone

    from tests.factories import fault

    start = timezone.now()
    poller.run_cycle(owner="test", now=start)
    fault("anthropic", "ops", "500")
    poller.run_cycle(owner="test", now=start + timedelta(minutes=1))
    assert not rules.open_alarms().exists()
    poller.run_cycle(owner="test", now=start + timedelta(minutes=10))
    failing = rules.open_alarms().get()
    assert (failing.rule, failing.account, failing.batch) == ("account_failing", "anthropic-ops", None)
    assert "Polls have failed since the last success" in failing.detail
    fault("anthropic", "ops", "")
    poller.run_cycle(owner="test", now=start + timedelta(minutes=11))
    failing.refresh_from_db()
    assert failing.resolved_at == start + timedelta(minutes=11)
