"""Operator CLI: the same selectors and services as the web views. What it shows of a batch comes
from the store the poller keeps fresh (`manage.py poll`); cancel and results go upstream.

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
from django.utils import timezone

from ...accounts import Account, configured_accounts
from ...batches import selectors, services
from ...batches.results import RESULT_TYPES
from ...providers.base import ProviderError


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _age(value) -> str:
    seconds = int((timezone.now() - value).total_seconds())
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


class Command(BaseCommand):
    help = (
        "List, show, cancel batches and print their results, across every configured account. It acts as an "
        "operator of this machine (whoever can run it can read the database): every account, every role, the "
        "web's grants do not apply; a cancel is audited under the OS user, via cli."
    )

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
        accounts = configured_accounts()
        if account and not any(a.key == account for a in accounts):
            raise CommandError(f"No account {account!r}; configured: {', '.join(a.key for a in accounts) or 'none'}.")
        for notice in selectors.account_notices(accounts=accounts, now=timezone.now()):
            if not account or notice.account.key == account:
                self._warn_about(notice)
        self.stdout.write(f"{'ACCOUNT':<22} {'ID':<42} {'STATUS':<12} {'CREATED':<24} {'UPDATED':<10} REQUESTS")
        before, shown = None, 0
        while shown < limit:
            listing = selectors.list_batches(
                accounts=accounts, account_key=account, status=status, before=before, limit=min(200, limit - shown)
            )
            for row in listing.rows:
                batch, counts = row.batch, row.batch.counts
                self.stdout.write(
                    f"{batch.account:<22} {batch.id:<42} {batch.status:<12} {_when(batch.created_at):<24} "
                    f"{_age(row.fetched_at):<10} "
                    + (
                        f"{counts.succeeded} ok, {counts.errored} err, {counts.processing} processing of {counts.total}"
                        if counts.known
                        else "requests unknown"
                    )
                    + (" (stale)" if row.is_stale else "")
                )
            shown += len(listing.rows)
            before = listing.older
            if before is None:
                break

    def _warn_about(self, notice: selectors.AccountNotice) -> None:
        key = notice.account.key
        if notice.problem == "failing":
            self.stderr.write(
                f"{key}: polls failing ({notice.consecutive_failures} in a row): {notice.last_error} "
                f"Last good poll: {_when(notice.last_success_at)}."
            )
        elif notice.problem == "lagging":
            self.stderr.write(f"{key}: not polled since {_when(notice.last_success_at)}: is `manage.py poll` running?")
        elif notice.problem == "never_polled":
            self.stderr.write(f"{key}: not polled yet: run `manage.py poll` (or `poll --once`) to fill the store.")
        for batch_id, message in notice.unreadable:
            self.stderr.write(f"{key}: skipped {batch_id or 'a batch'}: {message}")

    def _stored(self, batch_id: str, account: str) -> tuple[Account, selectors.StoredView]:
        found = selectors.find_batch(accounts=configured_accounts(), batch_id=batch_id, account_key=account)
        if found is None:
            where = account or "any configured account"
            raise CommandError(
                f"No batch {batch_id!r} stored for {where}: the poller (`manage.py poll`) has not seen it (yet)."
            )
        return found

    def do_show(self, *, batch_id: str, account: str, **options) -> None:
        found_account, view = self._stored(batch_id, account)
        batch = view.batch
        self.stdout.write(f"{found_account.label}  {batch.id}  {batch.status}  (fetched {_when(view.fetched_at)})")
        if view.is_stale:
            self.stderr.write(f"stale: {view.stale_reason}")
        for name, value in batch.timestamps.items():
            self.stdout.write(f"  {name:<20} {_when(value)}")
        self.stdout.write(f"  counts               {batch.counts}")
        self.stdout.write(json.dumps(batch.raw, indent=2, sort_keys=True))

    def do_cancel(self, *, batch_id: str, account: str, **options) -> None:
        if account:
            # No lookup first: a failing lookup would stop the cancel before it is audited.
            found_account = services.resolve(account_key=account, batch_id=batch_id)
        else:
            found_account, _ = self._stored(batch_id, account)
        result = services.cancel_batch(account=found_account, batch_id=batch_id, actor=getpass.getuser(), via="cli")
        self.stdout.write(
            f"{found_account.key} {batch_id}: {result.outcome}: {result.message} "
            f"(as OS user {getpass.getuser()}, an operator of this machine; audited)"
        )
        if result.outcome == "upstream_error":
            raise CommandError(result.message)

    def do_results(self, *, batch_id: str, account: str, type: str, **options) -> None:
        found_account, view = self._stored(batch_id, account)
        if not view.batch.is_ended:
            raise CommandError(f"{batch_id} has not ended yet ({view.batch.status}); results come once it has.")
        out = sys.stdout
        for line in services.iter_results(account=found_account, batch=view.batch):
            if not type or line.type == type:
                out.write(line.raw + "\n")
        out.flush()
