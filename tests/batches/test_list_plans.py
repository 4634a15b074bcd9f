"""How SQLite reads a list page: the plan is what keeps the page as fast at 100,000 stored batches
as at 10,000 (bench/store_list.py measures it), so it is asserted here for every filter shape.

A page's keys are read one account at a time, each account's rows walked in list order (newest
first, then by id) in an index led by the account and the filter's equalities, the accounts merged
(SQLite's MERGE of a UNION ALL stops reading once the page is full): no temporary B-tree sorts the
store's rows, and no scan reads them all. A common term's search walks the whole store in list order
in one index holding all it tests (migration 0024), never reading a row, until the page is full; a
rare term's rows are found in the trigram index (0024) and read by rowid, and only those few sorted.
Then only the page's rows are read, by rowid (their order is set by a sort of those rows alone)."""

from __future__ import annotations

import re
from datetime import timedelta
from unittest.mock import patch

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard.batches import search_index, selectors
from tests.batches.test_selectors import ACCOUNTS, T0, mixed  # noqa: F401 (the fixture)

SHAPES = {
    "unfiltered": {},
    "provider": {"provider": "openai"},
    "account": {"account_key": "anthropic-ops"},
    "not ended yet": {"status": selectors.ACTIVE},
    "a status": {"status": "completed"},
    "provider and status": {"provider": "openai", "status": "in_progress"},
    "account and not ended yet": {"account_key": "openai-ops", "status": selectors.ACTIVE},
    "search": {"search": "Nightly"},
    "search and a status": {"search": "evals", "status": "completed"},
    "search and not ended yet": {"search": "ops", "status": selectors.ACTIVE},
    "provider, account, status and search": {
        "provider": "openai",
        "account_key": "openai-research",
        "status": "completed",
        "search": "evals",
    },
}
# The equalities each arm seeks, as SQLite says them; then, on a cursor's page, the cursor's bound.
SEEK = {"": "account=?", selectors.ACTIVE: "account=? AND is_ended=?", "completed": "account=? AND status=?"}
SEEK["in_progress"] = SEEK["completed"]
SEARCHES = [shape for shape, filters in SHAPES.items() if filters.get("search")]


@pytest.fixture
def common_terms():
    """Every term counts as common (it has at least RARE_MATCHES matches): the search walks."""
    with patch.object(selectors, "RARE_MATCHES", 0):
        yield


def plan_tree(sql: str, params) -> dict[int, tuple[int, str]]:
    """EXPLAIN QUERY PLAN as {id: (parent id, detail)}."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return {row[0]: (row[1], row[3]) for row in cursor.fetchall()}


def under(tree: dict[int, tuple[int, str]], node: int) -> list[str]:
    """The details of every line below `node`."""
    children = [key for key, (parent, _) in tree.items() if parent == node]
    return [line for child in children for line in [tree[child][1], *under(tree, child)]]


def page_plan(call) -> tuple[list[str], list[str]]:
    """The first statement `call` makes (a page towards newer batches that reaches the top is read
    again as the first page): the plan of how it finds the page's keys (the `pk IN (...)` subquery),
    and its plan's lines outside that."""
    if connection.vendor != "sqlite":
        pytest.fail("these tests run on the test settings' SQLite")
    with CaptureQueriesContext(connection) as queries:
        call()
    query = next(query for query in queries.captured_queries if "dashboard_storedbatch" in query["sql"])
    tree = plan_tree(query["sql"], None)
    (keys_node,) = [
        node for node, (parent, detail) in tree.items() if parent == 0 and detail.startswith("LIST SUBQUERY")
    ]
    keys = under(tree, keys_node)
    others = [detail for node, (_, detail) in tree.items() if node != keys_node and detail not in keys]
    return keys, others


def assert_walks_indexes_in_list_order(keys: list[str], *, status: str, search: str, accounts: int) -> None:
    """Unsearched: one seek per account, merged. A common (or short) term: the whole store walked in
    list order (from the cursor on) in the one index that holds all it tests, never the rows."""
    reads = [line for line in keys if "dashboard_storedbatch" in line]
    if search:
        (line,) = reads
        walk = "USING COVERING INDEX stored_batch_search_newest_sqlite"
        assert re.fullmatch(
            rf"(SCAN dashboard_storedbatch {walk}|SEARCH dashboard_storedbatch {walk} \(created_at[<>]\?\))", line
        ), keys
    else:
        assert len(reads) == accounts, keys  # one arm per account
        for line in reads:
            assert line.startswith("SEARCH dashboard_storedbatch USING"), line  # a seek, not a SCAN
            seek = re.escape(SEEK[status])
            assert re.search(rf"INDEX stored_batch_\w*list\w* \({seek}( AND created_at[<>]\?)?\)$", line), line
        assert not [line for line in keys if line.startswith("SCAN") and line != "SCAN page"], keys
    assert not [line for line in keys if "TEMP B-TREE" in line], keys


def accounts_of(filters: dict) -> int:
    return len(
        [
            a
            for a in ACCOUNTS
            if filters.get("provider", a.provider) == a.provider and filters.get("account_key", a.key) == a.key
        ]
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_a_page_walks_one_index_per_account_in_list_order(mixed, common_terms, shape):  # noqa: F811
    filters = SHAPES[shape]
    keys, others = page_plan(lambda: selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=2, **filters))
    status, search = filters.get("status", ""), filters.get("search", "")
    assert_walks_indexes_in_list_order(keys, status=status, search=search, accounts=accounts_of(filters))
    # The rest reads the page's rows by rowid; nothing else of the store but its newest key.
    assert "SEARCH dashboard_storedbatch USING INTEGER PRIMARY KEY (rowid=?)" in others, others
    assert not [line for line in others if "dashboard_storedbatch" in line and "rowid=?" not in line], others


@pytest.mark.parametrize("shape", ["unfiltered", "a status", "search and not ended yet"])
@pytest.mark.parametrize("direction", ["before", "after"])
def test_a_cursors_page_walks_the_same_indexes_from_the_cursor_on(mixed, common_terms, shape, direction):  # noqa: F811
    filters = SHAPES[shape]
    first = selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=1, **filters)
    second = selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=1, before=first.older, **filters)
    cursor = first.older if direction == "before" else second.newer
    assert cursor
    keys, _ = page_plan(
        lambda: selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=1, **{direction: cursor}, **filters)
    )
    assert_walks_indexes_in_list_order(
        keys, status=filters.get("status", ""), search=filters.get("search", ""), accounts=accounts_of(filters)
    )
    # The cursor bounds each walk: the seek starts at it, the store's older (or newer) rows unread.
    bound = "created_at<?" if direction == "before" else "created_at>?"
    assert all(bound in line for line in keys if "dashboard_storedbatch" in line), keys


@pytest.mark.parametrize("shape", ["unfiltered", "not ended yet", "search"])
def test_the_first_pages_probe_walks_the_same_indexes_from_its_top_row_on(mixed, shape):  # noqa: F811
    filters = SHAPES[shape]
    top = selectors.list_batches(accounts=ACCOUNTS, now=T0 - timedelta(hours=1), **filters).top
    keys, _ = page_plan(lambda: selectors.newer_batches(accounts=ACCOUNTS, newer_than=top, now=T0, **filters))
    assert_walks_indexes_in_list_order(
        keys, status=filters.get("status", ""), search=filters.get("search", ""), accounts=accounts_of(filters)
    )
    assert all("created_at>?" in line for line in keys if "dashboard_storedbatch" in line), keys


# --- a rare term: found in the trigram index ------------------------------------------------------


def trigram_lookups(call) -> list[list[str]]:
    """The plan of each statement `call` makes that reads the trigram index."""
    table = search_index.trigrams_table()
    with CaptureQueriesContext(connection) as queries:
        call()
    return [list(plan_tree(query["sql"], None).values()) for query in queries.captured_queries if table in query["sql"]]


def assert_finds_the_matches_by_trigrams(keys: list[str]) -> None:
    """The term's rows, looked up in the trigram index (the statement before), are read by rowid:
    no walk, no scan of the store; the temporary B-tree sorts those rows alone."""
    reads = [line for line in keys if "dashboard_storedbatch" in line]
    assert reads == ["SEARCH dashboard_storedbatch USING INTEGER PRIMARY KEY (rowid=?)"], keys
    assert not [line for line in keys if line.startswith("SCAN")], keys


@pytest.mark.parametrize("shape", SEARCHES)
def test_a_rare_terms_page_reads_its_matches_from_the_trigram_index(mixed, shape):  # noqa: F811
    def call():
        return selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=2, **SHAPES[shape])

    keys, others = page_plan(call)
    assert_finds_the_matches_by_trigrams(keys)
    assert not [line for line in others if "dashboard_storedbatch" in line and "rowid=?" not in line], others
    # One look-up: the term's rows, up to RARE_MATCHES, straight from the index.
    table = search_index.trigrams_table()
    assert trigram_lookups(call) == [[(0, f"SCAN {table} VIRTUAL TABLE INDEX 0:M1")]]


def test_a_term_no_batch_holds_reads_no_row(mixed, django_assert_num_queries):  # noqa: F811
    with django_assert_num_queries(1):  # the look-up in the trigram index, which finds none
        listing = selectors.list_batches(accounts=ACCOUNTS, now=T0, search="no such batch")
    assert listing.rows == [] and listing.older is None and listing.newer is None


@pytest.mark.parametrize("direction", ["before", "after"])
def test_a_rare_terms_cursors_page_reads_its_matches_from_the_trigram_index(mixed, direction):  # noqa: F811
    filters = {"search": "batch_"}  # every batch: pages of one
    first = selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=1, **filters)
    second = selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=1, before=first.older, **filters)
    cursor = first.older if direction == "before" else second.newer
    assert cursor
    keys, _ = page_plan(
        lambda: selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=1, **{direction: cursor}, **filters)
    )
    assert_finds_the_matches_by_trigrams(keys)


def test_a_term_is_rare_below_rare_matches_and_walks_from_there(mixed):  # noqa: F811
    """ "opsrunning" is in two batches' text, "batch_" in all eight."""
    with patch.object(selectors, "RARE_MATCHES", 3):
        rare, _ = page_plan(lambda: selectors.list_batches(accounts=ACCOUNTS, now=T0, search="opsRunning"))
        common, _ = page_plan(lambda: selectors.list_batches(accounts=ACCOUNTS, now=T0, search="batch_"))
    assert_finds_the_matches_by_trigrams(rare)
    assert_walks_indexes_in_list_order(common, status="", search="batch_", accounts=len(ACCOUNTS))


@pytest.mark.parametrize("term", ["ev", "_", "o ", "\x00ops"])
def test_a_term_the_trigram_index_cannot_find_walks(mixed, term):  # noqa: F811
    """Fewer than three characters have no trigram (nor has the text up to a NUL, which SQLite's
    full-text query ends at)."""
    keys, _ = page_plan(lambda: selectors.list_batches(accounts=ACCOUNTS, now=T0, search=term))
    assert_walks_indexes_in_list_order(keys, status="", search=term, accounts=len(ACCOUNTS))
