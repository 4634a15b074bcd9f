"""Spend at scale: what the spend features cost as the store grows from 10,000 to 100,000 batches.

Goal (issue 21): every spend read independent of the store's size (100k/10k <= 1.2), the 30-day
/spend/ page well under 200 ms at 100k. Ended batches' tokens are read from the per-day rollup
(SpendDay, kept by triggers: migration 0026), the running ones from their few rows.

The store of bench/store_list.py (8 accounts, one batch created every 37 s back from T0, one in ten
not ended in the last two days, the older ones all ended; the 90,000 older ones added as a backfill
would), each batch with tokens of one model
(BatchTokens; the Anthropic accounts' models priced, the OpenAI ones' not, as shipped). Measured at each
size, in the same run:
- "spent today" (the list header's, refreshed every minute): the batches ended on T0's day and those
  running;
- the spend page's report for a fixed 3 days, and for the last 30 days (at 10k the store reaches 4.3
  days back, at 100k 43: the 30 days hold 7 times the batches at 100k, and 7 times the rollup's rows);
- budget evaluation (a daily and a monthly budget of every account: T0's month so far);
- a batch's cost (the detail page), the /metrics spend families (every stored batch's tokens);
- the whole /spend/ page through Django's test client, 3 days and 30 days;
- baseline, in the same run on the same store: the 30-day report and the metrics as they read
  before the rollup (a GROUP BY over every BatchTokens row in range, joined to its batch).
Median and p95 wall-clock ms, median thread CPU ms, and the database's work (SQLite VM steps,
PostgreSQL buffers: bench/store_list.py `work`), with the 100k/10k ratio.

    .venv/bin/python bench/spend.py                         # SQLite, --calls 30
    .venv/bin/python bench/spend.py --database postgresql

The tests run it only small, that it runs through (tests/bench/test_benches_run.py): never its figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import percentile, timed  # noqa: E402
from store_list import T0, configure, fill, work  # noqa: E402

MODELS = {"anthropic": ("claude-opus-4-1", "claude-3-5-haiku-20241022"), "openai": ("gpt-4o-2024-08-06",)}


def figures(call, calls: int) -> tuple[float, float, float, int]:
    """Median and p95 wall-clock ms, median thread CPU ms (after 5 unmeasured calls), the database's work."""
    wall, cpu = timed(call, calls, 5)
    return statistics.median(wall), percentile(wall, 0.95), statistics.median(cpu), work(call)


def add_tokens(after_pk: int) -> int:
    """Tokens of one model for every stored batch above `after_pk`, in bulk; the highest pk."""
    from django.db import transaction
    from django.db.models import F

    from dashboard.models import BatchTokens, StoredBatch

    # As in a real store, batches created days ago have ended (store_list.py leaves one in ten running).
    StoredBatch.objects.filter(is_ended=False, created_at__lt=T0 - timedelta(days=2)).update(
        is_ended=True, processing=0, ended_at=F("created_at") + timedelta(minutes=30)
    )
    rows = list(StoredBatch.objects.filter(pk__gt=after_pk).values_list("pk", "provider").order_by("pk"))
    with transaction.atomic():
        BatchTokens.objects.bulk_create(
            (
                BatchTokens(
                    batch_id=pk,
                    model=MODELS[provider][pk % len(MODELS[provider])],
                    input=1000 + pk % 500,
                    cache_read=pk % 300,
                    cache_write=pk % 7,
                    output=200 + pk % 100,
                    requests=100,
                )
                for pk, provider in rows
            ),
            batch_size=2000,
        )
    from django.db import connection

    if connection.vendor == "postgresql":
        # As autovacuum keeps them: the batches ended and their tokens written above left every table's
        # statistics stale and the rollup's rows with one dead version per batch added to them.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    return rows[-1][0] if rows else after_pk


def measure(accounts, calls: int) -> dict[str, tuple]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db.models import Count, DateField, Func, Sum
    from django.test import Client

    from dashboard.access import services as access
    from dashboard.alarms.evaluation import load_spend
    from dashboard.alarms.rules import ALL_ACCOUNTS, Budget
    from dashboard.metrics.collectors import spend_metrics
    from dashboard.models import BatchTokens, StoredBatch
    from dashboard.spend import selectors
    from dashboard.spend.prices import KINDS

    class UtcDay(Func):
        """The UTC day of a timestamp in SQL, as the report grouped by before the rollup."""

        output_field = DateField()

        def as_sqlite(self, compiler, connection, **extra):
            return super().as_sql(compiler, connection, template="DATE(%(expressions)s)", **extra)

        def as_postgresql(self, compiler, connection, **extra):
            return super().as_sql(
                compiler, connection, template="((%(expressions)s) AT TIME ZONE 'UTC')::date", **extra
            )

    keys = [account.key for account in accounts]
    day = T0.date()
    newest = StoredBatch.objects.order_by("-created_at").values_list("pk", flat=True).first()
    user, _ = get_user_model().objects.get_or_create(username="bench")
    access.grant(group_name="bench", patterns=["*"], role="operator", actor="bench", via="cli")
    user.groups.add(Group.objects.get(name="bench"))
    client = Client()
    client.force_login(user)
    start30 = day - timedelta(days=29)
    cases = {
        "spent today (list header)": lambda: selectors.spent_today(account_keys=keys, today=day),
        "report, a fixed 3 days": lambda: selectors.spend_report(
            account_keys=keys, start=day - timedelta(days=2), end=day, today=day
        ),
        "report, the last 30 days": lambda: selectors.spend_report(
            account_keys=keys, start=start30, end=day, today=day
        ),
        "a batch's cost (detail)": lambda: selectors.batch_spend(stored_batch_pk=newest, provider="anthropic"),
        "/metrics spend families (every row)": lambda: list(spend_metrics()),
        "/spend/ page, 3 days": lambda: client.get(
            f"/spend/?start={(day - timedelta(days=2)).isoformat()}&end={day.isoformat()}"
        ),
    }

    def per_row_report(start):
        """The 30-day report's ended batches as read before the rollup: every BatchTokens row in range."""
        first = datetime.combine(start, time(), tzinfo=UTC)
        after = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        rows = BatchTokens.objects.filter(
            batch__account__in=keys, batch__is_ended=True, batch__ended_at__gte=first, batch__ended_at__lt=after
        ).annotate(day=UtcDay("batch__ended_at"))
        sums = {**{kind: Sum(kind) for kind in KINDS}, "batches": Count("batch", distinct=True)}
        return list(rows.values("batch__account", "batch__provider", "model", "day").annotate(**sums))

    def per_row_metrics():
        rows = BatchTokens.objects.order_by().values("batch__account", "batch__provider", "model")
        return list(rows.annotate(**{kind: Sum(kind) for kind in KINDS}))

    now = datetime.combine(day, time(12), tzinfo=UTC)
    budgets = [
        Budget(account=ALL_ACCOUNTS, period=period, usd=Decimal(1000), near_percent=80) for period in ("day", "month")
    ]
    cases["budget evaluation (day and month)"] = lambda: load_spend(now, keys, budgets)
    cases["/spend/ page, the last 30 days"] = lambda: client.get(
        f"/spend/?start={start30.isoformat()}&end={day.isoformat()}"
    )
    cases["baseline: 30 days, per-row query"] = lambda: per_row_report(start30)
    cases["baseline: /metrics, per-row query"] = per_row_metrics
    results = {}
    for name, call in cases.items():
        results[name] = figures(call, calls)
    return results


def run(database: str, sizes: list[int], calls: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-spend-") as folder:
        server = configure(Path(folder), database)
        try:
            from django.utils import timezone

            from dashboard.accounts import configured_accounts

            accounts = configured_accounts()
            results, stored, last_pk = [], 0, 0
            # The spend page's "today" is the real one: T0 stands in for it here, through the selectors' `today`.
            assert timezone.now().date() >= T0.date()
            for size in sizes:
                seconds = fill(accounts, range(stored, size))
                last_pk = add_tokens(last_pk)
                stored = size
                print(f"{database}: {size:,} batches with tokens ({seconds:.1f} s)", flush=True)
                results.append(measure(accounts, calls))
            small, large = sizes[0], sizes[-1]
            unit = "VM steps" if database == "sqlite" else "buffers"
            print(f"\n{database}: ratio = {large // 1000}k / {small // 1000}k stored batches")
            small_k, large_k = f"{small // 1000}k", f"{large // 1000}k"
            print(
                f"{'case':40} {'median/p95 ms ' + small_k:>18} {large_k:>12} {'cpu ratio':>10}"
                f" {unit + ' ' + small_k:>16} {large_k:>10} {'ratio':>7}"
            )
            for name in results[0]:
                a, b = results[0][name], results[-1][name]
                print(
                    f"{name:40} {a[0]:8.1f}/{a[1]:6.1f} {b[0]:6.1f}/{b[1]:6.1f} {b[2] / max(a[2], 1e-6):10.2f}"
                    f" {a[3]:>16} {b[3]:>10} {b[3] / max(a[3], 1):7.2f}"
                )
        finally:
            if server is not None:
                server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--calls", type=int, default=30)
    options = parser.parse_args()
    run(options.database, [int(size) for size in options.sizes.split(",")], options.calls)


if __name__ == "__main__":
    main()
