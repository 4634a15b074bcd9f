"""Issue 9: a whole upstream call, connect to last byte, ends within its deadline however the upstream trickles.

A per-read timeout never ends an upstream that sends one byte every few seconds; `send` and `stream`
(dashboard/providers/base.py) hold every call to a wall-clock deadline: UPSTREAM_DEADLINE_SECONDS for
JSON answers, UPSTREAM_DOWNLOAD_DEADLINE_SECONDS for streamed result files. First against
httpx.MockTransport, then against a real server on 127.0.0.1 that trickles.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from dashboard import accounts
from dashboard.batches import services
from dashboard.providers import anthropic, openai
from dashboard.providers.base import ProviderError, UpstreamTimeout
from dashboard.providers.transport import Deadlines, send, stream

BATCH_ID = "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"
CHUNK_SECONDS = 0.2
DEADLINE = 0.5
SLACK = 1.5  # generous: one chunk interval plus a loaded machine's scheduling

ENDED_BATCH = {
    "id": BATCH_ID,
    "type": "message_batch",
    "processing_status": "ended",
    "request_counts": {"processing": 0, "succeeded": 2, "errored": 0, "canceled": 0, "expired": 0},
    "created_at": "2024-09-24T18:37:24.100435Z",
    "expires_at": "2024-09-25T18:37:24.100435Z",
    "ended_at": "2024-09-24T19:02:03.5Z",
    "cancel_initiated_at": None,
    "archived_at": None,
    "results_url": f"https://api.anthropic.com/v1/messages/batches/{BATCH_ID}/results",
}


class Trickle(httpx.SyncByteStream):
    """A body that yields one byte every `interval` seconds, up to `limit` bytes, and notes its closing."""

    def __init__(self, *, interval: float = CHUNK_SECONDS, limit: int = 100, first: bytes = b""):
        self.interval = interval
        self.limit = limit
        self.first = first
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        if self.first:
            yield self.first
        for _ in range(self.limit):
            time.sleep(self.interval)
            yield b" "

    def close(self) -> None:
        self.closed = True


def mock_client(answer: Callable[[httpx.Request], httpx.Response], *, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(base_url="https://api.anthropic.com", transport=httpx.MockTransport(answer), timeout=timeout)


def timed(call: Callable[[], object]) -> tuple[Exception | None, float]:
    started = time.monotonic()
    try:
        call()
    except Exception as error:  # returned for the test to look at
        return error, time.monotonic() - started
    return None, time.monotonic() - started


# --- send and stream, against MockTransport ---------------------------------------------------------------------


def test_send_cuts_off_a_trickling_body_at_its_deadline():
    body = Trickle()
    client = mock_client(lambda request: httpx.Response(200, stream=body))

    error, took = timed(lambda: send(client, "GET", "/v1/messages/batches", label="Anthropic", deadline=DEADLINE))

    assert isinstance(error, UpstreamTimeout)
    assert error.message == "Anthropic did not finish answering within 0.5 s."
    assert DEADLINE <= took < DEADLINE + SLACK
    assert body.closed


def test_send_still_reads_a_fast_answer_and_a_slow_one_inside_its_deadline():
    fast = mock_client(lambda request: httpx.Response(200, json={"data": []}))
    assert send(fast, "GET", "/v1/messages/batches", deadline=DEADLINE).json() == {"data": []}

    slow = mock_client(lambda request: httpx.Response(200, stream=Trickle(interval=0.05, limit=3, first=b"{}")))
    assert send(slow, "GET", "/v1/messages/batches", deadline=DEADLINE).content == b"{}   "


def test_send_caps_every_phase_timeout_at_what_is_left_of_the_deadline():
    seen = {}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.update(request.extensions["timeout"])
        return httpx.Response(200, json={})

    send(mock_client(answer, timeout=10.0), "GET", "/v1/messages/batches", deadline=DEADLINE)
    assert set(seen) == {"connect", "read", "write", "pool"}
    assert all(0 < value <= DEADLINE for value in seen.values())

    send(mock_client(answer, timeout=0.2), "GET", "/v1/messages/batches", deadline=DEADLINE)
    assert seen["read"] == 0.2  # the per-read timeout when it is the shorter


@pytest.mark.parametrize("read", ["iter_raw", "iter_bytes", "iter_lines"])
def test_stream_cuts_off_a_trickling_body_while_it_is_iterated(read):
    body = Trickle(first=b'{"custom_id": "a"}\n')
    client = mock_client(lambda request: httpx.Response(200, stream=body))

    def consume() -> None:
        with stream(client, "GET", "/results", label="Anthropic", deadline=DEADLINE) as response:
            for _ in getattr(response, read)():
                pass

    error, took = timed(consume)
    assert isinstance(error, UpstreamTimeout)
    assert error.message == "Anthropic did not finish answering within 0.5 s."
    assert DEADLINE <= took < DEADLINE + SLACK
    assert body.closed


def test_stream_reads_a_body_that_ends_inside_its_deadline():
    client = mock_client(lambda request: httpx.Response(200, stream=Trickle(interval=0.05, limit=4, first=b"x")))
    with stream(client, "GET", "/results", deadline=DEADLINE) as response:
        assert b"".join(response.iter_raw()) == b"x    "


def test_the_deadlines_a_provider_is_given_bound_its_calls_and_it_names_itself():
    deadlines = Deadlines(call=DEADLINE, download=0.8)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Trickle(first=b'{"id": "x"'))

    provider = anthropic.AnthropicProvider(mock_client(answer), account="anthropic-x", deadlines=deadlines)
    error, took = timed(lambda: provider.retrieve(BATCH_ID))
    assert isinstance(error, UpstreamTimeout)
    assert error.message == "Anthropic did not finish answering within 0.5 s."
    assert took < DEADLINE + SLACK

    error, took = timed(lambda: list(provider.stream_results(BATCH_ID)))
    assert isinstance(error, UpstreamTimeout)
    assert error.message == "Anthropic did not finish answering within 0.8 s."
    assert 0.8 <= took < 0.8 + SLACK

    client = httpx.Client(base_url="https://api.openai.com/v1", transport=httpx.MockTransport(answer))
    provider = openai.OpenAIProvider(client, account="openai-x", deadlines=deadlines)
    error, _ = timed(lambda: provider.retrieve("batch_abc123"))
    assert isinstance(error, UpstreamTimeout)
    assert error.message == "OpenAI did not finish answering within 0.5 s."


def test_an_error_answer_to_a_download_is_held_to_the_json_deadline():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, stream=Trickle(first=b'{"type": "error"'))

    deadlines = Deadlines(call=DEADLINE, download=30)
    provider = anthropic.AnthropicProvider(mock_client(answer), account="anthropic-x", deadlines=deadlines)

    def open_results() -> None:
        with provider.open_results(BATCH_ID):
            pass

    error, took = timed(open_results)
    assert isinstance(error, UpstreamTimeout)
    assert took < DEADLINE + SLACK


def test_a_per_read_timeout_before_the_deadline_keeps_its_own_message():
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("stalled", request=request)

    error, _ = timed(lambda: send(mock_client(answer), "GET", "/v1/messages/batches", deadline=60))
    assert isinstance(error, UpstreamTimeout)
    assert error.message == "The provider did not answer within 10.0 seconds."


# --- a real server on 127.0.0.1 that trickles --------------------------------------------------------------------


class TricklingServer:
    """Answers every request with a status line and headers, then one byte every `interval` seconds
    (or, with `interval=None`, nothing more) until the client goes away or the test ends."""

    def __init__(self, *, interval: float | None = CHUNK_SECONDS, headers: bool = False, stall_after: float = 0):
        self.interval = interval
        self.headers = headers  # trickle the headers themselves, never ending them
        self.stall_after = stall_after  # trickle this long, then send nothing more
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._answer, args=(connection,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                request += chunk
            self.requests.append(request.split(b"\r\n", 1)[0])
            try:
                if self.headers:
                    connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                else:
                    connection.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
                    )
                started = time.monotonic()
                while not self.stopped.wait(self.interval if self.interval is not None else 0.05):
                    stalled = self.stall_after and time.monotonic() - started > self.stall_after
                    if self.interval is not None and not stalled:
                        connection.sendall(b"a" if self.headers else b" ")
            except OSError:
                return  # the client gave up and closed: what the deadline is for

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture
def upstream_account(settings):
    """An Anthropic account whose upstream is a TricklingServer, with the dashboard's own client."""
    settings.UPSTREAM_TIMEOUT_SECONDS = 10
    settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS = 3
    settings.UPSTREAM_DEADLINE_SECONDS = DEADLINE
    settings.UPSTREAM_DOWNLOAD_DEADLINE_SECONDS = 0.8
    servers = []

    def make(**kwargs) -> tuple[accounts.Account, TricklingServer]:
        server = TricklingServer(**kwargs)
        servers.append(server)
        account = accounts.Account(name="x", provider="anthropic", base_url=server.url, api_key="sk-ant-test-key")
        return account, server

    yield make
    for server in servers:
        server.close()


@pytest.mark.parametrize("interval", [CHUNK_SECONDS, None], ids=["trickle", "silent"])
@pytest.mark.parametrize("call", ["list_page", "retrieve", "cancel"])
def test_json_calls_to_a_real_trickling_server_end_at_the_deadline(upstream_account, call, interval):
    account, server = upstream_account(interval=interval)
    provider = accounts.provider_for(account)
    assert isinstance(provider, anthropic.AnthropicProvider)
    assert provider.client.timeout.read == 10  # the per-read timeout alone would wait far longer
    calls = {
        "list_page": lambda: provider.list_page(limit=5),
        "retrieve": lambda: provider.retrieve(BATCH_ID),
        "cancel": lambda: provider.cancel(BATCH_ID),
    }

    error, took = timed(calls[call])
    assert isinstance(error, UpstreamTimeout), error
    assert error.message == "Anthropic did not finish answering within 0.5 s."
    assert DEADLINE - 0.05 <= took < DEADLINE + SLACK
    assert len(server.requests) == 1


@pytest.mark.parametrize("interval", [CHUNK_SECONDS, None], ids=["trickle", "silent"])
def test_results_and_downloads_from_a_real_trickling_server_end_at_the_download_deadline(upstream_account, interval):
    account, _ = upstream_account(interval=interval)
    batch = anthropic.parse_batch(ENDED_BATCH, account=account.key)

    def download() -> None:
        for _ in services.open_download(account=account, batch=batch, source="results"):
            pass

    for consume in (download, lambda: list(services.iter_results(account=account, batch=batch))):
        error, took = timed(consume)
        assert isinstance(error, ProviderError), error
        assert isinstance(error, UpstreamTimeout)
        assert error.message == "Anthropic did not finish answering within 0.8 s."
        assert 0.8 - 0.05 <= took < 0.8 + SLACK


def test_a_real_server_that_answers_in_time_is_read(upstream_account, settings):
    listener = socket.create_server(("127.0.0.1", 0))
    body = json.dumps({"data": [], "has_more": False}).encode()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            while b"\r\n\r\n" not in connection.recv(65536):
                pass
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            connection.sendall(head.encode() + body[:5])
            time.sleep(0.1)
            connection.sendall(body[5:])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        account = accounts.Account(name="y", provider="anthropic", base_url=url, api_key="sk-ant-test-key")
        page = accounts.provider_for(account).list_page(limit=5)
        assert page.batches == [] and not page.has_more
    finally:
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize("call", ["list_page", "retrieve", "cancel"])
def test_headers_that_trickle_in_forever_are_cut_at_the_deadline(upstream_account, call):
    """Each header byte arrives well within the per-read timeout: only the deadline ends this."""
    account, _ = upstream_account(headers=True)
    provider = accounts.provider_for(account)
    calls = {
        "list_page": lambda: provider.list_page(limit=5),
        "retrieve": lambda: provider.retrieve(BATCH_ID),
        "cancel": lambda: provider.cancel(BATCH_ID),
    }
    error, took = timed(calls[call])
    assert isinstance(error, UpstreamTimeout), error
    assert error.message == "Anthropic did not finish answering within 0.5 s."
    assert took < DEADLINE + SLACK


def test_download_headers_that_trickle_in_forever_are_cut_at_the_download_deadline(upstream_account):
    account, _ = upstream_account(headers=True)
    batch = anthropic.parse_batch(ENDED_BATCH, account=account.key)
    error, took = timed(lambda: list(services.open_download(account=account, batch=batch, source="results")))
    assert isinstance(error, UpstreamTimeout), error
    assert error.message == "Anthropic did not finish answering within 0.8 s."
    assert took < 0.8 + SLACK


def test_a_json_answer_that_trickles_then_goes_silent_ends_at_the_deadline_not_a_read_timeout_later(
    upstream_account,
):
    """The last read starts just before the deadline with the full 10 s per-read timeout of its own."""
    account, _ = upstream_account(stall_after=DEADLINE - 0.15)
    provider = accounts.provider_for(account)
    error, took = timed(lambda: provider.retrieve(BATCH_ID))
    assert isinstance(error, UpstreamTimeout), error
    assert took < DEADLINE + SLACK
