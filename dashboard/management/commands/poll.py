import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connections
from django.db.backends.signals import connection_created

from ... import leases
from ...accounts import configured_accounts
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
        connection_created.connect(poller.limit_idle_transactions, dispatch_uid="poller-idle-transactions")
        connections.close_all()  # every connection of this process from here on is made with the limit
        owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        failures = 0  # cycles failed in a row: the database or the cache is gone (or a bug)
        failing_since = 0.0
        threads = []
        if not once:
            threads = [
                threading.Thread(
                    target=self.beat, args=(owner, stopping, verbosity), name="poll-heartbeat", daemon=True
                ),
                threading.Thread(target=self.evaluate, args=(owner, stopping), name="poll-alarms", daemon=True),
            ]
            for thread in threads:
                thread.start()
        try:
            while not stopping.is_set():
                started = time.monotonic()
                try:
                    self.cycle(owner=owner, verbosity=verbosity, evaluate=once)
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
            for thread in threads:
                thread.join(timeout=settings.POLL_HEARTBEAT_SECONDS)
            self.release(owner)

    def beat(self, owner: str, stopping: threading.Event, verbosity: int) -> None:
        """Between cycles and during long ones: this poller is alive, and keeps its leases; and if
        another poller died, its accounts are taken now and polled at once (on a thread of their
        own, while the beats go on), not at this poller's next cycle. A beat that fails (the database
        gone) is retried at the next one; the cycles say so."""
        interval = max(0.05, min(settings.POLL_HEARTBEAT_SECONDS, settings.POLL_SECONDS) / 3)
        taking_over = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poll-take-over")
        try:
            while not stopping.wait(interval):
                try:
                    now = leases.database_now()
                    poller.beat(owner=owner, now=now)
                    taken = poller.take_over(owner=owner, now=now)
                except Exception as error:
                    logger.debug("heartbeat failed (retried in %g s): %s", interval, error)
                    connections["default"].close()
                    continue
                if taken:
                    logger.info(
                        "took over %d accounts of a dead poller: %s", len(taken), ", ".join(a.key for a in taken)
                    )
                    taking_over.submit(self.poll_taken, taken, owner, verbosity)
        finally:
            taking_over.shutdown(wait=True, cancel_futures=True)
            connections.close_all()

    def poll_taken(self, taken: list, owner: str, verbosity: int) -> None:
        try:
            now = leases.database_now()
            self.report(poller.poll_due(taken, owner=owner, now=now, pool="poll-take-over"), verbosity)
        except Exception:
            logger.exception("polling the accounts taken over failed (the next cycle polls them)")
        finally:
            connections.close_all()

    def evaluate(self, owner: str, stopping: threading.Event) -> None:
        """The alarms, every POLL_SECONDS, if this poller holds the evaluator's lease: on a thread of
        their own, as an evaluation reads every running batch and would hold up this poller's cycles
        (its accounts' refreshes). Failures are logged by `evaluate_alarms`; a database gone, here."""
        try:
            while not stopping.wait(settings.POLL_SECONDS):
                try:
                    close_old_connections()
                    poller.evaluate_alarms(owner=owner, now=leases.database_now(), accounts=configured_accounts())
                except Exception as error:
                    logger.debug("alarm evaluation skipped (retried in %g s): %s", settings.POLL_SECONDS, error)
                    connections["default"].close()
        finally:
            connections.close_all()

    def cycle(self, *, owner: str, verbosity: int, evaluate: bool) -> None:
        # Like a request's start: a connection the last cycle broke (the database restarted) is
        # closed, and an idle one is health-checked before use, so this cycle reconnects.
        close_old_connections()
        now = leases.database_now()  # one clock for every poller's beats and leases, whatever the machine's
        self.report(poller.run_cycle(owner=owner, now=now, evaluate=evaluate), verbosity)
        if verbosity >= 3:  # the share, for the tests and benches of several pollers
            held, live = poller.share_of(owner=owner, now=now)
            self.stdout.write(f"cycle: {owner} holds {held} accounts, {live} pollers live, from {now.timestamp():.3f}")

    def report(self, results: list, verbosity: int) -> None:
        for result in results:
            if verbosity < 2 and not (result.changed or result.error):
                continue  # quiet unless something changed; -v 2 reports every account every cycle
            self.stdout.write(
                f"{result.account}: listed {result.listed}, refreshed {result.refreshed}, "
                f"changed {result.changed}"
                + (f"; failed: {result.error}" if result.error else "")
                + ("; taken over by another poller" if result.lost else "")
                + (f"; polled {result.started:.3f}-{result.ended:.3f}" if verbosity >= 3 else "")
            )

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
