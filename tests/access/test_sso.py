"""Single sign-on (dashboard/web/sso.py) against a real OpenID Connect provider on loopback
(oidc-provider-mock, Authlib's server, started by tests/services.py): the code flow with PKCE and a
signed ID token, groups synced from the claim at each sign-in, SSO only, the provider's sign-out, and
a provider that is down or misconfigured giving a clear message, never a 500."""

from __future__ import annotations

import itertools
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from hypothesis import given
from hypothesis import strategies as st

from dashboard.web import sso as sso_module
from tests.services import signing_in_through

subjects = itertools.count(1)


@pytest.fixture
def sso(db, settings, oidc_provider):
    with signing_in_through(oidc_provider, settings) as provider:
        yield provider


def person(provider, username: str, groups) -> str:
    """A user of the identity provider; its subject (each test its own: the provider outlives tests)."""
    sub = f"{username}-{next(subjects)}@{id(provider)}"
    provider.user(sub, {"preferred_username": username, "email": f"{username}@example.com", "groups": groups})
    return sub


def sign_in(client, provider, sub: str, *, next_page: str = "/"):
    """The browser's part of the code flow: to the provider, the subject typed on its page, back."""
    start = client.get("/sso/sign-in", {"next": next_page})
    assert start.status_code == 302 and start["Location"].startswith(provider.issuer)
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    consent = httpx.post(start["Location"], data={"sub": sub}, follow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    back = urlsplit(consent.headers["location"])
    assert back.path == "/sso/callback"
    return client.get(back.path, parse_qs(back.query))


def test_a_provider_user_signs_in_lands_on_the_page_asked_with_the_groups_of_its_claim(sso, client):
    sub = person(sso, "ada", ["research", "prod-ops"])
    landed = sign_in(client, sso, sub, next_page="/alarms/")
    assert landed.status_code == 302 and landed["Location"] == "/alarms/"
    ada = get_user_model().objects.get(username="ada")
    assert sorted(ada.groups.values_list("name", flat=True)) == ["prod-ops", "research"]
    assert not ada.has_usable_password() and ada.email == "ada@example.com"
    assert client.get("/alarms/").status_code == 200, "signed in"


def test_the_groups_follow_the_claim_at_each_sign_in(sso, client):
    sub = person(sso, "grace", ["research"])
    sign_in(client, sso, sub)
    Group.objects.create(name="old-team").user_set.add(get_user_model().objects.get(username="grace"))
    sso.user(sub, {"preferred_username": "grace", "groups": ["prod-ops"]})
    client.post("/logout/")
    sign_in(client, sso, sub)
    grace = get_user_model().objects.get(username="grace")
    assert list(grace.groups.values_list("name", flat=True)) == ["prod-ops"]
    assert get_user_model().objects.filter(username="grace").count() == 1


def test_a_local_account_of_the_same_name_is_never_signed_into_through_sso(sso, client):
    get_user_model().objects.create_user("operator", password="a-local-password-1")
    sub = person(sso, "operator", ["admins"])
    refused = sign_in(client, sso, sub)
    assert refused.status_code == 302 and refused["Location"] == "/login/"
    page = client.get("/login/")
    assert "Single sign-on did not complete" in page.content.decode()
    assert client.get("/").status_code == 302, "not signed in"
    assert not get_user_model().objects.get(username="operator").groups.exists()


def test_signing_out_ends_the_session_and_the_provider_s_session(sso, client):
    sign_in(client, sso, person(sso, "alan", []))
    out = client.post("/logout/")
    assert out.status_code == 302
    target = urlsplit(out["Location"])
    assert f"{target.scheme}://{target.netloc}" == sso.issuer and target.path.endswith("end_session")
    query = parse_qs(target.query)
    assert (
        query["post_logout_redirect_uri"] == ["http://testserver/login/"] and query["id_token_hint"][0].count(".") == 2
    )
    assert httpx.get(out["Location"], timeout=10).status_code == 200, "the provider's sign-out page"
    policy = client.get("/login/")["Content-Security-Policy"]
    assert f"form-action 'self' {sso.issuer}" in policy, "the browser may follow the sign-out form there"
    assert client.get("/").status_code == 302, "signed out here"


def test_sso_only_shows_no_password_form_and_refuses_a_posted_password(sso, client, settings):
    settings.SSO_ONLY = True
    get_user_model().objects.create_user("local", password="a-local-password-1")
    page = client.get("/login/").content.decode()
    assert "Sign in with single sign-on" in page and 'name="password"' not in page
    refused = client.post("/login/", {"username": "local", "password": "a-local-password-1"})
    assert refused.status_code == 403 and "Password sign-in is off" in refused.content.decode()
    assert client.get("/").status_code == 302
    settings.SSO_ONLY = False
    both = client.get("/login/").content.decode()
    assert "Sign in with single sign-on" in both and 'name="password"' in both


def test_a_provider_that_is_down_is_a_message_on_the_sign_in_page(sso, client, settings):
    from tests.services import free_port

    settings.OIDC_ISSUER = f"http://127.0.0.1:{free_port()}"
    answer = client.get("/sso/sign-in", follow=True)
    assert answer.status_code == 200 and "Single sign-on is unavailable" in answer.content.decode()
    assert client.get("/").status_code == 302


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"issuer": "https://evil.example"}, "names another issuer"),
        ([1, 2], "not a JSON object"),
        ({"issuer": "ISSUER", "authorization_endpoint": "javascript:alert(1)"}, "no usable authorization_endpoint"),
    ],
)
def test_a_discovery_document_that_cannot_be_trusted_is_refused_by_reason(
    sso, client, settings, monkeypatch, document, reason
):
    settings.OIDC_ISSUER = "https://idp.example"
    if isinstance(document, dict) and document.get("issuer") == "ISSUER":
        document = {**document, "issuer": settings.OIDC_ISSUER}

    def answer(url, **options):
        assert url == "https://idp.example/.well-known/openid-configuration"
        return httpx.Response(200, json=document, request=httpx.Request("GET", url))

    monkeypatch.setattr(sso_module.httpx, "get", answer)
    page = client.get("/sso/sign-in", follow=True).content.decode()
    assert "Single sign-on is unavailable" in page and reason in page


def test_without_an_issuer_there_is_no_sso_and_the_password_form_is_all(client, settings):
    assert not settings.SSO_ENABLED
    assert client.get("/sso/sign-in").status_code == 404
    assert client.get("/sso/callback", {"code": "x", "state": "y"}).status_code == 404
    page = client.get("/login/").content.decode()
    assert "single sign-on" not in page and 'name="password"' in page


def test_a_callback_with_a_state_this_session_never_made_signs_nobody_in(sso, client, db):
    answer = client.get("/sso/callback", {"code": "forged", "state": "forged"})
    assert answer.status_code in (302, 400)
    assert client.get("/").status_code == 302


CLAIM_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=200),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@given(value=CLAIM_VALUE)
def test_any_groups_claim_becomes_a_list_of_usable_group_names(value):
    names = sso_module.groups_from({"groups": value})
    assert isinstance(names, list) and len(names) == len(set(names))
    assert all(isinstance(name, str) and 0 < len(name) <= 150 and name == name.strip() for name in names)
    if isinstance(value, list):
        assert set(names) <= {item.strip() for item in value if isinstance(item, str)}


@pytest.mark.parametrize(
    ("payload", "accepted"),
    [
        ({"iss": "https://idp.example", "aud": "batch-dashboard"}, True),
        ({"iss": "https://idp.example", "aud": ["batch-dashboard", "x"], "azp": "batch-dashboard"}, True),
        ({"iss": "https://other.example", "aud": "batch-dashboard"}, False),
        ({"iss": "https://idp.example", "aud": "another-client"}, False),
        ({"iss": "https://idp.example", "aud": ["batch-dashboard", "x"], "azp": "x"}, False),
        ({"iss": "https://idp.example"}, False),
    ],
)
def test_an_id_token_counts_only_from_the_issuer_and_for_this_client(settings, monkeypatch, payload, accepted):
    from django.core.exceptions import SuspiciousOperation
    from mozilla_django_oidc.auth import OIDCAuthenticationBackend

    settings.OIDC_ISSUER, settings.OIDC_RP_CLIENT_ID = "https://idp.example", "batch-dashboard"
    monkeypatch.setattr(OIDCAuthenticationBackend, "verify_token", lambda self, token, **kwargs: payload)
    backend = sso_module.SsoBackend()
    if accepted:
        assert backend.verify_token("a.b.c") == payload
    else:
        with pytest.raises(SuspiciousOperation):
            backend.verify_token("a.b.c")
