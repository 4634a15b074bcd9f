"""A bulk cancel worker that dies at one step of one item's cancel: in the test process (raising
Killed, which no `except Exception` catches) or, run as `python -m tests.bulk_deaths STEP BATCH_ID
OPERATION_ID`, as a worker process of its own that takes the operation's task and SIGKILLs itself
there (nothing after it runs: no except, no finally, no atexit; the task is left "running")."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

# The steps of one item, in order: each is a moment a process can die at.
STEPS = (
    "claimed",  # the item claimed, nothing else done
    "attempt_recorded",  # its CancelAttempt written (pending) and linked to it
    "before_upstream",  # the cancel call about to go out
    "upstream_accepted",  # upstream accepted the cancel, nothing recorded of its answer
    "attempt_completed",  # the attempt completed with upstream's answer, the item not yet
    "item_finished",  # the item recorded too
)
# The steps after which upstream has accepted the cancel: resuming must not cancel again.
CANCELED_UPSTREAM = {"upstream_accepted", "attempt_completed", "item_finished"}
# The steps that leave the attempt pending: resuming settles it from upstream, marked reconciled.
LEFT_PENDING = {"attempt_recorded", "before_upstream", "upstream_accepted"}


class Killed(BaseException):
    """The process died: nothing after this runs (not even `except Exception`)."""


def raise_killed() -> None:
    raise Killed


def sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def die_at(step: str, *, batch_id: str, die: Callable[[], None], patch: Callable[[object, str, object], None]) -> None:
    """Make the worker die (`die()`) at `step` of the item of `batch_id`, once. `patch(owner, name,
    value)` sets an attribute (pytest's monkeypatch.setattr, or setattr in a process that dies)."""
    from dashboard.batches import services
    from dashboard.bulk import operations
    from dashboard.models import BulkCancelItem
    from dashboard.providers.http import BatchAPI

    assert step in STEPS, step
    done: list[bool] = []

    def now_dies(this_batch: str) -> None:
        if this_batch == batch_id and not done:
            done.append(True)
            die()

    if step == "claimed":
        claim = operations.claim

        def claim_then_die(item_id, **kwargs):
            taken = claim(item_id, **kwargs)
            if taken:
                now_dies(BulkCancelItem.objects.get(pk=item_id).batch_id)
            return taken

        patch(operations, "claim", claim_then_die)
    elif step == "attempt_recorded":
        begin = operations.begin_attempt

        def begin_then_die(operation, item, **kwargs):
            attempt = begin(operation, item, **kwargs)
            now_dies(item.batch_id)
            return attempt

        patch(operations, "begin_attempt", begin_then_die)
    elif step in ("before_upstream", "upstream_accepted"):
        cancel = BatchAPI.cancel  # every provider's (tests/providers/test_provider_boundary.py)

        def cancel_and_die(self, this_batch):
            if step == "before_upstream":
                now_dies(this_batch)
            answer = cancel(self, this_batch)
            now_dies(this_batch)
            return answer

        patch(BatchAPI, "cancel", cancel_and_die)
    elif step == "attempt_completed":
        cancel_batch = services.cancel_batch

        def cancel_batch_then_die(**kwargs):
            result = cancel_batch(**kwargs)
            now_dies(kwargs["batch_id"])
            return result

        patch(services, "cancel_batch", cancel_batch_then_die)
    else:
        finish = operations.finish_item

        def finish_then_die(item_id, **kwargs):
            finished = finish(item_id, **kwargs)
            now_dies(BulkCancelItem.objects.get(pk=item_id).batch_id)
            return finished

        patch(operations, "finish_item", finish_then_die)


def main(argv: list[str]) -> None:
    import django

    django.setup()
    from dashboard import background
    from dashboard.models import BulkCancel

    step, batch_id, operation_id = argv
    die_at(step, batch_id=batch_id, die=sigkill, patch=setattr)
    assert BulkCancel.objects.filter(pk=int(operation_id)).exists()
    background.run_ready(worker_id="killed-worker", queues=[background.BULK_QUEUE])  # the operation's task


if __name__ == "__main__":
    main(sys.argv[1:])
