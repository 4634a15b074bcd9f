"""What the pages say when things are not as expected: not signed in any more, a refused POST.

Batches are written straight into the store (as the poller writes them) from the providers' own
JSON, so each test controls exactly what upstream said; no upstream call is made.
"""

from __future__ import annotations

import copy
import html
import re
from datetime import timedelta
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from dashboard import store
from dashboard.models import CancelAttempt
from dashboard.providers import anthropic, openai
from tests.factories import HTMX, text
from tests.test_providers import ANTHROPIC_RUNNING, OPENAI_IN_PROGRESS

PASSWORD = "correct horse battery staple"
CSRF_WORDS = (
    "The dashboard refused this (your session changed — signed in again in another tab?). "
    "Reload the page and try again."
)


# --- helpers -------------------------------------------------------------------------------


def stored_openai(batch_id: str = "batch_truthful1", *, age: timedelta = timedelta(minutes=5), **fields):
    """An OpenAI batch as the poller stores it, from the API's JSON with `fields` changed."""
    body = copy.deepcopy(OPENAI_IN_PROGRESS)
    created = int((timezone.now() - age).timestamp())
    body.update(id=batch_id, created_at=created, in_progress_at=created + 1, expires_at=created + 86400)
    body.update(fields)
    batch = openai.parse_batch(body, account="openai-ops")
    store.record(batch, fetched_at=timezone.now())
    return batch


def stored_anthropic(batch_id: str = "msgbatch_truthful1", *, age: timedelta = timedelta(minutes=5), **fields):
    body = copy.deepcopy(ANTHROPIC_RUNNING)
    created = timezone.now() - age
    body.update(id=batch_id, created_at=created.isoformat(), expires_at=(created + timedelta(hours=24)).isoformat())
    body.update(fields)
    batch = anthropic.parse_batch(body, account="anthropic-ops")
    store.record(batch, fetched_at=timezone.now())
    return batch


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
        ("get", "/?newer_than=abc"),
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
