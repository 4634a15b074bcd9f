"""Sign-in throttling, keys kept out of error reports, the Content-Security-Policy, and the
embedded simulator's in-process transport (deadlines, streaming, no shared connections)."""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx
import pytest
from django.test import Client, RequestFactory
from django.views.debug import technical_500_response

from dashboard.redaction import REDACTED, redact
from tests.conftest import ANTHROPIC_KEYS

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Sign-ins here are about counting failures, not hash strength: a cheap hasher keeps 30 tries fast."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def person(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="ada", password=PASSWORD)


def sign_in(client: Client, password: str, username: str = "ada", **headers):
    return client.post("/login/", {"username": username, "password": password}, **headers)


def test_five_wrong_passwords_lock_the_user_out_even_with_the_right_one(person, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        answer = sign_in(client, "wrong")
        assert answer.status_code == 200
        assert "did not match" in answer.content.decode()
    locked = sign_in(client, "wrong")
    assert locked.status_code == 429
    right = sign_in(client, PASSWORD)
    assert right.status_code == 429
    body = right.content.decode()
    assert "Too many failed sign-ins" in body
    assert f"locked for {settings.AXES_COOLOFF_TIME.seconds // 60} minutes" in body
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302, "still signed out"


def test_thirty_wrong_passwords_then_the_right_one_does_not_sign_in(person):
    client = Client()
    for _ in range(30):
        sign_in(client, "wrong")
    assert sign_in(client, PASSWORD).status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_lockout_is_per_user_and_address_and_a_success_resets_the_count(person, settings):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username="grace", password=PASSWORD)
    attacker, colleague = Client(), Client(REMOTE_ADDR="10.0.0.7")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(attacker, "wrong")
    assert sign_in(attacker, PASSWORD).status_code == 429
    assert sign_in(colleague, PASSWORD).status_code == 302, "the same user from another address"
    assert sign_in(Client(), PASSWORD, username="grace").status_code == 302, "another user from that address"

    careless = Client(REMOTE_ADDR="10.0.0.8")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(careless, "wrong")
    assert sign_in(careless, PASSWORD).status_code == 302
    careless.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(careless, "wrong")
    assert sign_in(careless, PASSWORD).status_code == 302, "the count started again after the success"


def test_the_admin_sign_in_is_throttled_too(person, settings):
    person.is_staff = True
    person.save()
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "ada", "password": "wrong"})
    answer = client.post("/admin/login/", {"username": "ada", "password": PASSWORD})
    assert answer.status_code == 429


PROXY = "127.0.0.1"


def through_proxy(client_address: str, forwarded_for: str | None = None) -> Client:
    """A client whose requests come through the reverse proxy on PROXY, which appends the address
    it saw to X-Forwarded-For (after whatever the client itself sent)."""
    chain = f"{forwarded_for}, {client_address}" if forwarded_for else client_address
    return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=chain)


def test_behind_a_trusted_proxy_nobody_elsewhere_can_lock_a_user_out(person, settings):
    """Every client shares the proxy's address: keyed on it, six wrong passwords from anywhere
    would lock `ada` out for everyone. With the proxy trusted, the lockout is the attacker's own."""
    person.is_staff = True
    person.save()
    settings.TRUSTED_PROXIES = [PROXY]
    attacker = through_proxy("203.0.113.9")
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        sign_in(attacker, "wrong")
    assert sign_in(attacker, PASSWORD).status_code == 429, "the attacker's own address is locked out"
    assert sign_in(through_proxy("198.51.100.7"), PASSWORD).status_code == 302, "ada, at her own address"
    admin = through_proxy("198.51.100.7").post("/admin/login/", {"username": "ada", "password": PASSWORD})
    assert admin.status_code == 302, "the admin's sign-in too"


def test_a_client_cannot_choose_its_address_by_writing_x_forwarded_for(person, settings):
    """Only the proxies' own entries are read, right to left: what the client wrote is never taken,
    so rotating it neither escapes a lockout nor puts one on somebody else's address."""
    settings.TRUSTED_PROXIES = [PROXY, "10.0.0.0/8"]
    for forged in ("198.51.100.7", "198.51.100.8", "garbage", "10.1.2.3"):
        sign_in(through_proxy("203.0.113.9", forwarded_for=forged), "wrong")
    sign_in(through_proxy("203.0.113.9", forwarded_for="198.51.100.9"), "wrong")
    assert sign_in(through_proxy("203.0.113.9", forwarded_for="198.51.100.10"), PASSWORD).status_code == 429
    assert sign_in(through_proxy("198.51.100.7"), PASSWORD).status_code == 302


def test_without_trusted_proxies_x_forwarded_for_is_never_read(person, settings):
    settings.TRUSTED_PROXIES = []
    for forged in range(settings.AXES_FAILURE_LIMIT):
        sign_in(Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"198.51.100.{forged}"), "wrong")
    escaped = Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert sign_in(escaped, PASSWORD).status_code == 429
    # A connection not from a trusted proxy is its own address, whatever it forwards.
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert sign_in(Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.9.9.9"), PASSWORD).status_code == 429


def test_a_password_changed_behind_django_s_back_ends_the_session_at_once(person):
    """In SQL, or in a shell whose cache is not the server's: no signal reaches the server."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    client = Client()
    assert sign_in(client, PASSWORD).status_code == 302
    assert client.get("/").status_code == 200, "signed in, and the user cached"
    assert client.get("/").status_code == 200
    get_user_model().objects.filter(pk=person.pk).update(password=make_password("a new one, elsewhere"))
    signed_out = client.get("/")
    assert signed_out.status_code == 302 and signed_out["Location"].startswith("/login/")
    assert client.get("/batches/anthropic-ops/msgbatch_01/row", HTTP_HX_REQUEST="true").status_code == 401


def test_a_password_changed_through_django_ends_the_other_sessions_too(person):
    first, second = Client(), Client()
    assert sign_in(first, PASSWORD).status_code == 302 and sign_in(second, PASSWORD).status_code == 302
    assert second.get("/").status_code == 200
    person.set_password("another correct horse")
    person.save()
    assert first.get("/").status_code == 302 and second.get("/").status_code == 302


# --- keys in error reports -------------------------------------------------------------------

SECRET = "sk-ant-prod-Zq81kLmN0pQrStUvWxYz"


@pytest.fixture
def oddly_named_key(tmp_path, monkeypatch):
    """A real account whose key sits in a variable whose name Django would not think secret."""
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"name": "prod", "provider": "anthropic", "api_key_env": "PROD_ANTHROPIC"}]))
    monkeypatch.setenv("BATCH_ACCOUNTS_FILE", str(accounts))
    monkeypatch.setenv("PROD_ANTHROPIC", SECRET)
    return SECRET


def error_page(settings, *, secret: str, html: bool = True) -> str:
    settings.DEBUG = True
    settings.ACCOUNT_NOTE = f"copied from the console: {secret}"
    request = RequestFactory().get("/", HTTP_ACCEPT="text/html" if html else "text/plain", HTTP_X_NOTE=secret.upper())
    request.META["PROD_ANTHROPIC"] = secret  # runserver and some servers copy the environment here
    local_copy = {"key": secret}  # noqa: F841 (a frame variable the report shows)
    try:
        raise RuntimeError(f"upstream said: invalid x-api-key {secret}")
    except RuntimeError:
        return technical_500_response(request, *sys.exc_info()).content.decode()


@pytest.mark.parametrize("html", [True, False])
def test_debug_error_pages_hide_every_configured_key_whatever_its_variable_is_called(settings, oddly_named_key, html):
    page = error_page(settings, secret=oddly_named_key, html=html)
    assert "PROD_ANTHROPIC" in page, "the variable is listed"
    assert "RuntimeError" in page
    assert oddly_named_key not in page
    assert oddly_named_key.upper() not in page
    assert oddly_named_key.lower() not in page
    assert oddly_named_key[:16] not in page


def test_debug_error_pages_hide_notification_channel_secrets_and_urls(settings, db, monkeypatch):
    from dashboard.models import NotificationChannel

    signing = "whsec-Zq81kLmN0pQrStUvWxYz0123"
    slack = "https://hooks.slack.invalid/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
    monkeypatch.setenv("NOTIFY_OPS_SECRET", signing)
    NotificationChannel.objects.create(
        name="ops", kind="webhook", target="https://receiver.invalid/hook", secret_env="NOTIFY_OPS_SECRET"
    )
    NotificationChannel.objects.create(name="slack", kind="slack", target=slack)
    for secret in (signing, slack):
        page = error_page(settings, secret=secret)
        assert "RuntimeError" in page and secret not in page and secret[:16] not in page


def test_without_the_filter_the_report_would_show_the_key(settings, oddly_named_key):
    """The test above can fail: Django's own filter goes by names only."""
    settings.DEFAULT_EXCEPTION_REPORTER = "django.views.debug.ExceptionReporter"
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = "django.views.debug.SafeExceptionReporterFilter"
    assert oddly_named_key in error_page(settings, secret=oddly_named_key)


def test_redact_is_case_insensitive_and_prefers_the_longest_key():
    keys = ["sk-ant-abcdefgh", "sk-ant-abcdefgh-longer"]
    assert redact("a SK-ANT-ABCDEFGH-LONGER b sk-ant-abcdefgh c", keys) == f"a {REDACTED} b {REDACTED} c"
    assert redact("short keys like abc are not redacted", ["abc"]) == "short keys like abc are not redacted"


# --- Content-Security-Policy -----------------------------------------------------------------


def csp_directives(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_every_page_and_partial_has_a_strict_policy(operator_client, settings):
    for path, headers in (
        ("/login/", {}),
        ("/", {}),
        ("/audit/", {}),
        ("/healthz", {}),
        ("/", {"HTTP_HX_REQUEST": "true"}),
    ):
        response = operator_client.get(path, **headers)
        directives = csp_directives(response)
        assert directives["default-src"] == ["'self'"], path
        assert directives["script-src"] == ["'self'"], path
        assert directives["style-src"] == ["'self'"], path
        assert directives["frame-ancestors"] == ["'none'"], path
        assert directives["object-src"] == ["'none'"], path
        assert not any("unsafe" in value for values in directives.values() for value in values), path


def test_no_template_needs_inline_script_or_style(operator_client, settings):
    """What the policy forbids must not be in our pages: inline scripts, style attributes, hx-on."""
    import re
    from pathlib import Path

    for template in Path(settings.BASE_DIR, "templates").rglob("*.html"):
        text = template.read_text()
        assert " style=" not in text, template
        assert "<style" not in text, template
        assert "hx-on" not in text, template
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template
    head = operator_client.get("/login/").content.decode()
    assert '"includeIndicatorStyles": false' in head, "htmx would inject a <style> the policy blocks"


# --- the embedded simulator, in process --------------------------------------------------------


@pytest.fixture
def embedded(transactional_db, demo_accounts, settings, fast_simulator):
    settings.SIMULATOR_BASE_URL = ""
    from dashboard.simulator.transport import EmbeddedSimulatorTransport

    def client(timeout: float = 5) -> httpx.Client:
        return httpx.Client(
            transport=EmbeddedSimulatorTransport(),
            timeout=timeout,
            base_url=f"https://{settings.EMBEDDED_SIMULATOR_HOST}/simulator/anthropic",
            headers={"x-api-key": ANTHROPIC_KEYS["ops"], "anthropic-version": "2023-06-01"},
        )

    return client


def create(client: httpx.Client, count: int, seconds: float = 0) -> dict:
    requests = [
        {
            "custom_id": f"r{i}",
            "params": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        }
        for i in range(count)
    ]
    answer = client.post(
        "/v1/messages/batches", json={"requests": requests}, headers={"x-sim-processing-seconds": str(seconds)}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_in_process_calls_speak_the_same_wire_as_http(embedded):
    with embedded() as client:
        made = create(client, 3)
        listed = client.get("/v1/messages/batches", params={"limit": 1})
        assert listed.status_code == 200
        assert listed.headers["content-type"] == "application/json"
        assert listed.headers["request-id"].startswith("req_")
        assert listed.json()["data"][0]["id"] == made["id"]
        missing = client.get("/v1/messages/batches/msgbatch_missing")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "not_found_error"
        unauthorized = client.get("/v1/messages/batches", headers={"x-api-key": "sk-ant-wrong-key"})
        assert unauthorized.status_code == 401


def test_a_hanging_simulator_times_out_like_a_socket(embedded, settings):
    settings.SIMULATOR_HANG_SECONDS = 3
    with embedded(timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get("/v1/messages/batches", headers={"x-sim-fault": "hang"})
        assert time.monotonic() - started < 2.5


def test_results_stream_through_in_chunks_and_an_abandoned_stream_stops_the_producer(embedded):
    with embedded(timeout=10) as client:
        made = create(client, 3000)
        deadline = time.monotonic() + 20
        while client.get(f"/v1/messages/batches/{made['id']}").json()["processing_status"] != "ended":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with client.stream("GET", f"/v1/messages/batches/{made['id']}/results") as response:
            lines = sum(chunk.count(b"\n") for chunk in response.iter_raw())
        assert lines == 3000
        threads_before = threading.active_count()
        with client.stream("GET", f"/v1/messages/batches/{made['id']}/results") as response:
            first = next(response.iter_raw())
            assert first.startswith(b'{"custom_id"')
        # The producer notices within its half-second put timeout and frees its pool thread.
        time.sleep(1.2)
        assert threading.active_count() <= threads_before + 1


def test_the_simulator_never_touches_the_callers_database_connection(embedded):
    """Django closes "old" connections at each request's start and end; in process, that must not be ours."""
    from django.db import connection, transaction

    with embedded() as client, transaction.atomic():
        connection.ensure_connection()
        ours = connection.connection
        # A read: SQLite lets one writer at a time, and this transaction holds the write lock.
        assert client.get("/v1/messages/batches").status_code == 200
        assert connection.connection is ours
        assert not connection.needs_rollback


# --- per-poll cost -------------------------------------------------------------------------------


def test_a_page_reads_neither_grants_nor_the_session_from_the_database_twice(operator_client, settings):
    """A live row polls every few seconds: grants and the session come from the cache."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.SIMULATOR_BASE_URL = "http://127.0.0.1:9/simulator"  # nothing listens: upstream fails at once
    settings.UPSTREAM_CACHE_SECONDS = 0
    with CaptureQueriesContext(connection) as first:
        page = operator_client.get("/")
    assert page.status_code == 200 and "openai-ops" in page.context["cancel_accounts"]
    assert "dashboard_accessgrant" in " ".join(query["sql"] for query in first.captured_queries)
    with CaptureQueriesContext(connection) as again:
        page = operator_client.get("/")
    assert "openai-ops" in page.context["cancel_accounts"]
    tables = " ".join(query["sql"] for query in again.captured_queries)
    assert "dashboard_accessgrant" not in tables and "auth_permission" not in tables
    assert "django_session" not in tables


def test_changes_through_django_take_effect_at_once_and_behind_its_back_within_the_cache_time(operator):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.cache import cache

    from dashboard.access import services as access
    from dashboard.access.models import AccessGrant
    from dashboard.access.selectors import access_for, cache_key
    from dashboard.web.auth import CachedPermissionsBackend

    backend = CachedPermissionsBackend()

    def may_cancel() -> bool:
        return access_for(user=backend.get_user(operator.pk)).may("operator", "openai-ops")

    assert may_cancel()
    operator.groups.clear()
    assert not may_cancel(), "taken out of its team in the admin: at once"
    operator.groups.add(Group.objects.create(name="openai-team"))
    assert not may_cancel(), "a team without grants"
    access.grant(group_name="openai-team", patterns=["openai-*"], role="operator", actor="test", via="cli")
    assert may_cancel(), "granted to the user's group: at once"
    AccessGrant.objects.filter(group__name="openai-team")._raw_delete(AccessGrant.objects.db)  # SQL, no signal
    assert may_cancel(), "cached for PERMISSIONS_CACHE_SECONDS"
    cache.delete_many([f"user:{operator.pk}", cache_key(operator.pk)])  # what expiry does
    assert not may_cancel()
    get_user_model().objects.filter(pk=operator.pk).update(is_active=False)  # SQL, no signal
    assert backend.get_user(operator.pk) is None, "an inactive user is signed out at once"


def test_a_row_poll_is_two_database_queries_and_no_upstream_call(
    operator, viewer, embedded_upstream, anthropic_sdk, django_assert_num_queries, upstream_calls
):
    """Sessions, users and permissions come from the cache but for the user's password hash and
    active flag (one primary-key lookup); the row itself is one SELECT."""
    from tests.factories import anthropic_batch, poll_store

    batch_id = anthropic_batch(anthropic_sdk, seconds=600).id
    poll_store()
    upstream_calls.clear()
    for user in (operator, viewer):
        client = Client()
        client.force_login(user)
        url = f"/batches/anthropic-ops/{batch_id}/row"
        first = client.get(url, HTTP_HX_REQUEST="true")  # fills the session, user and permission caches
        with django_assert_num_queries(2):
            again = client.get(url, HTTP_HX_REQUEST="true")
        assert first.status_code == again.status_code == 200
        assert (b">Cancel</button>" in again.content) == (user == operator)
    assert upstream_calls == []
