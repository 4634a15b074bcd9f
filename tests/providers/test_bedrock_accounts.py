"""Amazon Bedrock accounts as the dashboard configures them: AWS_BEDROCK_REGION and the credential
chain, accounts-file entries with their own fields, and their secrets redacted from what is stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ImproperlyConfigured

from dashboard import accounts
from dashboard.batches import store
from dashboard.models import StoredBatch
from dashboard.providers import bedrock
from tests.providers.test_bedrock import ACCESS_KEY_ID, IN_PROGRESS, SECRET, TOKEN

OTHER_SDK_VARIABLES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "BATCH_ACCOUNTS_FILE", "AWS_BEDROCK_REGION")


@pytest.fixture
def no_accounts(monkeypatch, tmp_path):
    for name in OTHER_SDK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def accounts_file(tmp_path, monkeypatch, *entries: dict) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(list(entries)))
    monkeypatch.setenv("BATCH_ACCOUNTS_FILE", str(path))


def test_an_accounts_file_entry_with_its_region_and_access_key(no_accounts, tmp_path):
    no_accounts.setenv("PROD_AWS_SECRET", SECRET)
    accounts_file(
        tmp_path,
        no_accounts,
        {
            "provider": "bedrock",
            "name": "prod",
            "region": "eu-west-1",
            "access_key_id": ACCESS_KEY_ID,
            "api_key_env": "PROD_AWS_SECRET",
            "ignored": "x",
        },
        {"provider": "bedrock", "name": "chain", "region": "us-west-2", "profile": "batch"},
    )
    prod, chain = accounts.configured_accounts()
    assert (prod.key, prod.base_url, prod.api_key) == (
        "bedrock-prod",
        "https://bedrock.eu-west-1.amazonaws.com",
        SECRET,
    )
    assert dict(prod.options) == {"region": "eu-west-1", "access_key_id": ACCESS_KEY_ID}
    assert (chain.api_key, dict(chain.options)) == ("", {"region": "us-west-2", "profile": "batch"})
    assert SECRET in accounts.configured_secrets()
    assert prod.label == "Amazon Bedrock · prod"


def test_an_accounts_file_entry_without_a_region_is_a_configuration_error(no_accounts, tmp_path):
    accounts_file(tmp_path, no_accounts, {"provider": "bedrock", "name": "lost"})
    with pytest.raises(ImproperlyConfigured, match="needs its AWS region"):
        accounts.configured_accounts()


def test_aws_bedrock_region_makes_one_account_whose_chain_secrets_are_redacted(no_accounts):
    no_accounts.setenv("AWS_BEDROCK_REGION", "us-east-1")
    no_accounts.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    no_accounts.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    no_accounts.setenv("AWS_SESSION_TOKEN", TOKEN)
    (account,) = accounts.configured_accounts()
    assert (account.key, account.api_key) == ("bedrock-default", "")
    assert {SECRET, TOKEN} <= set(accounts.configured_secrets())


def test_a_secret_key_or_session_token_echoed_in_a_job_is_redacted_where_it_is_stored(no_accounts, db):
    no_accounts.setenv("AWS_BEDROCK_REGION", "us-east-1")
    no_accounts.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    no_accounts.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    no_accounts.setenv("AWS_SESSION_TOKEN", TOKEN)
    echoed = {**IN_PROGRESS, "message": f"key {SECRET} token {TOKEN.lower()}", "jobName": TOKEN[:40]}
    batch = bedrock.parse_batch(echoed, account="bedrock-default", secrets=tuple(accounts.configured_secrets()))
    store.record(batch, fetched_at=datetime.now(UTC))
    stored = json.dumps(StoredBatch.objects.get().raw) + StoredBatch.objects.get().search_text
    assert SECRET not in stored and TOKEN.lower() not in stored.lower() and TOKEN[:20] not in stored
    assert "[redacted]" in stored
