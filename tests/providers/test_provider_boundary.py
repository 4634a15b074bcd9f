"""The provider boundary (issue 9): what differs between providers lives in their modules.

Outside dashboard/providers/ (and the simulator, which speaks both dialects) nothing compares a
provider's name; everything asks the registry in dashboard/providers/__init__.py. A third provider
is one more module there: the fake one below reaches the list page, the result parser, the cancel
story and the download default without any other change.
"""

from __future__ import annotations

import json
import re
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dashboard import accounts, providers
from dashboard.batches import results, services
from dashboard.providers.base import Batch, Connection, Counts, Page
from dashboard.providers.config import key_account
from dashboard.providers.http import BatchAPI
from dashboard.providers.lines import ResultLine
from dashboard.providers.openai import OpenAIProvider
from dashboard.web import views
from tests.factories import poll_store
from tests.services import ACCOUNT_ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = (ROOT / "dashboard" / "providers", ROOT / "dashboard" / "simulator")
# Every registered provider's name, and its API class's name (one picked by name is a comparison too).
NAMES = rf"""["'](?:{"|".join(re.escape(name) for name in providers.PROVIDERS)})["']"""
CLASSES = "|".join(sorted({module.API.__name__ for module in providers.PROVIDERS.values()}))
COMPARISONS = re.compile(
    rf"""[=!]=\s*{NAMES}"""  # provider == "anthropic", {% if x != 'openai' %}
    rf"""|{NAMES}\s*[=!]="""  # "anthropic" == provider
    rf"""|\bin\s*[(\[{{][^)\]}}]*{NAMES}"""  # provider in ("anthropic", ...)
    rf"""|\b(?:{CLASSES})\b""",  # a provider's class, picked by name
    re.IGNORECASE,
)


def sources() -> list[Path]:
    files = [*(ROOT / "dashboard").rglob("*.py"), *(ROOT / "templates").rglob("*.html")]
    return sorted(path for path in files if not any(path.is_relative_to(allowed) for allowed in ALLOWED))


@pytest.mark.parametrize(
    "line",
    [
        'if account.provider == "anthropic":',
        "x = 'openai' != provider",
        '{% if batch.provider == "anthropic" %}Anthropic{% else %}OpenAI{% endif %}',
        'if provider in ("anthropic", "openai"):',
        "provider_class = module.AnthropicProvider",
        "if batch.provider == 'bedrock':",
        '{% if row.provider != "gemini" %}',
        'if account.provider in {"azure-openai"}:',
        "isinstance(api, BedrockProvider)",
        "type(api) is GeminiProvider",
    ],
)
def test_the_boundary_check_catches_a_comparison(line):
    assert COMPARISONS.search(line)


def test_nothing_outside_the_provider_modules_compares_provider_names():
    assert len(sources()) > 20  # the walk found the tree
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if COMPARISONS.search(line)
    ]
    assert offenders == []


def test_every_registered_provider_module_defines_what_the_dashboard_asks():
    required = (
        "NAME LABEL DEFAULT_BASE_URL SIMULATOR_PATH SIMULATOR_KEYS SIMULATOR_OPTIONS ACCOUNT_OPTIONS "
        "KEY_IS_OPTIONAL STATUSES ENDED CANCELABLE ENDED_BADLY CANCELED COUNTS_ARE_FINAL_ONLY TIMESTAMPS "
        "MAX_PAGE_LIMIT DETAIL_FIELDS "
        "RESULT_SOURCES DEFAULT_RESULT_SOURCE LINES_NAME_SOURCE from_environment base_url_for connect "
        "parse_batch parse_result_line counts_at_cancel after_cancel API"
    ).split()
    for name, module in providers.PROVIDERS.items():
        assert module.NAME == name
        assert [attribute for attribute in required if not hasattr(module, attribute)] == [], name
        assert set(module.ENDED) <= set(module.STATUSES) and set(module.CANCELABLE) <= set(module.STATUSES)
        assert module.DEFAULT_RESULT_SOURCE in module.RESULT_SOURCES


def test_cancel_is_written_once():
    for module in providers.PROVIDERS.values():
        assert module.API.cancel is BatchAPI.cancel


# --- a third provider: one module -------------------------------------------------------------

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def mistral_batch(*, account: str, status: str = "queued") -> Batch:
    return Batch(
        provider="mistral",
        account=account,
        id="job_mistral1",
        status=status,
        is_ended=status in MISTRAL_ENDED,
        can_cancel=status == "queued",
        counts=Counts(total=3, processing=0, succeeded=2, errored=1, canceled=0, expired=0),
        counts_are_final_only=False,
        created_at=T0,
        expires_at=None,
        ended_at=T0 + timedelta(minutes=5) if status in MISTRAL_ENDED else None,
        cancel_initiated_at=T0 + timedelta(minutes=1) if status == "cancelled" else None,
        timestamps={"created_at": T0},
        raw={"id": "job_mistral1", "status": status},
    )


MISTRAL_ENDED = frozenset({"success", "cancelled"})


class MistralAPI(BatchAPI):
    """Answers without a network: the HTTP plumbing is BatchAPI's and tested elsewhere."""

    name = "mistral"
    label = "Mistral"
    request_id_header = "x-request-id"
    batch_id = re.compile(r"^job_[a-z0-9]+$")
    batches_path = "/v1/batch/jobs"
    after_param = "page"

    def list_page(self, *, limit: int, after: str | None = None) -> Page:
        return Page(batches=[mistral_batch(account=self.account)], has_more=False, next_cursor=None)

    def result_sources(self, batch: Batch) -> list[str]:
        return ["outputs"] if batch.is_ended else []


def mistral_result_line(number: int, data: dict, raw: str, source: str = "") -> ResultLine:
    return ResultLine(number=number, custom_id=str(data.get("custom_id", "")), type="succeeded", raw=raw)


def mistral_after_cancel(batch: Batch, counts_at_cancel: dict | None) -> tuple[int | None, str]:
    return None, "Mistral keeps its own counsel about cancels."


@pytest.fixture
def mistral(monkeypatch, tmp_path):
    module = types.ModuleType("mistral")
    module.__dict__.update(
        NAME="mistral",
        LABEL="Mistral",
        DEFAULT_BASE_URL="https://api.mistral.invalid",
        SIMULATOR_PATH="/mistral",
        SIMULATOR_KEYS={},
        SIMULATOR_OPTIONS={},
        ACCOUNT_OPTIONS=(),
        KEY_IS_OPTIONAL=False,
        STATUSES=("queued", "running", "success", "cancelled"),
        ENDED=MISTRAL_ENDED,
        CANCELABLE=frozenset({"queued"}),
        CANCELED=frozenset({"cancelled"}),
        RESULT_SOURCES=("outputs",),
        DEFAULT_RESULT_SOURCE="outputs",
        LINES_NAME_SOURCE=False,
        from_environment=lambda environ: key_account(
            environ,
            keys=("MISTRAL_API_KEY",),
            base_url="MISTRAL_BASE_URL",
            name="MISTRAL_ACCOUNT_NAME",
            default_base_url="https://api.mistral.invalid",
        ),
        base_url_for=lambda options: "https://api.mistral.invalid",
        connect=lambda account: Connection(
            headers={"Authorization": f"Bearer {account.api_key}"}, secrets=(account.api_key,)
        ),
        parse_batch=lambda data, *, account: mistral_batch(account=account, status=data["status"]),
        parse_result_line=mistral_result_line,
        counts_at_cancel=lambda batch: None,
        after_cancel=mistral_after_cancel,
        API=MistralAPI,
    )
    monkeypatch.setitem(providers.PROVIDERS, "mistral", module)
    for name in ACCOUNT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-test-key-0123456789")
    return module


def test_a_third_provider_module_is_configured_from_its_environment(mistral):
    (account,) = accounts.configured_accounts()
    assert (account.key, account.base_url, account.label) == (
        "mistral-default",
        mistral.DEFAULT_BASE_URL,
        "Mistral · default",
    )
    assert isinstance(accounts.provider_for(account), MistralAPI)


def test_a_third_provider_module_reaches_the_list_page(mistral, operator_client):
    poll_store()  # the poller reads it through the module's API like any other
    page = operator_client.get("/").content.decode()
    assert '<option value="mistral">Mistral</option>' in page
    assert '<option value="running">running (Mistral)</option>' in page
    assert '<option value="mistral-default">Mistral · default</option>' in page
    assert '<span class="provider provider-mistral">Mistral</span>' in page
    assert "job_mistral1" in page
    filtered = operator_client.get("/", {"provider": "mistral", "status": "queued"}).content.decode()
    assert '<option value="mistral" selected>Mistral</option>' in filtered
    assert '<option value="queued" selected>queued (Mistral)</option>' in filtered
    assert "job_mistral1" in filtered


def test_a_batch_whose_provider_reports_no_counts_says_they_are_unknown(mistral, monkeypatch, operator_client):
    from dashboard.models import StoredBatch

    def without_counts(data, *, account, secrets=()):
        batch = mistral_batch(account=account, status=data["status"])
        return Batch(**{**batch.__dict__, "counts": Counts(0, 0, 0, 0, 0, 0, known=False)})

    monkeypatch.setattr(mistral, "parse_batch", without_counts)
    monkeypatch.setattr(
        MistralAPI,
        "list_page",
        lambda self, *, limit, after=None: Page(
            batches=[without_counts({"status": "running"}, account=self.account)], has_more=False, next_cursor=None
        ),
    )
    poll_store()
    assert StoredBatch.objects.get(batch_id="job_mistral1").counts_known is False
    listed = operator_client.get("/").content.decode()
    assert "request counts unknown · running" in listed and "Mistral has not reported request counts" in listed
    assert "of 0" not in listed  # no zeros standing for counts nobody reported
    detail = operator_client.get("/batches/mistral-default/job_mistral1/").content.decode()
    assert "unknown: Mistral · default has not reported request counts for this batch" in detail
    assert "total 0 · processing 0" not in detail


def test_a_third_provider_module_parses_its_result_lines(mistral):
    line = results.parse_line("mistral", 4, json.dumps({"custom_id": "req-4"}).encode(), "outputs")
    assert (line.number, line.custom_id, line.type) == (4, "req-4", "succeeded")
    assert results.parse_line("mistral", 5, b"{not json").type == "invalid"


def test_a_third_provider_module_tells_its_cancel_story(mistral):
    story = services.cancel_story(batch=mistral_batch(account="mistral-default", status="cancelled"), attempts=[])
    assert story is not None and story.explanation == "Mistral keeps its own counsel about cancels."
    assert story.finished_after_cancel is None


def test_a_third_provider_module_names_its_line_sources_only_if_it_says_so(mistral):
    (account,) = accounts.configured_accounts()
    assert views.line_sources(account) == ()
    mistral.LINES_NAME_SOURCE = True
    assert views.line_sources(account) == ("outputs",)


def test_the_cancel_story_of_the_two_providers_is_worded_as_before():
    batch = mistral_batch(account="x", status="cancelled")
    anthropic_count, anthropic_text = providers.module("anthropic").after_cancel(batch, {"completed": 1})
    assert anthropic_count is None and anthropic_text.startswith("Anthropic reports outcomes only once")
    assert providers.module("openai").after_cancel(batch, None) == (
        None,
        "The cancel was not made through this dashboard, so the counts at that moment are unknown.",
    )
    assert providers.module("openai").after_cancel(batch, {"completed": 1, "failed": 0}) == (
        2,
        "1 requests had finished when the cancel was accepted (recorded in our audit trail).",
    )


# --- what the three providers of issue 18 need from the boundary -----------------------------

OPENAI_ITEM = {
    "id": "batch_abc123",
    "object": "batch",
    "endpoint": "/v1/chat/completions",
    "status": "in_progress",
    "created_at": 1_900_000_000,
    "request_counts": {"total": 3, "completed": 1, "failed": 0},
}
LONG_TOKEN = "tok_" + "x" * 996  # page tokens are opaque and may be long (Bedrock's nextToken: up to 2,048)


def paged_batch(number: int, *, account: str) -> Batch:
    return Batch(
        **{
            **mistral_batch(account=account).__dict__,
            "id": f"job_page{number}",
            "created_at": T0 - timedelta(minutes=number),
            "raw": {"id": f"job_page{number}"},
        }
    )


class TokenPagedAPI(MistralAPI):
    """Three pages of two batches, read on by page token rather than by the last id."""

    pages_by_id = False
    tokens = (None, LONG_TOKEN, LONG_TOKEN + "2")
    asked: list[str | None] = []

    def list_page(self, *, limit: int, after: str | None = None) -> Page:
        type(self).asked.append(after)
        index = self.tokens.index(after)
        batches = [paged_batch(2 * index + offset, account=self.account) for offset in (0, 1)]
        following = self.tokens[index + 1] if index + 1 < len(self.tokens) else None
        return Page(batches=batches, has_more=following is not None, next_cursor=following)


@pytest.mark.django_db
def test_a_provider_paged_by_token_is_read_to_the_end_with_its_tokens(mistral, monkeypatch):
    from dashboard.models import AccountState, StoredBatch

    monkeypatch.setattr(mistral, "API", TokenPagedAPI)
    TokenPagedAPI.asked = []
    poll_store()
    assert {LONG_TOKEN, LONG_TOKEN + "2"} <= set(TokenPagedAPI.asked)  # each token passed back whole
    assert sorted(StoredBatch.objects.values_list("batch_id", flat=True)) == [f"job_page{n}" for n in range(6)]
    assert AccountState.objects.get(account="mistral-default").backfill_done


def test_an_id_paged_list_reads_on_after_its_last_id_and_a_token_paged_one_only_by_its_token():
    def answer(body):
        return httpx.Client(
            base_url="https://api.example.invalid",
            transport=httpx.MockTransport(lambda request: httpx.Response(200, json=body)),
        )

    item = {**OPENAI_ITEM, "id": "batch_last1"}
    by_id = OpenAIProvider(answer({"data": [item], "has_more": True}), account="openai-x")
    assert by_id.list_page(limit=1).next_cursor == "batch_last1"

    class ByToken(OpenAIProvider):
        pages_by_id = False

        def list_answer(self, body):
            return body.get("items"), bool(body.get("next")), body.get("next") or None

    with_token = ByToken(answer({"items": [item], "next": LONG_TOKEN}), account="openai-x")
    page = with_token.list_page(limit=1)
    assert (page.has_more, page.next_cursor) == (True, LONG_TOKEN)
    without_token = ByToken(answer({"items": [item]}), account="openai-x").list_page(limit=1)
    assert (without_token.has_more, without_token.next_cursor) == (False, None)  # never its last id


def test_a_cancel_that_answers_without_the_batch_retrieves_it():
    calls = []

    def upstream(request):
        calls.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            return httpx.Response(200, json={})
        return httpx.Response(200, json={**OPENAI_ITEM, "status": "cancelling"})

    class AnswersEmpty(OpenAIProvider):
        answers_cancel_with_batch = False

    client = httpx.Client(base_url="https://api.example.invalid/v1", transport=httpx.MockTransport(upstream))
    batch = AnswersEmpty(client, account="openai-x").cancel(OPENAI_ITEM["id"])
    assert batch.status == "cancelling"
    assert calls == [f"POST /v1/batches/{OPENAI_ITEM['id']}/cancel", f"GET /v1/batches/{OPENAI_ITEM['id']}"]


class RegionSigner(httpx.Auth):
    def __init__(self, secret: str):
        self.secret = secret

    def auth_flow(self, request):
        request.headers["x-signed"] = f"signed-with-{len(self.secret)}-chars"
        yield request


@pytest.fixture
def regional(mistral, monkeypatch, tmp_path):
    """The fake provider with fields of its own in the accounts file, as Bedrock has (region, profile)."""
    monkeypatch.setattr(mistral, "ACCOUNT_OPTIONS", ("region", "profile"))
    monkeypatch.setattr(mistral, "KEY_IS_OPTIONAL", True)
    monkeypatch.setattr(mistral, "base_url_for", lambda options: f"https://{options['region']}.mistral.invalid")
    monkeypatch.setattr(
        mistral,
        "connect",
        lambda account: Connection(
            headers={"x-region": account.options["region"]},
            params={"api-version": "2030-01-01"},
            auth=RegionSigner(account.api_key or "from-the-chain-secret"),
            secrets=(account.api_key or "from-the-chain-secret", "session-token-0123456789"),
        ),
    )
    monkeypatch.delenv("MISTRAL_API_KEY")
    monkeypatch.setenv("REGIONAL_SECRET", "regional-secret-0123456789")
    entries = [
        {"provider": "mistral", "name": "EU West", "region": "eu-west-1", "api_key_env": "REGIONAL_SECRET"},
        {"provider": "mistral", "name": "chain", "region": "us-east-1", "profile": "ops", "ignored": "x"},
    ]
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(entries))
    monkeypatch.setenv("BATCH_ACCOUNTS_FILE", str(path))
    monkeypatch.setattr(accounts, "_clients", {})
    monkeypatch.setattr(accounts, "_connections", {})
    return mistral


def test_an_accounts_file_entry_gives_the_provider_its_own_fields(regional):
    eu, chain = accounts.configured_accounts()
    assert (eu.key, eu.base_url, dict(eu.options)) == (
        "mistral-eu-west",
        "https://eu-west-1.mistral.invalid",
        {"region": "eu-west-1"},
    )
    assert (chain.api_key, dict(chain.options)) == ("", {"region": "us-east-1", "profile": "ops"})  # no key: the chain


def test_every_request_carries_what_the_provider_connects_with(regional):
    eu, _ = accounts.configured_accounts()
    client = accounts.client_for(eu)
    request = client.build_request("GET", "/v1/batch/jobs")
    assert request.headers["x-region"] == "eu-west-1" and request.url.params["api-version"] == "2030-01-01"
    signed = next(client.auth.sync_auth_flow(request))
    assert signed.headers["x-signed"] == "signed-with-26-chars"


def test_the_secrets_a_provider_connects_with_are_redacted_like_keys(regional):
    from dashboard.redaction import redact

    secrets = accounts.configured_secrets()
    assert {"regional-secret-0123456789", "from-the-chain-secret", "session-token-0123456789"} <= set(secrets)
    shown = redact("token session-token-0123456789 and regional-secret-0123456789", secrets)
    assert "session-token" not in shown and "regional-secret" not in shown
