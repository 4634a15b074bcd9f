"""One module per upstream batch API; each takes an injected httpx.Client and returns `base.Batch`.

The registry below is the provider boundary: the rest of the dashboard asks it, never compares a
provider's name. A provider module defines

- NAME, LABEL: its id (in account keys, the store, URLs) and the name shown to operators;
- accounts: DEFAULT_BASE_URL; from_environment(environ) (its accounts from the variables its
  official SDK reads; a pure function of `environ`); ACCOUNT_OPTIONS (its own fields in an
  accounts-file entry: endpoint, region...), base_url_for(options) (an entry without a base_url),
  KEY_IS_OPTIONAL (whether an account may have no key, e.g. AWS's credential chain);
  connect(AccountSpec) -> Connection (headers, query parameters, request signing, and the secrets
  to redact);
- SIMULATOR_PATH, SIMULATOR_KEYS, SIMULATOR_OPTIONS: where the embedded simulator speaks its API,
  and its demo accounts (name: key, and name: options);
- STATUSES (its status words, in order), ENDED, CANCELABLE, ENDED_BADLY and CANCELED (those that
  mean so; CANCELED: ended by a cancel that took effect),
  COUNTS_ARE_FINAL_ONLY, TIMESTAMPS (every timestamp it sends, by its own name), MAX_PAGE_LIMIT,
  DETAIL_FIELDS (the fields of its JSON the detail page shows, dotted paths);
- RESULT_SOURCES, DEFAULT_RESULT_SOURCE (what a download gives by default) and LINES_NAME_SOURCE
  (whether a result line says which source it came from);
- parse_batch(data, account=..., secrets=...), parse_result_line(number, data, raw, source),
  counts_at_cancel(batch) (what the audit trail keeps of a batch as its cancel was accepted) and
  after_cancel(batch, counts_at_cancel) (the cancel story's count and wording);
- API: its `http.BatchAPI` subclass.

Adding a provider is one such module and one entry in PROVIDERS.
"""

from __future__ import annotations

from types import ModuleType

from . import anthropic, azure_openai, bedrock, gemini, openai

PROVIDERS: dict[str, ModuleType] = {
    module.NAME: module for module in (anthropic, openai, azure_openai, gemini, bedrock)
}


def module(name: str) -> ModuleType:
    """The provider module of `name`; KeyError if there is none."""
    return PROVIDERS[name]


def label(name: str) -> str:
    """The provider's name as operators see it; an unknown name is shown as it is."""
    provider = PROVIDERS.get(name)
    return provider.LABEL if provider is not None else name


def labels() -> dict[str, str]:
    return {name: provider.LABEL for name, provider in PROVIDERS.items()}


def status_choices() -> list[tuple[str, str]]:
    """Every provider's status words, each with its provider's label, e.g. ("ended", "ended (Anthropic)")."""
    return [(status, f"{status} ({provider.LABEL})") for provider in PROVIDERS.values() for status in provider.STATUSES]
