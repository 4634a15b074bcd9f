"""Which upstream accounts the dashboard watches, and one shared httpx.Client for each.

Configured from the environment with the official SDKs' own conventions (each provider module's
`from_environment`: ANTHROPIC_API_KEY, OPENAI_API_KEY, ...), plus BATCH_ACCOUNTS_FILE naming a JSON
file with more: [{"name", "provider", "base_url", "api_key_env"}] (or "api_key", though keeping
keys in the environment is better), each with its provider's own fields (its ACCOUNT_OPTIONS:
endpoint, region, profile...). With none of these, the embedded simulator's demo accounts are used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import providers
from .providers import PROVIDERS
from .providers.base import AccountSpec, Connection, Provider
from .providers.transport import Deadlines


@dataclass(frozen=True)
class Account:
    name: str
    provider: str
    base_url: str
    api_key: str = field(repr=False)
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # the provider's own fields

    @property
    def spec(self) -> AccountSpec:
        return AccountSpec(name=self.name, base_url=self.base_url, api_key=self.api_key, options=self.options)

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


def _account(provider: str, spec: AccountSpec) -> Account:
    if provider not in PROVIDERS:
        raise ImproperlyConfigured(f"Unknown provider {provider!r}; use one of {sorted(PROVIDERS)}.")
    if not spec.api_key and not providers.module(provider).KEY_IS_OPTIONAL:
        raise ImproperlyConfigured(f"Account {spec.name!r} has no API key.")
    return Account(
        name=_slug(spec.name),
        provider=provider,
        base_url=spec.base_url.rstrip("/"),
        api_key=spec.api_key,
        options=MappingProxyType(dict(spec.options)),
    )


def _from_file(path: str, environ: Mapping[str, str]) -> list[Account]:
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ImproperlyConfigured(f"BATCH_ACCOUNTS_FILE {path!r} cannot be read as JSON: {error}") from None
    accounts = []
    for entry in entries:
        provider = entry.get("provider", "")
        module = PROVIDERS.get(provider)
        if module is None:
            raise ImproperlyConfigured(f"Unknown provider {provider!r}; use one of {sorted(PROVIDERS)}.")
        options = {name: str(entry[name]) for name in module.ACCOUNT_OPTIONS if entry.get(name)}
        api_key = entry.get("api_key") or environ.get(entry.get("api_key_env", ""), "")
        with configuration_errors():
            spec = AccountSpec(
                name=entry.get("name", provider),
                base_url=entry.get("base_url") or module.base_url_for(options),
                api_key=api_key,
                options=options,
            )
        accounts.append(_account(provider, spec))
    return accounts


@contextmanager
def configuration_errors() -> Iterator[None]:
    """A provider module's ValueError about its configuration (an Azure account without an endpoint)
    is Django's ImproperlyConfigured here: providers are Django-free."""
    try:
        yield
    except ValueError as error:
        raise ImproperlyConfigured(str(error)) from None


class _Reads(Mapping[str, str]):
    """The environment, noting which variables were read: the accounts depend on those alone."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ, self.names, self.whole = environ, set(), False

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        return self.environ[name]

    def __contains__(self, name: object) -> bool:
        self.names.add(name)
        return name in self.environ

    def __iter__(self) -> Iterator[str]:
        self.whole = True
        return iter(self.environ)

    def __len__(self) -> int:
        self.whole = True
        return len(self.environ)


@dataclass(frozen=True)
class _Made:
    names: tuple[str, ...] | None  # the variables read (None: all of them)
    key: tuple
    accounts: tuple[Account, ...]


_made: _Made | None = None


def _made_from(names: tuple[str, ...] | None) -> tuple:
    """What configured_accounts() read, as it is now: the provider modules registered, the variables, the
    accounts file and the simulator's settings."""
    environ = os.environ
    variables = tuple(sorted(environ.items())) if names is None else tuple(environ.get(name) for name in names)
    path = environ.get("BATCH_ACCOUNTS_FILE")
    try:
        file = (path, Path(path).read_bytes()) if path else None
    except OSError:
        file = (path, None)
    simulator = (
        settings.SIMULATOR_ENABLED,
        settings.SIMULATOR_BASE_URL,
        settings.EMBEDDED_SIMULATOR_HOST,
        settings.SIMULATOR_URL_PREFIX,
    )
    registered = tuple((name, id(module)) for name, module in PROVIDERS.items())
    return registered, variables, file, simulator


def configured_accounts() -> list[Account]:
    """The accounts, made again only when what they are made from changed (a variable they read, the
    accounts file, the simulator's settings): every request of every page asks for them."""
    global _made
    made = _made
    if made is not None and made.key == _made_from(made.names):
        return list(made.accounts)
    reads = _Reads(os.environ)
    before = _made_from(None)
    accounts = _configured_accounts(reads)
    names = None if reads.whole else tuple(sorted(reads.names | {"BATCH_ACCOUNTS_FILE"}))
    if _made_from(None) == before:  # not changed while they were made
        _made = _Made(names=names, key=_made_from(names), accounts=tuple(accounts))
    return accounts


def _configured_accounts(environ: Mapping[str, str]) -> list[Account]:
    with configuration_errors():
        specs = [(name, spec) for name, module in PROVIDERS.items() for spec in module.from_environment(environ)]
    accounts = [_account(name, spec) for name, spec in specs]
    if environ.get("BATCH_ACCOUNTS_FILE"):
        accounts.extend(_from_file(environ["BATCH_ACCOUNTS_FILE"], environ))
    if not accounts and settings.SIMULATOR_ENABLED:
        simulator = simulator_base_url()
        accounts = [
            _account(
                provider,
                AccountSpec(
                    name=name,
                    base_url=f"{simulator}{module.SIMULATOR_PATH}",
                    api_key=key,
                    options=module.SIMULATOR_OPTIONS.get(name, {}),
                ),
            )
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
_connections: dict[tuple, Connection] = {}
_clients_lock = threading.Lock()
_tls_context: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The TLS settings every account's client verifies upstreams with: httpx's default (the CA
    bundle of SSL_CERT_FILE or SSL_CERT_DIR, else certifi's), made once. A context per client would
    load the whole bundle again for each account (about 1 MiB apiece); a context holds no account's
    secrets, and CPython's SSLContext may be shared by threads."""
    global _tls_context
    with _clients_lock:
        if _tls_context is None:
            _tls_context = httpx.create_ssl_context()
        return _tls_context


def _cache_key(account: Account) -> tuple:
    return (
        account.provider,
        account.base_url,
        hashlib.sha256(account.api_key.encode()).hexdigest(),
        tuple(sorted(account.options.items())),
        settings.UPSTREAM_TIMEOUT_SECONDS,
        settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS,
    )


def connection_for(account: Account) -> Connection:
    """What every request to the account carries, made once by its provider module's `connect`."""
    cache_key = _cache_key(account)
    with _clients_lock:
        connection = _connections.get(cache_key)
        if connection is None:
            connection = _connections[cache_key] = providers.module(account.provider).connect(account.spec)
        return connection


def client_for(account: Account) -> httpx.Client:
    """One long-lived client per account: connection reuse, shared timeouts."""
    connection = connection_for(account)
    cache_key = _cache_key(account)
    verify = tls_context()
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            client = httpx.Client(
                base_url=account.base_url,
                headers=dict(connection.headers),
                params=dict(connection.params),
                auth=connection.auth,
                timeout=httpx.Timeout(
                    settings.UPSTREAM_TIMEOUT_SECONDS, connect=settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS
                ),
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
                follow_redirects=False,
                verify=verify,
                **({"transport": embedded_transport()} if is_embedded(account.base_url) else {}),
            )
            _clients[cache_key] = client
        return client


def embedded_transport() -> httpx.BaseTransport:
    from .simulator.transport import EmbeddedSimulatorTransport

    return EmbeddedSimulatorTransport()


def configured_secrets() -> list[str]:
    """Every configured account's secrets (its key, whatever the variable that holds it is called;
    AWS's secret key and session token): what anything shown, logged or stored is redacted of
    (dashboard/redaction.py)."""
    global _secrets
    try:
        accounts = (tuple(configured_accounts()), tuple((name, id(module)) for name, module in PROVIDERS.items()))
    except ImproperlyConfigured:
        return []
    made_for, known = _secrets
    if made_for == accounts:  # every stored string is redacted with them: made again only when they change
        return list(known)
    secrets = []
    for account in accounts[0]:
        if account.api_key:
            secrets.append(account.api_key)
        try:
            secrets.extend(secret for secret in connection_for(account).secrets if secret)
        except ImproperlyConfigured:
            continue
    _secrets = (accounts, tuple(dict.fromkeys(secrets)))
    return list(_secrets[1])


# (the accounts and provider modules they were made from, the secrets)
_secrets: tuple[tuple | None, tuple[str, ...]] = (None, ())


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
