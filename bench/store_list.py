"""The list page's store query at scale: 10,000 batches over 8 accounts in a fresh SQLite file.

Fills the store through store.record (the poller's own write path, parsed provider JSON, history
rows included), then times dashboard.batches.selectors calls as the list page and a row poll make them:
the median and p95 of CALLS calls each, the whole call (SQL and reading the 25 rows back as
Batch objects).

    .venv/bin/python bench/store_list.py            # --batches 10000 --calls 200

Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TEAMS = ("search-quality", "evals", "ingest", "billing", "support", "research")


def setup(path: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["SQLITE_PATH"] = path
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(count: int):
    from django.db import transaction

    from dashboard.accounts import Account
    from dashboard.batches import store
    from dashboard.providers import anthropic, openai

    accounts = [
        Account(name=f"team{n}", provider=provider, base_url="https://example.invalid", api_key=f"sk-bench-{n}")
        for n, provider in enumerate(["anthropic"] * 4 + ["openai"] * 4)
    ]
    started = time.perf_counter()
    with transaction.atomic():
        for n in range(count):
            account = accounts[n % len(accounts)]
            created = T0 - timedelta(seconds=37 * n)
            active = n % 10 == 0
            if account.provider == "anthropic":
                data = {
                    "id": f"msgbatch_bench{n:06d}",
                    "type": "message_batch",
                    "processing_status": "in_progress" if active else "ended",
                    "request_counts": {
                        "processing": 100 if active else 0,
                        "succeeded": 0 if active else 97,
                        "errored": 0 if active else 3,
                        "canceled": 0,
                        "expired": 0,
                    },
                    "ended_at": None if active else (created + timedelta(minutes=30)).isoformat(),
                    "created_at": created.isoformat(),
                    "expires_at": (created + timedelta(hours=24)).isoformat(),
                    "archived_at": None,
                    "cancel_initiated_at": None,
                    "results_url": None,
                }
                batch = anthropic.parse_batch(data, account=account.key)
            else:
                seconds = int(created.timestamp())
                data = {
                    "id": f"batch_bench{n:06d}",
                    "object": "batch",
                    "endpoint": "/v1/chat/completions",
                    "errors": None,
                    "input_file_id": f"file-in{n}",
                    "completion_window": "24h",
                    "status": "in_progress" if active else "completed",
                    "output_file_id": None if active else f"file-out{n}",
                    "error_file_id": None,
                    "created_at": seconds,
                    "in_progress_at": seconds + 5,
                    "expires_at": seconds + 86400,
                    "finalizing_at": None if active else seconds + 1700,
                    "completed_at": None if active else seconds + 1800,
                    "failed_at": None,
                    "expired_at": None,
                    "cancelling_at": None,
                    "cancelled_at": None,
                    "request_counts": {"total": 100, "completed": 40 if active else 97, "failed": 3},
                    "metadata": {"team": TEAMS[n % len(TEAMS)], "run": f"nightly-{n // 50}"},
                }
                batch = openai.parse_batch(data, account=account.key)
            store.record(batch, fetched_at=T0)
    return accounts, time.perf_counter() - started


def timed(call, calls: int) -> tuple[float, float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=200)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        setup(str(Path(folder) / "bench.sqlite3"))
        from dashboard.batches import selectors
        from dashboard.models import StoredBatch

        accounts, seconds = fill(options.batches)
        print(f"stored {StoredBatch.objects.count()} batches over {len(accounts)} accounts in {seconds:.1f} s")

        def page(**filters):
            return lambda: selectors.list_batches(accounts=accounts, now=T0, limit=25, **filters)

        deep = None
        for _ in range(200):  # the cursor of page 201, some 5,000 rows down
            deep = selectors.list_batches(accounts=accounts, before=deep, limit=25, now=T0).older
        cases = {
            "unfiltered, first page": page(),
            "unfiltered, page 201 (cursor)": page(before=deep),
            "newer from page 201 (cursor)": page(after=deep),
            "provider=openai": page(provider="openai"),
            "account=anthropic-team2": page(account_key="anthropic-team2"),
            "status=active (10% of rows)": page(status="active"),
            "provider+account+status=completed": page(
                provider="openai", account_key="openai-team5", status="completed"
            ),
            "search id 'bench00123' (rare)": page(search="bench00123"),
            "search metadata 'nightly-7' (rare)": page(search="nightly-7"),
            "search metadata 'evals' (common)": page(search="evals"),
            "search + status=active": page(search="ingest", status="active"),
            "search with no match": page(search="no-such-thing"),
        }
        print(f"{'call':42} {'median ms':>10} {'p95 ms':>8} {'rows':>5}")
        for name, call in cases.items():
            median, p95 = timed(call, options.calls)
            print(f"list_batches {name:29} {median:10.2f} {p95:8.2f} {len(call().rows):5d}")
        row = timed(lambda: selectors.batch_row(account=accounts[3], batch_id="msgbatch_bench000003"), options.calls)
        print(f"{'batch_row':42} {row[0]:10.2f} {row[1]:8.2f}")
        notices = timed(lambda: selectors.account_notices(accounts=accounts, now=T0), options.calls)
        print(f"{'account_notices':42} {notices[0]:10.2f} {notices[1]:8.2f}")


if __name__ == "__main__":
    main()
