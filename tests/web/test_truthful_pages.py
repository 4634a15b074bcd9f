"""What the pages say when things are not as expected: not signed in any more, a refused POST,
long upstream values, counts that cannot be true, and times too recent for minutes.

Batches are written straight into the store (as the poller writes them) from the providers' own
JSON, so each test controls exactly what upstream said; no upstream call is made.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.template import Context, Template
from django.test import Client
from django.utils import timezone

from dashboard.batches import services
from dashboard.batches.results import ResultPage
from dashboard.models import CancelAttempt
from dashboard.providers.lines import ResultLine
from tests.factories import HTMX, stored_batch, text
from tests.providers.test_providers import ANTHROPIC_RUNNING, OPENAI_IN_PROGRESS

PASSWORD = "correct horse battery staple"
CSRF_WORDS = (
    "The dashboard refused this (your session changed — signed in again in another tab?). "
    "Reload the page and try again."
)


# --- helpers -------------------------------------------------------------------------------


def stored_openai(batch_id: str = "batch_truthful1", *, age: timedelta = timedelta(minutes=5), **fields):
    """An OpenAI batch as the poller stores it, from the API's JSON with `fields` changed."""
    created = int((timezone.now() - age).timestamp())
    moments = {"created_at": created, "in_progress_at": created + 1, "expires_at": created + 86400}
    return stored_batch(
        "openai-ops", batch_id, fetched_at=timezone.now(), body=OPENAI_IN_PROGRESS, **{**moments, **fields}
    )


def stored_anthropic(batch_id: str = "msgbatch_truthful1", *, age: timedelta = timedelta(minutes=5), **fields):
    created = timezone.now() - age
    moments = {"created_at": created.isoformat(), "expires_at": (created + timedelta(hours=24)).isoformat()}
    return stored_batch(
        "anthropic-ops", batch_id, fetched_at=timezone.now(), body=ANTHROPIC_RUNNING, **{**moments, **fields}
    )


def row_html(body: str, batch_id: str) -> str:
    match = re.search(rf'<tr id="row-[a-z0-9-]+-{batch_id}".*?</tr>', body, re.S)
    assert match, f"no row of {batch_id}"
    return match.group(0)


def visible(fragment: str) -> str:
    """The text a reader sees: tags (and so their attributes, titles included) removed."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def longest_run(fragment: str, char: str) -> int:
    return max((len(run) for run in re.findall(f"{re.escape(char)}+", fragment)), default=0)


@pytest.fixture
def password_operator(operator, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    operator.set_password(PASSWORD)
    operator.save()
    return operator


def sign_in(client: Client, next_url: str = "") -> object:
    """Through the login form, CSRF token and all, as a browser does."""
    form = text(client.get("/login/" + (f"?next={quote(next_url, safe='')}" if next_url else "")))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    return client.post(
        "/login/", {"username": "operator", "password": PASSWORD, "next": next_url, "csrfmiddlewaretoken": token}
    )


# --- signed out while watching ---------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/batches/anthropic-ops/msgbatch_01abc/row"),
        ("get", "/?feed=abc"),
        ("post", "/batches/anthropic-ops/msgbatch_01abc/cancel"),
    ],
)
def test_an_htmx_request_not_signed_in_sends_the_whole_page_to_sign_in(client, db, upstream_calls, method, path):
    response = getattr(client, method)(path, HTTP_HX_CURRENT_URL="http://testserver/?status=active&q=nightly", **HTMX)
    # Not a 302: the browser's XHR would follow it and htmx would swap the sign-in page into the row.
    assert response.status_code == 401
    assert response["HX-Redirect"] == "/login/?next=%2F%3Fstatus%3Dactive%26q%3Dnightly"
    assert "<form" not in text(response) and "password" not in text(response)
    assert upstream_calls == [] and CancelAttempt.objects.count() == 0


@pytest.mark.parametrize(
    "current_url",
    [
        None,  # no header: htmx always sends it, but nothing else has to
        "https://evil.example/?status=active",  # another origin
        "http://testserver//evil.example/x",  # a path that is a protocol-relative URL
        "http://testserver/login/?next=/",  # the login page itself: no loop
    ],
)
def test_an_htmx_sign_in_comes_back_only_to_our_own_pages(client, db, current_url):
    headers = {"HTTP_HX_CURRENT_URL": current_url} if current_url else {}
    response = client.get("/batches/anthropic-ops/msgbatch_01abc/row", **headers, **HTMX)
    assert response.status_code == 401
    assert response["HX-Redirect"] == "/login/?next=%2F"


def test_a_page_not_signed_in_still_redirects_to_sign_in(client, db):
    response = client.get("/?status=active")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/%3Fstatus%3Dactive"
    assert "HX-Redirect" not in response


def test_after_signing_in_the_user_is_back_on_the_page_they_were_watching(client, password_operator):
    moved = client.get(
        "/batches/anthropic-ops/msgbatch_01abc/row", HTTP_HX_CURRENT_URL="http://testserver/?status=active", **HTMX
    )
    login_url = urlsplit(moved["HX-Redirect"])
    assert login_url.path == "/login/"
    response = sign_in(client, next_url=parse_qs(login_url.query)["next"][0])
    assert response.status_code == 302
    assert response["Location"] == "/?status=active"


# --- a refused POST ---------------------------------------------------------------------------


def test_a_cancel_with_a_stale_csrf_token_gets_a_short_message_for_the_row(password_operator):
    client = Client(enforce_csrf_checks=True)
    sign_in(client)
    page = text(client.get("/"))
    old_token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    sign_in(client)  # again, "in another tab": the session's CSRF token changes
    url = "/batches/anthropic-ops/msgbatch_01abc/cancel"

    response = client.post(url, HTTP_X_CSRFTOKEN=old_token, **HTMX)
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/plain")
    assert text(response).strip() == CSRF_WORDS
    assert CancelAttempt.objects.count() == 0

    # Without htmx, a page (not Django's bare "CSRF verification failed") says the same.
    page = client.post(url, HTTP_X_CSRFTOKEN=old_token)
    assert page.status_code == 403
    assert page["Content-Type"].startswith("text/html")
    assert html.escape(CSRF_WORDS) in text(page) or CSRF_WORDS in html.unescape(text(page))
    assert "CSRF verification failed" not in text(page)
    assert CancelAttempt.objects.count() == 0


def test_a_refused_htmx_post_without_a_session_goes_to_sign_in(db):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/batches/anthropic-ops/msgbatch_01abc/cancel", HTTP_HX_CURRENT_URL="http://testserver/?q=x", **HTMX
    )
    assert response.status_code == 401
    assert response["HX-Redirect"] == "/login/?next=%2F%3Fq%3Dx"


def test_every_page_has_a_notice_region_and_every_row_a_place_for_its_errors(operator_client):
    stored_openai()
    body = text(operator_client.get("/"))
    assert '<div id="page-notice" class="banner banner-error page-notice" role="status"></div>' in body
    assert '<div class="row-error" role="status"></div>' in row_html(body, "batch_truthful1")
    fragment = text(operator_client.get("/batches/openai-ops/batch_truthful1/row", **HTMX))
    assert '<div class="row-error" role="status"></div>' in fragment
    # While a cancel is out, the row's polls wait: none swaps the row from under its answer.
    assert 'hx-sync="closest tr:replace"' in fragment


# --- long values ------------------------------------------------------------------------------


def test_a_long_metadata_value_is_cut_short_in_the_list_with_the_whole_on_hover(operator_client):
    stored_openai(metadata={"job": "J" * 512, "owner": "ana"})
    row = row_html(text(operator_client.get("/")), "batch_truthful1")
    assert longest_run(visible(row), "J") == 80
    assert f'title="{"J" * 512}"' in row


def test_a_long_audit_message_is_cut_short(operator_client, operator):
    operator.is_staff = True
    operator.save()
    CancelAttempt.objects.create(
        actor="operator", account="openai-ops", batch_id="batch_truthful1", message="M" * 20_000
    )
    body = text(operator_client.get("/audit/"))
    assert longest_run(visible(body), "M") == 500
    assert longest_run(body, "M") <= 1000  # the hover text is capped too
    assert "20,000 characters in all" in body


def test_huge_fields_never_make_a_huge_detail_page(operator_client):
    stored_openai(
        model="m" * 50_000,
        metadata={"job": "J" * 512},
        errors={
            "object": "list",
            "data": [
                {"code": "duplicate_custom_id", "line": 2, "message": f"The custom_id '{'c' * 50_000}' is not unique"}
            ],
        },
        huge="h" * 3_000_000,
    )
    response = operator_client.get("/batches/openai-ops/batch_truthful1/")
    body = text(response)
    assert response.status_code == 200
    assert len(body) < 500_000, f"{len(body):,} characters"
    # The raw JSON says where it was cut.
    assert re.search(r"\(cut short: the first 200,000 of its 3,1\d\d,\d\d\d characters", body)
    # Cells show the start of a long value; the raw JSON block has the rest.
    fields = re.search(r'<table class="plain fields">.*?</table>', body, re.S).group(0)
    assert longest_run(visible(fields), "m") == 300
    errors = re.search(r'<table class="plain errors">.*?</table>', body, re.S).group(0)
    assert longest_run(visible(errors), "c") <= 300
    metadata = re.search(r'<table class="plain metadata">.*?</table>', body, re.S).group(0)
    assert longest_run(visible(metadata), "J") == 300


def test_long_result_fields_are_cut_short_in_the_results_table(operator_client, monkeypatch):
    ended = int((timezone.now() - timedelta(hours=1)).timestamp())
    stored_openai(status="completed", completed_at=ended, output_file_id="file-out1")
    line = ResultLine(
        number=1,
        custom_id="c" * 10_000,
        type="errored",
        source="output",
        model="m" * 10_000,
        error_type="t" * 10_000,
        error_message="e" * 10_000,
    )
    monkeypatch.setattr(services, "results_page", lambda **_: ResultPage(lines=[line] * 50, offset=0, has_more=False))
    body = text(operator_client.get("/batches/openai-ops/batch_truthful1/"))
    table = re.search(r'<table class="batches results-table">.*?</table>', body, re.S).group(0)
    shown = visible(table)
    for char, limit in (("c", 120), ("m", 120), ("t", 120), ("e", 300)):
        assert longest_run(shown, char) == limit, char
    assert len(body) < 600_000, f"{len(body):,} characters"


# --- impossible counts ------------------------------------------------------------------------


def test_counts_that_do_not_add_up_are_flagged_and_the_bar_stays_within_its_end(operator_client):
    stored_openai(request_counts={"total": 10, "completed": 12, "failed": 0})
    stored_openai("batch_truthful2", request_counts={"total": 10, "completed": 4, "failed": 1})
    body = text(operator_client.get("/"))
    row = row_html(body, "batch_truthful1")
    assert "Counts do not add up: 12 outcomes for 10 requests, as OpenAI reported them." in visible(row)
    widths = [float(width) for width in re.findall(r'<rect class="seg [^"]*" x="[^"]*" y="0" width="([^"]+)"', row)]
    assert widths and sum(widths) <= 100.01
    # Counts that do add up say nothing of the kind.
    assert "do not add up" not in row_html(body, "batch_truthful2")
    detail = text(operator_client.get("/batches/openai-ops/batch_truthful1/"))
    fields = re.search(r'<table class="plain fields">.*?</table>', detail, re.S).group(0)
    assert "Counts do not add up: 12 outcomes for 10 requests" in visible(fields)


def test_outcomes_and_processing_above_the_total_are_flagged(operator_client):
    stored_openai(request_counts={"total": 0, "completed": 1, "failed": 0})
    row = row_html(text(operator_client.get("/")), "batch_truthful1")
    assert "Counts do not add up: 1 outcome for 0 requests" in visible(row)


# --- just now ---------------------------------------------------------------------------------


def render(source: str, **context) -> str:
    return Template("{% load batches %}" + source).render(Context(context))


@pytest.mark.parametrize("seconds, words", [(-20, "just now"), (0, "just now"), (20, "in a moment"), (-59, "just now")])
def test_a_moment_under_a_minute_away_is_just_now_or_in_a_moment(seconds, words):
    shown = visible(render("{% moment value %}", value=timezone.now() + timedelta(seconds=seconds)))
    assert shown == words


def test_a_moment_a_few_minutes_away_still_counts_minutes():
    assert visible(render("{% moment value %}", value=timezone.now() - timedelta(minutes=3, seconds=5))) == (
        "3 minutes ago"
    )


def test_durations_under_a_minute_never_say_zero_minutes():
    now = timezone.now()
    assert render("{{ value|duration_since }}", value=now - timedelta(seconds=10)) == "less than a minute"
    assert render("{{ value|duration_until }}", value=now + timedelta(seconds=10)) == "less than a minute"
    assert render("{{ value|duration_until }}", value=now - timedelta(seconds=10)) == "no time"


def test_a_batch_created_seconds_ago_reads_just_now_in_its_row(operator_client):
    stored_anthropic(age=timedelta(seconds=10))
    row = visible(row_html(text(operator_client.get("/")), "msgbatch_truthful1"))
    assert "0 minutes" not in row
    assert "just now" in row
    assert "running less than a minute" in row
