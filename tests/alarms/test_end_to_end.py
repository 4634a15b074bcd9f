"""Alarms end to end: the embedded simulator, whose batches can be stalled (dashboard/simulator/stall.py),
the poller's cycles and a fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command

from dashboard.alarms import selectors
from dashboard.batches import poller
from dashboard.models import Alarm
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
        return [(a.rule, a.batch.batch_id if a.batch else a.account) for a in selectors.open_alarms()]

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
    assert not selectors.open_alarms().exists()
    poller.run_cycle(owner="test", now=start + timedelta(minutes=10))
    failing = selectors.open_alarms().get()
    assert (failing.rule, failing.account, failing.batch) == ("account_failing", "anthropic-ops", None)
    assert "Polls have failed since the last success" in failing.detail
    fault("anthropic", "ops", "")
    poller.run_cycle(owner="test", now=start + timedelta(minutes=11))
    failing.refresh_from_db()
    assert failing.resolved_at == start + timedelta(minutes=11)


@pytest.mark.django_db
def test_the_demos_anthropic_requests_expire_only_in_a_batch_that_outlives_its_24_hours():
    """As on Anthropic, a request expires only when its batch reaches its 24 hours unfinished: a demo
    batch that ends within them ends with none expired, so watching the demo opens no "ended badly"
    alarm over one or two expired requests."""
    from dashboard.simulator.models import Provider, SimBatch
    from dashboard.simulator.progression import anthropic_end, anthropic_state

    call_command("seed_demo", stdout=None)
    seen = {"within": 0, "outlived": 0}
    for batch in SimBatch.objects.filter(account__provider=Provider.ANTHROPIC, is_demo=True):
        plan = batch.plan()
        ended_at, _ = anthropic_end(plan)
        expired = anthropic_state(plan, ended_at).expired
        if ended_at < plan.expires_at:
            seen["within"] += 1
            assert expired == 0, f"{batch.public_id} ended within its 24 hours with {expired} expired"
        else:
            seen["outlived"] += 1
            assert expired > 0, f"{batch.public_id} outlived its 24 hours with none expired"
    assert seen["within"] >= 10 and seen["outlived"] >= 1, seen


def test_a_first_start_opens_no_alarm_about_what_ended_before_it_and_a_new_failure_still_alarms(
    embedded_upstream, openai_sdk
):
    """The demo holds batches that ended badly hours ago (failed, expired, too many errors): the first
    cycles store them and the header counts them, but only what runs now can open an alarm."""
    from django.utils import timezone

    from dashboard.accounts import configured_accounts
    from dashboard.batches.header_figures import header_figures
    from dashboard.models import AccountState, StoredBatch

    call_command("seed_demo", stdout=None)
    start = timezone.now() - timedelta(minutes=30)  # the first start, half an hour ago
    minute = 0
    while AccountState.objects.filter(backfill_done=False).exists() or minute == 0:
        poller.run_cycle(owner="test", now=start + timedelta(seconds=minute))
        minute += 1
        assert minute < 50, "the demo's history is read within a few cycles"
    failed_before = StoredBatch.objects.filter(is_ended=True, status__in=("failed", "Failed", "Expired", "expired"))
    assert failed_before.count() >= 8, "the demo has history that ended badly"
    assert header_figures(accounts=configured_accounts()).total.ended, "the header still counts what ended"
    assert not Alarm.objects.filter(rule="ended_badly").exists()
    assert all(not alarm.batch.is_ended for alarm in Alarm.objects.exclude(batch=None))

    broken = openai_batch(openai_sdk, lines=[{"custom_id": "x", "method": "POST"}], seconds=60)
    time_passes(broken.id, minutes=5)  # created since the first start, and failed before the next poll
    poller.run_cycle(owner="test", now=timezone.now())
    assert openai_sdk().batches.retrieve(broken.id).status == "failed"
    assert [(a.rule, a.batch.batch_id) for a in Alarm.objects.filter(rule="ended_badly")] == [
        ("ended_badly", broken.id)
    ]
