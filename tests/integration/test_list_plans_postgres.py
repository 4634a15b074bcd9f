"""How PostgreSQL reads a list page, on a store big enough (and ANALYZEd) for its planner to choose
as it would in production: the plan is what keeps the page as fast at 100,000 stored batches as at
10,000 (bench/store_list.py measures it), so it is asserted for every filter shape.

Each account's rows are walked in list order in an index led by the account (and the filter's
equalities; by the account alone, the planner may walk the newest-first index instead), each walk
limited to a page, the accounts merged in order (Merge Append): nothing sorts
the store's rows and nothing scans them all. A search reads one arm: a rare term's rows come from
the trigram index (pg_trgm), a common term's by walking the newest-first index until the page is full.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.services import app_env, manage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHAPES = {
    "unfiltered": {},
    "provider": {"provider": "openai"},
    "account": {"account_key": "anthropic-team2"},
    "not ended yet": {"status": "active"},
    "a status": {"status": "completed"},
    "provider and status": {"provider": "openai", "status": "in_progress"},
    "older than a cursor": {"bound": "before"},
    "newer than a cursor": {"bound": "after"},
    "search, a rare term": {"search": "batch_0012345"},
    "search, a common term": {"search": "evals"},
    "search, no match": {"search": "no-such-thing"},
}

# Run by `manage.py shell` on the PostgreSQL database: 20,000 batches over 8 accounts, ANALYZE, and
# the plan of each shape's page of keys, as JSON.
SCRIPT = """
import json
from datetime import UTC, datetime, timedelta
from django.db import connection
from django.db.models import Q
from dashboard.accounts import Account
from dashboard.batches import selectors
from dashboard.models import StoredBatch

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
accounts = [Account(name=f"team{n}", provider="anthropic" if n < 4 else "openai", base_url="", api_key="x")
            for n in range(8)]
# As wide as a stored batch is (the provider's JSON, its timestamps), so that reading rows costs what it does.
raw = {"object": "batch", "endpoint": "/v1/chat/completions", "completion_window": "24h", "errors": None,
       "input_file_id": "file-" + "a" * 24, "output_file_id": "file-" + "b" * 24, "error_file_id": None,
       "request_counts": {"total": 100, "completed": 97, "failed": 3},
       **{f"{name}_at": 1764072000 for name in ("created", "in_progress", "expires", "finalizing", "completed")},
       "metadata": {"team": "search-quality", "run": "nightly-0000", "owner": "someone@example.com"}}
rows = []
for n in range(20_000):
    account = accounts[n % 8]
    running = n % 10 == 0
    status = "in_progress" if running else ("ended" if account.provider == "anthropic" else "completed")
    words = "" if account.provider == "anthropic" else "\\n" + ("evals", "ingest", "billing")[n % 3]
    rows.append(StoredBatch(
        account=account.key, provider=account.provider, batch_id=f"batch_{n:07d}", status=status,
        is_ended=not running, created_at=T0 - timedelta(seconds=37 * n), raw={**raw, "id": f"batch_{n:07d}"},
        timestamps={name: T0.isoformat() for name in ("created_at", "expires_at", "in_progress_at")},
        search_text=f"batch_{n:07d}{words}",
        first_seen_at=T0, last_fetched_at=T0, last_changed_at=T0))
StoredBatch.objects.bulk_create(rows, batch_size=2000)
with connection.cursor() as cursor:
    cursor.execute("VACUUM ANALYZE dashboard_storedbatch")  # as autovacuum keeps it
plans = {}
for name, shape in json.loads(SHAPES).items():
    keys = selectors._account_keys(accounts=accounts, provider=shape.get("provider", ""),
                                   account_key=shape.get("account_key", ""))
    middle = T0 - timedelta(days=2)
    bound = {"before": Q(created_at__lte=middle) & (Q(created_at__lt=middle) | Q(pk__lt=10)),
             "after": Q(created_at__gte=middle) & (Q(created_at__gt=middle) | Q(pk__gt=10))}
    bound = bound.get(shape.get("bound"), Q())
    query = selectors._page_keys(keys, shape.get("status", ""), shape.get("search", ""), bound, limit=26,
                                 ascending=shape.get("bound") == "after")
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plans[name] = cursor.fetchone()[0][0]["Plan"]
from dashboard.batches import trigram_sample
trigram_sample.forget()
found = {}
for term in json.loads(TERMS):
    chosen = trigram_sample.rarest_trigrams(term, page_rows=26)
    every = selectors._account_keys(accounts=accounts, provider="", account_key="")
    page = selectors._fetch(selectors._page_keys(every, "", term, Q(), limit=200))
    lowered = term.strip().lower()
    want = sorted(StoredBatch.objects.filter(search_text__contains=lowered), key=lambda row: (row.created_at, row.pk),
                  reverse=True)[:200]
    found[term] = {"chosen": chosen, "same": [(row.account, row.batch_id) for row in page]
                   == [(row.account, row.batch_id) for row in want], "rows": len(want)}
print("PLANS" + json.dumps({"plans": plans, "found": found}))
"""
# Rare terms (some with LIKE's wildcards, whose trigrams the index is asked for whatever they are
# next to), a common one, and terms with no trigram pg_trgm indexes as it is.
TERMS = ["batch_0012345", "12345", "batch_001234", "_001234", "no-such-thing", "0012%", "evals", "%", "5_", "ab"]


def nodes(plan: dict) -> list[dict]:
    return [plan, *(node for child in plan.get("Plans", []) for node in nodes(child))]


@pytest.fixture(scope="module")
def measured(postgres_server) -> dict[str, dict]:
    env = app_env(DATABASE_URL=postgres_server.create_database(migrated=True))
    code = f"SHAPES = {json.dumps(json.dumps(SHAPES))}\nTERMS = {json.dumps(json.dumps(TERMS))}\n{SCRIPT}"
    out = manage("shell", "-c", code, env=env, timeout=300)
    return json.loads(out.split("PLANS", 1)[1])


@pytest.fixture(scope="module")
def plans(measured) -> dict[str, dict]:
    return measured["plans"]


def test_the_search_has_its_trigram_index(plans):
    used = {node.get("Index Name") for node in nodes(plans["search, a rare term"])}
    assert "stored_batch_search_trgm" in used, plans["search, a rare term"]


@pytest.mark.parametrize("shape", [name for name in SHAPES if "search" not in name])
def test_a_page_walks_an_index_per_account_in_list_order_and_merges_them(plans, shape):
    plan = plans[shape]
    every = nodes(plan)
    assert plan["Node Type"] == "Limit", plan
    assert not [node for node in every if node["Node Type"] in ("Sort", "Incremental Sort", "Seq Scan")], plan
    scans = [node for node in every if node["Node Type"] in ("Index Scan", "Index Only Scan")]
    expected = 1 if shape == "account" else 4 if "provider" in shape else 8
    assert len(scans) == expected, plan
    index = {"not ended yet": "stored_batch_active_list", "a status": "stored_batch_status_list"}.get(shape)
    if shape == "provider and status":
        index = "stored_batch_status_list"
    # By the account alone, the newest-first index filtered by account is a walk in list order too,
    # reading about a page over the account's share of the rows: the planner may reckon it as cheap.
    allowed = {index} if index else {"stored_batch_account_list", "stored_batch_newest"}
    assert {scan["Index Name"] for scan in scans} <= allowed, plan
    if expected > 1:
        assert plan["Plans"][0]["Node Type"] == "Merge Append", plan
        assert all(child["Node Type"] == "Limit" for child in plan["Plans"][0]["Plans"]), plan
    if "cursor" in shape:
        assert all("created_at" in scan["Index Cond"] for scan in scans), plan


def test_a_rare_term_is_found_in_the_trigram_index_not_by_walking_the_store(plans):
    for shape in ("search, a rare term", "search, no match"):
        every = nodes(plans[shape])
        assert not [node for node in every if node["Node Type"] == "Seq Scan"], plans[shape]
        assert any(node.get("Index Name") == "stored_batch_search_trgm" for node in every), plans[shape]


def test_a_common_term_walks_the_newest_first_index_until_the_page_is_full(plans):
    plan = plans["search, a common term"]
    every = nodes(plan)
    assert not [node for node in every if node["Node Type"] in ("Sort", "Seq Scan")], plan
    assert [node.get("Index Name") for node in every if node["Node Type"] == "Index Scan"] == ["stored_batch_newest"]


def test_a_rare_term_is_looked_up_by_its_rarest_trigrams_not_those_every_batch_holds(plans):
    plan = plans["search, a rare term"]  # batch_0012345: every stored id holds "bat", "atc", "tch"
    (scan,) = [node for node in nodes(plan) if node.get("Index Name") == "stored_batch_search_trgm"]
    asked = re.findall(r"~~ '%([^']*)%'", scan["Index Cond"])
    assert asked and len(asked) <= 3 and not {"bat", "atc", "tch", "001"} & set(asked), scan["Index Cond"]
    assert all(trigram in "0012345" for trigram in asked), scan["Index Cond"]
    checked = " ".join(node.get("Filter", "") for node in nodes(plan))
    assert "strpos(search_text, 'batch_0012345'::text) > 0" in checked, plan


@pytest.mark.parametrize("term", TERMS)
def test_a_search_lists_the_same_batches_however_its_rows_are_found(measured, term):
    found = measured["found"][term]
    assert found["same"], found
    rare = term in ("batch_0012345", "12345", "batch_001234", "_001234", "no-such-thing", "0012%")
    assert bool(found["chosen"]) == rare, found
