"""The list at scale: the same page as fast at 100,000 stored batches as at 10,000, on SQLite and PostgreSQL.

Goal (issue 19): the list page's median under 30 ms at both sizes, unfiltered, searched and
filtered, and 100k/10k <= 1.1.

For each database (a fresh SQLite file; a throwaway PostgreSQL on loopback, as tests/services.py
starts one), in a process of its own:
- 8 accounts, 4 Anthropic and 4 OpenAI; 10,000 batches stored (one created every 37 s, one in ten
  not ended; OpenAI's with team/run metadata), and the store copied; then 90,000 older ones stored
  (as a backfill would), and copied again: the newest pages hold the same rows at both sizes;
- both copies measured in one process, taking turns call by call (`timed_in_turn`): measured one after the other,
  the second size paid for whatever the 90,000 writes left behind (the kernel still flushing them,
  a grown heap): the rare-term page read 12-13 % slower at 100k, where callgrind counts 38.1 M
  instructions a call at 10k and 38.4 M at 100k (its trigram look-up reads more index segments);
- stored with the columns store.record writes (store._columns, one history row each), in bulk:
  100,000 records one by one take minutes; PostgreSQL is VACUUM ANALYZEd after each fill, as
  autovacuum would, SQLite is not (the app never runs ANALYZE there);
- each case is called --calls times after 5 unmeasured: the median and p95 wall-clock ms of the
  whole call, and the median CPU ms of this thread (less swayed by the machine's other load; on
  PostgreSQL the server's own CPU is not in it); then the database's work for one call, which no
  other load sways: SQLite's virtual machine steps, PostgreSQL's shared buffers touched. Its ratio
  is the plain answer to "does the page cost more in a bigger store" (but for a search that SQLite
  looks up in its trigram index, migration 0024: FTS5's C code reading its index takes no VM
  step, so there the cpu ms ratio says it);
- `list_batches` (the list page's read of the store: SQL and the 25 rows read back as Batch
  objects), and the whole list page (Django's test Client, signed in, DEBUG=0) for three cases:
  its baseline is the same page with every row rendered from its template, as a page whose rows
  all changed (or that nobody looked at lately) is: web/rows.py keeps a row's HTML until it changes;
- baseline, in the same run on the same store: the query shape before issue 19 (`account IN (...)`,
  sorted whole; `NOT is_ended`), on today's indexes.

    .venv/bin/python bench/store_list.py                          # both databases, --calls 60
    .venv/bin/python bench/store_list.py --database sqlite --sizes 10000,100000 --calls 100

The tests run it only small, that it runs through (tests/bench/test_benches_run.py): never its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TEAMS = ("search-quality", "evals", "ingest", "billing", "support", "research")
ACCOUNTS = 8
GOAL_MS = 30.0
GOAL_RATIO = 1.1


def configure(workdir: Path, database: str) -> object | None:
    """This process's environment before Django starts, the store migrated; the PostgreSQL server, if any."""
    from harness import base_env

    server = None
    overrides = {
        "BATCH_ACCOUNTS_FILE": str(workdir / "accounts.json"),
        "ALLOWED_HOSTS": "testserver",
    }
    if database == "postgresql":
        from tests.services import start_postgres

        server = start_postgres()
        overrides["DATABASE_URL"] = server.create_database()
    environment = base_env(workdir / "bench.sqlite3", **overrides)  # read before the clear: it keeps PATH
    os.environ.clear()
    os.environ.update(environment)
    entries = [
        {"name": f"team{n}", "provider": provider, "base_url": "https://example.invalid", "api_key": f"sk-bench-{n}"}
        for n, provider in enumerate(["anthropic"] * (ACCOUNTS // 2) + ["openai"] * (ACCOUNTS // 2))
    ]
    Path(overrides["BATCH_ACCOUNTS_FILE"]).write_text(json.dumps(entries))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return server


def parsed(n: int, account):
    """Batch number n as its provider sends it: created 37 s before number n - 1, one in ten not ended."""
    from dashboard.providers import anthropic, openai

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
        return anthropic.parse_batch(data, account=account.key)
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
    return openai.parse_batch(data, account=account.key)


def fill(accounts, numbers: range) -> float:
    """Store batches `numbers` as store.record would (its columns, a history row each), in bulk; seconds."""
    from django.db import connection, transaction

    from dashboard.accounts import configured_secrets
    from dashboard.batches import store
    from dashboard.models import BatchChange, StoredBatch

    started = time.perf_counter()
    secrets = configured_secrets()
    chunk = 2000
    for first in range(numbers.start, numbers.stop, chunk):
        rows = []
        for n in range(first, min(first + chunk, numbers.stop)):
            batch = parsed(n, accounts[n % len(accounts)])
            columns = store._columns(batch, secrets)
            rows.append(
                StoredBatch(
                    account=batch.account,
                    batch_id=batch.id,
                    first_seen_at=T0,
                    last_fetched_at=T0,
                    last_changed_at=T0,
                    **columns,
                )
            )
        with transaction.atomic():
            made = StoredBatch.objects.bulk_create(rows)
            BatchChange.objects.bulk_create(
                BatchChange(
                    batch=row,
                    observed_at=T0,
                    status=row.status,
                    **{name: getattr(row, name) for name in store.COUNT_FIELDS},
                )
                for row in made
            )
    if connection.vendor == "postgresql":
        # As autovacuum would have: ANALYZE alone leaves the trigram index's pending list (GIN's fast
        # update, up to 4 MB of entries) unmerged, which every search then reads through, and autovacuum
        # merging it in the middle of a measure swayed the search pages by up to 27 %.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def baseline_list(*, accounts, provider="", account_key="", status="", search="", before=None, limit=25):
    """The list's page as `list_batches` read it before issue 19: every filtered row of `account IN
    (...)` sorted (a temporary B-tree on SQLite), `NOT is_ended` for the batches not ended, then the
    page's rows read whole with their accounts' health."""
    from django.db.models import Q, Subquery

    from dashboard.batches import selectors
    from dashboard.models import StoredBatch

    keys = [
        a.key
        for a in accounts
        if (not account_key or a.key == account_key) and (not provider or a.provider == provider)
    ]
    rows = StoredBatch.objects.filter(account__in=keys)
    if status == selectors.ACTIVE:
        rows = rows.filter(is_ended=False)
    elif status:
        rows = rows.filter(status=status)
    if search:
        rows = rows.filter(search_text__contains=search.strip().lower())
    cursor = selectors._decode_cursor(before)
    if cursor is not None:
        created_at, pk = cursor
        rows = rows.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk))
    page = rows.order_by("-created_at", "-pk")[: limit + 1]
    fetched = selectors._with_account_health(StoredBatch.objects.filter(pk__in=Subquery(page.values("pk")))).annotate(
        store_newest=Subquery(StoredBatch.objects.order_by("-pk").values("pk")[:1])
    )
    return [selectors._view(row, T0) for row in selectors.newest_first(fetched)][:limit]


def work(call) -> int:
    """The database's work for one call, which the machine's other load does not sway: SQLite's
    virtual machine steps (counted by its progress handler, in hundreds), PostgreSQL's shared
    buffers touched (EXPLAIN (ANALYZE, BUFFERS) of each statement the call makes)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if connection.vendor == "sqlite":
        connection.ensure_connection()
        steps = [0]

        def count() -> int:
            steps[0] += 100
            return 0

        connection.connection.set_progress_handler(count, 100)
        try:
            call()
        finally:
            connection.connection.set_progress_handler(None, 100)
        return steps[0]
    with CaptureQueriesContext(connection) as queries:
        call()
    buffers = 0
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            if not query["sql"].lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query["sql"])
            plan = cursor.fetchone()[0][0]["Plan"]
            buffers += plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    return buffers


WARM_CALLS = 5  # unmeasured calls of each store before a case is measured
_CONNECTIONS: dict[str, object] = {}  # a store copy's own connection, kept open between its turns


def use(store: str) -> None:
    """Point this process's Django at one of the stored copies (a file, or a PostgreSQL database),
    through a connection of its own, kept open: taking turns call by call reconnects nothing."""
    from django.db import connections

    wrapper = _CONNECTIONS.get(store)
    if wrapper is None:
        settings_dict = {**connections.databases["default"], "NAME": store}
        wrapper = _CONNECTIONS[store] = type(connections["default"])(settings_dict, "default")
    connections["default"] = wrapper


def close_stores() -> None:
    for wrapper in _CONNECTIONS.values():
        wrapper.close()
    _CONNECTIONS.clear()


def timed_in_turn(calls_by_store: list[tuple[str, object]], calls: int) -> list[tuple[float, float, float, int]]:
    """For each (store, call): median and p95 wall-clock ms, median thread CPU ms, the database's work
    (see `work`). The stores take turns call by call, the first of each pair alternating, after a
    few unmeasured calls: whatever drifts on this shared machine or in this process (a burst of the
    others' load, a fill's writes still being flushed, the heap it left behind) weighs on every size
    alike. Measured one size after the other, the second paid for it all; in turns of 12 calls a
    store, identical work (the same buffers read) still read up to 17 % apart."""
    wall: list[list[float]] = [[] for _ in calls_by_store]
    cpu: list[list[float]] = [[] for _ in calls_by_store]
    for store, call in calls_by_store:
        use(store)
        for _ in range(WARM_CALLS):
            call()
    order = list(enumerate(calls_by_store))
    for number in range(calls):
        for index, (store, call) in order if number % 2 == 0 else order[::-1]:
            use(store)
            started, started_cpu = time.perf_counter(), time.thread_time()
            call()
            wall[index].append((time.perf_counter() - started) * 1000)
            cpu[index].append((time.thread_time() - started_cpu) * 1000)
    figures = []
    for index, (store, call) in enumerate(calls_by_store):
        use(store)
        times = sorted(wall[index])
        figures.append(
            (statistics.median(times), times[int(0.95 * (len(times) - 1))], statistics.median(cpu[index]), work(call))
        )
    return figures


CASES = {
    # name: (list_batches filters, the list page's query string or None)
    "unfiltered, first page": ({}, ""),
    "unfiltered, page 201 (cursor)": ({"before": "deep"}, None),
    "newer from page 201 (cursor)": ({"after": "deep"}, None),
    "provider=openai": ({"provider": "openai"}, None),
    "account=anthropic-team2": ({"account_key": "anthropic-team2"}, None),
    "status=active (10% of rows)": ({"status": "active"}, "status=active&provider=openai"),
    "provider+account+status=completed": (
        {"provider": "openai", "account_key": "openai-team5", "status": "completed"},
        None,
    ),
    # Matches: 10 at both sizes; 100 at both, all some 9,100 batches down; 278 at 10k and 2,778 at
    # 100k; one batch in twelve; none. Below 3 characters, a search walks (no trigram to look up).
    "search id 'bench00123' (rare)": ({"search": "bench00123"}, "q=bench00123"),
    "search id 'bench0091' (rare, old batches)": ({"search": "bench0091"}, None),
    "search metadata 'nightly-7' (rare, then common)": ({"search": "nightly-7"}, None),
    "search metadata 'evals' (common)": ({"search": "evals"}, "q=evals"),
    "search + status=active": ({"search": "ingest", "status": "active"}, None),
    "search with no match": ({"search": "no-such-thing"}, "q=no-such-thing"),
    "search 2 characters 'ev' (common)": ({"search": "ev"}, None),
}
NO_BASELINE = {"newer from page 201 (cursor)"}  # the old shape's way up was the same sort, reversed


def sign_in():
    """A signed-in test Client: an operator of every account, as `make run`'s operator (README
    "Teams and sign-in"). Made before the first fill, so every stored copy holds the same user."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client

    from dashboard.access import services as access

    user, _ = get_user_model().objects.get_or_create(username="bench")
    access.grant(group_name="bench", patterns=["*"], role="operator", actor="bench", via="cli")
    user.groups.add(Group.objects.get(name="bench"))
    client = Client()
    client.force_login(user)
    return client


def measure(accounts, client, stores: list[str], calls: int) -> list[dict[str, tuple]]:
    """Each store's figures, case by case: (new median, p95, cpu), (baseline median, p95, cpu) or None, rows."""
    from dashboard.batches import selectors
    from dashboard.web import rows

    deep_by_store = {}
    for store in stores:
        use(store)
        deep = None
        for _ in range(200):  # the cursor of page 201, some 5,000 rows down
            deep = selectors.list_batches(accounts=accounts, before=deep, limit=25, now=T0).older
        deep_by_store[store] = deep

    def page(url: str):
        def get():
            response = client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}")

        return get

    def rendered_anew(get):
        def call():
            rows.FRAMES.clear()  # as a page whose rows all changed, or that nobody looked at lately
            get()

        return call

    figures: list[dict[str, tuple]] = [{} for _ in stores]
    for name, (case_filters, query) in CASES.items():
        news, olds, shown = [], [], []
        for store in stores:
            filters = {key: deep_by_store[store] if value == "deep" else value for key, value in case_filters.items()}
            new = lambda filters=filters: selectors.list_batches(accounts=accounts, now=T0, limit=25, **filters)  # noqa: E731
            old = lambda filters=filters: baseline_list(accounts=accounts, limit=25, **filters)  # noqa: E731
            use(store)
            shown_ids = [row.batch.id for row in new().rows]
            if name not in NO_BASELINE:
                assert [row.batch.id for row in old()] == shown_ids, f"{name}: the baseline shows other rows"
            news.append((store, new))
            olds.append((store, old))
            shown.append(len(shown_ids))
        new_figures = timed_in_turn(news, calls)
        old_figures = timed_in_turn(olds, calls) if name not in NO_BASELINE else [None] * len(stores)
        for index in range(len(stores)):
            figures[index][f"list_batches {name}"] = (new_figures[index], old_figures[index], shown[index])
        if query is not None:
            get = page(f"/?{query}")
            page_figures = timed_in_turn([(store, get) for store in stores], calls)
            anew_figures = timed_in_turn([(store, rendered_anew(get)) for store in stores], calls)
            for index in range(len(stores)):
                figures[index][f"list page /?{query}"] = (page_figures[index], anew_figures[index], shown[index])
    return figures


def snapshot(server, size: int) -> str:
    """A copy of the store as it is now, for `use`: a file beside SQLite's, a database from PostgreSQL's as template."""
    from django.db import connection, connections

    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connections.close_all()
        copy = str(Path(name).with_name(f"store-{size}.sqlite3"))
        shutil.copyfile(name, copy)
        return copy
    connections.close_all()
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "store_{size}" TEMPLATE "{name}"')
    return f"store_{size}"


def run(database: str, sizes: list[int], calls: int, plans: bool) -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-store-list-") as folder:
        server = configure(Path(folder), database)
        try:
            from dashboard.accounts import configured_accounts

            accounts = configured_accounts()
            client = sign_in()
            stores, stored = [], 0
            for size in sizes:
                seconds = fill(accounts, range(stored, size))
                stored = size
                print(
                    f"{database}: {size:,} batches stored over {len(accounts)} accounts ({seconds:.1f} s)", flush=True
                )
                stores.append(snapshot(server, size))
            results = measure(accounts, client, stores, calls)
            met = report(database, sizes, results)
            if plans:
                use(stores[-1])
                show_plans(accounts)
            return met
        finally:
            from django.db import connections

            close_stores()
            connections.close_all()
            if server is not None:
                server.stop()


def show_plans(accounts) -> None:
    """How the database reads each case's page of keys (EXPLAIN ANALYZE on PostgreSQL)."""
    from django.db import connection
    from django.db.models import Q

    from dashboard.batches import selectors

    for name, (filters, _) in CASES.items():
        if "before" in filters or "after" in filters:
            continue
        keys = selectors._account_keys(
            accounts=accounts, provider=filters.get("provider", ""), account_key=filters.get("account_key", "")
        )
        query = selectors._page_keys(keys, filters.get("status", ""), filters.get("search", ""), Q(), limit=26)
        sql, params = query.query.sql_with_params()
        explain = "EXPLAIN (ANALYZE, COSTS OFF)" if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN"
        with connection.cursor() as cursor:
            cursor.execute(f"{explain} {sql}", params)
            print(f"--- {name}\n" + "\n".join(str(row[-1]) for row in cursor.fetchall()))


def report(database: str, sizes: list[int], results: list[dict]) -> bool:
    """Print the table and the goal's line; whether the goal was met."""
    small, large = sizes[0], sizes[-1]
    unit = "VM steps" if database == "sqlite" else "buffers"
    sizes_head = f"{small // 1000}k / {large // 1000}k"
    print(f"\n{database}: {sizes_head} stored batches; ratio = {large // 1000}k / {small // 1000}k")
    print(
        f"{'':44} {'median / p95 ms, ' + sizes_head:^27} {'cpu ms':^13} {'database ' + unit:^24}"
        f" {'baseline median ms':^19} {'baseline ' + unit:^24}"
    )
    print(f"{'case':44} {'':^27} {'ratio':>13} {'ratio':>24} {'ratio':>19} {'ratio':>24}  rows")
    worst_work, worst_cpu, worst_page, slowest = (0.0, ""), (0.0, ""), (0.0, ""), (0.0, "")
    for name in results[0]:
        (new_small, old_small, rows), (new_large, old_large, _) = results[0][name], results[-1][name]
        cpu_ratio = new_large[2] / new_small[2]
        work_ratio = new_large[3] / max(new_small[3], 1)
        worst_work = max(worst_work, (work_ratio, name))
        worst_cpu = max(worst_cpu, (cpu_ratio, name))
        if name.startswith("list page"):
            worst_page = max(worst_page, (new_large[0] / new_small[0], name))
        slowest = max(slowest, (new_large[0], name), (new_small[0], name))
        if old_small and old_large:
            old_ms = f"{old_small[0]:5.1f} {old_large[0]:5.1f} {old_large[0] / old_small[0]:5.2f}"
            old_work = f"{old_small[3]:>8} {old_large[3]:>8} {old_large[3] / max(old_small[3], 1):6.2f}"
        else:
            old_ms, old_work = "", ""
        print(
            f"{name:44} {new_small[0]:5.1f}/{new_small[1]:5.1f} {new_large[0]:5.1f}/{new_large[1]:5.1f}"
            f" {new_small[2]:4.1f} {new_large[2]:4.1f} {cpu_ratio:4.2f}"
            f" {new_small[3]:>8} {new_large[3]:>8} {work_ratio:6.2f}"
            f" {old_ms:>19} {old_work:>24}  {rows:4d}"
        )
    ratio_met = "met" if worst_page[0] <= GOAL_RATIO else "MISSED"
    time_met = "met" if slowest[0] < GOAL_MS else "MISSED"
    print(
        f"{database}: the goal, list page medians: worst {large // 1000}k/{small // 1000}k ratio"
        f" {worst_page[0]:.2f} ({worst_page[1]}; goal <= {GOAL_RATIO}: {ratio_met}); slowest median"
        f" {slowest[0]:.1f} ms ({slowest[1]}; goal < {GOAL_MS:g} ms: {time_met}).\n"
        f"{database}: what grows underneath: worst ratio of the database's work {worst_work[0]:.2f}"
        f" ({worst_work[1]}), of cpu ms {worst_cpu[0]:.2f} ({worst_cpu[1]})\n",
        flush=True,
    )
    return ratio_met == time_met == "met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], help="one database (default: both, in turn)")
    parser.add_argument("--sizes", default="10000,100000", help="stored batches at each measure, increasing")
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--plans", action="store_true", help="and print how each case's keys are read")
    options = parser.parse_args()
    sizes = [int(size) for size in options.sizes.split(",")]
    if options.database:
        sys.exit(0 if run(options.database, sizes, options.calls, options.plans) else 1)
    failed = []
    for database in ("sqlite", "postgresql"):  # each in a process of its own: Django is set up once a process
        arguments = ["--database", database, "--sizes", options.sizes, "--calls", str(options.calls)]
        arguments += ["--plans"] if options.plans else []
        if subprocess.run([sys.executable, __file__, *arguments], cwd=ROOT).returncode:
            failed.append(database)
    if failed:
        print(f"store_list: goal missed or failed on {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
