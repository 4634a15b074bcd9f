"""The access tests sign in through a real OpenID Connect provider on loopback (tests/services.py)."""

from tests.services import oidc_provider

__all__ = ["oidc_provider"]
