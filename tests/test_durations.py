"""A duration in words (dashboard/durations.py): the one way the dashboard says one."""

from __future__ import annotations

import pytest

from dashboard.durations import in_words


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "under a minute"),
        (29, "under a minute"),
        (31, "1 min"),
        (45 * 60, "45 min"),
        (59 * 60 + 40, "1 h"),
        (2 * 3600, "2 h"),
        (2 * 3600 + 10 * 60 + 29, "2 h 10 min"),
        (2 * 3600 + 5 * 60, "2 h 5 min"),
        (50 * 3600, "50 h"),
    ],
)
def test_to_the_minute(seconds, said):
    assert in_words(seconds) == said


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "0 s"),
        (8, "8 s"),
        (-3, "0 s"),
        (65, "1 min 5 s"),
        (60, "1 min"),
        (19 * 60, "19 min"),
        (3600, "1 h"),
        (3600 + 7, "1 h 7 s"),
        (2 * 3600 + 10 * 60 + 29, "2 h 10 min 29 s"),
    ],
)
def test_to_the_second(seconds, said):
    assert in_words(seconds, to_the_second=True) == said


def test_the_pages_and_the_alarms_say_durations_with_it():
    from datetime import timedelta

    from dashboard.templatetags.batches import seconds_text

    assert seconds_text(timedelta(seconds=8)) == "8 s"
    assert seconds_text(timedelta(minutes=1, seconds=5)) == "1 min 5 s"
