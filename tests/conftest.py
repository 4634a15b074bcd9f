import httpx
import pytest

from dashboard.simulator.demo import ensure_demo_accounts

ANTHROPIC_KEYS = {"ops": "sk-ant-sim-ops", "research": "sk-ant-sim-research"}
OPENAI_KEYS = {"ops": "sk-sim-ops", "research": "sk-sim-research"}


@pytest.fixture
def demo_accounts(db):
    """The four documented simulator accounts (flushed between transactional tests, so re-made)."""
    return ensure_demo_accounts()


@pytest.fixture
def fast_simulator(settings):
    """Simulated batches that finish in seconds, so tests can watch them end over real HTTP."""
    settings.SIMULATOR_PROCESSING_SECONDS = 1.5
    settings.SIMULATOR_CANCEL_SECONDS = 1.0
    settings.SIMULATOR_VALIDATING_SECONDS = 0.5
    settings.SIMULATOR_FINALIZING_SECONDS = 0.5
    settings.SIMULATOR_HANG_SECONDS = 3
    return settings


@pytest.fixture
def simulator(live_server, transactional_db, demo_accounts):
    """Base URL of the simulator served over real HTTP by Django's live server."""
    return live_server.url + "/simulator"


@pytest.fixture
def anthropic_client(simulator):
    import anthropic

    def make(key: str = ANTHROPIC_KEYS["ops"], **options) -> "anthropic.Anthropic":
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 20)
        return anthropic.Anthropic(api_key=key, base_url=simulator + "/anthropic", **options)

    return make


@pytest.fixture
def openai_client(simulator):
    import openai

    def make(key: str = OPENAI_KEYS["ops"], **options) -> "openai.OpenAI":
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 20)
        return openai.OpenAI(api_key=key, base_url=simulator + "/openai/v1", **options)

    return make


@pytest.fixture(autouse=True)
def fresh_cache():
    """Upstream answers are cached between requests; tests must not see each other's."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def dashboard_upstream(simulator, settings, monkeypatch):
    """The dashboard's default accounts (the four simulator demo accounts) served over real HTTP."""
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "BATCH_ACCOUNTS_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings.SIMULATOR_BASE_URL = simulator
    settings.UPSTREAM_TIMEOUT_SECONDS = 2
    return simulator


def make_user(username: str, *, can_cancel: bool):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(username=username, password="not-used-in-tests-1")
    if can_cancel:
        user.user_permissions.add(Permission.objects.get(codename="cancel_batch", content_type__app_label="dashboard"))
    return user


@pytest.fixture
def operator(db):
    return make_user("operator", can_cancel=True)


@pytest.fixture
def viewer(db):
    return make_user("viewer", can_cancel=False)


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def upstream_calls(monkeypatch):
    """Every HTTP request sent from now on by any httpx client (the dashboard's, and the SDKs')."""
    calls: list[str] = []
    original = httpx.Client.send

    def recording_send(self, request, *args, **kwargs):
        calls.append(f"{request.method} {request.url}")
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", recording_send)
    return calls


@pytest.fixture
def fresh_http_clients(monkeypatch):
    """New per-account httpx clients for this test, closed afterwards."""
    from dashboard import accounts

    clients: dict = {}
    monkeypatch.setattr(accounts, "_clients", clients)
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def four_accounts(dashboard_upstream, anthropic_client, openai_client):
    """One running batch in each account, created 1..4 minutes ago (newest first: A-ops, O-ops, A-res, O-res)."""
    from tests.test_views import anthropic_batch, created_ago, openai_batch

    made = [
        ("anthropic-ops", anthropic_batch(anthropic_client, "ops", seconds=600).id),
        ("openai-ops", openai_batch(openai_client, "ops", seconds=600).id),
        ("anthropic-research", anthropic_batch(anthropic_client, "research", seconds=600).id),
        ("openai-research", openai_batch(openai_client, "research", seconds=600).id),
    ]
    for minutes, (_, batch_id) in enumerate(made, start=1):
        created_ago(batch_id, minutes=minutes)
    return made
