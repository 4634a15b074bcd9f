"""Operator CLI: the same services as the web views.

manage.py batches list [--account A] [--status S] [--limit N]
manage.py batches show ID [--account A]
manage.py batches cancel ID [--account A]
manage.py batches results ID [--type errored] [--account A]
"""

from __future__ import annotations

import getpass
import json
import sys

from django.core.management.base import BaseCommand, CommandError

from dashboard import services
from dashboard.providers.base import ProviderError
from dashboard.results import RESULT_TYPES


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


class Command(BaseCommand):
    help = "List, show, cancel batches and print their results, across every configured account."

    def add_arguments(self, parser) -> None:
        commands = parser.add_subparsers(dest="action", required=True)
        listing = commands.add_parser("list", help="batches of every account, newest first")
        listing.add_argument("--account", default="", help="account key, e.g. anthropic-ops")
        listing.add_argument("--status", default="", help="provider status, or 'active' for not yet ended")
        listing.add_argument("--limit", type=int, default=100)
        for name, text in (
            ("show", "every field of one batch"),
            ("cancel", "cancel one batch (audited)"),
            ("results", "result lines as JSONL on stdout"),
        ):
            command = commands.add_parser(name, help=text)
            command.add_argument("batch_id")
            command.add_argument("--account", default="")
            if name == "results":
                command.add_argument("--type", default="", choices=["", *RESULT_TYPES, "invalid"])

    def handle(self, *args, action: str, **options) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except services.UnknownBatch as error:
            raise CommandError(str(error)) from None
        except ProviderError as error:
            raise CommandError(error.message) from None
        except BrokenPipeError:
            # `batches results ID | head` closed our stdout: that is a normal way to stop.
            sys.stderr.close()

    def do_list(self, *, account: str, status: str, limit: int, **options) -> None:
        cursor = None
        shown = 0
        self.stdout.write(f"{'ACCOUNT':<22} {'ID':<42} {'STATUS':<12} {'CREATED':<24} REQUESTS")
        while shown < limit:
            listing = services.list_batches(cursor=cursor, account_key=account, status=status)
            for failure in listing.failures:
                self.stderr.write(f"{failure.account.key}: {failure.message}")
            for note in listing.unreadable:
                for batch_id, message in note.batches:
                    self.stderr.write(f"{note.account.key}: skipped {batch_id or 'a batch'}: {message}")
            for batch in listing.batches[: limit - shown]:
                counts = batch.counts
                self.stdout.write(
                    f"{batch.account:<22} {batch.id:<42} {batch.status:<12} {_when(batch.created_at):<24} "
                    f"{counts.succeeded} ok, {counts.errored} err, {counts.processing} processing of {counts.total}"
                )
                shown += 1
            # An account that failed is reported once, not asked again and again for the same page.
            failed = {failure.account.key for failure in listing.failures}
            cursor = {key: after for key, after in (listing.next_cursor or {}).items() if key not in failed}
            if not cursor:
                break

    def do_show(self, *, batch_id: str, account: str, **options) -> None:
        found_account, view = services.find_batch(batch_id=batch_id, account_key=account)
        batch = view.batch
        self.stdout.write(f"{found_account.label}  {batch.id}  {batch.status}")
        for name, value in batch.timestamps.items():
            self.stdout.write(f"  {name:<20} {_when(value)}")
        self.stdout.write(f"  counts               {batch.counts}")
        self.stdout.write(json.dumps(batch.raw, indent=2, sort_keys=True))

    def do_cancel(self, *, batch_id: str, account: str, **options) -> None:
        if account:
            # No lookup first: a failing lookup would stop the cancel before it is audited.
            found_account = services.resolve(account_key=account, batch_id=batch_id)
        else:
            found_account, _ = services.find_batch(batch_id=batch_id)
        result = services.cancel_batch(account=found_account, batch_id=batch_id, actor=getpass.getuser(), via="cli")
        self.stdout.write(f"{found_account.key} {batch_id}: {result.outcome}: {result.message}")
        if result.outcome == "upstream_error":
            raise CommandError(result.message)

    def do_results(self, *, batch_id: str, account: str, type: str, **options) -> None:
        found_account, view = services.find_batch(batch_id=batch_id, account_key=account)
        if not view.batch.is_ended:
            raise CommandError(f"{batch_id} has not ended yet ({view.batch.status}); results come once it has.")
        out = sys.stdout
        for line in services.iter_results(account=found_account, batch=view.batch):
            if not type or line.type == type:
                out.write(line.raw + "\n")
        out.flush()
