"""Unit tests of the pure progression rules: no database, no HTTP, time is a parameter."""

import random
import tracemalloc
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.simulator import progression
from dashboard.simulator.progression import (
    OPENAI_ENDED,
    Outcome,
    Plan,
    anthropic_end,
    anthropic_state,
    openai_state,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def random_plans(count: int, *, openai: bool = False, seed: int = 7) -> list[Plan]:
    rng = random.Random(seed)
    plans = []
    for _ in range(count):
        span = rng.choice([0.5, 30, 600, 3600, 30 * 3600])
        cancel = rng.choice([None, None, rng.uniform(0, span * 1.2)])
        plans.append(
            Plan(
                total=rng.choice([1, 2, 3, 97, 100, 256, 1000, 4999]),
                created_at=T0,
                seed=rng.randrange(2**31),
                processing_seconds=span,
                cancel_grace_seconds=rng.choice([0, 1, 60]),
                error_percent=rng.choice([0, 5, 30]),
                expire_percent=0 if openai else rng.choice([0, 2]),
                cancel_initiated_at=None if cancel is None else T0 + timedelta(seconds=cancel),
                validating_seconds=rng.choice([0, 2, 30]) if openai else 0,
                finalizing_seconds=rng.choice([0, 3]) if openai else 0,
                input_is_valid=rng.random() > 0.1 if openai else True,
            )
        )
    return plans


def instants(plan: Plan) -> list[datetime]:
    horizon = max(plan.processing_seconds, 1) * 1.5 + 600
    steps = [horizon * i / 40 for i in range(41)] + [86_400 - 1, 86_400, 86_400 + 1, 40 * 3600]
    return [T0 + timedelta(seconds=s) for s in sorted(steps)]


@pytest.mark.parametrize("total", [1, 2, 3, 10, 97, 100, 128, 300, 1000, 1001])
def test_rank_is_a_permutation_of_the_requests(total):
    for seed in (0, 1, 12345, 2**31 - 1):
        plan = Plan(
            total=total, created_at=T0, seed=seed, processing_seconds=10, cancel_grace_seconds=0, error_percent=5
        )
        assert sorted(plan.rank_of(i) for i in range(total)) == list(range(total))


@pytest.mark.parametrize("seed", [0, 4242, 2**31 - 1])
def test_tally_matches_counting_fates_one_by_one(seed):
    plan = Plan(
        total=5000,
        created_at=T0,
        seed=seed,
        processing_seconds=10,
        cancel_grace_seconds=0,
        error_percent=13,
        expire_percent=3,
    )
    for finished in (0, 1, 99, 100, 299, 300, 301, 1234, 5000):
        fates = Counter(plan.fate(rank) for rank in range(finished))
        tally = plan.tally(finished)
        assert (tally.errored, tally.expired, tally.succeeded) == (
            fates[Outcome.ERRORED],
            fates[Outcome.EXPIRED],
            fates[Outcome.SUCCEEDED],
        )
        succeeded = [rank for rank in range(finished) if plan.fate(rank) is Outcome.SUCCEEDED]
        assert (tally.input_tokens, tally.output_tokens) == (
            sum(plan.input_tokens(rank) for rank in succeeded),
            sum(plan.output_tokens(rank) for rank in succeeded),
        )
        # What a batch object says it used is the sum of its result lines', at every length.
        assert (tally.cache_read_tokens, tally.cache_write_tokens, tally.reasoning_tokens) == (
            sum(plan.cache_read_tokens(rank) for rank in succeeded),
            sum(plan.cache_write_tokens(rank) for rank in succeeded),
            sum(plan.reasoning_tokens(rank) for rank in succeeded),
        )


def test_the_tables_kept_per_batch_seen_stay_small_and_bounded():
    """One table per distinct batch (seed) is cached: what the poller's process holds when the
    simulator is embedded. 74 KiB each (300 MiB for a full cache) when they were tuples of ints."""
    progression._period_tallies.cache_clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for seed in range(300):
            plan = Plan(
                total=100, created_at=T0, seed=seed, processing_seconds=10, cancel_grace_seconds=0, error_percent=5
            )
            plan.tally(50)
        per_batch = (tracemalloc.get_traced_memory()[0] - before) / 300
    finally:
        tracemalloc.stop()
        progression._period_tallies.cache_clear()
    assert per_batch < 12 * 1024
    assert progression._period_tallies.cache_info().maxsize * per_batch < 48 * 1024 * 1024


def test_error_share_is_close_to_the_configured_percent():
    plan = Plan(total=10_000, created_at=T0, seed=1, processing_seconds=10, cancel_grace_seconds=0, error_percent=8)
    assert plan.tally(10_000).errored == 800


@pytest.mark.parametrize("plan", random_plans(60), ids=lambda p: f"n{p.total}-span{p.processing_seconds}")
def test_anthropic_counts_always_sum_to_the_total(plan):
    for now in instants(plan):
        state = anthropic_state(plan, now)
        counts = (state.processing, state.succeeded, state.errored, state.canceled, state.expired)
        assert sum(counts) == plan.total
        assert min(counts) >= 0


@pytest.mark.parametrize("plan", random_plans(60), ids=lambda p: f"n{p.total}-span{p.processing_seconds}")
def test_anthropic_counts_stay_processing_until_the_whole_batch_ends(plan):
    for now in instants(plan):
        state = anthropic_state(plan, now)
        if not state.is_ended:
            assert state.processing == plan.total
            assert state.succeeded == state.errored == state.canceled == state.expired == 0
            assert state.ended_at is None
        else:
            assert state.processing == 0


@pytest.mark.parametrize("plan", random_plans(60), ids=lambda p: f"n{p.total}-span{p.processing_seconds}")
def test_anthropic_ended_batch_never_changes_again(plan):
    ended_at, _ = anthropic_end(plan)
    final = anthropic_state(plan, ended_at)
    assert final.is_ended
    for later in (timedelta(seconds=1), timedelta(hours=5), timedelta(days=40)):
        assert anthropic_state(plan, ended_at + later) == final
    assert ended_at <= plan.expires_at
    assert not anthropic_state(plan, ended_at - timedelta(microseconds=1)).is_ended


def test_anthropic_results_agree_with_request_counts():
    plan = Plan(
        total=777,
        created_at=T0,
        seed=99,
        processing_seconds=600,
        cancel_grace_seconds=30,
        error_percent=10,
        expire_percent=2,
        cancel_initiated_at=T0 + timedelta(seconds=200),
    )
    state = anthropic_state(plan, T0 + timedelta(hours=1))
    outcomes = Counter(state.outcome_of_rank(plan, plan.rank_of(i)) for i in range(plan.total))
    assert outcomes[Outcome.SUCCEEDED] == state.succeeded
    assert outcomes[Outcome.ERRORED] == state.errored
    assert outcomes[Outcome.CANCELED] == state.canceled
    assert outcomes[Outcome.EXPIRED] == state.expired


def test_anthropic_cancel_goes_through_canceling_and_in_flight_requests_still_complete():
    plan = Plan(
        total=1000,
        created_at=T0,
        seed=5,
        processing_seconds=1000,
        cancel_grace_seconds=50,
        error_percent=0,
        cancel_initiated_at=T0 + timedelta(seconds=100),
    )
    assert anthropic_state(plan, T0 + timedelta(seconds=99)).processing_status == "in_progress"
    canceling = anthropic_state(plan, T0 + timedelta(seconds=120))
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at == T0 + timedelta(seconds=100)
    ended = anthropic_state(plan, T0 + timedelta(seconds=151))
    assert ended.processing_status == "ended"
    assert ended.ended_at == T0 + timedelta(seconds=150)
    # 100 s of processing before the cancel, 50 more while canceling: 150 of 1000 requests ran.
    assert ended.succeeded == 150
    assert ended.canceled == 850


def test_anthropic_cancel_can_end_with_nothing_canceled():
    plan = Plan(
        total=10,
        created_at=T0,
        seed=5,
        processing_seconds=10,
        cancel_grace_seconds=60,
        error_percent=0,
        cancel_initiated_at=T0 + timedelta(seconds=9),
    )
    ended = anthropic_state(plan, T0 + timedelta(seconds=11))
    assert ended.is_ended and ended.canceled == 0 and ended.succeeded == 10


def test_anthropic_batch_past_its_24h_window_expires_the_rest():
    plan = Plan(total=100, created_at=T0, seed=5, processing_seconds=48 * 3600, cancel_grace_seconds=0, error_percent=0)
    assert anthropic_state(plan, T0 + timedelta(hours=23)).processing_status == "in_progress"
    ended = anthropic_state(plan, T0 + timedelta(hours=25))
    assert ended.ended_at == plan.expires_at
    assert (ended.succeeded, ended.expired) == (50, 50)


OPENAI_ORDER = ["validating", "in_progress", "finalizing", "completed"]


@pytest.mark.parametrize(
    "plan", random_plans(80, openai=True, seed=11), ids=lambda p: f"n{p.total}-span{p.processing_seconds}"
)
def test_openai_counts_grow_never_exceed_total_and_freeze_at_the_end(plan):
    previous = None
    final = None
    for now in instants(plan):
        state = openai_state(plan, now)
        assert 0 <= state.completed + state.failed <= state.total <= plan.total
        if previous is not None:
            assert state.completed >= previous.completed and state.failed >= previous.failed
            if previous.is_ended:
                assert state == previous, "an ended batch changed"
        if state.is_ended and final is None:
            final = state
        previous = state
    assert final is not None and final.status in OPENAI_ENDED


def test_openai_passes_through_validating_in_progress_finalizing_completed():
    plan = Plan(
        total=100,
        created_at=T0,
        seed=3,
        processing_seconds=100,
        cancel_grace_seconds=5,
        error_percent=10,
        validating_seconds=10,
        finalizing_seconds=10,
    )
    seen = []
    for second in range(130):
        state = openai_state(plan, T0 + timedelta(seconds=second))
        if not seen or seen[-1] != state.status:
            seen.append(state.status)
        if state.status == "validating":
            assert state.total == 0
        if state.status == "in_progress" and 20 <= second <= 90:
            assert 0 < state.completed + state.failed < 100
    assert seen == OPENAI_ORDER
    done = openai_state(plan, T0 + timedelta(seconds=200))
    assert done.completed + done.failed == 100 and done.failed == 10
    assert done.in_progress_at < done.finalizing_at < done.completed_at
    assert done.has_output_file and done.has_error_file


def test_openai_invalid_input_fails_after_validating():
    plan = Plan(
        total=0,
        created_at=T0,
        seed=3,
        processing_seconds=100,
        cancel_grace_seconds=5,
        error_percent=10,
        validating_seconds=10,
        input_is_valid=False,
    )
    assert openai_state(plan, T0 + timedelta(seconds=5)).status == "validating"
    failed = openai_state(plan, T0 + timedelta(seconds=11))
    assert failed.status == "failed" and failed.failed_at == T0 + timedelta(seconds=10)
    assert failed.in_progress_at is None and not failed.has_output_file


def test_openai_cancel_keeps_finishing_in_flight_requests_then_cancelled():
    plan = Plan(
        total=1000,
        created_at=T0,
        seed=3,
        processing_seconds=1000,
        cancel_grace_seconds=100,
        error_percent=0,
        validating_seconds=0,
        cancel_initiated_at=T0 + timedelta(seconds=200),
    )
    at_cancel = openai_state(plan, T0 + timedelta(seconds=200))
    assert at_cancel.status == "cancelling" and at_cancel.completed == 200
    later = openai_state(plan, T0 + timedelta(seconds=250))
    assert later.status == "cancelling" and later.completed == 250
    cancelled = openai_state(plan, T0 + timedelta(seconds=400))
    assert cancelled.status == "cancelled"
    assert cancelled.completed == 300
    assert cancelled.cancelled_at == T0 + timedelta(seconds=300)
    assert cancelled.finalizing_at is None


def test_openai_batch_past_its_window_expires_with_unprocessed_requests():
    plan = Plan(
        total=100,
        created_at=T0,
        seed=3,
        processing_seconds=48 * 3600,
        cancel_grace_seconds=5,
        error_percent=0,
        validating_seconds=0,
    )
    expired = openai_state(plan, T0 + timedelta(hours=30))
    assert expired.status == "expired" and expired.expired_at == plan.expires_at
    assert expired.completed == 50 and expired.not_processed == 50
    assert expired.has_error_file


# --- stalls: processing stops until released, then resumes where it stopped ---------------------


def stalled(plan: Plan, at: datetime) -> Plan:
    return replace(plan, stalled_at=at)


def released(plan: Plan, start: datetime, at: datetime) -> Plan:
    """The plan as SimBatch.release leaves it at `at`."""
    return replace(plan, stalled_at=None, stalled_seconds=plan.stalled_seconds_after_release(start, at))


def openai_counts(state) -> tuple[int, int]:
    return state.completed, state.failed


OPENAI_PLAN = Plan(
    total=1000,
    created_at=T0,
    seed=3,
    processing_seconds=1000,
    cancel_grace_seconds=10,
    error_percent=10,
    validating_seconds=10,
    finalizing_seconds=5,
)
START = T0 + timedelta(seconds=10)  # validated: processing begins


def test_a_stalled_openai_batch_keeps_its_counts_and_does_not_end_while_stalled():
    plan = stalled(OPENAI_PLAN, START + timedelta(seconds=200))
    at_stall = openai_state(plan, START + timedelta(seconds=200))
    assert at_stall.status == "in_progress" and at_stall.finished == 200
    for later in (1, 60, 800, 5000, 20 * 3600):
        state = openai_state(plan, START + timedelta(seconds=200 + later))
        assert (state.status, openai_counts(state)) == ("in_progress", openai_counts(at_stall)), later
        assert state.in_progress_at == START and state.finalizing_at is None


def test_a_released_openai_batch_resumes_where_it_stopped_and_ends_that_much_later():
    plan = released(stalled(OPENAI_PLAN, START + timedelta(seconds=200)), START, START + timedelta(seconds=700))
    assert plan.stalled_seconds == 500
    at_release = openai_state(plan, START + timedelta(seconds=700))
    assert at_release.finished == 200, "no jump at the release"
    assert openai_state(plan, START + timedelta(seconds=800)).finished == 300, "the same pace as before"
    assert openai_state(plan, START + timedelta(seconds=1499)).status == "in_progress"
    done = openai_state(plan, START + timedelta(seconds=1600))
    unstalled = openai_state(OPENAI_PLAN, START + timedelta(seconds=1100))
    assert done.status == "completed" and openai_counts(done) == openai_counts(unstalled)
    assert done.in_progress_at == START, "what happened before the stall does not move"
    assert done.finalizing_at == START + timedelta(seconds=1500)
    assert done.completed_at == START + timedelta(seconds=1505)


def test_a_stall_during_validating_holds_processing_from_its_start():
    plan = stalled(OPENAI_PLAN, T0 + timedelta(seconds=5))
    state = openai_state(plan, T0 + timedelta(seconds=300))
    assert state.status == "in_progress" and state.finished == 0
    plan = released(plan, START, T0 + timedelta(seconds=300))
    assert plan.stalled_seconds == 290  # only the time it held processing back
    assert openai_state(plan, T0 + timedelta(seconds=400)).finished == 100


def test_stalls_add_up():
    plan = released(stalled(OPENAI_PLAN, START + timedelta(seconds=100)), START, START + timedelta(seconds=150))
    plan = released(stalled(plan, START + timedelta(seconds=400)), START, START + timedelta(seconds=500))
    assert plan.stalled_seconds == 150
    assert openai_state(plan, START + timedelta(seconds=600)).finished == 450
    assert openai_state(plan, START + timedelta(seconds=1149)).status == "in_progress"
    assert openai_state(plan, START + timedelta(seconds=1150)).status == "finalizing"


def test_a_stall_after_processing_ended_changes_nothing():
    ended = openai_state(OPENAI_PLAN, START + timedelta(hours=2))
    plan = stalled(OPENAI_PLAN, START + timedelta(hours=1))
    assert openai_state(plan, START + timedelta(hours=2)) == ended
    plan = released(plan, START, START + timedelta(hours=3))
    assert plan.stalled_seconds == 0
    assert openai_state(plan, START + timedelta(hours=4)) == openai_state(OPENAI_PLAN, START + timedelta(hours=4))


def test_a_stall_past_the_window_expires_the_openai_batch_with_what_ran_before_it():
    plan = stalled(OPENAI_PLAN, START + timedelta(seconds=250))
    expired = openai_state(plan, T0 + timedelta(hours=25))
    assert expired.status == "expired" and expired.expired_at == plan.expires_at
    assert expired.finished == 250 and expired.not_processed == 750


def test_a_stalled_openai_batch_can_still_be_cancelled():
    plan = replace(stalled(OPENAI_PLAN, START + timedelta(seconds=200)), cancel_initiated_at=START + timedelta(hours=1))
    cancelled = openai_state(plan, START + timedelta(hours=2))
    assert cancelled.status == "cancelled" and cancelled.finished == 200


ANTHROPIC_PLAN = Plan(
    total=500, created_at=T0, seed=9, processing_seconds=1000, cancel_grace_seconds=30, error_percent=10
)


def test_a_stalled_anthropic_batch_runs_on_past_its_end_and_ends_the_stall_later_once_released():
    plan = stalled(ANTHROPIC_PLAN, T0 + timedelta(seconds=400))
    for later in (999, 1001, 5000):
        assert anthropic_state(plan, T0 + timedelta(seconds=later)).processing_status == "in_progress"
    plan = released(plan, T0, T0 + timedelta(seconds=1400))
    assert plan.stalled_seconds == 1000
    assert not anthropic_state(plan, T0 + timedelta(seconds=1999)).is_ended
    ended = anthropic_state(plan, T0 + timedelta(seconds=2000))
    assert ended.is_ended and ended.ended_at == T0 + timedelta(seconds=2000)
    final = anthropic_state(ANTHROPIC_PLAN, T0 + timedelta(hours=1))
    assert (ended.succeeded, ended.errored, ended.expired, ended.canceled) == (
        final.succeeded,
        final.errored,
        final.expired,
        final.canceled,
    )


def test_an_anthropic_batch_stalled_past_its_window_expires_what_had_not_run():
    plan = stalled(ANTHROPIC_PLAN, T0 + timedelta(seconds=400))
    ended = anthropic_state(plan, T0 + timedelta(hours=25))
    assert ended.is_ended and ended.ended_at == plan.expires_at
    assert ended.succeeded + ended.errored == 200 and ended.expired == 300


def test_a_stalled_anthropic_batch_ends_by_a_cancel_with_what_ran_before_the_stall():
    plan = replace(stalled(ANTHROPIC_PLAN, T0 + timedelta(seconds=400)), cancel_initiated_at=T0 + timedelta(hours=1))
    ended = anthropic_state(plan, T0 + timedelta(hours=2))
    assert ended.ended_at == T0 + timedelta(hours=1, seconds=30)
    assert ended.succeeded + ended.errored == 200 and ended.canceled == 300


@pytest.mark.parametrize("plan", random_plans(60, openai=True, seed=21), ids=lambda p: f"n{p.total}")
def test_openai_counts_never_jump_or_go_back_over_a_stall_and_its_release(plan):
    rng = random.Random(plan.seed)
    start = T0 + timedelta(seconds=plan.validating_seconds)
    horizon = max(plan.processing_seconds, 1) * 1.5 + 600
    stall_at = T0 + timedelta(seconds=rng.uniform(0, horizon))
    release_at = stall_at + timedelta(seconds=rng.uniform(0, horizon))
    during = stalled(plan, stall_at)
    after = released(during, start, release_at)
    previous = None
    for now in sorted({*instants(plan), stall_at, release_at}):
        state = openai_state(plan if now <= stall_at else during if now < release_at else after, now)
        if previous is not None:
            assert state.finished >= previous.finished
            if stall_at < now <= release_at:
                assert state.finished == previous.finished, "frozen while stalled, and at the release"
            if previous.is_ended:
                assert state.status == previous.status and state.finished == previous.finished
        previous = state
    assert openai_state(during, release_at).finished == openai_state(after, release_at).finished


@pytest.mark.parametrize("plan", random_plans(60, seed=23), ids=lambda p: f"n{p.total}-span{p.processing_seconds}")
def test_an_anthropic_batch_over_a_stall_and_its_release_ends_once_and_never_changes_after(plan):
    rng = random.Random(plan.seed)
    horizon = max(plan.processing_seconds, 1) * 1.5 + 600
    stall_at = T0 + timedelta(seconds=rng.uniform(0, horizon))
    release_at = stall_at + timedelta(seconds=rng.uniform(0, horizon))
    during = stalled(plan, stall_at)
    after = released(during, T0, release_at)
    final = None
    for now in sorted({*instants(plan), stall_at, release_at}):
        state = anthropic_state(plan if now <= stall_at else during if now < release_at else after, now)
        assert sum((state.processing, state.succeeded, state.errored, state.canceled, state.expired)) == plan.total
        if final is not None:
            assert state == final, "an ended batch changed"
        elif state.is_ended:
            final = state
            assert state.ended_at <= now and state.ended_at <= plan.expires_at
    assert final is not None


def test_a_stall_that_begins_after_a_cancel_ended_the_batch_changes_nothing():
    plan = replace(OPENAI_PLAN, cancel_initiated_at=START + timedelta(seconds=100))  # cancelled at +110
    cancelled = openai_state(plan, START + timedelta(seconds=200))
    assert cancelled.status == "cancelled"
    plan = released(stalled(plan, START + timedelta(seconds=300)), START, START + timedelta(seconds=900))
    assert plan.stalled_seconds == 0
    assert openai_state(plan, START + timedelta(seconds=1000)) == cancelled


@pytest.mark.parametrize("stalled_for", [0, 123.456789, 0.000001, 12345.6789])
def test_a_batch_that_processes_to_its_end_finishes_every_request_whatever_its_seconds(stalled_for):
    """Instants are kept to the microsecond and durations are floats: none of that leaves a request
    unfinished (expired) at the natural end, with or without a stall."""
    for seconds in (1234.5678909, 0.3, 59.999999, 7 * 3600 + 0.1234567):
        plan = Plan(
            total=997, created_at=T0, seed=5, processing_seconds=seconds, cancel_grace_seconds=0, error_percent=0
        )
        if stalled_for:
            plan = released(stalled(plan, T0), T0, T0 + timedelta(seconds=stalled_for))
        end = anthropic_state(plan, T0 + timedelta(days=2))
        assert end.expired == 0 and end.succeeded == 997, (seconds, stalled_for)
        openai = openai_state(plan, T0 + timedelta(days=2))
        assert openai.completed == 997 or openai.status == "expired"
