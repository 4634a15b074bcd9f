"""The alarm rules (dashboard/alarms/rules.py), pure: facts about batches and accounts, thresholds and
a fake clock in, what holds (in words) out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from dashboard.alarms import rules
from dashboard.batches.run_times import percentile
from dashboard.models import AlarmRule as Rule
from dashboard.models import AlarmThreshold

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


def run_times(count: int, *, size: int = 1000, minutes: float = 10) -> list[tuple[int, float]]:
    """`count` ended batches of `size` requests that took 1..count x `minutes`/count (the slowest: `minutes`)."""
    return [(size, minutes * 60 * (i + 1) / count) for i in range(count)]


def test_final_only_batches_are_stuck_past_the_95th_percentile_of_similar_ended_batches():
    batch = facts(final_only=True)
    past = run_times(20, size=800, minutes=20)  # 60 s .. 1,200 s; the 95th percentile: 1,140 s (19 min)
    assert rules.usual_duration(1000, past, 20) == (1140.0, "its last 20 ended batches of 500 to 2,000 requests")
    assert rules.stuck(batch, LIMITS, past, T0 + timedelta(seconds=1140)) is None
    detail = rules.stuck(batch, LIMITS, past, T0 + timedelta(seconds=1140) + S)
    assert detail == (
        "Running since 2026-11-25 12:00 UTC: longer than 95% of its last 20 ended batches of 500 to 2,000 "
        "requests took (19 min)."
    )


def test_final_only_batches_use_every_ended_batch_when_too_few_are_of_a_similar_size():
    batch = facts(final_only=True, total=10, processing=10)
    past = run_times(15, size=1000, minutes=60) + run_times(5, size=10, minutes=2)
    seconds, which = rules.usual_duration(10, past, 20)
    assert which == "its last 20 ended batches"
    assert seconds == percentile((s for _, s in past), 95)
    assert rules.stuck(batch, LIMITS, past, T0 + timedelta(seconds=seconds)) is None
    assert rules.stuck(batch, LIMITS, past, T0 + timedelta(seconds=seconds + 1))


def test_final_only_batches_fall_back_to_the_fixed_minutes_with_too_little_history():
    batch = facts(final_only=True)
    past = run_times(19, minutes=1)
    assert rules.usual_duration(1000, past, 20) is None
    assert rules.stuck(batch, LIMITS, past, T0 + timedelta(minutes=30) - S) is None
    assert "No change in status or counts" in rules.stuck(batch, LIMITS, past, T0 + timedelta(minutes=30))


def test_final_only_batches_with_history_are_not_stuck_for_counts_that_never_move():
    batch = facts(final_only=True)
    past = run_times(20, minutes=120)
    assert rules.stuck(batch, LIMITS, past, T0 + timedelta(minutes=90)) is None


def test_batches_whose_counts_are_unknown_are_judged_by_run_time_like_final_only_ones():
    batch = facts(counts_known=False, total=0, processing=0)  # e.g. Bedrock without record counts
    past = run_times(20, size=1000, minutes=120)  # all ended batches: their 95th percentile is 114 min
    assert rules.stuck(batch, LIMITS, past, T0 + timedelta(minutes=90)) is None  # counts never move: no alarm
    assert "longer than 95% of its last 20 ended batches" in rules.stuck(
        batch, LIMITS, past, T0 + timedelta(minutes=115)
    )


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


def test_ended_badly_judges_the_errored_share_of_enough_requests_or_of_the_whole_batch():
    now = T0 + timedelta(hours=2)
    cancelled_early = ended(status="cancelled", total=1000, succeeded=4, errored=1, canceled=995)
    assert rules.ended_badly(cancelled_early, LIMITS, now) is None, "1 of the 5 that ran before a cancel"
    few_of_many = ended(total=1000, succeeded=30, errored=19, expired=0, canceled=951)
    assert rules.ended_badly(few_of_many, LIMITS, now) is None, "49 ran: fewer than the 50 needed"
    enough = ended(total=1000, succeeded=30, errored=20, canceled=950)
    assert rules.ended_badly(enough, LIMITS, now).startswith("20 of the 50 requests with an outcome errored (40.0%")
    small_and_whole = ended(total=5, succeeded=0, errored=5)
    assert rules.ended_badly(small_and_whole, LIMITS, now).startswith("5 of the 5 requests with an outcome errored")
    small_in_part = ended(total=5, succeeded=0, errored=4, canceled=1)
    assert rules.ended_badly(small_in_part, LIMITS, now) is None, "4 of a 5-request batch ran"


def test_an_end_the_dashboard_did_not_see_is_history_never_an_alarm():
    now = T0 + timedelta(hours=2)
    history = (
        ended(status="failed", total=0, succeeded=0, errored=0, failed_status=True),
        ended(status="expired", succeeded=300, errored=0, expired=700, failed_status=True),
        ended(succeeded=1, errored=999),
    )
    for batch in history:
        assert rules.ended_badly(batch, LIMITS, now), "in view, it alarms"
        assert rules.ended_badly(replace(batch, ended_in_view=False), LIMITS, now) is None


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
