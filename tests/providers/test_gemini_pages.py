"""A Gemini account through the whole dashboard (over httpx.MockTransport): the list, the detail
page and the CLI say "unknown" where Gemini has not reported counts, and show a batch's display name."""

from __future__ import annotations

import io

import httpx
import pytest
from django.core.management import call_command

from dashboard.providers import gemini
from tests.factories import poll_store
from tests.providers.test_gemini import PENDING, PENDING_ID, RUNNING, RUNNING_ID, with_metadata

KEY = "AIzaSy" + "PagesTestKey0123456789abcdefXYZ"
NO_STATS = {**PENDING, "metadata": {k: v for k, v in PENDING["metadata"].items() if k != "batchStats"}}


@pytest.fixture
def gemini_upstream(db, monkeypatch):
    from dashboard.batches import poller, services

    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "BATCH_ACCOUNTS_FILE", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    running = with_metadata(RUNNING, displayName="nightly-eval")

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-goog-api-key"] == KEY
        if request.url.path.endswith(PENDING_ID):
            return httpx.Response(200, json=NO_STATS)
        if request.url.path.endswith(RUNNING_ID):
            return httpx.Response(200, json=running)
        return httpx.Response(200, json={"operations": [running, NO_STATS]})

    def provider_for(account):
        client = httpx.Client(
            base_url=account.base_url, transport=httpx.MockTransport(answer), headers=gemini.auth_headers(KEY)
        )
        return gemini.GeminiProvider(client, account=account.key, secrets=(KEY,))

    monkeypatch.setattr(services, "provider_for", provider_for)
    monkeypatch.setattr(poller, "provider_for", provider_for)
    poll_store()


def test_the_list_says_unknown_rather_than_zero(operator_client, gemini_upstream):
    page = operator_client.get("/").content.decode()
    assert '<span class="provider provider-gemini">Gemini</span>' in page
    assert '<option value="running">running (Gemini)</option>' in page
    unknown_row = page[page.index(f'id="row-gemini-default-{PENDING_ID}"') :]
    unknown_row = unknown_row[: unknown_row.index("</tr>")]
    assert "request counts unknown · running" in unknown_row
    assert "Gemini has not reported request counts for this batch." in unknown_row
    assert "of 0" not in unknown_row
    known_row = page[page.index(f'id="row-gemini-default-{RUNNING_ID}"') :]
    known_row = known_row[: known_row.index("</tr>")]
    assert "processing 3" in known_row and "unknown" not in known_row
    assert operator_client.get("/", {"q": "nightly"}).content.decode().count("row-gemini-default-") == 1


def test_the_detail_page_says_unknown_and_shows_the_display_name(operator_client, gemini_upstream):
    page = operator_client.get(f"/batches/gemini-default/{PENDING_ID}/").content.decode()
    assert "unknown: Gemini · default has not reported request counts for this batch" in page
    assert "total 0" not in page
    assert "capitals-batch" in page
    assert "<th>metadata.model</th><td><code>models/gemini-2.5-flash-lite</code>" in page  # DETAIL_FIELDS


def test_the_cli_says_the_requests_are_unknown(gemini_upstream):
    out = io.StringIO()
    call_command("batches", "list", stdout=out)
    lines = {line.split()[1]: line for line in out.getvalue().splitlines()[1:]}
    assert lines[PENDING_ID].endswith("requests unknown")
    assert "0 ok, 0 err, 3 processing of 3" in lines[RUNNING_ID]


def test_an_accounts_file_entry_and_its_key_redacted_everywhere(monkeypatch, tmp_path):
    import json

    from dashboard import accounts
    from dashboard.redaction import redact
    from tests.services import ACCOUNT_ENVIRONMENT

    for name in ACCOUNT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    secret = "AIzaSy" + "FileEntryKey0123456789abcdefXYZ"
    monkeypatch.setenv("PROD_GEMINI_KEY", secret)
    entries = [{"name": "prod", "provider": "gemini", "api_key_env": "PROD_GEMINI_KEY"}]
    (tmp_path / "accounts.json").write_text(json.dumps(entries))
    monkeypatch.setenv("BATCH_ACCOUNTS_FILE", str(tmp_path / "accounts.json"))
    monkeypatch.setattr(accounts, "_clients", {})
    monkeypatch.setattr(accounts, "_connections", {})
    (account,) = accounts.configured_accounts()
    assert (account.key, account.base_url, account.label) == ("gemini-prod", gemini.DEFAULT_BASE_URL, "Gemini · prod")
    assert accounts.client_for(account).headers["x-goog-api-key"] == secret
    assert secret in accounts.configured_secrets()
    assert secret[:16] not in redact(f"upstream said: key {secret.lower()} is wrong", accounts.configured_secrets())
