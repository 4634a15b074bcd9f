"""What the pages read of the alarms (dashboard/alarms/selectors.py)."""

from __future__ import annotations

from datetime import timedelta

from dashboard.alarms import selectors, services
from dashboard.models import AccountState
from tests.alarms.store_rows import T0, evaluate, openai_row


def test_the_selectors_read_open_alarms_all_per_account_and_per_batch(db, operator, django_assert_num_queries):
    first = openai_row(1, created=T0, at=T0 + timedelta(minutes=30))
    second = openai_row(2, created=T0, at=T0 + timedelta(minutes=30), completed=40, failed=20)
    AccountState.objects.create(account="anthropic-ops", provider="anthropic", consecutive_failures=1)
    evaluate(T0 + timedelta(minutes=30))
    with django_assert_num_queries(1):
        everything = [(alarm.rule, alarm.batch.batch_id if alarm.batch else None) for alarm in selectors.open_alarms()]
    assert sorted(everything, key=str) == sorted(
        [
            ("account_failing", None),
            ("stuck", first.batch_id),
            ("stuck", second.batch_id),
            ("error_rate", second.batch_id),
        ],
        key=str,
    )
    assert [alarm.rule for alarm in selectors.open_alarms_for_account(account="anthropic-ops")] == ["account_failing"]
    assert sorted(
        alarm.rule for alarm in selectors.open_alarms_for_batch(account="openai-ops", batch_id=second.batch_id)
    ) == [
        "error_rate",
        "stuck",
    ]
    with django_assert_num_queries(1):
        by_batch = selectors.open_alarms_by_batch(batch_pks=[first.pk, second.pk])
    assert {pk: len(found) for pk, found in by_batch.items()} == {first.pk: 1, second.pk: 2}
    services.acknowledge(alarm=selectors.open_alarms_for_account(account="anthropic-ops").get(), user=operator)
    with django_assert_num_queries(1):
        assert selectors.open_alarm_counts() == selectors.OpenCounts(open=4, unacknowledged=3)
    openai_row(1, created=T0, at=T0 + timedelta(minutes=31), completed=1)
    evaluate(T0 + timedelta(minutes=31))
    assert selectors.open_alarm_counts().open == 3
    assert len(selectors.recent_alarms(since=T0)) == 4
    assert len(selectors.recent_alarms(since=T0 + timedelta(hours=1))) == 3
    assert selectors.evaluator().last_evaluated_at == T0 + timedelta(minutes=31)
