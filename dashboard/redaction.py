"""One way to keep API keys out of anything shown, logged or stored."""

from __future__ import annotations

import re

REDACTED = "[redacted]"
# Shorter "keys" would redact ordinary words; no real API key is this short.
MIN_SECRET_LENGTH = 8


def configured_secrets() -> list[str]:
    """Every configured account's key (whatever the variable that holds it is called)."""
    from django.core.exceptions import ImproperlyConfigured

    from .accounts import configured_accounts

    try:
        return [account.api_key for account in configured_accounts()]
    except ImproperlyConfigured:
        return []


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` with every secret (any letter case) replaced by [redacted]."""
    secrets = configured_secrets() if secrets is None else secrets
    wanted = sorted({secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
    if not wanted or not text:
        return text
    return re.sub("|".join(re.escape(secret) for secret in wanted), REDACTED, text, flags=re.IGNORECASE)
