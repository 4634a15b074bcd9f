import logging
import os
import signal
import socket
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

from ... import background
from ...bulk import operations
from ...notifications import dispatch

logger = logging.getLogger("dashboard.background")

SWEEPERS = (operations.recover, dispatch.enqueue_due, background.prune)
INTERVAL = 1.0  # seconds an idle thread waits before it looks at its queue again


class Command(BaseCommand):
    help = (
        "Run background tasks (bulk cancels, notification deliveries): WORKER_THREADS threads per queue, "
        "and a sweep every WORKER_SWEEP_SECONDS for work nobody runs. Any number may run, on any machine."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="one sweep, run what is ready, then exit")
        parser.add_argument("--name", default="", help="this worker's name in the tasks (default host:pid)")
        parser.add_argument("--threads", type=int, default=0, help="threads per queue (default WORKER_THREADS)")

    def handle(self, *args, once: bool = False, name: str = "", threads: int = 0, **options) -> None:
        name = name or f"{socket.gethostname()}:{os.getpid()}"
        if once:
            background.sweep(timezone.now(), SWEEPERS)
            ran = background.run_ready(worker_id=name)
            self.stdout.write(f"ran {ran} task{'s' if ran != 1 else ''}")
            return
        stopping = background.stopping

        def stop(signum, frame) -> None:
            # A second signal stops at once (a task under way is then run again elsewhere: at least once).
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        per_queue = threads or settings.WORKER_THREADS
        workers = [
            threading.Thread(
                target=background.worker_loop,
                kwargs={
                    "queues": [queue],
                    "worker_id": f"{name}:{queue}:{number}"[:64],
                    "stopping": stopping,
                    "interval": INTERVAL,
                },
                name=f"work-{queue}-{number}",
            )
            for queue in background.QUEUES
            for number in range(per_queue)
        ]
        for thread in workers:
            thread.start()
        logger.info("worker %s: %d threads per queue (%s)", name, per_queue, ", ".join(background.QUEUES))
        try:
            while not stopping.is_set():
                close_old_connections()
                background.sweep(timezone.now(), SWEEPERS)
                stopping.wait(settings.WORKER_SWEEP_SECONDS)
        finally:
            stopping.set()
            for thread in workers:
                thread.join()  # the tasks under way end first
            logger.info("worker %s stopped", name)
