"""Scoping costs nothing: the pages and the live feed for a user scoped by grants, against a superuser
(who is never scoped), measured in the same run on the same store.

In a fresh SQLite file: 8 configured accounts (4 Anthropic, 4 OpenAI) and --batches stored batches
written as the poller writes them (bench/store_list.py's fill: one in ten not ended). Three users:
- superuser: every account, nothing looked up (the baseline);
- scoped, every account: a group holding operator and results reader on `*` (what `make run`'s
  operator holds), so it sees exactly what the superuser sees: the ratio is the cost of scoping;
- scoped, half: a group holding viewer on `anthropic-*`: its pages hold other rows (its figures are
  shown, not compared).
For each user, in process (Django's test Client through the whole middleware stack, DEBUG=0, signed
in, the session and grants cached after the first request): --calls requests per case after 10
unmeasured, the users taking turns in rounds of 10 (so that whatever else the machine runs weighs on
each alike); the figure is this thread's CPU time for the whole `client.get` call (wall-clock time
on a busy machine measures the machine). Cases: the list page, the list filtered to
batches not ended, the list's live feed when nothing changed (204), a row, the alarms page.
Goal: every case's median for the scoped user within 1.1 x the superuser's.

    make bench            # or: .venv/bin/python bench/access.py --batches 10000 --calls 200
"""

from __future__ import annotations

import argparse
import html
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store_list

GOAL_RATIO = 1.1
HTMX = {"HTTP_HX_REQUEST": "true"}


def users():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from dashboard.access import services as access
    from dashboard.access.models import Role

    User = get_user_model()
    made = {"superuser": User.objects.create_superuser("boss", password=None)}
    for name, pattern, roles in (
        ("scoped, every account", "*", (Role.OPERATOR, Role.RESULTS)),
        ("scoped, half", "anthropic-*", (Role.VIEWER,)),
    ):
        group = f"group-{len(made)}"
        for role in roles:
            access.grant(group_name=group, patterns=[pattern], role=role, actor="bench", via="cli")
        user = User.objects.create_user(f"user-{len(made)}", password=None)
        user.groups.add(Group.objects.get(name=group))
        made[name] = user
    return made


def timed(get, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.thread_time()
        get()
        samples.append((time.thread_time() - started) * 1000)
    return samples


def cases_for(client, row_url: str) -> dict:
    page = client.get("/")
    assert page.status_code == 200, page.status_code
    feed = re.search(r'id="live-feed"[^>]*hx-get="([^"]+)"', page.content.decode())
    feed_url = html.unescape(feed.group(1)) if feed else ""

    def get(url, status=200, **options):
        def call():
            answer = client.get(url, **options)
            if answer.status_code != status:
                raise RuntimeError(f"{url}: HTTP {answer.status_code}")

        return call

    cases = {
        "list page": get("/"),
        "list, not ended": get("/?status=active"),
        "row": get(row_url, **HTMX),
        "alarms page": get("/alarms/"),
    }
    if feed_url:
        cases["feed, nothing changed"] = get(feed_url, status=204, **HTMX)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-access-") as workdir:
        store_list.configure(Path(workdir), "sqlite")
        from django.test import Client

        from dashboard.accounts import configured_accounts
        from dashboard.models import StoredBatch

        accounts = configured_accounts()
        store_list.fill(accounts, range(options.batches))
        live = StoredBatch.objects.filter(is_ended=False, account__startswith="anthropic-").first()
        row_url = f"/batches/{live.account}/{live.batch_id}/row"
        cases = {}
        for name, user in users().items():
            client = Client()
            client.force_login(user)
            cases[name] = cases_for(client, row_url)
            for get in cases[name].values():
                for _ in range(10):
                    get()
        figures: dict[str, dict[str, list[float]]] = {name: {case: [] for case in mine} for name, mine in cases.items()}
        for _ in range(max(1, options.calls // 10)):
            for name, mine in cases.items():
                for case, get in mine.items():
                    figures[name][case] += timed(get, 10)
    base = figures["superuser"]
    print(f"\nScoping: {options.batches:,} stored batches, {options.calls} calls a case (CPU ms; median / p95)\n")
    print("| case | superuser | scoped, every account | ratio | scoped, half |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for case, samples in base.items():
        scoped = figures["scoped, every account"][case]
        half = figures["scoped, half"].get(case)
        ratio = statistics.median(scoped) / statistics.median(samples)
        worst = max(worst, ratio)

        def cell(values):
            return f"{statistics.median(values):.2f} / {statistics.quantiles(values, n=20)[-1]:.2f}"

        print(f"| {case} | {cell(samples)} | {cell(scoped)} | {ratio:.2f} | {cell(half) if half else '-'} |")
    verdict = "met" if worst <= GOAL_RATIO else "NOT met"
    goal = f"the scoped user's median within {GOAL_RATIO} x the superuser's in every case"
    print(f"\nGoal: {goal}: {verdict} (worst {worst:.2f}).")


if __name__ == "__main__":
    main()
