"""Django error reports (DEBUG pages, mails to admins) with every configured API key hidden.

Django hides settings and META entries whose *name* looks secret (KEY, TOKEN, ...). An account's
key may sit in a variable with any name (`api_key_env` in the accounts file), and may be quoted in
an exception message or a local variable, so the report is also cleaned by *value*.
"""

from __future__ import annotations

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from .accounts import configured_secrets
from .redaction import redact


def _secrets() -> list[str]:
    """Every account's key, and every notification channel's secret and URL. The channels are read
    from the database, which may be what failed: then the account keys are hidden all the same."""
    try:
        from .notifications.channels import notification_secrets

        channels = notification_secrets()
    except Exception:
        channels = []
    return configured_secrets() + channels


class SecretHidingFilter(SafeExceptionReporterFilter):
    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return _hide(cleansed, _secrets())
        return cleansed


class SecretHidingReporter(ExceptionReporter):
    def get_traceback_data(self):
        return _walk(super().get_traceback_data(), _secrets())


def _hide(text: str, secrets: list[str]) -> str:
    plain = str(text)  # lazy strings (e.g. a CSP nonce) are str only by proxy
    return SafeExceptionReporterFilter.cleansed_substitute if redact(plain, secrets) != plain else text


def _walk(value, secrets: list[str]):
    if isinstance(value, str):
        return _hide(value, secrets)
    if isinstance(value, dict):
        return {key: _walk(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, secrets) for item in value]
    if isinstance(value, tuple):
        return tuple(_walk(item, secrets) for item in value)
    if type(value).__name__ in ("dict_items", "odict_items"):
        return [_walk(item, secrets) for item in value]
    return value
