"""How long an account's ended batches ran (dashboard/batches/run_times.py): what the stuck alarm and
the time-left estimate compare a running batch with."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dashboard.batches import run_times
from dashboard.providers import anthropic, openai


def test_percentile_is_the_nearest_rank():
    assert run_times.percentile(range(1, 21), 95) == 19
    assert run_times.percentile(range(1, 101), 95) == 95
    assert run_times.percentile([7.0], 95) == 7.0
    assert run_times.percentile([5, 1, 3], 95) == 5
    assert run_times.percentile(range(1, 11), 10) == 1
    with pytest.raises(ValueError):
        run_times.percentile([], 95)


def test_a_similar_size_is_at_most_twice_bigger_or_smaller():
    assert run_times.similar_size_range(1000) == (500, 2000)
    assert run_times.similar_size_range(3) == (2, 6)
    past = [(499, 1.0), (500, 2.0), (2000, 3.0), (2001, 4.0)]
    assert run_times.of_similar_size(1000, past) == [2.0, 3.0]


def test_failed_statuses_are_the_provider_s_own_or_those_named_failed_or_expired():
    assert run_times.failed_statuses(openai) == {"failed", "expired"}
    assert run_times.failed_statuses(anthropic) == frozenset()
    undeclared = SimpleNamespace(ENDED=("done", "failed", "expired", "cancelled"))
    assert run_times.failed_statuses(undeclared) == {"failed", "expired"}
