"""Budget alarms (alarms/rules.py `budget_alarms`, evaluation.py `load_budgets`/`load_spend`): an account's
(or every account's together) estimated spend reaching a share of its daily or monthly budget, and the whole
of it; notified like every alarm; no query for spend while no budget is set."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from dashboard.alarms import evaluation
from dashboard.alarms.rules import ALL_ACCOUNTS, Budget, Snapshot, SpendFacts, budget_alarms, conditions
from dashboard.models import Alarm, AlarmThreshold, BatchTokens
from dashboard.models import AlarmRule as Rule
from dashboard.notifications.models import Delivery, NotificationChannel
from dashboard.spend import table
from tests.alarms.store_rows import KEYS, T0, anthropic_row

BUDGETS = {Rule.BUDGET_DAY_NEAR, Rule.BUDGET_DAY_OVER, Rule.BUDGET_MONTH_NEAR, Rule.BUDGET_MONTH_OVER}
DAY = T0.date()


@pytest.fixture(autouse=True)
def fresh_price_table():
    table._table.cache_clear()
    yield
    table._table.cache_clear()


def spend(today: str = "0", month: str = "0", **unpriced: int) -> SpendFacts:
    return SpendFacts(account="anthropic-ops", day=DAY, today=Decimal(today), month=Decimal(month), **unpriced)


def daily(usd: str, near: float | None = 80, account: str = "anthropic-ops") -> Budget:
    return Budget(account=account, period="day", usd=Decimal(usd), near_percent=near)


# --- the rule, pure ------------------------------------------------------------------------------


def test_nearly_spent_from_the_share_and_spent_from_the_whole():
    assert budget_alarms(daily("100"), spend(today="79.99")) == []
    [(rule, detail)] = budget_alarms(daily("100"), spend(today="80"))
    assert rule == Rule.BUDGET_DAY_NEAR
    assert detail == (
        "The account spent an estimated $80.00 of its $100.00 daily budget on 2026-11-25 (UTC): 80% (warns from 80%)."
        " Batches that ended then and those still running, at the price table's prices."
    )
    found = budget_alarms(daily("100"), spend(today="100"))
    assert [rule for rule, _ in found] == [Rule.BUDGET_DAY_NEAR, Rule.BUDGET_DAY_OVER]
    assert "spent an estimated $100.00 of its $100.00 daily budget on 2026-11-25 (UTC): 100%." in found[1][1]


def test_a_budget_without_a_warning_and_a_budget_of_nothing():
    assert [rule for rule, _ in budget_alarms(daily("10", near=None), spend(today="9.99"))] == []
    assert [rule for rule, _ in budget_alarms(daily("10", near=None), spend(today="10"))] == [Rule.BUDGET_DAY_OVER]
    assert budget_alarms(daily("0"), spend()) == []  # nothing spent: nothing over
    [(_, _), (over, detail)] = budget_alarms(daily("0"), spend(today="0.01"))
    assert over == Rule.BUDGET_DAY_OVER and "over a budget of $0" in detail


def test_monthly_budgets_read_the_month_and_say_unpriced_tokens():
    budget = Budget(account=ALL_ACCOUNTS, period="month", usd=Decimal(1000), near_percent=90)
    found = budget_alarms(budget, spend(today="1", month="950", unpriced_month=1234))
    [(rule, detail)] = found
    assert rule == Rule.BUDGET_MONTH_NEAR
    assert detail.startswith("All accounts together spent an estimated $950.00 of their $1,000.00 monthly budget")
    assert "in November 2026 up to 2026-11-25 (UTC): 95% (warns from 90%)" in detail
    assert detail.endswith("; 1,234 tokens without a price are not counted.")


def test_conditions_key_budget_alarms_by_account_with_no_batch():
    snapshot = Snapshot(budgets=[daily("5")], spend={"anthropic-ops": spend(today="6")})
    held = conditions(snapshot, T0)
    assert set(held) == {("budget_day_near", "anthropic-ops", None), ("budget_day_over", "anthropic-ops", None)}
    assert conditions(Snapshot(budgets=[daily("5")]), T0) == {}  # no spend known: nothing spent


# --- against the store ---------------------------------------------------------------------------


def budget(account: str, rule: Rule, value: float | None, enabled: bool = True) -> None:
    AlarmThreshold.objects.create(account=account, rule=rule, value=value, enabled=enabled)


def spent(number: int, *, model: str = "claude-opus-4-1", ended: bool = True, day_offset: int = 0, **tokens: int):
    """A batch of anthropic-ops with these tokens, ended on T0's day (+ `day_offset`) or running."""
    created = T0 + timedelta(days=day_offset) - timedelta(hours=2)
    row = anthropic_row(
        number, created=created, at=created + timedelta(hours=1), ended_after=timedelta(hours=1) if ended else None
    )
    BatchTokens.objects.create(batch=row, model=model, **tokens)
    return row


def budget_alarms_open() -> set[tuple[str, str]]:
    return set(Alarm.objects.filter(resolved_at=None, rule__in=BUDGETS).values_list("rule", "account"))


def test_a_daily_budget_warns_then_alarms_then_resolves_the_next_day_and_is_notified(db):
    NotificationChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    budget("anthropic-ops", Rule.BUDGET_DAY_OVER, 10)
    spent(1, input=1_000_000)  # $7.50 (batch price of $15 list)
    assert budget_alarms_open() == set()
    evaluation.evaluate(T0, accounts=KEYS)
    assert budget_alarms_open() == set()
    spent(2, ended=False, input=100_000)  # running: +$0.75 today, $8.25 = 82.5%
    evaluation.evaluate(T0 + timedelta(minutes=1), accounts=KEYS)
    assert budget_alarms_open() == {("budget_day_near", "anthropic-ops")}
    spent(3, model="claude-fable-9", input=5)  # no price: said, not counted
    spent(4, output=100_000)  # +$3.75: $12.00
    evaluation.evaluate(T0 + timedelta(minutes=2), accounts=KEYS)
    assert budget_alarms_open() == {("budget_day_near", "anthropic-ops"), ("budget_day_over", "anthropic-ops")}
    over = Alarm.objects.get(rule="budget_day_over", resolved_at=None)
    assert "$12.00 of its $10.00 daily budget on 2026-11-25 (UTC): 120%" in over.detail
    assert "5 tokens without a price are not counted" in over.detail
    assert Delivery.objects.filter(alarm=over, event="opened").exists(), "notified through the channels"
    # the next day: yesterday's ended batches are not today's spend; the running one still counts (today)
    evaluation.evaluate(T0 + timedelta(days=1), accounts=KEYS)
    assert budget_alarms_open() == set()


def test_a_monthly_budget_of_every_account_together_and_a_share_of_its_own(db):
    budget(ALL_ACCOUNTS, Rule.BUDGET_MONTH_OVER, 100)
    budget(ALL_ACCOUNTS, Rule.BUDGET_MONTH_NEAR, 5)
    spent(1, day_offset=-20, input=1_000_000)  # $7.50 on 5 November
    evaluation.evaluate(T0, accounts=KEYS)
    assert budget_alarms_open() == {("budget_month_near", ALL_ACCOUNTS)}
    # December: a new month
    evaluation.evaluate(T0 + timedelta(days=6), accounts=KEYS)
    assert budget_alarms_open() == set()


def test_a_switched_off_budget_or_warning(db):
    budget("anthropic-ops", Rule.BUDGET_DAY_OVER, 1, enabled=False)
    spent(1, input=1_000_000)
    evaluation.evaluate(T0, accounts=KEYS)
    assert budget_alarms_open() == set()
    AlarmThreshold.objects.update(enabled=True)
    budget("anthropic-ops", Rule.BUDGET_DAY_NEAR, None, enabled=False)
    evaluation.evaluate(T0 + timedelta(minutes=1), accounts=KEYS)
    assert budget_alarms_open() == {("budget_day_over", "anthropic-ops")}


def test_no_budget_no_spend_query(db, django_assert_num_queries):
    spent(1, input=1_000_000)
    # thresholds (budgets among them), account states, running batches, ended batches: no query of tokens
    with django_assert_num_queries(4) as captured:
        evaluation.load_snapshot(T0, KEYS)
    assert not any("batchtokens" in query["sql"].lower() for query in captured.captured_queries)
    budget("anthropic-ops", Rule.BUDGET_DAY_OVER, 10)
    with django_assert_num_queries(6):  # and the spend of the day and the month: two
        snapshot = evaluation.load_snapshot(T0, KEYS)
    assert snapshot.spend["anthropic-ops"].today == Decimal("7.5")


def test_the_alarms_page_shows_every_accounts_budget_only_to_one_who_sees_every_account(db, client, operator_client):
    from django.utils import timezone

    from tests.conftest import make_user

    now = timezone.now()
    Alarm.objects.create(
        rule=Rule.BUDGET_DAY_OVER, account=ALL_ACCOUNTS, opened_at=now, last_seen_at=now, detail="over budget"
    )
    body = operator_client.get("/alarms/").content.decode()
    assert "All accounts" in body and "daily budget spent" in body
    client.force_login(make_user("ops-only", can_cancel=False, roles=("viewer",), accounts="anthropic-ops"))
    body = client.get("/alarms/").content.decode()
    assert "over budget" not in body and "daily budget spent" not in body


def test_a_budget_alarm_links_to_the_spend_page(db, settings):
    from django.utils import timezone

    from dashboard.notifications.messages import email_message, payload_for

    settings.DASHBOARD_URL = "https://batches.example.com/"
    now = timezone.now()
    alarm = Alarm.objects.create(
        rule=Rule.BUDGET_MONTH_OVER, account=ALL_ACCOUNTS, opened_at=now, last_seen_at=now, detail="All accounts ..."
    )
    payload = payload_for(alarm, "opened", batch_id=None, secrets=[])
    assert payload["alarm"]["url"] == "https://batches.example.com/spend/"
    subject, body = email_message(payload)
    assert subject == "[batch dashboard] Alarm opened: monthly budget spent — all accounts"
    assert "https://batches.example.com/spend/" in body
