"""Which upstream accounts the dashboard watches, and one shared httpx.Client for each.

Configured from the environment with the official SDKs' own conventions:
- ANTHROPIC_API_KEY (+ ANTHROPIC_BASE_URL, no /v1) and OPENAI_API_KEY (+ OPENAI_BASE_URL, ending
  in /v1) make one account each;
- BATCH_ACCOUNTS_FILE names a JSON file with more: [{"name", "provider", "base_url", "api_key_env"}]
  (or "api_key", though keeping keys in the environment is better);
- with none of these, the embedded simulator's four demo accounts are used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import providers
from .providers import PROVIDERS
from .providers.base import Provider
from .providers.transport import Deadlines


@dataclass(frozen=True)
class Account:
    name: str
    provider: str
    base_url: str
    api_key: str = field(repr=False)

    @property
    def key(self) -> str:
        """The account's id in our URLs, e.g. `anthropic-ops`."""
        return f"{self.provider}-{self.name}"

    @property
    def label(self) -> str:
        return f"{providers.label(self.provider)} · {self.name}"


def _slug(value: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    if not slug:
        raise ImproperlyConfigured(f"Account name {value!r} has no letters or digits.")
    return slug


def _account(*, name: str, provider: str, base_url: str, api_key: str) -> Account:
    if provider not in PROVIDERS:
        raise ImproperlyConfigured(f"Unknown provider {provider!r}; use one of {sorted(PROVIDERS)}.")
    if not api_key:
        raise ImproperlyConfigured(f"Account {name!r} has no API key.")
    return Account(name=_slug(name), provider=provider, base_url=base_url.rstrip("/"), api_key=api_key)


def _from_file(path: str) -> list[Account]:
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ImproperlyConfigured(f"BATCH_ACCOUNTS_FILE {path!r} cannot be read as JSON: {error}") from None
    accounts = []
    for entry in entries:
        provider = entry.get("provider", "")
        api_key = entry.get("api_key") or os.environ.get(entry.get("api_key_env", ""), "")
        accounts.append(
            _account(
                name=entry.get("name", provider),
                provider=provider,
                base_url=entry.get("base_url") or getattr(PROVIDERS.get(provider), "DEFAULT_BASE_URL", ""),
                api_key=api_key,
            )
        )
    return accounts


def configured_accounts() -> list[Account]:
    environ = os.environ
    accounts = []
    for name, module in PROVIDERS.items():
        prefix = module.ENV_PREFIX
        if environ.get(f"{prefix}_API_KEY"):
            accounts.append(
                _account(
                    name=environ.get(f"{prefix}_ACCOUNT_NAME", "default"),
                    provider=name,
                    base_url=environ.get(f"{prefix}_BASE_URL") or module.DEFAULT_BASE_URL,
                    api_key=environ[f"{prefix}_API_KEY"],
                )
            )
    if environ.get("BATCH_ACCOUNTS_FILE"):
        accounts.extend(_from_file(environ["BATCH_ACCOUNTS_FILE"]))
    if not accounts and settings.SIMULATOR_ENABLED:
        simulator = simulator_base_url()
        accounts = [
            _account(name=name, provider=provider, api_key=key, base_url=f"{simulator}{module.SIMULATOR_PATH}")
            for provider, module in PROVIDERS.items()
            for name, key in module.SIMULATOR_KEYS.items()
        ]
    keys = [account.key for account in accounts]
    duplicates = {key for key in keys if keys.count(key) > 1}
    if duplicates:
        raise ImproperlyConfigured(f"Two accounts share the name {sorted(duplicates)}; give them distinct names.")
    return accounts


def simulator_base_url() -> str:
    """Where the demo accounts reach the simulator: a configured URL, or in process (see settings)."""
    return (
        settings.SIMULATOR_BASE_URL or f"https://{settings.EMBEDDED_SIMULATOR_HOST}/{settings.SIMULATOR_URL_PREFIX}"
    ).rstrip("/")


def is_embedded(base_url: str) -> bool:
    return httpx.URL(base_url).host == settings.EMBEDDED_SIMULATOR_HOST


def find_account(key: str) -> Account | None:
    return next((account for account in configured_accounts() if account.key == key), None)


_clients: dict[tuple, httpx.Client] = {}
_clients_lock = threading.Lock()


def client_for(account: Account) -> httpx.Client:
    """One long-lived client per account: connection reuse, shared timeouts."""
    cache_key = (
        account.provider,
        account.base_url,
        hashlib.sha256(account.api_key.encode()).hexdigest(),
        settings.UPSTREAM_TIMEOUT_SECONDS,
        settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS,
    )
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            client = httpx.Client(
                base_url=account.base_url,
                headers=providers.module(account.provider).auth_headers(account.api_key),
                timeout=httpx.Timeout(
                    settings.UPSTREAM_TIMEOUT_SECONDS, connect=settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS
                ),
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
                follow_redirects=False,
                **({"transport": embedded_transport()} if is_embedded(account.base_url) else {}),
            )
            _clients[cache_key] = client
        return client


def embedded_transport() -> httpx.BaseTransport:
    from .simulator.transport import EmbeddedSimulatorTransport

    return EmbeddedSimulatorTransport()


def configured_secrets() -> list[str]:
    """Every configured account's key (whatever the variable that holds it is called): what anything
    shown, logged or stored is redacted of (dashboard/redaction.py)."""
    try:
        return [account.api_key for account in configured_accounts()]
    except ImproperlyConfigured:
        return []


def provider_for(account: Account) -> Provider:
    """The account's provider, holding every configured key (no answer may show one) and the deadlines."""
    return providers.module(account.provider).API(
        client_for(account),
        account=account.key,
        secrets=tuple(configured_secrets()),
        deadlines=Deadlines(
            call=settings.UPSTREAM_DEADLINE_SECONDS, download=settings.UPSTREAM_DOWNLOAD_DEADLINE_SECONDS
        ),
    )
