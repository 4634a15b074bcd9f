"""Shared test helpers: the simulator's demo keys, official SDK clients that reach the embedded
simulator in process (no socket), batches made through them, and shortcuts into the simulator's
stored state (its clock, its faults).

The in-process clients go through `EmbeddedSimulatorTransport`, the dashboard's own way to the
simulator: each request runs on the simulator's thread pool with its own database connection, so
tests using them need `transactional_db` (the `embedded_upstream` fixture asks for it).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import httpx2
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from dashboard import providers
from dashboard.accounts import embedded_transport
from dashboard.models import StoredBatch
from dashboard.simulator.models import SimAccount, SimBatch

ANTHROPIC_KEYS = {"ops": "sk-ant-sim-ops", "research": "sk-ant-sim-research"}
OPENAI_KEYS = {"ops": "sk-sim-ops", "research": "sk-sim-research"}
AZURE_OPENAI_KEYS = providers.module("azure-openai").SIMULATOR_KEYS
GEMINI_KEYS = providers.module("gemini").SIMULATOR_KEYS
ALL_KEYS = (*ANTHROPIC_KEYS.values(), *OPENAI_KEYS.values(), *AZURE_OPENAI_KEYS.values(), *GEMINI_KEYS.values())
# Every demo account of the simulator, as accounts.configured_accounts lists them: (key, label).
DEMO_ACCOUNTS = tuple(
    (f"{name}-{account}", f"{module.LABEL} · {account}")
    for name, module in providers.PROVIDERS.items()
    for account in module.SIMULATOR_KEYS
)
HTMX = {"HTTP_HX_REQUEST": "true"}


# --- SDK clients that reach the simulator in process ------------------------------------------


def embedded_simulator_url() -> str:
    """The simulator's base URL for in-process calls (the dashboard's default with no SIMULATOR_BASE_URL)."""
    return f"https://{settings.EMBEDDED_SIMULATOR_HOST}/simulator"


class _Httpx2Body(httpx2.SyncByteStream):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    def __iter__(self):
        try:
            yield from self.response.stream
        except httpx.HTTPError as error:
            raise _httpx2_error(error) from error

    def close(self) -> None:
        self.response.close()


def _httpx2_error(error: httpx.HTTPError) -> Exception:
    kind = getattr(httpx2, type(error).__name__, httpx2.TransportError)
    return kind(str(error))


class Httpx2Bridge(httpx2.BaseTransport):
    """An httpx transport (the embedded simulator's) for the official SDKs, which speak httpx2.

    The SDKs' requests thus stay out of `upstream_calls`, which records the dashboard's (httpx).
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        forwarded = httpx.Request(
            request.method,
            str(request.url),
            headers=request.headers.raw,
            content=request.read(),
            extensions={"timeout": request.extensions.get("timeout", {})},
        )
        try:
            response = self.inner.handle_request(forwarded)
        except httpx.HTTPError as error:
            raise _httpx2_error(error) from error
        return httpx2.Response(
            response.status_code, headers=response.headers.raw, stream=_Httpx2Body(response), request=request
        )


def embedded_anthropic(key: str = ANTHROPIC_KEYS["ops"], **options):
    """The official Anthropic SDK, reaching the embedded simulator in process."""
    import anthropic

    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 20)
    http_client = httpx2.Client(transport=Httpx2Bridge(embedded_transport()), timeout=options["timeout"])
    return anthropic.Anthropic(
        api_key=key, base_url=embedded_simulator_url() + "/anthropic", http_client=http_client, **options
    )


def embedded_openai(key: str = OPENAI_KEYS["ops"], **options):
    """The official OpenAI SDK, reaching the embedded simulator in process."""
    import openai

    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 20)
    http_client = httpx2.Client(transport=Httpx2Bridge(embedded_transport()), timeout=options["timeout"])
    return openai.OpenAI(
        api_key=key, base_url=embedded_simulator_url() + "/openai/v1", http_client=http_client, **options
    )


# --- batches --------------------------------------------------------------------------------


def custom_id(index: int) -> str:
    """The custom_id of request `index` in the batches made below."""
    return f"req-{index:03d}"


def anthropic_request(index: int) -> dict:
    return {
        "custom_id": custom_id(index),
        "params": {
            "model": "claude-sonnet-4-5",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": f"q{index}"}],
        },
    }


def openai_line(custom_id: str, url: str = "/v1/chat/completions") -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": url,
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
    }


def anthropic_batch(make_client, account: str = "ops", *, count: int = 1, seconds: float = 60, ended: bool = False):
    """A batch of `count` requests (req-000, req-001, …) that processes over `seconds`; `ended`: an hour ago."""
    batch = make_client(ANTHROPIC_KEYS[account]).messages.batches.create(
        requests=[anthropic_request(index) for index in range(count)],
        extra_headers={"x-sim-processing-seconds": str(seconds)},
    )
    if ended:
        created_ago(batch.id, hours=1)
    return batch


def openai_batch(
    make_client,
    account: str = "ops",
    *,
    count: int = 1,
    lines: list[dict] | None = None,
    seconds: float = 60,
    metadata: dict | None = None,
    ago: dict | None = None,
):
    """An uploaded input file of `lines` (or `count` chat lines req-000, …) and its batch; `ago` moves it back."""
    client = make_client(OPENAI_KEYS[account])
    lines = lines if lines is not None else [openai_line(custom_id(index)) for index in range(count)]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    upload = client.files.create(file=("in.jsonl", content, "application/jsonl"), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata=metadata,
        extra_headers={"x-sim-processing-seconds": str(seconds)},
    )
    if ago:
        created_ago(batch.id, **ago)
    return batch


def four_accounts(anthropic_make, openai_make) -> list[tuple[str, str]]:
    """One running batch in each demo account, created 1..4 minutes ago: [(account, id)], newest first."""
    made = [
        ("anthropic-ops", anthropic_batch(anthropic_make, "ops", seconds=600).id),
        ("openai-ops", openai_batch(openai_make, "ops", seconds=600).id),
        ("anthropic-research", anthropic_batch(anthropic_make, "research", seconds=600).id),
        ("openai-research", openai_batch(openai_make, "research", seconds=600).id),
    ]
    for minutes, (_, batch_id) in enumerate(made, start=1):
        created_ago(batch_id, minutes=minutes)
    return made


# --- the simulator's stored state ------------------------------------------------------------


def created_ago(batch_id: str, **delta) -> None:
    """Move a simulated batch's creation into the past (its state follows from its plan)."""
    assert SimBatch.objects.filter(public_id=batch_id).update(created_at=timezone.now() - timedelta(**delta)) == 1


def time_passes(batch_id: str, **delta) -> None:
    """As if `delta` had passed for this simulated batch: its whole plan moves into the past
    (a stall's start too: a stalled batch stays where it stopped)."""
    shift = timedelta(**delta)
    assert (
        SimBatch.objects.filter(public_id=batch_id).update(
            created_at=F("created_at") - shift,
            cancel_initiated_at=F("cancel_initiated_at") - shift,
            stalled_at=F("stalled_at") - shift,
        )
        == 1
    )


def stall(batch_id: str) -> None:
    """Stall a simulated batch now: its counts stop moving (and it does not end) until `release`."""
    from dashboard.simulator import stall as stalls

    assert stalls.stall(batch_id), f"{batch_id} was already stalled"


def release(batch_id: str) -> None:
    """Release a stalled simulated batch: it resumes where it stopped and ends that much later."""
    from dashboard.simulator import stall as stalls

    assert stalls.release(batch_id), f"{batch_id} was not stalled"


def fault(provider: str, name: str, value: str) -> None:
    """Make one simulated account answer everything with a fault ("" clears it)."""
    assert SimAccount.objects.filter(provider=provider, name=name).update(fault=value) == 1


# --- the dashboard's store ---------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """A moment as Anthropic's JSON writes it (ISO 8601 in UTC, with a Z)."""
    return moment.isoformat().replace("+00:00", "Z")


def provider_of(account: str) -> str:
    """The provider of an account key: the longest registered name it starts with (azure-openai-ops)."""
    return max((name for name in providers.PROVIDERS if account.startswith(f"{name}-")), key=len)


def running_json(provider: str, batch_id: str, *, created: datetime) -> dict[str, Any]:
    """What the provider's API says of a running batch of 100 requests, created at `created`."""
    if provider == "anthropic":
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": {"processing": 100, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
            "ended_at": None,
            "created_at": iso(created),
            "expires_at": iso(created + timedelta(hours=24)),
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": None,
        }
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-abc",
        "completion_window": "24h",
        "status": "in_progress",
        "created_at": int(created.timestamp()),
        "expires_at": int((created + timedelta(hours=24)).timestamp()),
        "request_counts": {"total": 100, "completed": 0, "failed": 0},
        "metadata": None,
    }


def stored_batch(
    account: str,
    batch_id: str,
    *,
    fetched_at: datetime,
    created: datetime | None = None,
    body: dict[str, Any] | None = None,
    first_seen_at: datetime | None = None,
    gone_at: datetime | None = None,
    **fields: Any,
) -> StoredBatch:
    """A batch as the poller stores it: its provider's JSON (`body`, or a running batch's created at
    `created`) with `fields` over it, parsed by the provider module and recorded at `fetched_at`. The
    account's provider is what its key starts with (anthropic-ops, openai-research, azure-openai-ops).

    `first_seen_at`: a poller that has read it since then, saying the same: recorded at
    `first_seen_at` too, before `fetched_at` (a batch stored already keeps its own first sighting).
    `gone_at`: then answered 404 (deleted upstream or never there), as the poller marks it."""
    from dashboard.batches import store
    from dashboard.providers import module

    provider = provider_of(account)
    if body is None:
        assert created is not None, "a running batch's JSON needs its creation"
        body = running_json(provider, batch_id, created=created)
    data = copy.deepcopy(body)
    data.update(id=batch_id, **fields)
    batch = module(provider).parse_batch(data, account=account)
    if first_seen_at is not None:
        assert first_seen_at <= fetched_at, "first seen before it was read last"
        store.record(batch, fetched_at=first_seen_at)
    row = store.record(batch, fetched_at=fetched_at)[0]
    if gone_at is not None:
        assert gone_at >= fetched_at, "found gone after it was read"
        assert store.mark_gone(account_key=account, batch_id=batch_id, at=gone_at)
        row.refresh_from_db()
    return row


def poll_store(*, now=None) -> None:
    """What `manage.py poll` does, now and for every configured account: list, refresh the running
    batches, write the store and each account's health. Repeated until every account's older
    history is backfilled, so the store holds all that upstream lists (failures are recorded, as
    the poller records them, and end the repeating)."""
    from dashboard.accounts import configured_accounts
    from dashboard.batches import poller
    from dashboard.models import AccountState

    for _ in range(100):
        for account in configured_accounts():
            poller.poll_account(account, now=now or timezone.now())
        pending = AccountState.objects.filter(backfill_done=False, consecutive_failures=0).exclude(backfill_after="")
        if not pending.exists():
            return
    raise AssertionError("the store is still backfilling after 100 cycles")


# --- responses ------------------------------------------------------------------------------


def text(response) -> str:
    return response.content.decode()


def assert_no_keys(response) -> None:
    body = response.content.decode()
    for key in ALL_KEYS:
        assert key not in body, f"API key {key} leaked into a rendered page"
