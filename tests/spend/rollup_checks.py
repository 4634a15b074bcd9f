"""The spend rollup (SpendDay) against the per-row queries it replaced, after random sequences of writes
made through the store's and the services' own functions. Shared by tests/spend/test_rollup.py
(SQLite) and tests/integration/test_spend_rollup_postgres.py (the same on PostgreSQL, run by
`manage.py shell` there)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.batches import services, store
from dashboard.batches.results import ErrorSummary, ModelTokens
from dashboard.models import BatchTokens, SpendDay, StoredBatch
from dashboard.providers.usage import Usage
from dashboard.spend.prices import KINDS
from dashboard.spend.selectors import spend_report, stored_tokens
from tests.factories import running_json, stored_batch

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TODAY = T0.date()
ACCOUNTS = ("anthropic-ops", "anthropic-research", "openai-ops", "openai-research")
MODELS = ("claude-opus-4-1", "claude-3-5-haiku-20241022", "gpt-4o-2024-08-06", "unpriced-model", "")
BATCHES = 6  # batch ids b0..b5: few, so that writes hit the same batches and days again

# --- the per-row queries the rollup replaced (as dashboard/spend/selectors.py and metrics read before) ---


def per_row_report(*, account_keys: list[str], start: date, end: date, today: date) -> list[tuple]:
    mine = BatchTokens.objects.filter(batch__account__in=account_keys)
    sums = {**{kind: Sum(kind) for kind in KINDS}, "batches": Count("batch", distinct=True)}
    first = datetime.combine(start, datetime.min.time(), tzinfo=UTC)
    after = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    ended = mine.filter(batch__is_ended=True, batch__ended_at__gte=first, batch__ended_at__lt=after)
    groups = []
    by_row: dict[tuple, list] = {}
    for row in ended.values("batch__account", "batch__provider", "model", "batch__ended_at", *KINDS):
        key = (
            row["batch__account"],
            row["batch__provider"],
            row["model"],
            row["batch__ended_at"].astimezone(UTC).date(),
        )
        item = by_row.setdefault(key, [0] * len(KINDS) + [0])
        for index, kind in enumerate(KINDS):
            item[index] += row[kind]
        item[-1] += 1
    groups += [(*key, tuple(item[:-1]), item[-1], False) for key, item in by_row.items()]
    if start <= today <= end:
        running = mine.filter(batch__is_ended=False, batch__gone_at__isnull=True)
        for row in running.values("batch__account", "batch__provider", "model").annotate(**sums).order_by():
            key = (row["batch__account"], row["batch__provider"], row["model"], today)
            groups.append((*key, tuple(int(row[kind]) for kind in KINDS), row["batches"], True))
    return sorted(groups)


def per_row_tokens() -> dict[tuple[str, str, str], dict[str, int]]:
    rows = BatchTokens.objects.order_by().values("batch__account", "batch__provider", "model")
    return {
        (row["batch__account"], row["batch__provider"], row["model"]): {kind: int(row[kind]) for kind in KINDS}
        for row in rows.annotate(**{kind: Sum(kind) for kind in KINDS})
    }


def report_groups(**arguments: Any) -> list[tuple]:
    report = spend_report(**arguments)
    return sorted(
        (
            group.account,
            group.provider,
            group.model,
            group.day,
            tuple(group.tokens[kind] for kind in KINDS),
            group.batches,
            group.running,
        )
        for group in report.groups
    )


def assert_rollup_exact() -> None:
    """The rollup holds exactly the per-row GROUP BY of ended batches; every figure read from it equals the
    per-row query's."""
    expected = {
        (group[0], group[1], group[2], group[3]): (group[4], group[5])
        for group in per_row_report(
            account_keys=list(ACCOUNTS), start=date(2000, 1, 1), end=date(2100, 1, 1), today=date(1999, 1, 1)
        )
    }
    held = {
        (row["account"], row["provider"], row["model"], row["day"]): (
            tuple(row[kind] for kind in KINDS),
            row["batches"],
        )
        for row in SpendDay.objects.values("account", "provider", "model", "day", *KINDS, "batches")
    }
    assert {key: value for key, value in held.items() if value[1]} == expected
    assert all(value == ((0,) * len(KINDS), 0) for value in held.values() if not value[1]), held
    assert stored_tokens() == per_row_tokens()
    for accounts in (list(ACCOUNTS), ["anthropic-ops"], ["openai-research", "anthropic-research"]):
        for start, end in (
            (TODAY, TODAY),
            (TODAY - timedelta(days=29), TODAY),
            (TODAY - timedelta(days=3), TODAY - timedelta(days=1)),
        ):
            arguments = {"account_keys": accounts, "start": start, "end": end, "today": TODAY}
            assert report_groups(**arguments) == per_row_report(**arguments), arguments


# --- writes, as the poller, results counting and an operator make them ---------------------------------

usages = st.tuples(*[st.integers(min_value=0, max_value=10**6)] * len(KINDS))
moments = st.tuples(st.integers(min_value=0, max_value=4), st.integers(min_value=0, max_value=23))  # days back, hour
batch_numbers = st.integers(min_value=0, max_value=BATCHES - 1)
writes = st.one_of(
    # the poller stores a batch: running, or ended at a moment (OpenAI's with its usage and model)
    st.tuples(
        st.just("store"), batch_numbers, st.sampled_from(ACCOUNTS), st.none() | moments, st.sampled_from(MODELS), usages
    ),
    # results counted once ended (or counted again): the batch's rows deleted and written anew
    st.tuples(
        st.just("count"),
        batch_numbers,
        st.lists(st.tuples(st.sampled_from(MODELS), usages), max_size=3, unique_by=lambda item: item[0]),
    ),
    st.tuples(st.just("gone"), batch_numbers),
    st.tuples(st.just("end_moves"), batch_numbers, moments),  # ended_at corrected
    st.tuples(st.just("reopened"), batch_numbers),  # not ended any more (a provider that said so too early)
    st.tuples(st.just("account"), batch_numbers, st.sampled_from(ACCOUNTS)),
    st.tuples(st.just("row_changes"), batch_numbers, st.sampled_from(MODELS), usages),  # one row updated in place
    st.tuples(st.just("model_renamed"), batch_numbers, st.sampled_from(MODELS)),
    st.tuples(st.just("delete"), batch_numbers),
)


def moment(days_hours: tuple[int, int]) -> datetime:
    days, hour = days_hours
    return datetime.combine(TODAY - timedelta(days=days), datetime.min.time(), tzinfo=UTC) + timedelta(
        hours=hour, minutes=7
    )


def batch_json(account: str, batch_id: str, ended: datetime | None, model: str, usage: tuple) -> dict:
    created = (ended or T0) - timedelta(hours=2)
    provider = account.split("-")[0]
    body = running_json(provider, batch_id, created=created)
    if provider == "anthropic":
        if ended:
            body.update(
                processing_status="ended",
                ended_at=ended.isoformat(),
                request_counts={"processing": 0, "succeeded": 100, "errored": 0, "canceled": 0, "expired": 0},
            )
        return body
    fresh, cache_read, _, output, reasoning = usage
    body.update(
        model=model or None,
        usage={
            "input_tokens": fresh + cache_read,
            "input_tokens_details": {"cached_tokens": cache_read},
            "output_tokens": output + reasoning,
            "output_tokens_details": {"reasoning_tokens": reasoning},
        },
    )
    if ended:
        body.update(status="completed", completed_at=int(ended.timestamp()), finalizing_at=int(ended.timestamp()) - 5)
    return body


def apply(write: tuple) -> None:
    kind, number, *rest = write
    row = StoredBatch.objects.filter(batch_id__endswith=f"batch_b{number}").order_by("pk").first()
    if kind == "store":
        account, when, model, usage = rest
        ended = moment(when) if when else None
        batch_id = f"{'msg' if account.startswith('anthropic') else ''}batch_b{number}"
        stored_batch(account, batch_id, fetched_at=ended or T0, body=batch_json(account, batch_id, ended, model, usage))
    elif row is None:
        return
    elif kind == "count":
        (tallies,) = rest
        summary = ErrorSummary(
            by_type=[],
            errors=[],
            total=0,
            tokens=[ModelTokens(model=model, usage=Usage(*usage), requests=1) for model, usage in tallies],
        )
        with transaction.atomic():
            services._keep_tokens(batch_row=row.pk, summary=summary)
    elif kind == "gone":
        store.mark_gone(account_key=row.account, batch_id=row.batch_id, at=T0)
    elif kind == "end_moves":
        StoredBatch.objects.filter(pk=row.pk, is_ended=True).update(ended_at=moment(rest[0]))
    elif kind == "reopened":
        StoredBatch.objects.filter(pk=row.pk).update(is_ended=False, ended_at=None)
    elif kind == "account":
        StoredBatch.objects.filter(pk=row.pk).update(account=rest[0])
    elif kind == "row_changes":
        model, usage = rest
        BatchTokens.objects.update_or_create(batch=row, model=model, defaults=dict(zip(KINDS, usage, strict=True)))
    elif kind == "model_renamed":
        first = BatchTokens.objects.filter(batch=row).order_by("pk").first()
        if first and not BatchTokens.objects.filter(batch=row, model=rest[0]).exists():
            BatchTokens.objects.filter(pk=first.pk).update(model=rest[0])
    elif kind == "delete":
        row.delete()


def check(writes_made: list[tuple]) -> None:
    """Every write, then the rollup checked; all of it rolled back (each example starts from an empty store)."""
    with transaction.atomic():
        for write in writes_made:
            apply(write)
        assert_rollup_exact()
        transaction.set_rollback(True)


def property_check(max_examples: int):
    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(writes, max_size=25))
    def random_writes(writes_made):
        check(writes_made)

    return random_writes
