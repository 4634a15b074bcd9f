"""Which trigrams of a search term PostgreSQL's trigram index is asked for (dashboard/batches/trigram_sample.py).

The choice is made from a sample of the store's search texts; it only decides how the rows are found
(the list's tests, and tests/integration/test_list_plans_postgres.py, check that they are the same
rows). Here: what is chosen, against samples made up in Python."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st

from dashboard.batches import trigram_sample
from dashboard.batches.trigram_sample import MOST_TRIGRAMS, SELECTIVE_SHARE, _Sample

PAGE = 26


def sample_of(texts: list[str], store_rows: float | None = None) -> _Sample:
    return trigram_sample.sample_of(texts, store_rows=store_rows or len(texts))


@pytest.fixture
def sampled(monkeypatch):
    def use(texts: list[str], store_rows: float | None = None) -> None:
        made = sample_of(texts, store_rows)
        monkeypatch.setattr(trigram_sample, "_current_sample", lambda: made)

    return use


# Ids as a store's read (every one holds "bat", "atc", "tch", "ben", "enc", "nch"), a few team words.
IDS = [f"batch_bench{n:06d}\n{('evals', 'ingest', 'billing')[n % 3]}" for n in range(2000)]


def test_a_rare_term_is_found_by_its_rarest_trigrams_not_those_every_row_holds(sampled):
    sampled(IDS, store_rows=100_000)
    chosen = trigram_sample.rarest_trigrams("bench00123", page_rows=PAGE)
    assert chosen and len(chosen) <= MOST_TRIGRAMS
    assert not {"ben", "enc", "nch", "h00"} & set(chosen), chosen
    assert set(chosen) <= {"001", "012", "123"}, chosen


def test_a_term_no_sampled_row_holds_is_found_by_the_index(sampled):
    sampled(IDS, store_rows=10_000_000)
    assert trigram_sample.rarest_trigrams("no-such-thing", page_rows=PAGE) == ["hin", "suc", "thi"]


def test_a_common_term_is_left_to_the_walk(sampled):
    sampled(IDS, store_rows=100_000)
    assert trigram_sample.rarest_trigrams("evals", page_rows=PAGE) == []
    assert trigram_sample.rarest_trigrams("bench", page_rows=PAGE) == []


def test_the_walk_wins_once_the_index_would_check_more_rows_than_it_reads(sampled):
    # "zzz" is in 1 of 20 sampled texts, and so is the term: the index checks about 5 % of the store,
    # the walk reads about 20 rows a page row. In a store of 5,000 the index is cheaper, of 1,000,000 not.
    texts = [f"zzz{n}" if n % 20 == 0 else f"row{n}" for n in range(2000)]
    sampled(texts, store_rows=5_000)
    assert trigram_sample.rarest_trigrams("zzz", page_rows=PAGE) == ["zzz"]
    sampled(texts, store_rows=1_000_000)
    assert trigram_sample.rarest_trigrams("zzz", page_rows=PAGE) == []


def test_beside_the_rarest_a_trigram_too_common_to_rule_rows_out_is_not_asked_for(sampled):
    share = int(SELECTIVE_SHARE * 2000)
    texts = [f"qqq{n}" if n < 2 else f"www{n}" if n < share + 10 else f"row{n}" for n in range(2000)]
    sampled(texts, store_rows=100_000)
    assert trigram_sample.rarest_trigrams("qqqwww", page_rows=PAGE) == ["qqw", "qww", "qqq"]
    assert trigram_sample.rarest_trigrams("xqqq-www", page_rows=PAGE) == ["xqq", "qqq"]


@pytest.mark.parametrize("term", ["ab", "a-b-c", "ünï", "a_b_c", "%%%", "  ", ""])
def test_a_term_without_a_trigram_the_index_holds_as_it_is_is_left_whole(sampled, term):
    sampled(IDS)
    assert trigram_sample.rarest_trigrams(term, page_rows=PAGE) == []


def test_an_empty_store_asks_for_nothing(sampled):
    sampled([])
    assert trigram_sample.rarest_trigrams("bench00123", page_rows=PAGE) == []


@given(
    texts=st.lists(st.text(alphabet="abc01_-ü", max_size=12), max_size=40),
    term=st.text(max_size=20).map(str.lower),
    store_rows=st.sampled_from([None, 1e3, 1e5, 1e7]),
    page_rows=st.integers(min_value=1, max_value=201),
)
def test_what_is_asked_for_is_a_few_of_the_terms_own_indexed_trigrams_rarest_first(texts, term, store_rows, page_rows):
    made = sample_of(texts, store_rows)
    original = trigram_sample._current_sample
    trigram_sample._current_sample = lambda: made
    try:
        chosen = trigram_sample.rarest_trigrams(term, page_rows=page_rows)
    finally:
        trigram_sample._current_sample = original
    assert len(chosen) == len(set(chosen)) <= MOST_TRIGRAMS
    for trigram in chosen:
        assert trigram in term and re.fullmatch(r"[a-z0-9]{3}", trigram), (term, chosen)
    if chosen:
        candidates = {term[i : i + 3] for i in range(len(term) - 2) if re.fullmatch(r"[a-z0-9]{3}", term[i : i + 3])}
        assert made.counts[chosen[0]] == min(made.counts[trigram] for trigram in candidates)
        assert [made.counts[trigram] for trigram in chosen] == sorted(made.counts[trigram] for trigram in chosen)


def test_the_sample_is_taken_once_per_sample_seconds(monkeypatch):
    taken = []
    clock = [1000.0]
    monkeypatch.setattr(trigram_sample, "monotonic", lambda: clock[0])
    monkeypatch.setattr(trigram_sample, "_take_sample", lambda: taken.append(clock[0]) or sample_of(IDS))
    trigram_sample.forget()
    for _ in range(5):
        trigram_sample.rarest_trigrams("bench00123", page_rows=PAGE)
    clock[0] += trigram_sample.SAMPLE_SECONDS - 1
    trigram_sample.rarest_trigrams("bench00123", page_rows=PAGE)
    assert taken == [1000.0]
    clock[0] += 1
    trigram_sample.rarest_trigrams("bench00123", page_rows=PAGE)
    assert taken == [1000.0, 1000.0 + trigram_sample.SAMPLE_SECONDS]
    # Another database (a process that switches stores, as bench/store_list.py does) has its own.
    monkeypatch.setitem(connection.settings_dict, "NAME", "another_store")
    trigram_sample.rarest_trigrams("bench00123", page_rows=PAGE)
    assert len(taken) == 3
    trigram_sample.forget()
