"""The configured accounts are made once and made again as soon as anything they are made from changes:
the provider modules registered, a variable a provider module reads, the accounts file or a key
variable it names, the simulator's settings."""

from __future__ import annotations

import json

import pytest

from dashboard import accounts
from dashboard.providers import PROVIDERS


@pytest.fixture
def clean(monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "BATCH_ACCOUNTS_FILE", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("AWS_BEDROCK_REGION", raising=False)
    return monkeypatch


def keys() -> list[str]:
    return [account.key for account in accounts.configured_accounts()]


def test_the_accounts_follow_every_change_of_what_they_are_made_from(clean, settings, tmp_path):
    settings.SIMULATOR_ENABLED = True
    demo = keys()
    assert len(demo) == sum(len(module.SIMULATOR_KEYS) for module in PROVIDERS.values())
    settings.SIMULATOR_BASE_URL = "http://127.0.0.1:9/sim"
    assert {account.base_url.split("/sim")[0] for account in accounts.configured_accounts()} == {"http://127.0.0.1:9"}
    clean.setenv("ANTHROPIC_API_KEY", "sk-ant-one")
    assert keys() == ["anthropic-default"]
    clean.setenv("ANTHROPIC_ACCOUNT_NAME", "Prod")
    assert keys() == ["anthropic-prod"]
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps([{"name": "a", "provider": "openai", "api_key_env": "A_KEY"}]))
    clean.setenv("BATCH_ACCOUNTS_FILE", str(path))
    clean.setenv("A_KEY", "sk-proj-a")
    assert keys() == ["anthropic-prod", "openai-a"]
    clean.setenv("A_KEY", "sk-proj-other")  # a key the file names, read from the environment
    assert [account.api_key for account in accounts.configured_accounts()][-1] == "sk-proj-other"
    path.write_text(json.dumps([{"name": "b", "provider": "openai", "api_key_env": "A_KEY"}]))  # same size
    assert keys() == ["anthropic-prod", "openai-b"]
    path.unlink()
    with pytest.raises(accounts.ImproperlyConfigured):
        keys()
    clean.delenv("BATCH_ACCOUNTS_FILE")
    clean.delenv("ANTHROPIC_API_KEY")
    assert keys() == demo
    settings.SIMULATOR_ENABLED = False
    assert keys() == []


def test_a_provider_module_registered_later_has_its_simulated_accounts_at_once(clean, settings):
    settings.SIMULATOR_ENABLED = True
    before = keys()
    anthropic = PROVIDERS["anthropic"]
    later = type(anthropic)("later")
    later.__dict__.update(anthropic.__dict__, NAME="later", SIMULATOR_KEYS={"default": "later-key"})
    clean.setitem(PROVIDERS, "later", later)
    assert keys() == [*before, "later-default"]
    clean.delitem(PROVIDERS, "later")
    assert keys() == before


def test_a_list_handed_out_is_the_caller_s_own(clean, settings):
    settings.SIMULATOR_ENABLED = True
    first = accounts.configured_accounts()
    first.clear()
    assert accounts.configured_accounts()
