"""Azure OpenAI (issue 18): OpenAI's wire on an Azure resource, against httpx.MockTransport.

The recorded answers are the GA spec's own examples (tests/fixtures/specs/azure/examples, answers of
{endpoint}/openai/batches?api-version=2024-10-21) and Microsoft's blob-storage guide's batch
(tests/fixtures/azure). What is OpenAI's is tested in test_providers.py for all three providers;
here is what differs: routes, api-version, auth, no expiry, results in blob storage.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured

from dashboard import accounts
from dashboard.providers import azure_openai, openai
from dashboard.providers.base import AccountSpec, NotFound, UpstreamError
from dashboard.providers.errors import UnreadableBatch
from tests.providers.test_providers import AZURE_ENDPOINT, AZURE_KEY, azure_error, make_azure, reply

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXAMPLES = FIXTURES / "specs" / "azure" / "examples"


def example(name: str) -> dict:
    """The 200 answer's body of one of the spec's recorded examples."""
    text = (EXAMPLES / name).read_text()
    recorded = yaml.safe_load(text) if name.endswith(".yaml") else json.loads(text)
    assert recorded["parameters"]["api-version"] in ("2024-10-21", datetime(2024, 10, 21).date())
    return recorded["responses"]["200"]["body"]


BLOB_COMPLETED = json.loads((FIXTURES / "azure" / "blob_batch_completed.json").read_text())
RECORDED_ID = "batch_72a2792ef7d24ba7b82c7fe4a37e379f"


def ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# --- the recorded answers, parsed ----------------------------------------------------------------------------------


def test_the_recorded_list_is_one_page_of_the_completed_batch():
    provider, upstream = make_azure(reply(200, example("get_batches.json")))
    page = provider.list_page(limit=20)
    (batch,) = page.batches
    assert (page.has_more, page.next_cursor, page.unreadable) == (False, None, ())
    assert (batch.provider, batch.account, batch.id, batch.status) == (
        "azure-openai",
        "azure-openai-ops",
        RECORDED_ID,
        "completed",
    )
    assert batch.is_ended and not batch.can_cancel
    assert (batch.counts.total, batch.counts.succeeded, batch.counts.errored, batch.counts.processing) == (
        500,
        400,
        100,
        0,
    )
    assert batch.created_at == ts(1646126127) and batch.ended_at == ts(1646126136)
    assert provider.result_sources(batch) == ["output", "error"]
    request = upstream.calls[0]
    assert (request.method, request.url.path) == ("GET", "/openai/batches")
    assert dict(request.url.params) == {"api-version": "2024-10-21", "limit": "20"}
    assert request.headers["api-key"] == AZURE_KEY and "authorization" not in request.headers


def test_the_recorded_batch_is_retrieved_on_the_ga_route():
    provider, upstream = make_azure(reply(200, example("get_batch.yaml")))
    batch = provider.retrieve(RECORDED_ID)
    assert batch.raw["output_file_id"] == "file-f2ddaf43-b48b-46dd-b264-90da10c7a85b"
    assert batch.timestamps["finalizing_at"] == ts(1646126134)
    assert upstream.routes == [("GET", f"/openai/batches/{RECORDED_ID}")]
    assert upstream.calls[0].url.params["api-version"] == "2024-10-21"


def test_the_recorded_cancel_answers_with_the_cancelling_batch():
    provider, upstream = make_azure(reply(200, example("cancel_batch.json")))
    batch = provider.cancel(RECORDED_ID)
    assert (batch.status, batch.is_ended, batch.can_cancel) == ("cancelling", False, False)
    assert batch.cancel_initiated_at == ts(1646126138)
    assert (batch.counts.processing, batch.counts.succeeded, batch.counts.errored) == (395, 100, 5)
    assert upstream.routes == [("POST", f"/openai/batches/{RECORDED_ID}/cancel")]
    assert upstream.calls[0].url.params["api-version"] == "2024-10-21"


def test_the_recorded_new_batch_is_validating_with_no_counts_yet():
    batch = azure_openai.parse_batch(example("post_batch.json"), account="azure-openai-ops")
    assert (batch.status, batch.can_cancel, batch.counts.total) == ("validating", True, 0)
    assert batch.metadata == {"batch_description": "Evaluation job"}


# --- what differs from OpenAI ----------------------------------------------------------------------------------------


def test_a_batch_past_its_expires_at_is_not_due_to_expire():
    """Azure: "we do not expire the jobs that take longer" than 24 hours. The time is kept as sent."""
    body = {**example("cancel_batch.json"), "status": "in_progress", "cancelling_at": None}
    azure = azure_openai.parse_batch(body, account="azure-openai-ops")
    as_openai = openai.parse_batch(body, account="openai-ops")
    assert as_openai.expires_at == ts(1646126170)
    assert azure.expires_at is None
    assert azure.timestamps["expires_at"] == ts(1646126170)
    assert (azure.counts, azure.status, azure.is_ended) == (as_openai.counts, as_openai.status, as_openai.is_ended)


def test_an_unreadable_batch_is_named_as_azures():
    with pytest.raises(UnreadableBatch) as caught:
        azure_openai.parse_batch({**BLOB_COMPLETED, "created_at": "yesterday"}, account="azure-openai-ops")
    assert caught.value.message.startswith("Azure OpenAI sent a batch we cannot read: created_at")


def test_a_batch_that_wrote_to_blob_storage_has_no_result_files_to_read():
    batch = azure_openai.parse_batch(BLOB_COMPLETED, account="azure-openai-ops")
    assert (batch.id, batch.status, batch.counts.succeeded) == (
        "batch_b632a805-797b-49ed-9c9c-86eb4057f2a2",
        "completed",
        3,
    )
    provider, upstream = make_azure(reply(200, BLOB_COMPLETED))
    assert provider.result_sources(batch) == []
    assert batch.raw["output_blob"].endswith("/results.jsonl")  # shown on the detail page, not fetched
    with pytest.raises(NotFound, match="has no output file"):
        with provider.open_results(batch.id, "output", known=batch):
            pass
    assert upstream.calls == []


def test_result_files_are_read_through_the_files_api_of_the_route():
    output_line = (FIXTURES / "azure" / "output_line.jsonl").read_bytes()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/content"):
            return httpx.Response(200, content=output_line)
        return httpx.Response(200, json=example("get_batch.yaml"))

    for api_version, prefix in (("2024-10-21", "/openai"), ("", "/openai/v1")):
        provider, upstream = make_azure(answer, api_version=api_version)
        lines = list(provider.stream_results(RECORDED_ID))
        assert lines == [output_line.strip()] * 2  # the output file, then the error file
        assert upstream.routes == [
            ("GET", f"{prefix}/batches/{RECORDED_ID}"),
            ("GET", f"{prefix}/files/file-f2ddaf43-b48b-46dd-b264-90da10c7a85b/content"),
            ("GET", f"{prefix}/files/file-c3b563b0-ebc7-47da-93e3-a2fa694aef0c/content"),
        ]
        assert {request.url.params.get("api-version") for request in upstream.calls} == {api_version or None}


def test_a_recorded_output_line_reads_as_openais():
    raw = (FIXTURES / "azure" / "output_line.jsonl").read_text().strip()
    line = azure_openai.parse_result_line(1, json.loads(raw), raw, "output")
    assert (line.custom_id, line.type, line.source, line.model) == ("prod3", "succeeded", "output", "gpt-4o-2024-11-20")
    assert (line.stop_reason, line.input_tokens, line.output_tokens) == ("length", 32, 60)


def test_the_v1_route_pages_on_after_without_an_api_version():
    first = {**example("get_batches.json"), "has_more": True, "last_id": RECORDED_ID}
    provider, upstream = make_azure(reply(200, first), api_version="")
    page = provider.list_page(limit=5, after="batch_abc")
    assert (page.has_more, page.next_cursor) == (True, RECORDED_ID)
    request = upstream.calls[0]
    assert request.url.path == "/openai/v1/batches"
    assert dict(request.url.params) == {"limit": "5", "after": "batch_abc"}


def test_azures_error_body_is_read_and_the_key_sent_in_api_key_is_never_shown():
    body = azure_error("401", f"Access denied due to invalid subscription key {AZURE_KEY}.")
    provider, _ = make_azure(reply(401, body, headers={"apim-request-id": "2f0c-request"}))
    with pytest.raises(UpstreamError) as caught:
        provider.list_page(limit=1)
    error = caught.value
    assert (error.status, error.kind, error.request_id) == (401, "401", "2f0c-request")
    assert error.message.startswith("Azure OpenAI HTTP 401 401: Access denied") and AZURE_KEY not in error.message


def test_a_refused_cancel_of_an_ended_batch_is_already_ended():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(409, json=azure_error("conflict", "Batch is in a terminal state."))
        return httpx.Response(200, json=example("get_batch.yaml"))

    provider, upstream = make_azure(answer)
    with pytest.raises(UpstreamError) as caught:
        provider.cancel(RECORDED_ID)
    assert type(caught.value).__name__ == "AlreadyEnded" and caught.value.current.status == "completed"
    assert [method for method, _ in upstream.routes] == ["POST", "GET"]


# --- accounts: the SDK's variables, the accounts file's fields -------------------------------------------------------


def test_no_key_no_account():
    assert azure_openai.from_environment({"AZURE_OPENAI_ENDPOINT": AZURE_ENDPOINT}) == []


def test_the_key_and_endpoint_speak_the_v1_route():
    (account,) = azure_openai.from_environment(
        {"AZURE_OPENAI_API_KEY": AZURE_KEY, "AZURE_OPENAI_ENDPOINT": AZURE_ENDPOINT + "/"}
    )
    assert (account.name, account.base_url, account.api_key) == ("default", f"{AZURE_ENDPOINT}/openai/v1", AZURE_KEY)
    connection = azure_openai.connect(account)
    assert (dict(connection.headers), dict(connection.params), connection.secrets) == (
        {"api-key": AZURE_KEY},
        {},
        (AZURE_KEY,),
    )


@pytest.mark.parametrize(
    "version, base_url",
    [("2024-10-21", "/openai"), ("2025-04-01-preview", "/openai"), ("preview", "/openai/v1"), ("v1", "/openai/v1")],
)
def test_a_dated_api_version_speaks_the_ga_route_with_it_on_every_request(version, base_url):
    (account,) = azure_openai.from_environment(
        {
            "AZURE_OPENAI_API_KEY": AZURE_KEY,
            "AZURE_OPENAI_ENDPOINT": AZURE_ENDPOINT,
            "OPENAI_API_VERSION": version,
            "AZURE_OPENAI_ACCOUNT_NAME": "West Europe",
        }
    )
    assert (account.name, account.base_url) == ("West Europe", AZURE_ENDPOINT + base_url)
    assert dict(azure_openai.connect(account).params) == {"api-version": version}


def test_an_entra_id_token_is_sent_as_a_bearer_token_and_preferred_as_the_sdk_does():
    (account,) = azure_openai.from_environment(
        {
            "AZURE_OPENAI_API_KEY": AZURE_KEY,
            "AZURE_OPENAI_AD_TOKEN": "eyJ0eXAi.token",
            "AZURE_OPENAI_ENDPOINT": AZURE_ENDPOINT,
        }
    )
    connection = azure_openai.connect(account)
    assert dict(connection.headers) == {"Authorization": "Bearer eyJ0eXAi.token"}
    assert connection.secrets == ("eyJ0eXAi.token",)


@pytest.mark.parametrize("endpoint", ["", "my-resource.openai.azure.com"])
def test_a_key_without_an_endpoint_url_is_a_configuration_error(endpoint, monkeypatch):
    environ = {"AZURE_OPENAI_API_KEY": AZURE_KEY, "AZURE_OPENAI_ENDPOINT": endpoint}
    with pytest.raises(ValueError, match="endpoint"):
        azure_openai.from_environment(environ)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match="endpoint"):
        accounts.configured_accounts()


def test_an_accounts_file_entry_names_its_endpoint_and_api_version(tmp_path, monkeypatch):
    path = tmp_path / "accounts.json"
    entries = [
        {"name": "eu", "provider": "azure-openai", "endpoint": AZURE_ENDPOINT, "api_key_env": "EU_AZURE_KEY"},
        {
            "name": "us",
            "provider": "azure-openai",
            "endpoint": "https://us-resource.openai.azure.com",
            "api_version": "2024-10-21",
            "api_key": "us-key-0123456789abcdef",
        },
    ]
    path.write_text(json.dumps(entries))
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EU_AZURE_KEY", AZURE_KEY)
    monkeypatch.setenv("BATCH_ACCOUNTS_FILE", str(path))
    eu, us = accounts.configured_accounts()
    assert (eu.key, eu.base_url, eu.label) == ("azure-openai-eu", f"{AZURE_ENDPOINT}/openai/v1", "Azure OpenAI · eu")
    assert (us.base_url, dict(us.options)) == (
        "https://us-resource.openai.azure.com/openai",
        {"endpoint": "https://us-resource.openai.azure.com", "api_version": "2024-10-21"},
    )
    assert accounts.connection_for(us).params == {"api-version": "2024-10-21"}
    assert {AZURE_KEY, "us-key-0123456789abcdef"} <= set(accounts.configured_secrets())
    path.write_text(json.dumps([{"name": "x", "provider": "azure-openai", "api_key": "k" * 20}]))
    with pytest.raises(ImproperlyConfigured, match="endpoint"):
        accounts.configured_accounts()


def test_an_account_spec_connects_without_the_environment():
    spec = AccountSpec(name="ops", base_url="https://x/openai", api_key="k", options={"auth": "bearer"})
    assert dict(azure_openai.connect(spec).headers) == {"Authorization": "Bearer k"}


def test_the_detail_page_shows_where_a_blob_batch_put_its_results(db, operator_client, monkeypatch):
    from django.utils import timezone

    from tests.factories import stored_batch
    from tests.services import ACCOUNT_ENVIRONMENT

    for name in ACCOUNT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    stored_batch("azure-openai-ops", BLOB_COMPLETED["id"], body=BLOB_COMPLETED, fetched_at=timezone.now())
    page = operator_client.get(f"/batches/azure-openai-ops/{BLOB_COMPLETED['id']}/").content.decode()
    for name in ("input_blob", "output_blob", "error_blob"):
        assert f"<tr><th>{name}</th><td><code>{BLOB_COMPLETED[name]}</code></td></tr>" in page
    assert "<tr><th>output_file_id</th>" not in page  # null: not shown


@pytest.mark.parametrize("shape", ["object", "list"])
def test_the_detail_page_lists_a_failed_batchs_errors_as_one_object_or_a_list(db, operator_client, monkeypatch, shape):
    """Azure's GA spec makes errors.data one object (BatchErrorData); OpenAI's, and the SDK, a list."""
    from django.utils import timezone

    from tests.factories import stored_batch
    from tests.services import ACCOUNT_ENVIRONMENT

    for name in ACCOUNT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    error = {"code": "invalid_json_line", "message": "This line is not parseable as valid JSON.", "line": "3"}
    failed = {
        **example("post_batch.json"),
        "status": "failed",
        "failed_at": 1646126130,
        "errors": {"object": "list", "data": error if shape == "object" else [error, "junk"]},
    }
    stored_batch("azure-openai-ops", RECORDED_ID, body=failed, fetched_at=timezone.now())
    page = operator_client.get(f"/batches/azure-openai-ops/{RECORDED_ID}/").content.decode()
    assert "<h3>Errors</h3>" in page and page.count("<code>invalid_json_line</code>") == 1
    assert "This line is not parseable as valid JSON." in page and "<td>3</td>" in page
