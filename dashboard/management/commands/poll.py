import os
import signal
import socket
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from dashboard import alarms, poller
from dashboard.accounts import configured_accounts


class Command(BaseCommand):
    help = "Keep the store fresh: poll every account this process can lease, every POLL_SECONDS."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="one cycle, then exit")
        parser.add_argument("--owner", default="", help="this poller's name in the leases (default host:pid)")

    def handle(self, *args, once: bool = False, owner: str = "", verbosity: int = 1, **options) -> None:
        owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        try:
            while not stopping:
                started = time.monotonic()
                for result in poller.run_cycle(owner=owner, now=timezone.now()):
                    if verbosity < 2 and not (result.changed or result.error):
                        continue  # quiet unless something changed; -v 2 reports every account every cycle
                    self.stdout.write(
                        f"{result.account}: listed {result.listed}, refreshed {result.refreshed}, "
                        f"changed {result.changed}" + (f"; failed: {result.error}" if result.error else "")
                    )
                if once:
                    break
                time.sleep(max(0.0, settings.POLL_SECONDS - (time.monotonic() - started)))
        except KeyboardInterrupt:
            pass
        finally:
            for account in configured_accounts():
                poller.release(account, owner=owner)
            alarms.release_evaluator(owner)
