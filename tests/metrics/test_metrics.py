"""/metrics: who may read it, what it says about a known store, and upstream calls counted where they happen.

Every scrape goes through the Django test client and is read with prometheus_client's own parser.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from dashboard.metrics import call_counter
from dashboard.models import AccountState, UpstreamCallStats
from dashboard.providers.base import ProviderError, UpstreamTimeout
from dashboard.providers.transport import send, stream
from tests import factories
from tests.batches.test_selectors import A_OPS, A_RES, O_OPS, put
from tests.services import ACCOUNT_ENVIRONMENT

TOKEN = "metrics-token-for-tests-0123456789abcdef"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
DEMO_ACCOUNTS = tuple(key for key, _ in factories.DEMO_ACCOUNTS)


@pytest.fixture(autouse=True)
def demo_accounts_configured(monkeypatch):
    """The simulator's demo accounts, as a bare checkout has them."""
    for name in ACCOUNT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []
    call_counter.upstream_calls.discard()
    yield settings
    call_counter.upstream_calls.discard()  # nothing counted here is written into a later test's database


@pytest.fixture
def counter(monkeypatch):
    """A fresh counter without its flush thread, in place of the process's: flushed when the test says."""
    fresh = call_counter.UpstreamCallCounter(background=False)
    monkeypatch.setattr(call_counter, "upstream_calls", fresh)
    return fresh


def scrape(client, **extra) -> dict:
    """The metrics as {sample name: {frozenset of label pairs: value}}, parsed by prometheus_client."""
    response = client.get("/metrics", **{**AUTH, **extra})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response["Cache-Control"] == "no-store"
    samples: dict[str, dict[frozenset, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        assert family.name.startswith("batch_dashboard_")
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get(name, {}).get(frozenset(labels.items()))


# --- who may read it -----------------------------------------------------------------------------


def test_off_by_default_even_for_staff(client, db, admin_user):
    assert client.get("/metrics").status_code == 404
    client.force_login(admin_user)
    assert client.get("/metrics", **AUTH).status_code == 404


def test_a_bearer_token_is_needed_and_compared_whole(client, db, metrics_on):
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert TOKEN not in missing.content.decode()
    for header in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer ", "Bearer é"):
        assert client.get("/metrics", HTTP_AUTHORIZATION=header).status_code == 401, header
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200
    assert client.get("/metrics", **AUTH).status_code == 200


def test_an_address_allowlist_alone_lets_those_addresses_in_without_a_token(client, db, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
    for allowed in ("10.1.2.3", "192.0.2.7", "::ffff:10.9.9.9", "2001:db8::1"):
        assert client.get("/metrics", REMOTE_ADDR=allowed).status_code == 200, allowed
    for refused in ("127.0.0.1", "192.0.2.8", "11.0.0.1", "2001:db9::1", "", "not-an-address"):
        assert client.get("/metrics", REMOTE_ADDR=refused, **AUTH).status_code == 403, refused


def test_with_both_set_a_scrape_needs_the_token_from_an_allowed_address(client, db, metrics_on):
    metrics_on.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", **AUTH).status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5", **AUTH).status_code == 200


def test_a_signed_in_staff_user_may_read_it_in_the_browser_others_may_not(client, db, metrics_on, admin_user):
    from tests.conftest import make_user

    client.force_login(make_user("viewer", can_cancel=True))
    assert client.get("/metrics").status_code == 401
    client.force_login(admin_user)
    assert client.get("/metrics").status_code == 200


def test_a_malformed_allowlist_entry_is_a_configuration_error(client, db, settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "ten.0.0.1"]
    with pytest.raises(ImproperlyConfigured, match=r"ten\.0\.0\.1"):
        client.get("/metrics", REMOTE_ADDR="10.0.0.1")


# --- what it says about the store ----------------------------------------------------------------


def test_batches_requests_and_poll_lag_from_a_known_store(client, db, metrics_on):
    now = timezone.now()
    put(A_OPS, "msgbatch_run1", now - timedelta(minutes=3))
    put(A_OPS, "msgbatch_run2", now - timedelta(minutes=2))
    put(A_OPS, "msgbatch_done1", now - timedelta(minutes=9), status="ended")
    put(O_OPS, "batch_out1", now - timedelta(minutes=5))
    put(O_OPS, "batch_done1", now - timedelta(minutes=6), status="completed")
    AccountState.objects.create(
        account="anthropic-ops", provider="anthropic", last_success_at=now - timedelta(seconds=90)
    )
    AccountState.objects.create(
        account="openai-ops",
        provider="openai",
        last_success_at=now - timedelta(minutes=20),
        consecutive_failures=4,
    )

    samples = scrape(client)

    assert samples["batch_dashboard_batches"] == {
        frozenset({"account": "anthropic-ops", "provider": "anthropic", "status": "in_progress"}.items()): 2,
        frozenset({"account": "anthropic-ops", "provider": "anthropic", "status": "ended"}.items()): 1,
        frozenset({"account": "openai-ops", "provider": "openai", "status": "in_progress"}.items()): 1,
        frozenset({"account": "openai-ops", "provider": "openai", "status": "completed"}.items()): 1,
    }
    # tests/batches/test_selectors.py's batches: Anthropic 5 requests each (processing until ended, then succeeded).
    requests = {"processing": 10, "succeeded": 5, "errored": 0, "canceled": 0, "expired": 0}
    for outcome, count in requests.items():
        assert value(samples, "batch_dashboard_requests", account="anthropic-ops", outcome=outcome) == count
    openai_counts = {
        outcome: value(samples, "batch_dashboard_requests", account="openai-ops", outcome=outcome)
        for outcome in requests
    }
    assert openai_counts["processing"] > 0 and all(count is not None for count in openai_counts.values())

    lag = samples["batch_dashboard_poll_lag_seconds"]
    assert set(lag) == {frozenset({"account": key}.items()) for key in DEMO_ACCOUNTS}
    assert 90 <= value(samples, "batch_dashboard_poll_lag_seconds", account="anthropic-ops") < 120
    assert 1200 <= value(samples, "batch_dashboard_poll_lag_seconds", account="openai-ops") < 1230
    # Never polled: +Inf, so an alert on the lag also fires when no poller runs at all.
    assert value(samples, "batch_dashboard_poll_lag_seconds", account="anthropic-research") == math.inf
    assert value(samples, "batch_dashboard_poll_consecutive_failures", account="openai-ops") == 4
    assert value(samples, "batch_dashboard_poll_consecutive_failures", account="openai-research") == 0
    assert value(
        samples, "batch_dashboard_poll_last_success_timestamp_seconds", account="anthropic-ops"
    ) == pytest.approx((now - timedelta(seconds=90)).timestamp())
    assert "batch_dashboard_upstream_calls_total" not in samples  # nothing called yet: no rows


def test_a_scrape_is_a_few_aggregate_queries_whatever_the_store_holds(client, db, metrics_on):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            scrape(client)
        return len(captured)

    now = timezone.now()
    put(A_OPS, "msgbatch_first", now)
    few = queries()
    for index in range(60):
        account = (A_OPS, A_RES, O_OPS)[index % 3]
        prefix = "msgbatch_" if account.provider == "anthropic" else "batch_"
        put(account, f"{prefix}n{index}", now - timedelta(minutes=index), status="in_progress")
    # batches, accounts, upstream calls, alarms; tokens: the spend rollup, the running batches, those ended
    # without an end time, their rows (dashboard/spend/selectors.py: stored_tokens); background tasks by
    # status, the oldest ready ones, the live pollers
    assert queries() == few <= 11


def test_open_alarms_by_rule_every_rule_listed(client, db, metrics_on):
    from dashboard.models import Alarm

    now = timezone.now()
    batch = put(A_OPS, "msgbatch_slow", now - timedelta(hours=2))
    opened = {"opened_at": now, "last_seen_at": now}
    Alarm.objects.create(rule="stuck", account="anthropic-ops", batch=batch, **opened)
    Alarm.objects.create(rule="stuck", account="anthropic-ops", batch=batch, resolved_at=now, **opened)
    Alarm.objects.create(rule="account_failing", account="openai-ops", **opened)
    Alarm.objects.create(rule="account_failing", account="openai-research", **opened)

    samples = scrape(client)
    open_alarms = {dict(labels)["rule"]: count for labels, count in samples["batch_dashboard_open_alarms"].items()}
    assert open_alarms["stuck"] == 1
    assert open_alarms["account_failing"] == 2
    rules = {rule for rule, _ in Alarm._meta.get_field("rule").choices}
    assert set(open_alarms) == rules and all(open_alarms[rule] == 0 for rule in rules - {"stuck", "account_failing"})


# --- upstream calls, counted where they happen -------------------------------------------------------


def calls(samples: dict, account: str, result: str) -> float:
    return value(samples, "batch_dashboard_upstream_calls_total", account=account, result=result) or 0


def test_upstream_calls_are_counted_by_account_and_result_after_a_poll(
    client, embedded_upstream, anthropic_sdk, openai_sdk, metrics_on, counter
):
    factories.anthropic_batch(anthropic_sdk, "ops")
    factories.openai_batch(openai_sdk, "ops")
    factories.poll_store()
    assert counter.flush() > 0

    samples = scrape(client)
    for account in DEMO_ACCOUNTS:
        ok = calls(samples, account, "ok")
        assert ok >= 1, account
        histogram = {"account": account, "result": "ok"}
        assert value(samples, "batch_dashboard_upstream_call_duration_seconds_count", **histogram) == ok
        assert value(samples, "batch_dashboard_upstream_call_duration_seconds_bucket", le="+Inf", **histogram) == ok
        assert value(samples, "batch_dashboard_upstream_call_duration_seconds_sum", **histogram) > 0
    assert not any(result != "ok" for _, result in UpstreamCallStats.objects.values_list("account", "result"))

    ok_before = calls(samples, "anthropic-ops", "ok")
    factories.fault("anthropic", "ops", "529")
    factories.fault("openai", "research", "429")
    factories.fault("anthropic", "research", "non-json")
    for state in AccountState.objects.all():  # due again now, whatever the last poll said
        state.next_poll_at = state.backoff_until = None
        state.save()
    factories.poll_store()
    counter.flush()

    samples = scrape(client)
    assert calls(samples, "anthropic-ops", "5xx") == 1  # 529 overloaded
    assert calls(samples, "anthropic-ops", "ok") == ok_before
    assert calls(samples, "openai-research", "429") == 1
    assert calls(samples, "anthropic-research", "bad_response") == 1
    assert calls(samples, "openai-ops", "ok") > 1


def test_a_timeout_is_counted_as_one(client, embedded_upstream, settings, metrics_on, counter):
    settings.UPSTREAM_DEADLINE_SECONDS = 0.3
    factories.fault("openai", "ops", "hang")
    from dashboard.accounts import find_account
    from dashboard.batches import poller

    result = poller.poll_account(find_account("openai-ops"), now=timezone.now())
    assert result.error
    counter.flush()
    samples = scrape(client)
    assert calls(samples, "openai-ops", "timeout") == 1
    bucket = value(
        samples,
        "batch_dashboard_upstream_call_duration_seconds_bucket",
        account="openai-ops",
        result="timeout",
        le="0.5",
    )
    assert bucket == 1  # abandoned at the deadline


def test_nothing_is_counted_while_metrics_are_off(embedded_upstream, anthropic_sdk, counter):
    factories.anthropic_batch(anthropic_sdk, "ops")
    factories.poll_store()
    assert counter.pending() == {}


def test_the_latency_histogram_buckets_and_sum(client, db, metrics_on, counter):
    for seconds in (0.01, 0.3, 0.3, 4.0, 20.0, 90.0):
        counter.record("anthropic-ops", "ok", seconds)
    counter.flush()
    samples = scrape(client)
    labels = {"account": "anthropic-ops", "result": "ok"}
    bucket = "batch_dashboard_upstream_call_duration_seconds_bucket"
    expected = {"0.025": 1, "0.25": 1, "0.5": 3, "5.0": 4, "15.0": 4, "30.0": 5, "60.0": 5, "+Inf": 6}
    for le, count in expected.items():
        assert value(samples, bucket, le=le, **labels) == count, le
    assert value(samples, "batch_dashboard_upstream_call_duration_seconds_sum", **labels) == pytest.approx(114.61)
    assert calls(samples, "anthropic-ops", "ok") == 6


def test_two_processes_flushing_at_once_add_up(transactional_db):
    """Two counters (as two processes have), each flushing from its own thread at the same moments."""
    counters = [call_counter.UpstreamCallCounter(background=False) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    rounds = 15

    def work(counter: call_counter.UpstreamCallCounter) -> None:
        try:
            for _ in range(rounds):
                counter.record("anthropic-ops", "ok", 0.2)
                counter.record("anthropic-ops", "5xx", 2.0)
                counter.record("openai-ops", "ok", 0.05)
                barrier.wait(timeout=30)
                counter.flush()
                assert counter.pending() == {}, "a flush failed"
        except BaseException as error:
            errors.append(error)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(counter,)) for counter in counters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    rows = {(row.account, row.result): row for row in UpstreamCallStats.objects.all()}
    assert set(rows) == {("anthropic-ops", "ok"), ("anthropic-ops", "5xx"), ("openai-ops", "ok")}
    for row in rows.values():
        assert row.calls == 2 * rounds
    assert rows["anthropic-ops", "ok"].le_0_25 == 2 * rounds and rows["anthropic-ops", "ok"].le_0_1 == 0
    assert rows["anthropic-ops", "5xx"].seconds_sum == pytest.approx(2 * rounds * 2.0)


def test_a_failed_flush_never_breaks_a_call_and_loses_nothing(
    client, embedded_upstream, anthropic_sdk, metrics_on, counter, monkeypatch
):
    def broken(taken):
        raise RuntimeError("the database is away")

    warnings: list[str] = []  # not caplog: logging may be configured again while the simulator answers
    monkeypatch.setattr(call_counter.logger, "warning", lambda message, *args: warnings.append(message % args))
    monkeypatch.setattr(call_counter, "write_upstream_calls", broken)
    factories.anthropic_batch(anthropic_sdk, "ops")
    factories.poll_store()  # would raise if counting did
    assert counter.flush() == 0
    assert counter.flush() == 0
    assert len(warnings) == 1 and "could not be written (RuntimeError: the database is away)" in warnings[0]
    kept = counter.pending()
    assert kept[("anthropic-ops", "ok")].calls >= 1

    monkeypatch.undo()
    monkeypatch.setattr(call_counter, "upstream_calls", counter)
    assert counter.flush() == len(kept)
    samples = scrape(client)
    assert calls(samples, "anthropic-ops", "ok") == kept[("anthropic-ops", "ok")].calls


def test_the_flush_thread_writes_within_about_a_second_without_being_asked(client, embedded_upstream, metrics_on):
    metrics_on.METRICS_FLUSH_SECONDS = 0.2
    call_counter.record_upstream_call("openai-research", "4xx", 0.1)
    deadline = time.monotonic() + 10
    while not UpstreamCallStats.objects.filter(account="openai-research", result="4xx").exists():
        assert time.monotonic() < deadline, "the flush thread wrote nothing"
        time.sleep(0.05)
    call_counter.upstream_calls.flush()  # waits for a flush the thread may be in the middle of
    assert calls(scrape(client), "openai-research", "4xx") == 1


# --- send() and stream() classify every ending -------------------------------------------------------


def mock_client(handler) -> httpx.Client:
    return httpx.Client(base_url="https://upstream.invalid", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("answer", "result"),
    [
        (httpx.Response(200, json={"id": "x"}), "ok"),
        (httpx.Response(200, content=b'\xef\xbb\xbf {"id": "x"}\n'), "ok"),
        (httpx.Response(200, content=b"<html>gateway</html>"), "bad_response"),
        (httpx.Response(200, json=["not", "an", "object"]), "bad_response"),
        (httpx.Response(200, content=b""), "bad_response"),
        (httpx.Response(302, headers={"location": "/elsewhere"}), "bad_response"),
        (httpx.Response(404, json={"error": {}}), "4xx"),
        (httpx.Response(429, json={"error": {}}), "429"),
        (httpx.Response(503, content=b"busy"), "5xx"),
        (httpx.Response(529, json={"error": {"type": "overloaded_error"}}), "5xx"),
    ],
)
def test_send_counts_each_answer_by_its_result(settings, metrics_on, counter, answer, result):
    with mock_client(lambda request: answer) as client:
        send(client, "GET", "/v1/x", account="anthropic-ops")
    assert set(counter.pending()) == {("anthropic-ops", result)}


@pytest.mark.parametrize(
    ("error", "result"),
    [(httpx.ConnectError("refused"), "transport_error"), (httpx.ReadTimeout("slow"), "timeout")],
)
def test_send_counts_transport_failures(metrics_on, counter, error, result):
    def handler(request):
        raise error

    with mock_client(handler) as client, pytest.raises(ProviderError):
        send(client, "GET", "/v1/x", account="openai-ops")
    assert set(counter.pending()) == {("openai-ops", result)}


def test_stream_counts_once_with_the_time_to_its_headers(metrics_on, counter):
    with mock_client(lambda request: httpx.Response(200, content=b"line\n" * 1000)) as client:
        with stream(client, "GET", "/results", account="anthropic-ops") as response:
            assert response.read()
    pending = counter.pending()
    assert set(pending) == {("anthropic-ops", "ok")} and pending["anthropic-ops", "ok"].calls == 1


def test_stream_cut_at_its_deadline_mid_body_counts_a_timeout(metrics_on, counter):
    class Trickle(httpx.SyncByteStream):
        def __iter__(self):
            for _ in range(100):
                time.sleep(0.02)
                yield b"x"

    with mock_client(lambda request: httpx.Response(200, stream=Trickle())) as client:
        with pytest.raises(UpstreamTimeout), stream(client, "GET", "/results", deadline=0.2, account="a-b") as response:
            response.read()
    assert set(counter.pending()) == {("a-b", "timeout")}


def test_a_callers_own_error_inside_a_stream_leaves_the_call_ok(metrics_on, counter):
    with mock_client(lambda request: httpx.Response(200, content=b"{}")) as client:
        with pytest.raises(ValueError), stream(client, "GET", "/results", account="a-b"):
            raise ValueError("the caller's trouble")
    assert set(counter.pending()) == {("a-b", "ok")}


# --- background work -----------------------------------------------------------------------------------


def test_background_tasks_by_queue_and_status_and_how_long_the_oldest_ready_one_waited(client, db, metrics_on):
    from django_tasks_db.models import DBTaskResult

    from dashboard.bulk.operations import cancel_operation
    from dashboard.notifications.dispatch import deliver

    now = timezone.now()
    waiting = cancel_operation.enqueue(operation_id=1).id  # enqueued 90 s ago, no worker since
    DBTaskResult.objects.filter(pk=waiting).update(enqueued_at=now - timedelta(seconds=90))
    again = deliver.enqueue(delivery_id=1).id  # made ready again 30 s ago (background.run_again)
    DBTaskResult.objects.filter(pk=again).update(
        enqueued_at=now - timedelta(hours=5), run_after=now - timedelta(seconds=30)
    )
    later = deliver.enqueue(delivery_id=2).id  # ready only in an hour: not waiting yet
    DBTaskResult.objects.filter(pk=later).update(
        enqueued_at=now - timedelta(hours=9), run_after=now + timedelta(hours=1)
    )
    done = cancel_operation.enqueue(operation_id=2).id
    DBTaskResult.objects.filter(pk=done).update(status="SUCCESSFUL", enqueued_at=now - timedelta(days=3))

    samples = scrape(client)
    tasks = "batch_dashboard_background_tasks"
    assert value(samples, tasks, queue="bulk", status="READY") == 1
    assert value(samples, tasks, queue="bulk", status="SUCCESSFUL") == 1
    assert value(samples, tasks, queue="notifications", status="READY") == 2
    assert value(samples, tasks, queue="notifications", status="FAILED") == 0
    assert len(samples[tasks]) == 8  # every queue and status listed
    oldest = "batch_dashboard_background_oldest_ready_seconds"
    assert 90 <= value(samples, oldest, queue="bulk") < 90 + 60
    assert 30 <= value(samples, oldest, queue="notifications") < 30 + 60

    DBTaskResult.objects.all().delete()
    samples = scrape(client)
    assert value(samples, oldest, queue="bulk") == value(samples, oldest, queue="notifications") == 0


def test_live_pollers_by_their_heartbeats(client, db, metrics_on, settings):
    from dashboard.models import PollerHeartbeat

    now = timezone.now()
    assert value(scrape(client), "batch_dashboard_pollers_live") == 0
    PollerHeartbeat.objects.create(owner="host-a:1", started_at=now, beat_at=now)
    PollerHeartbeat.objects.create(owner="host-b:2", started_at=now, beat_at=now - timedelta(seconds=1))
    long_gone = now - timedelta(seconds=settings.POLL_HEARTBEAT_SECONDS * 3)
    PollerHeartbeat.objects.create(owner="host-c:3", started_at=long_gone, beat_at=long_gone)
    assert value(scrape(client), "batch_dashboard_pollers_live") == 2
