"""Evaluating the alarm rules against the store (dashboard/alarms/evaluation.py): an alarm opens once,
stays open, resolves, opens anew; a few queries whatever the number of batches; the one notification
hook; and the poller evaluating after each cycle, one at a time (the evaluator's lease)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from dashboard.alarms import evaluation, selectors
from dashboard.batches import poller, store
from dashboard.models import AccountState, Alarm, AlarmThreshold, StoredBatch
from dashboard.models import AlarmRule as Rule
from tests.alarms.store_rows import KEYS, T0, anthropic_row, evaluate, openai_row

S = timedelta(seconds=1)

# --- evaluating against the store: open once, stay open, resolve, open anew ------------------------


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
    assert evaluation.evaluate(T0 + timedelta(hours=1), accounts=["anthropic-ops"]).opened == []
    AccountState.objects.create(account="openai-research", provider="openai", consecutive_failures=3)
    assert evaluation.evaluate(T0, accounts=KEYS).opened == []


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


def test_every_change_goes_through_the_one_notification_hook_inside_the_transaction(db, monkeypatch):
    from django.db import connection

    calls = []

    def hook(opened, resolved):
        calls.append(([a.rule for a in opened], [a.rule for a in resolved], connection.in_atomic_block))

    monkeypatch.setattr(evaluation, "alarms_changed", hook)
    openai_row(1, created=T0, at=T0 + timedelta(minutes=30))
    evaluate(T0 + timedelta(minutes=30))
    evaluate(T0 + timedelta(minutes=31))  # nothing changed: not called
    openai_row(1, created=T0, at=T0 + timedelta(minutes=32), completed=1)
    evaluate(T0 + timedelta(minutes=32))
    assert calls == [(["stuck"], [], True), ([], ["stuck"], True)]


# --- the poller evaluates, one at a time, and an alarm's failure never stops it ---------------------


def test_one_poller_holds_the_evaluator_until_its_lease_expires(db):
    assert evaluation.claim_evaluator("a", now=T0, seconds=30)
    assert not evaluation.claim_evaluator("b", now=T0 + timedelta(seconds=29), seconds=30)
    assert evaluation.claim_evaluator("a", now=T0 + timedelta(seconds=10), seconds=30), "renewed by its holder"
    assert not evaluation.claim_evaluator("b", now=T0 + timedelta(seconds=39), seconds=30)
    assert evaluation.claim_evaluator("b", now=T0 + timedelta(seconds=41), seconds=30), "a dead poller's lease"
    evaluation.release_evaluator("b")
    assert evaluation.claim_evaluator("a", now=T0 + timedelta(seconds=42), seconds=30)


@pytest.fixture
def evaluations(monkeypatch, settings):
    """evaluation.evaluate, recorded: (when, accounts) per evaluation."""
    settings.POLL_LEASE_SECONDS = 30
    seen: list[tuple[datetime, list[str]]] = []
    monkeypatch.setattr(
        evaluation, "evaluate", lambda now, accounts: seen.append((now, accounts)) or evaluation.Evaluation()
    )
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
    monkeypatch.setattr(poller, "poll_account", lambda account, now, owner, **_: poller.PollResult(account=account.key))
    assert [result.account for result in poller.run_cycle(owner="a", now=T0, accounts=[account])] == ["openai-ops"]
    assert evaluations == [(T0, ["openai-ops"])]


def test_alarms_can_be_switched_off(db, evaluations, settings):
    settings.ALARMS_ENABLED = False
    poller.run_cycle(owner="a", now=T0, accounts=[])
    assert evaluations == []


def test_a_failing_evaluation_is_logged_and_noted_and_polling_goes_on(db, monkeypatch, caplog):
    from dashboard.accounts import Account

    account = Account(name="ops", provider="openai", base_url="https://api.openai.com/v1", api_key="sk-x" * 4)
    monkeypatch.setattr(
        poller, "poll_account", lambda account, now, owner, **_: poller.PollResult(account=account.key, listed=3)
    )

    def broken(now, accounts):
        raise RuntimeError("the alarm rules broke")

    monkeypatch.setattr(evaluation, "evaluate", broken)
    results = poller.run_cycle(owner="a", now=T0, accounts=[account])
    assert [(result.account, result.listed) for result in results] == [("openai-ops", 3)]
    assert "alarm evaluation failed (polling goes on)" in caplog.text
    assert selectors.evaluator().last_error == "RuntimeError: the alarm rules broke"


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
        return evaluation.Evaluation()

    monkeypatch.setattr(evaluation, "evaluate", slow)
    results = in_threads(4, lambda i: poller.evaluate_alarms(owner=f"poller-{i}", now=T0, accounts=[]))
    assert sum(isinstance(result, evaluation.Evaluation) for result in results) == 1
    assert results.count(None) == 3 and most[0] == 1


def test_evaluations_at_once_never_open_an_alarm_twice(transactional_db):
    openai_row(1, created=T0, at=T0 + timedelta(minutes=30))
    results = in_threads(4, lambda i: evaluate(T0 + timedelta(minutes=30)))
    assert not [result for result in results if isinstance(result, Exception)]
    assert sum(len(result.opened) for result in results) == 1
    assert Alarm.objects.count() == 1


def test_an_azure_batch_at_the_end_of_its_24_hours_raises_no_expiring_alarm(db):
    """Azure does not expire a batch that runs longer (its expires_at is no deadline); OpenAI's does."""
    from tests.factories import stored_batch

    at = T0 + timedelta(hours=23, minutes=30)
    for account in ("openai-ops", "azure-openai-ops"):
        stored_batch(account, "batch_near_its_24_hours", created=T0, first_seen_at=T0, fetched_at=at)
    opened = evaluation.evaluate(at, accounts=["openai-ops", "azure-openai-ops"]).opened
    assert [alarm.account for alarm in opened if alarm.rule == Rule.EXPIRING] == ["openai-ops"]
    assert {alarm.account for alarm in opened if alarm.rule == Rule.STUCK} == {"openai-ops", "azure-openai-ops"}


# --- alarms about now: history the poller fills in opens none ------------------------------------


@pytest.mark.parametrize(
    ("seen_running", "created_after_first_poll", "account_polled", "in_view"),
    [
        (True, False, True, True),  # watched while it ran
        (False, True, True, True),  # created and ended between two polls
        (False, False, True, False),  # ended before the dashboard first read the account: history
        (False, True, False, False),  # the account's polls have never succeeded: only what ran in view
        (True, False, False, True),
    ],
)
def test_an_end_is_in_view_when_the_dashboard_saw_the_batch_run_or_it_was_created_after_the_first_poll(
    seen_running, created_after_first_poll, account_polled, in_view
):
    first_poll = T0
    created = T0 + S if created_after_first_poll else T0 - S
    assert (
        evaluation.ended_in_view(
            seen_running=seen_running, created_at=created, first_success_at=first_poll if account_polled else None
        )
        is in_view
    )


def failed_openai(number: int, *, created: datetime, first_seen: datetime, running_first: bool) -> StoredBatch:
    """An OpenAI batch that ended `failed`, stored first at `first_seen` (running then, or already failed)."""
    from tests.factories import stored_batch

    batch_id = f"batch_{number:032d}"
    if running_first:
        stored_batch("openai-ops", batch_id, created=created, fetched_at=first_seen)
    return stored_batch(
        "openai-ops",
        batch_id,
        created=created,
        fetched_at=first_seen + timedelta(minutes=5),
        status="failed",
        failed_at=int((first_seen + timedelta(minutes=5)).timestamp()),
        request_counts={"total": 0, "completed": 0, "failed": 0},
    )


def test_only_batches_that_ended_while_the_dashboard_watched_open_ended_badly_alarms(db):
    AccountState.objects.create(account="openai-ops", provider="openai", first_success_at=T0)
    history = failed_openai(1, created=T0 - timedelta(hours=5), first_seen=T0, running_first=False)
    watched = failed_openai(2, created=T0 - timedelta(hours=5), first_seen=T0, running_first=True)
    between_polls = failed_openai(
        3, created=T0 + timedelta(minutes=1), first_seen=T0 + timedelta(minutes=2), running_first=False
    )
    assert (history.seen_running, watched.seen_running, between_polls.seen_running) == (False, True, False)
    opened = evaluate(T0 + timedelta(minutes=10)).opened
    assert sorted(alarm.batch.pk for alarm in opened) == [watched.pk, between_polls.pk]
    assert {alarm.rule for alarm in opened} == {"ended_badly"}


def test_a_batch_first_stored_ended_and_then_seen_running_again_counts_as_seen_running(db):
    from tests.factories import stored_batch

    AccountState.objects.create(account="openai-ops", provider="openai", first_success_at=T0)
    row = failed_openai(1, created=T0 - timedelta(hours=5), first_seen=T0, running_first=False)
    stored_batch("openai-ops", row.batch_id, created=T0 - timedelta(hours=5), fetched_at=T0 + timedelta(minutes=6))
    row.refresh_from_db()
    assert row.seen_running and not row.is_ended


def test_the_first_successful_poll_is_kept_and_a_failed_one_sets_nothing(embedded_upstream):
    from dashboard.accounts import configured_accounts
    from tests.factories import fault

    account = next(account for account in configured_accounts() if account.key == "openai-ops")
    start = T0
    fault("openai", "ops", "500")
    poller.poll_account(account, now=start)
    assert AccountState.objects.get(account="openai-ops").first_success_at is None
    fault("openai", "ops", "")
    poller.poll_account(account, now=start + timedelta(minutes=1))
    poller.poll_account(account, now=start + timedelta(minutes=2))
    assert AccountState.objects.get(account="openai-ops").first_success_at == start + timedelta(minutes=1)
