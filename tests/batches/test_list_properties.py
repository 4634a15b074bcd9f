"""The list's pages against a plain Python filter and sort of every stored row: whatever the store
holds (creation times shared across accounts, batches gone upstream, metadata words) and whatever
the filters and page size, paging older from the first page and back newer reads exactly the rows,
in exactly the order (newest first, then by id), that the filters show.

A search term is a substring of the text, case aside: short or long, with LIKE's wildcards (% _)
and escape (\\), quotes, or letters whose case folds oddly (İ, ǅ, ß), found by walking the list's
order or, on SQLite, by the trigram index (a rare term; `rare_matches` moves the line between the two)."""

from __future__ import annotations

import re
from datetime import timedelta
from unittest.mock import patch

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.batches import selectors, store
from dashboard.models import StoredBatch
from tests.batches.test_selectors import ACCOUNTS, T0, put

STATUSES = {"anthropic": ["in_progress", "canceling", "ended"], "openai": ["in_progress", "completed"]}
WORDS = ["alpha", "Beta", "gamma_1", "50%", 'say "hi"', "back\\slash", "Ünïcödé", "ǅemal", "İstanbul", "Straße"]
TERMS = ["", "alp", "BETA", "a_1", "50%", "%", "_", "msgbatch_", "batch", "no such", "al", "a", "a%"]
TERMS += ['"hi', 'y "h', '"', "\\s", "k\\", "\\", "ünï", "ÜNÏCÖ", "ǆe", "ǄEM", "İST", "i̇st", "STRASSE", "aße", "ẞe"]
# Any text but NUL and lone surrogates (the web refuses them: dashboard/web/middleware.py).
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=6)

stored = st.lists(
    st.tuples(
        st.sampled_from(ACCOUNTS),
        st.integers(min_value=0, max_value=2),  # minutes before T0: many batches share a creation time
        st.integers(min_value=0, max_value=2),  # which status of its provider's
        st.one_of(st.sampled_from(WORDS), TEXT),
        st.booleans(),  # gone upstream since
    ),
    max_size=24,
)
# Each filter is off half the time, so that pages hold several rows and share creation times.
filters = st.fixed_dictionaries(
    {
        "provider": st.one_of(st.just(""), st.sampled_from(["anthropic", "openai"])),
        "account_key": st.one_of(st.just(""), st.sampled_from([account.key for account in ACCOUNTS])),
        "status": st.one_of(st.just(""), st.sampled_from([selectors.ACTIVE, "in_progress", "ended", "completed"])),
        "search": st.one_of(st.just(""), st.sampled_from(TERMS), TEXT),
    }
)


def make_store(batches) -> None:
    for number, (account, minutes, status, word, gone) in enumerate(batches):
        batch_id = f"{'msgbatch' if account.provider == 'anthropic' else 'batch'}_{number}"
        statuses = STATUSES[account.provider]
        extra = {} if account.provider == "anthropic" else {"metadata": {"team": word}}
        put(account, batch_id, T0 - timedelta(minutes=minutes), status=statuses[status % len(statuses)], **extra)
        if gone:
            store.mark_gone(account_key=account.key, batch_id=batch_id, at=T0)


def expected(*, provider: str, account_key: str, status: str, search: str) -> list[StoredBatch]:
    """Every stored row the filters show, newest first then by id, in Python."""
    keys = {a.key for a in ACCOUNTS if provider in ("", a.provider) and account_key in ("", a.key)}
    term = search.strip().lower()
    rows = [
        row
        for row in StoredBatch.objects.all()
        if row.account in keys
        and (status == "" or (not row.is_ended if status == selectors.ACTIVE else row.status == status))
        and term in row.search_text
    ]
    return sorted(rows, key=lambda row: (row.created_at, row.pk), reverse=True)


def keys(rows) -> list[tuple[str, str]]:
    return [(row.account, row.batch_id) for row in rows]


def ids(listing: selectors.StoreListing) -> list[tuple[str, str]]:
    return [(row.batch.account, row.batch.id) for row in listing.rows]


@pytest.mark.django_db
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=stored,
    chosen=filters,
    limit=st.integers(min_value=1, max_value=5),
    one_arm=st.booleans(),
    rare_matches=st.sampled_from([0, 3, selectors.RARE_MATCHES]),
)
def test_paging_older_then_newer_reads_exactly_the_filtered_rows_in_list_order(
    batches, chosen, limit, one_arm, rare_matches
):
    """`one_arm`: as with more accounts than MERGED_ACCOUNTS, read in one arm, not one per account.
    `rare_matches`: every term walks (0), or a term is found by the trigram index below 3 matches
    or below as many as in use."""
    with (
        transaction.atomic(),
        patch.object(selectors, "MERGED_ACCOUNTS", 0 if one_arm else selectors.MERGED_ACCOUNTS),
        patch.object(selectors, "RARE_MATCHES", rare_matches),
    ):
        make_store(batches)
        want = keys(expected(**chosen))
        pages = [selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=limit, **chosen)]
        while pages[-1].older:
            pages.append(
                selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=limit, before=pages[-1].older, **chosen)
            )
        assert [key for page in pages for key in ids(page)] == want
        assert all(len(page.rows) == limit for page in pages[:-1]) and len(pages[-1].rows) <= limit
        assert pages[0].newer is None and all(page.newer for page in pages[1:] if page.rows)
        # Back up from the last page: each page above is the one read on the way down.
        for number in range(len(pages) - 1, 0, -1):
            above = selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=limit, after=pages[number].newer, **chosen)
            assert ids(above) == ids(pages[number - 1])
        transaction.set_rollback(True)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=stored, after=stored, chosen=filters)
def test_the_first_pages_probe_brings_in_exactly_the_filtered_rows_stored_since(before, after, chosen):
    with transaction.atomic():
        make_store(before)
        first = selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=25, **chosen)
        stored_up_to = StoredBatch.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        make_store([(account, minutes, *rest) for account, minutes, *rest in after])
        top = first.rows[0].batch.created_at if first.rows else None
        want = [
            (row.account, row.batch_id)
            for row in expected(**chosen)
            if row.pk > stored_up_to and (top is None or row.created_at >= top - selectors.LATE_ARRIVAL)
        ]
        arrived = selectors.newer_batches(accounts=ACCOUNTS, newer_than=first.top, now=T0, limit=25, **chosen)
        assert [(row.batch.account, row.batch.id) for row in arrived.rows] == want
        transaction.set_rollback(True)


@st.composite
def store_and_term(draw):
    """Batches with metadata words, and a term: often a piece of one of the words (in any case),
    else one of TERMS or any text."""
    words = draw(st.lists(st.one_of(st.sampled_from(WORDS), TEXT), min_size=1, max_size=12))
    word = draw(st.sampled_from(words))
    start = draw(st.integers(min_value=0, max_value=len(word)))
    piece = word[start : draw(st.integers(min_value=start, max_value=len(word)))]
    term = draw(st.one_of(st.sampled_from([piece, piece.upper(), piece.title()]), st.sampled_from(TERMS), TEXT))
    return words, term


@pytest.mark.django_db
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=store_and_term(), rare_matches=st.sampled_from([0, 3, selectors.RARE_MATCHES]))
def test_a_search_lists_exactly_the_batches_whose_text_holds_the_term(drawn, rare_matches):
    words, term = drawn
    with transaction.atomic(), patch.object(selectors, "RARE_MATCHES", rare_matches):
        make_store([(ACCOUNTS[2 + number % 2], 0, 0, word, False) for number, word in enumerate(words)])
        want = keys(expected(provider="", account_key="", status="", search=term))
        assert ids(selectors.list_batches(accounts=ACCOUNTS, now=T0, limit=25, search=term)) == want
        transaction.set_rollback(True)


@pytest.mark.django_db
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=store_and_term(), data=st.data())
def test_a_term_found_by_some_of_its_trigrams_and_checked_whole_finds_the_same_batches(drawn, data):
    """PostgreSQL looks a rare term up by a few of its trigrams (trigram_sample) and checks the whole
    term with strpos: whichever trigrams are chosen, the same batches as the term's LIKE."""
    words, term = drawn
    lowered = selectors._search_term(term)
    trigrams = sorted(set(re.findall(r"(?=([a-z0-9]{3}))", lowered)))
    found_by = data.draw(st.lists(st.sampled_from(trigrams), max_size=3, unique=True) if trigrams else st.just([]))
    with transaction.atomic():
        make_store([(ACCOUNTS[2 + number % 2], 0, 0, word, False) for number, word in enumerate(words)])
        rows = selectors._filtered(StoredBatch.objects.all(), status="", search=term, found_by=found_by)
        assert sorted(keys(rows)) == sorted(keys(expected(provider="", account_key="", status="", search=term)))
        transaction.set_rollback(True)
