"""Gemini's progression: pending, running with growing counts, then succeeded, cancelled, expired or
failed; every state a function of the plan and the instant (no database, no HTTP)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.simulator.progression import GEMINI_WINDOW_HOURS, Plan, gemini_state
from tests.simulator.test_simulator_progression import random_plans

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PLAN = Plan(
    total=100,
    created_at=T0,
    seed=99,
    processing_seconds=100,
    cancel_grace_seconds=5,
    error_percent=10,
    validating_seconds=10,
    window_hours=GEMINI_WINDOW_HOURS,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_pending_then_running_then_succeeded():
    pending = gemini_state(PLAN, at(5))
    assert (pending.state, pending.pending, pending.finished, pending.updated_at) == ("BATCH_STATE_PENDING", 100, 0, T0)
    running = gemini_state(PLAN, at(60))
    assert running.state == "BATCH_STATE_RUNNING" and 0 < running.finished < 100
    assert running.succeeded + running.failed + running.pending == 100 and running.ended_at is None
    assert at(10) <= running.updated_at <= at(60)
    done = gemini_state(PLAN, at(200))
    assert (done.state, done.finished, done.pending, done.ended_at, done.updated_at) == (
        "BATCH_STATE_SUCCEEDED",
        100,
        0,
        at(110),
        at(110),
    )
    assert done.failed > 0 and done.succeeded + done.failed == 100


def test_a_cancel_ends_the_batch_cancelled_after_its_grace_still_running_meanwhile():
    plan = replace(PLAN, cancel_initiated_at=at(40))
    assert gemini_state(plan, at(43)).state == "BATCH_STATE_RUNNING"  # no "cancelling" state in Gemini
    done = gemini_state(plan, at(60))
    assert (done.state, done.ended_at) == ("BATCH_STATE_CANCELLED", at(45))
    assert 0 < done.finished < 100 and done.pending == 0
    assert gemini_state(plan, at(10_000)) == done  # nothing moves once ended


def test_a_cancel_while_pending_runs_nothing():
    done = gemini_state(replace(PLAN, cancel_initiated_at=at(1)), at(30))
    assert (done.state, done.finished, done.succeeded, done.failed) == ("BATCH_STATE_CANCELLED", 0, 0, 0)


def test_a_batch_that_would_run_past_48_hours_expires_then():
    plan = replace(PLAN, processing_seconds=60 * 3600)
    assert gemini_state(plan, at(GEMINI_WINDOW_HOURS * 3600 - 1)).state == "BATCH_STATE_RUNNING"
    done = gemini_state(plan, at(GEMINI_WINDOW_HOURS * 3600 + 1))
    assert (done.state, done.ended_at) == ("BATCH_STATE_EXPIRED", T0 + timedelta(hours=48))
    assert 0 < done.finished < 100


def test_an_unreadable_input_fails_when_it_would_have_started():
    plan = replace(PLAN, total=0, input_is_valid=False)
    assert gemini_state(plan, at(5)).state == "BATCH_STATE_PENDING"
    failed = gemini_state(plan, at(11))
    assert (failed.state, failed.ended_at, failed.finished) == ("BATCH_STATE_FAILED", at(10), 0)


def test_a_stall_freezes_the_counts_and_holds_the_end_off():
    plan = replace(PLAN, stalled_at=at(50))
    frozen = gemini_state(plan, at(60))
    assert frozen == gemini_state(plan, at(5000)) and frozen.state == "BATCH_STATE_RUNNING"


@pytest.mark.parametrize("plan", random_plans(40, openai=True, seed=11))
def test_counts_only_grow_and_always_add_up(plan):
    plan = replace(plan, window_hours=GEMINI_WINDOW_HOURS)
    previous = None
    for seconds in [0, 1, 5, 30, 120, 600, 3600, 30 * 3600, 47 * 3600, 49 * 3600]:
        state = gemini_state(plan, at(seconds))
        assert state.succeeded + state.failed + state.pending <= state.total
        assert state.is_ended or state.succeeded + state.failed + state.pending == state.total
        if previous is not None:
            assert state.finished >= previous.finished and (not previous.is_ended or state == previous)
        previous = state
