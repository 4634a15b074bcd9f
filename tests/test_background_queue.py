"""The task queue's own upkeep (dashboard/background.py): finished tasks pruned after
TASK_RESULTS_KEEP_DAYS, at most once an hour a process, and work whose task was pruned still found."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from dashboard import background
from dashboard.bulk.operations import cancel_operation
from dashboard.notifications.dispatch import deliver

Status = background.Status


@pytest.fixture(autouse=True)
def never_pruned(monkeypatch):
    monkeypatch.setattr(background, "_last_pruned", None)


def task_row(task, *, status: str, finished_days_ago: float | None, **kwargs) -> str:
    result = task.enqueue(**kwargs)
    finished = None if finished_days_ago is None else timezone.now() - timedelta(days=finished_days_ago)
    DBTaskResult.objects.filter(pk=result.id).update(status=status, finished_at=finished)
    return str(result.id)


def stored() -> set[str]:
    return {str(pk) for pk in DBTaskResult.objects.values_list("pk", flat=True)}


def test_finished_tasks_older_than_the_keep_days_are_deleted_and_nothing_else(db, settings):
    settings.TASK_RESULTS_KEEP_DAYS = 14
    old_success = task_row(cancel_operation, status=Status.SUCCESSFUL, finished_days_ago=15, operation_id=1)
    old_failure = task_row(deliver, status=Status.FAILED, finished_days_ago=30, delivery_id=1)
    recent = task_row(cancel_operation, status=Status.SUCCESSFUL, finished_days_ago=13, operation_id=2)
    waiting = task_row(deliver, status=Status.READY, finished_days_ago=None, delivery_id=2)
    running = task_row(cancel_operation, status=Status.RUNNING, finished_days_ago=None, operation_id=3)
    DBTaskResult.objects.filter(pk__in=[waiting, running]).update(enqueued_at=timezone.now() - timedelta(days=40))

    assert background.prune(now=timezone.now()) == 2
    assert stored() == {recent, waiting, running}
    assert old_success not in stored() and old_failure not in stored()


def test_pruning_runs_at_most_once_an_hour_in_a_process(db, settings):
    settings.TASK_RESULTS_KEEP_DAYS = 1
    now = timezone.now()
    assert background.prune(now=now) == 0  # nothing to prune: the hour starts anyway
    first = task_row(cancel_operation, status=Status.SUCCESSFUL, finished_days_ago=2, operation_id=1)
    assert background.prune(now=now + timedelta(minutes=59)) == 0
    assert first in stored()
    assert background.prune(now=now + timedelta(minutes=61)) == 1
    assert first not in stored()


def test_a_sweep_with_pruning_among_its_sweepers_never_raises(db, settings, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(DBTaskResult.objects, "filter", broken)
    background.sweep(timezone.now(), [background.prune])
    assert "background sweep prune failed" in caplog.text
