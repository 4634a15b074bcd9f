"""Single sign-on with OpenID Connect, through mozilla-django-oidc: the code flow with PKCE, the ID
token's signature, expiry and nonce checked by the library, and its issuer and audience here (the
library leaves those two out).

Configured by OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET: the provider's endpoints come
from its discovery document (`<issuer>/.well-known/openid-configuration`), read when a sign-in
first needs them and kept for an hour, never when Django starts (an identity provider that is down
must not stop the dashboard, nor password sign-ins where they are allowed).

At each sign-in the user's groups become those of the groups claim (OIDC_GROUPS_CLAIM, "groups"):
grants name groups (dashboard/access/), so the identity provider decides who sees what. Users are
matched by the username claim (OIDC_USERNAME_CLAIM, "preferred_username", else the email, else
the subject); a local account with a password of the same name is never signed into by SSO.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views import View
from django.views.decorators.http import require_POST
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

logger = logging.getLogger(__name__)

DISCOVERY_SECONDS = 3600
MAX_GROUPS = 500
MAX_NAME = 150  # Django's Group.name and User.username


class SsoUnavailable(Exception):
    """The identity provider could not be asked (down, or its discovery document is unusable)."""


_discovered: dict[str, Any] = {}
_discovery_lock = threading.Lock()


def discovery() -> dict[str, str]:
    """The provider's endpoints, from its discovery document (kept DISCOVERY_SECONDS)."""
    with _discovery_lock:
        if _discovered and time.monotonic() - _discovered["at"] < DISCOVERY_SECONDS:
            return _discovered["endpoints"]
        endpoints = _read_discovery(settings.OIDC_ISSUER)
        _discovered.update(at=time.monotonic(), endpoints=endpoints)
        return endpoints


def forget_discovery() -> None:
    with _discovery_lock:
        _discovered.clear()


def _read_discovery(issuer: str) -> dict[str, str]:
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        answer = httpx.get(url, timeout=settings.OIDC_TIMEOUT, follow_redirects=False)
        answer.raise_for_status()
        document = answer.json()
    except (httpx.HTTPError, ValueError) as error:
        raise SsoUnavailable(f"the identity provider's discovery document could not be read ({error})") from None
    if not isinstance(document, dict):
        raise SsoUnavailable("the identity provider's discovery document is not a JSON object")
    if document.get("issuer") != issuer:
        raise SsoUnavailable(f"the discovery document names another issuer than OIDC_ISSUER ({issuer})")
    endpoints = {}
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "end_session_endpoint"):
        value = document.get(name)
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            endpoints[name] = value
        elif name != "end_session_endpoint":
            raise SsoUnavailable(f"the discovery document has no usable {name}")
    return endpoints


def username_from(claims: dict) -> str:
    for name in (settings.OIDC_USERNAME_CLAIM, "email", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value.strip() and len(value.strip()) <= MAX_NAME:
            return value.strip()
    return ""


def groups_from(claims: dict) -> list[str]:
    """The groups claim as group names: a list of strings (or one string); anything else is none."""
    value = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    names = [item.strip() for item in value if isinstance(item, str) and 0 < len(item.strip()) <= MAX_NAME]
    return list(dict.fromkeys(names))[:MAX_GROUPS]


def sync_groups(user: Any, claims: dict) -> None:
    """The user's groups become exactly those the identity provider names, made where missing."""
    names = groups_from(claims)
    existing = {group.name: group for group in Group.objects.filter(name__in=names)}
    groups = [existing.get(name) or Group.objects.get_or_create(name=name)[0] for name in names]
    user.groups.set(groups)


class SsoBackend(OIDCAuthenticationBackend):
    def __init__(self, *args, **kwargs):
        # Django builds every backend for each authenticate(), password sign-ins included: the
        # endpoints are properties read from discovery only when a sign-in through SSO needs them.
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.UserModel = get_user_model()

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:
        return discovery()["token_endpoint"]

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str:
        return discovery()["userinfo_endpoint"]

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str:
        return discovery()["jwks_uri"]

    def verify_token(self, token, **kwargs):
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if payload.get("iss") != settings.OIDC_ISSUER:
            raise SuspiciousOperation("the ID token was issued by another issuer")
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("the ID token is meant for another client")
        if len(audiences) > 1 and payload.get("azp") != settings.OIDC_RP_CLIENT_ID:
            raise SuspiciousOperation("the ID token was given to another client")
        return payload

    def retrieve_matching_jwk(self, token):
        """The provider's key for this token: by its `kid`, or, for a token without one (it is
        optional), the one signing key of the token's algorithm."""
        if "kid" in jwt.get_unverified_header(token):
            return super().retrieve_matching_jwk(token)
        answer = httpx.get(self.OIDC_OP_JWKS_ENDPOINT, timeout=settings.OIDC_TIMEOUT)
        answer.raise_for_status()
        document = answer.json()
        keys = document.get("keys") if isinstance(document, dict) else None
        algorithm = jwt.get_unverified_header(token).get("alg")
        usable = [
            key
            for key in (keys if isinstance(keys, list) else [])
            if isinstance(key, dict) and key.get("alg", algorithm) == algorithm and key.get("use", "sig") == "sig"
        ]
        if len(usable) != 1:
            raise SuspiciousOperation("the ID token names no key and the provider has not exactly one for it")
        return jwt.PyJWK(usable[0])

    def get_userinfo(self, access_token, id_token, payload):
        # Some providers (Microsoft Entra ID) put the groups in the ID token only.
        return {**payload, **super().get_userinfo(access_token, id_token, payload)}

    def verify_claims(self, claims) -> bool:
        return bool(username_from(claims))

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(username=username_from(claims))

    def create_user(self, claims):
        email = claims.get("email")
        user = self.UserModel.objects.create_user(
            username_from(claims), email=email if isinstance(email, str) and len(email) <= 254 else ""
        )
        sync_groups(user, claims)
        return user

    def update_user(self, user, claims):
        if user.has_usable_password():
            raise SuspiciousOperation(
                f"a local account named {user.username!r} exists: single sign-on does not sign in as it"
            )
        sync_groups(user, claims)
        return user


class _SignIn(OIDCAuthenticationRequestView):
    def __init__(self, **kwargs):
        View.__init__(self, **kwargs)
        self.OIDC_OP_AUTH_ENDPOINT = discovery()["authorization_endpoint"]
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID


@login_not_required
def sign_in_with_sso(request: HttpRequest) -> HttpResponse:
    """To the provider's sign-in page (and back to `next` afterwards)."""
    if not settings.SSO_ENABLED:
        raise Http404("Single sign-on is not configured (OIDC_ISSUER).")
    try:
        return _SignIn.as_view()(request)
    except SsoUnavailable as error:
        return _failed(request, str(error))


class _Callback(OIDCAuthenticationCallbackView):
    @property
    def failure_url(self) -> str:
        return reverse("login")

    def login_failure(self):
        messages.error(self.request, "Single sign-on did not complete: sign in again.")
        return super().login_failure()


@login_not_required
def sso_callback(request: HttpRequest) -> HttpResponse:
    if not settings.SSO_ENABLED:
        raise Http404("Single sign-on is not configured (OIDC_ISSUER).")
    try:
        return _Callback.as_view()(request)
    except SsoUnavailable as error:
        return _failed(request, str(error))
    except (httpx.HTTPError, OSError, ValueError, jwt.PyJWTError) as error:  # requests' errors are OSErrors
        logger.warning("single sign-on failed: %s", type(error).__name__)
        return _failed(request, "the identity provider did not answer as expected")
    except SuspiciousOperation as error:
        logger.warning("single sign-on refused: %s", error)
        messages.error(request, "Single sign-on did not complete: the identity provider's answer failed a check.")
        return HttpResponseRedirect(reverse("login"))


def _failed(request: HttpRequest, reason: str) -> HttpResponse:
    logger.warning("single sign-on unavailable: %s", reason)
    messages.error(request, f"Single sign-on is unavailable: {reason}. Try again later.")
    return HttpResponseRedirect(reverse("login"))


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    """End the session; after a sign-in through SSO, also the provider's session where it offers
    RP-initiated logout (end_session_endpoint), which then sends the browser back to sign in."""
    id_token = request.session.get("oidc_id_token")
    auth.logout(request)
    login_url = request.build_absolute_uri(reverse("login"))
    if not (settings.SSO_ENABLED and id_token):
        return HttpResponseRedirect(reverse("login"))
    try:
        end_session = discovery().get("end_session_endpoint")
    except SsoUnavailable:
        end_session = None
    if not end_session:
        return HttpResponseRedirect(reverse("login"))
    query = urlencode(
        {"id_token_hint": id_token, "post_logout_redirect_uri": login_url, "client_id": settings.OIDC_RP_CLIENT_ID}
    )
    return HttpResponseRedirect(f"{end_session}?{query}")
