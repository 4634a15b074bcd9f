"""The feed's readings of a row (dashboard/batches/feed.py), kept per process by the row's stored values,
against a whole read of the row (feed.stored_views, the page's own): whatever the order in which times
are asked, the row's account failing or not, the row ended or gone, they read the same."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from dashboard.batches import feed, store
from dashboard.models import AccountState, StoredBatch
from tests.batches.test_selectors import A_OPS, A_RES, O_OPS, T0, healthy, put

STEPS = st.lists(
    st.fixed_dictionaries(
        {
            # Seconds after the row's last fetch: either side of three poll intervals, in any order.
            "seconds": st.integers(min_value=0, max_value=4 * 3600),
            "failing": st.booleans(),
            "status": st.sampled_from(["in_progress", "canceling", "ended"]),
            "gone": st.booleans(),
            "refetched": st.booleans(),  # the poller fetched it again, saying the same
        }
    ),
    min_size=1,
    max_size=8,
)


@examples(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS, poll_seconds=st.sampled_from([3, 60, 600]))
def test_a_row_read_from_its_values_reads_as_the_whole_row_at_any_time(db, settings, steps, poll_seconds):
    settings.POLL_SECONDS = poll_seconds
    feed._READINGS.clear()
    StoredBatch.objects.all().delete()
    AccountState.objects.all().delete()
    healthy(A_OPS, A_RES, O_OPS)
    watched_row = put(A_OPS, "msgbatch_watched", T0 - timedelta(minutes=10))
    other = put(O_OPS, "batch_other", T0 - timedelta(minutes=9))
    hidden = put(A_RES, "msgbatch_hidden", T0 - timedelta(minutes=8))
    accounts = [A_OPS, O_OPS]
    shown = {watched_row.pk: "", other.pk: "", hidden.pk: ""}
    fetched = T0
    for step in steps:
        if step["refetched"]:
            fetched += timedelta(seconds=step["seconds"] // 2)
        put(A_OPS, "msgbatch_watched", T0 - timedelta(minutes=10), status=step["status"], fetched_at=fetched)
        StoredBatch.objects.filter(pk=watched_row.pk).update(gone_at=fetched if step["gone"] else None)
        AccountState.objects.filter(account=A_OPS.key).update(
            consecutive_failures=3 if step["failing"] else 0, last_error="Overloaded" if step["failing"] else ""
        )
        now = fetched + timedelta(seconds=step["seconds"])
        whole = feed.stored_views(accounts=accounts, pks=list(shown), now=now)
        assert set(whole) == {watched_row.pk, other.pk}
        changes = feed.row_changes(accounts=accounts, watched=shown, now=now)
        expected = {pk: view.fingerprint for pk, view in whole.items() if view.fingerprint != shown[pk]}
        assert {row.pk: row.fingerprint for row in changes.changed} == expected
        assert {row.pk: row.is_final for row in changes.changed} == {pk: whole[pk].is_final for pk in expected}
        assert changes.watching == {pk: view.fingerprint for pk, view in whole.items() if not view.is_final}
        assert hidden.pk not in changes.watching  # a row of an account not given is never read
        # As a page would, watch what it was sent (an ended row is no longer watched, so shown again here).
        shown = {**shown, **{pk: view.fingerprint for pk, view in whole.items()}}


def test_readings_kept_are_bounded(db, monkeypatch):
    monkeypatch.setattr(feed, "MAX_READINGS", 3)
    feed._READINGS.clear()
    healthy(A_OPS)
    row = put(A_OPS, "msgbatch_bounded", T0 - timedelta(minutes=10))
    for minutes in range(10):
        fetched = T0 + timedelta(minutes=minutes)
        store.record(store.as_batch(row), fetched_at=fetched)
        StoredBatch.objects.filter(pk=row.pk).update(last_fetched_at=fetched)
        feed.row_changes(accounts=[A_OPS], watched={row.pk: ""}, now=fetched)
        assert len(feed._READINGS) <= 3
