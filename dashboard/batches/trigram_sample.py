"""Which of a search term's trigrams are rare in the store, for PostgreSQL's trigram index.

pg_trgm answers `LIKE '%term%'` by intersecting the posting lists of every trigram of the term, and
a list's cost grows with the rows that hold its trigram: for `bench00123` in a store whose ids all
read `batch_benchNNNNNN`, "ben", "enc" and "nch" are in every row, so finding its 11 rows read
75 index pages at 10,000 stored batches and 204 at 100,000 (bench/store_list.py). Looked up by its
rarest trigrams alone ("123", "012", "001"), the same rows cost 7 pages at both sizes, and an exact
`strpos` (which no index serves) keeps only the rows that hold the whole term.

How common each trigram is, is counted in a sample of the store's search texts (SAMPLE_ROWS rows,
read with TABLESAMPLE: a few pages, not the table), taken when a search first needs it and again
after SAMPLE_SECONDS, per process and database. The sample decides only which trigrams the index is asked for:
the rows found are the same whatever it says.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass
from time import monotonic

from django.db import connection

SAMPLE_ROWS = 2000
SAMPLE_SECONDS = 300.0
# Beside the rarest, a trigram is asked for only if it is in at most this share of the rows (a
# commoner one would cost more index pages than the rows it rules out).
SELECTIVE_SHARE = 0.05
MOST_TRIGRAMS = 3
# pg_trgm splits text into words of letters and digits and pads each word: three such characters
# inside a word are a trigram it indexes as they are, whatever the locale says about other characters.
_EVERY_INDEXED = re.compile(r"(?=([a-z0-9]{3}))")  # overlapping: "abcd" holds "abc" and "bcd"


@dataclass(frozen=True)
class _Sample:
    taken_at: float
    store_rows: float  # as PostgreSQL last counted them (pg_class.reltuples), or the sample if it is all
    texts: list[str]
    counts: Counter  # in how many of the texts each trigram is


_samples: dict[str, _Sample] = {}  # by database name: one, but for a process that switches (bench/)
_sampling = threading.Lock()


def rarest_trigrams(term: str, *, page_rows: int) -> list[str]:
    """Up to MOST_TRIGRAMS of the lowercased `term`'s trigrams to find its rows by, rarest first; none
    when walking the list's order fills a page of `page_rows` sooner (a common term: the planner
    walks it), or when the term has no trigram pg_trgm indexes as it is.

    Rows the index leaves to check: about the store's share that holds the rarest trigram. Rows a
    walk reads: a page over the share that holds the term. Both shares are the sample's, one row
    added to each count (a trigram or term the sample missed may still be in the store)."""
    candidates = set(_EVERY_INDEXED.findall(term))
    if not candidates:
        return []
    sample = _current_sample()
    sampled = len(sample.texts)
    if not sampled:
        return []
    by_rarity = sorted(candidates, key=lambda trigram: (sample.counts[trigram], trigram))
    rarest = by_rarity[0]
    checked_by_index = sample.store_rows * (sample.counts[rarest] + 1) / sampled
    holding_term = sum(term in text for text in sample.texts)
    read_by_walk = page_rows * sampled / (holding_term + 1)
    if checked_by_index >= read_by_walk:
        return []
    selective = SELECTIVE_SHARE * sampled
    return [rarest, *(trigram for trigram in by_rarity[1:MOST_TRIGRAMS] if sample.counts[trigram] <= selective)]


def forget() -> None:
    """The next search takes a new sample (tests; a store replaced under a running process)."""
    _samples.clear()


def _current_sample() -> _Sample:
    database = connection.settings_dict["NAME"]
    sample = _samples.get(database)
    if sample is not None and monotonic() - sample.taken_at < SAMPLE_SECONDS:
        return sample
    with _sampling:  # one thread samples; the others wait for it rather than sample too
        sample = _samples.get(database)
        if sample is None or monotonic() - sample.taken_at >= SAMPLE_SECONDS:
            sample = _samples[database] = _take_sample()
    return sample


def _take_sample() -> _Sample:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'dashboard_storedbatch'::regclass")
        (store_rows,) = cursor.fetchone()
        # Never counted (-1), or small: all of it. Otherwise a share of its pages, about SAMPLE_ROWS rows.
        whole = store_rows <= SAMPLE_ROWS
        percent = 100.0 if whole else 100.0 * SAMPLE_ROWS / store_rows
        cursor.execute(
            "SELECT search_text FROM dashboard_storedbatch TABLESAMPLE SYSTEM (%s) LIMIT %s",
            [percent, 2 * SAMPLE_ROWS],
        )
        texts = [text for (text,) in cursor.fetchall()]
    return sample_of(texts, store_rows=len(texts) if whole else store_rows)


def sample_of(texts: list[str], *, store_rows: float) -> _Sample:
    counts: Counter = Counter()
    for text in texts:
        counts.update(set(_EVERY_INDEXED.findall(text)))  # at most 36 ** 3 distinct: the memory is bounded
    return _Sample(taken_at=monotonic(), store_rows=store_rows, texts=texts, counts=counts)
