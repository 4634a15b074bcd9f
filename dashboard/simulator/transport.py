"""The dashboard's way to the embedded simulator when it runs in the same server: in process.

A server that calls itself over HTTP can deadlock: with sync workers, every worker may be waiting
for an answer that only another (equally waiting) worker could give. This transport instead hands
each request to the simulator's own small thread pool, through httpx's WSGI interface, so the
simulator answers with the same bytes, status codes and headers as over a socket, while the caller
only ever waits on threads that never wait on it. Running on its own threads also keeps Django's
per-request signals (which close database connections) away from the caller's connection.

Timeouts still apply: no answer, or no next chunk, within the read timeout raises
`httpx.ReadTimeout`, as a socket would.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
from django.conf import settings

POOL_THREADS = 32
QUEUED_CHUNKS = 16
_END = object()


class _Abandoned(Exception):
    """The caller stopped reading (closed, or timed out): stop producing."""


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="embedded-simulator")


@functools.cache
def _application():
    from django.core.wsgi import get_wsgi_application

    handler = get_wsgi_application()
    proxy_header = settings.SECURE_PROXY_SSL_HEADER

    def application(environ, start_response):
        # An https URL is all the "TLS" an in-process call needs to pass SecurityMiddleware.
        if proxy_header:
            environ[proxy_header[0]] = proxy_header[1]
        return handler(environ, start_response)

    return application


class _Exchange:
    """One request's hand-off between the simulator's thread (producer) and the caller."""

    def __init__(self, read_timeout: float | None) -> None:
        self.items: queue.Queue = queue.Queue(maxsize=QUEUED_CHUNKS)
        self.abandoned = threading.Event()
        self.read_timeout = read_timeout

    def put(self, item) -> None:
        while True:
            if self.abandoned.is_set():
                raise _Abandoned
            try:
                self.items.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def get(self, request: httpx.Request):
        try:
            item = self.items.get(timeout=self.read_timeout)
        except queue.Empty:
            self.abandoned.set()
            raise httpx.ReadTimeout("The embedded simulator did not answer in time.", request=request) from None
        if isinstance(item, BaseException):
            self.abandoned.set()
            raise httpx.RemoteProtocolError(f"The embedded simulator failed: {item!r}", request=request)
        return item


def _serve(request: httpx.Request, exchange: _Exchange) -> None:
    if exchange.abandoned.is_set():
        return
    response = None
    try:
        response = httpx.WSGITransport(app=_application()).handle_request(request)
        exchange.put((response.status_code, response.headers.raw))
        for chunk in response.stream:
            exchange.put(chunk)
        exchange.put(_END)
    except _Abandoned:
        pass
    except Exception as error:  # handed to the caller as a transport error
        try:
            exchange.put(error)
        except _Abandoned:
            pass
    finally:
        if response is not None:
            response.close()  # Django's request_finished, on this thread


class _Body(httpx.SyncByteStream):
    def __init__(self, exchange: _Exchange, request: httpx.Request) -> None:
        self.exchange = exchange
        self.request = request

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self.exchange.get(self.request)
            if item is _END:
                return
            yield item

    def close(self) -> None:
        self.exchange.abandoned.set()


class EmbeddedSimulatorTransport(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        timeout = request.extensions.get("timeout") or {}
        exchange = _Exchange(read_timeout=timeout.get("read"))
        _pool().submit(_serve, request, exchange)
        status_code, headers = exchange.get(request)
        return httpx.Response(status_code, headers=headers, stream=_Body(exchange, request), request=request)
