"""Background work on a task queue: Django's tasks API (the `django-tasks` backport of `django.tasks`)
on its database backend (`django-tasks-db`), the queue a table of the dashboard's own database.

The backend runs each task once, in a worker (`manage.py work`), and keeps its state (ready, running,
successful, failed; when; which workers; the traceback): it retries nothing, and a task whose worker
was killed mid-way stays "running" for ever. What it leaves out is done here, with what the work's
own rows already know: bulk cancel items and notification deliveries carry claims (leases.py) that
expire when their worker is gone, so a sweep (`sweep`, run by every worker every
WORKER_SWEEP_SECONDS) finds the work nobody holds and makes its task ready again (`run_again`, the
same task row: its `worker_ids` then name every worker that ran it) or enqueues one
(`enqueue_once`). Delivery is at least once; the claims make a second run harmless (an item is
never canceled twice, a delivery never sent twice at the same moment).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.db.models import Model
from django.utils import timezone
from django_tasks.base import DEFAULT_TASK_BACKEND_ALIAS, Task, TaskResultStatus
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

logger = logging.getLogger(__name__)

# Set when this worker process is told to stop: a long task (a bulk cancel) hands the rest of its work
# back between two items rather than holding the stop, and the sweep has it run again elsewhere.
stopping = threading.Event()

# A task that failed (its database or cache gone, say) is run again after this long, not at every sweep.
RETRY_FAILED_AFTER = timedelta(seconds=10)

BULK_QUEUE = "bulk"
NOTIFY_QUEUE = "notifications"
QUEUES = (BULK_QUEUE, NOTIFY_QUEUE)
Status = TaskResultStatus


@dataclass(frozen=True)
class TaskState:
    """What a page says about a task: its status, how many times a worker took it, the last error."""

    id: str
    status: str  # READY, RUNNING, SUCCESSFUL, FAILED
    runs: int
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str  # the exception's class of a failed run, else ""

    @property
    def words(self) -> str:
        if self.status == Status.READY:
            return "queued, waiting for a worker" if not self.runs else f"queued again (run {self.runs} times so far)"
        if self.status == Status.RUNNING:
            return "running" + (f" (run {self.runs})" if self.runs > 1 else "")
        if self.status == Status.FAILED:
            return f"failed ({self.error.rsplit('.', 1)[-1] or 'error'}): it is retried"
        return "done" + (f" after {self.runs} runs" if self.runs > 1 else "")


def states(task_ids: Iterable) -> dict[str, TaskState]:
    """The tasks' states by id (as text); a task no longer stored (pruned) is left out."""
    wanted = [str(task_id) for task_id in task_ids if task_id]
    if not wanted:
        return {}
    rows = DBTaskResult.objects.filter(pk__in=wanted).values(
        "id", "status", "worker_ids", "enqueued_at", "started_at", "finished_at", "exception_class_path"
    )
    return {
        str(row["id"]): TaskState(
            id=str(row["id"]),
            status=row["status"],
            runs=len(row["worker_ids"] or []),
            enqueued_at=row["enqueued_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            error=row["exception_class_path"] or "",
        )
        for row in rows
    }


def state(task_id) -> TaskState | None:
    return states([task_id]).get(str(task_id)) if task_id else None


def enqueue_once(task: Task, *, row: Model, field: str = "task_id", **kwargs) -> str | None:
    """Enqueue `task(**kwargs)` for `row` and note its id in `row.<field>`, in one transaction, only
    if that field still holds what `row` holds now: of two sweeps at once, one enqueues. The id, or
    None if another did."""
    expected = getattr(row, field)
    with transaction.atomic():
        result = task.enqueue(**kwargs)
        noted = type(row).objects.filter(pk=row.pk, **{field: expected}).update(**{field: result.id})
        if not noted:
            transaction.set_rollback(True)
            return None
    setattr(row, field, result.id)
    return result.id


def run_again(
    task_id, *, was: Iterable[str], started_before: datetime | None = None, finished_before: datetime | None = None
) -> bool:
    """Make the task ready to run at once if it is in a status of `was` (and, if given, started
    before `started_before`, finished before `finished_before`): True if this call did (a
    conditional UPDATE: of two sweeps, one)."""
    rows = DBTaskResult.objects.filter(pk=task_id, status__in=list(was))
    if started_before is not None:
        rows = rows.filter(started_at__lt=started_before)
    if finished_before is not None:
        rows = rows.filter(finished_at__lt=finished_before)
    return bool(rows.update(status=Status.READY, run_after=timezone.now(), finished_at=None))


# --- the worker --------------------------------------------------------------------------------


def run_next(*, queues: Iterable[str], worker_id: str) -> bool:
    """Claim the next ready task of `queues` and run it here; False if there was none to take."""
    ready = DBTaskResult.objects.ready().filter(backend_name=DEFAULT_TASK_BACKEND_ALIAS, queue_name__in=list(queues))
    if not ready.exists():  # the common case, without a write lock (SQLite takes one per transaction)
        return False
    try:
        with exclusive_transaction(ready.db):
            result = ready.get_locked()
            if result is not None:
                result.claim(worker_id)
    except OperationalError as error:
        if is_locked_database_exception(error):
            return False
        raise
    if result is None:
        return False
    runner = Worker(
        queue_names=list(queues),
        interval=0,
        batch=True,
        backend_name=DEFAULT_TASK_BACKEND_ALIAS,
        startup_delay=False,
        max_tasks=None,
        worker_id=worker_id,
        excluded_queue_names=[],
    )
    runner.run_task(result)  # success or failure recorded on the task's row
    return True


def run_ready(*, worker_id: str = "in-process", queues: Iterable[str] = QUEUES, limit: int = 1000) -> int:
    """Run, here and now, one after another, the tasks that are ready (and those they make ready);
    how many. For `manage.py work --once` and tests."""
    done = 0
    while done < limit and run_next(queues=queues, worker_id=worker_id):
        done += 1
    return done


def worker_loop(*, queues: Iterable[str], worker_id: str, stopping: threading.Event, interval: float) -> None:
    """Run tasks of `queues` until `stopping` is set (a task under way is finished first)."""
    queues = list(queues)
    try:
        while not stopping.is_set():
            try:
                if run_next(queues=queues, worker_id=worker_id):
                    continue
            except Exception:
                logger.exception("worker %s could not take a task (trying again)", worker_id)
            stopping.wait(interval)
    finally:
        connections.close_all()


PRUNE_EVERY = timedelta(hours=1)
PRUNE_LIMIT = 5000  # rows deleted by one sweep at most: a long delete holds SQLite's write lock
_last_pruned: datetime | None = None


def prune(*, now: datetime) -> int:
    """For the workers' sweep, once an hour a process: the finished tasks of our queues (successful or
    failed) that finished more than TASK_RESULTS_KEEP_DAYS ago deleted, so the queue's table does not
    grow for ever; how many. The work's own rows keep their outcome; a sweep that finds work
    unfinished whose task is gone enqueues a new one."""
    global _last_pruned
    if _last_pruned is not None and now - _last_pruned < PRUNE_EVERY:
        return 0
    _last_pruned = now
    old = DBTaskResult.objects.filter(
        queue_name__in=QUEUES,
        status__in=[Status.SUCCESSFUL, Status.FAILED],
        finished_at__lt=now - timedelta(days=settings.TASK_RESULTS_KEEP_DAYS),
    )
    ids = list(old.order_by().values_list("pk", flat=True)[:PRUNE_LIMIT])  # read first: no write lock for nothing
    if not ids:
        return 0
    deleted, _ = old.filter(pk__in=ids).delete()
    logger.info("background: %d finished tasks older than %d days deleted", deleted, settings.TASK_RESULTS_KEEP_DAYS)
    return deleted


def sweep(now: datetime, sweepers: Iterable[Callable[..., object]]) -> None:
    """Each of `sweepers(now=now)`: work nobody runs made ready again. Never raises."""
    for sweeper in sweepers:
        try:
            sweeper(now=now)
        except Exception:
            logger.exception("background sweep %s failed (tried again next time)", sweeper.__qualname__)
