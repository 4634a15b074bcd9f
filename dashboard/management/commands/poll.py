import logging
import os
import signal
import socket
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connections

from ... import leases
from ...alarms import evaluation
from ...batches import poller
from ...process_memory import limit_malloc_arenas

logger = logging.getLogger("dashboard.batches.poller")


class Command(BaseCommand):
    help = "Keep the store fresh: poll this process's share of the accounts, every POLL_SECONDS."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="one cycle, then exit")
        parser.add_argument("--owner", default="", help="this poller's name in the leases (default host:pid)")

    def handle(self, *args, once: bool = False, owner: str = "", verbosity: int = 1, **options) -> None:
        limit_malloc_arenas()  # before this process's threads start: see process_memory.py
        owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        failures = 0  # cycles failed in a row: the database or the cache is gone (or a bug)
        failing_since = 0.0
        heartbeat = None
        if not once:
            heartbeat = threading.Thread(target=self.beat, args=(owner, stopping), name="poll-heartbeat", daemon=True)
            heartbeat.start()
        try:
            while not stopping.is_set():
                started = time.monotonic()
                try:
                    self.cycle(owner=owner, verbosity=verbosity)
                except Exception as error:
                    if once:
                        raise
                    failures += 1
                    wait = poller.outage_backoff_seconds(failures)
                    if failures == 1:
                        failing_since = started
                        logger.exception("poll cycle failed; retrying with backoff (logged again once it works)")
                    else:
                        logger.debug(
                            "poll cycle failed again (%d in a row; next try in %g s): %s", failures, wait, error
                        )
                else:
                    if failures:
                        logger.warning(
                            "poll cycles work again, after %d failed over %.0f s",
                            failures,
                            time.monotonic() - failing_since,
                        )
                    failures = 0
                    wait = settings.POLL_SECONDS - (time.monotonic() - started)
                if once:
                    break
                stopping.wait(max(0.0, wait))
        except KeyboardInterrupt:
            pass
        finally:
            stopping.set()
            if heartbeat is not None:
                heartbeat.join(timeout=settings.POLL_HEARTBEAT_SECONDS)
            self.release(owner)

    def beat(self, owner: str, stopping: threading.Event) -> None:
        """Between cycles and during long ones: this poller is alive, and keeps its leases. A beat
        that fails (the database gone) is retried at the next one; the cycles say so."""
        interval = max(0.05, settings.POLL_HEARTBEAT_SECONDS / 3)
        try:
            while not stopping.wait(interval):
                try:
                    poller.beat(owner=owner, now=leases.database_now())
                except Exception as error:
                    logger.debug("heartbeat failed (retried in %g s): %s", interval, error)
                    connections["default"].close()
        finally:
            connections.close_all()

    def cycle(self, *, owner: str, verbosity: int) -> None:
        # Like a request's start: a connection the last cycle broke (the database restarted) is
        # closed, and an idle one is health-checked before use, so this cycle reconnects.
        close_old_connections()
        now = leases.database_now()  # one clock for every poller's beats and leases, whatever the machine's
        for result in poller.run_cycle(owner=owner, now=now):
            if verbosity < 2 and not (result.changed or result.error):
                continue  # quiet unless something changed; -v 2 reports every account every cycle
            self.stdout.write(
                f"{result.account}: listed {result.listed}, refreshed {result.refreshed}, "
                f"changed {result.changed}"
                + (f"; failed: {result.error}" if result.error else "")
                + ("; taken over by another poller" if result.lost else "")
                + (f"; polled {result.started:.3f}-{result.ended:.3f}" if verbosity >= 3 else "")
            )
        if verbosity >= 3:  # the share, for the tests and benches of several pollers
            held, live = poller.share_of(owner=owner, now=now)
            self.stdout.write(f"cycle: {owner} holds {held} accounts, {live} pollers live, from {now.timestamp():.3f}")

    def release(self, owner: str) -> None:
        """Give the leases back and delete the heartbeat, so that the others take over at their next
        cycle; if the database is gone, the heartbeat goes stale and they take over after
        POLL_HEARTBEAT_SECONDS."""
        try:
            close_old_connections()
            poller.leave(owner=owner)
            evaluation.release_evaluator(owner)
        except Exception as error:
            logger.warning("could not release this poller's leases (they expire by themselves): %s", error)
