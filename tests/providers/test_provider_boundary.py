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

import pytest

from dashboard import accounts, providers
from dashboard.batches import results, services
from dashboard.providers.base import Batch, Connection, Counts, Page
from dashboard.providers.config import key_account
from dashboard.providers.http import BatchAPI
from dashboard.providers.lines import ResultLine
from dashboard.web import views
from tests.factories import poll_store

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = (ROOT / "dashboard" / "providers", ROOT / "dashboard" / "simulator")
NAMES = r"""["'](?:anthropic|openai)["']"""
COMPARISONS = re.compile(
    rf"""[=!]=\s*{NAMES}"""  # provider == "anthropic", {% if x != 'openai' %}
    rf"""|{NAMES}\s*[=!]="""  # "anthropic" == provider
    rf"""|\bin\s*[(\[{{][^)\]}}]*{NAMES}"""  # provider in ("anthropic", ...)
    r"""|\b(?:AnthropicProvider|OpenAIProvider)\b""",  # a provider's class, picked by name
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
        "KEY_IS_OPTIONAL STATUSES ENDED CANCELABLE ENDED_BADLY COUNTS_ARE_FINAL_ONLY TIMESTAMPS MAX_PAGE_LIMIT "
        "RESULT_SOURCES DEFAULT_RESULT_SOURCE LINES_NAME_SOURCE from_environment base_url_for connect "
        "parse_batch parse_result_line after_cancel API"
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
        after_cancel=mistral_after_cancel,
        API=MistralAPI,
    )
    monkeypatch.setitem(providers.PROVIDERS, "mistral", module)
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "BATCH_ACCOUNTS_FILE"):
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
