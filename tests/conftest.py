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
