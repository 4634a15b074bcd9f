"""Turning an upstream HTTP answer into data or a ProviderError, for both providers."""

from __future__ import annotations

from typing import Any

import httpx

from .base import BadResponse, NotFound, Overloaded, RateLimited, UpstreamError, json_body, parse_retry_after

MAX_MESSAGE = 300


CREDENTIAL_HEADERS = ("x-api-key", "authorization")


def scrub_credentials(text: str, response: httpx.Response) -> str:
    """An upstream may echo the key it was sent; never pass that on."""
    try:
        sent = response.request.headers
    except RuntimeError:  # a response built by hand has no request
        return text
    for name in CREDENTIAL_HEADERS:
        value = sent.get(name, "")
        secret = value.split(" ", 1)[-1].strip()
        if len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    return text


def checked_json(response: httpx.Response, *, provider_label: str, request_id_header: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; raises the matching ProviderError otherwise."""
    request_id = response.headers.get(request_id_header)
    body = json_body(response)
    if response.is_success:
        if not isinstance(body, dict):
            raise BadResponse(
                f"{provider_label} answered HTTP {response.status_code} with a body that is not a JSON object.",
                status=response.status_code,
                request_id=request_id,
            )
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        kind = str(error.get("type") or error.get("code") or "")
        detail = str(error.get("message") or "")[:MAX_MESSAGE]
    else:
        kind, detail = "", "the error body is not JSON"
    status = response.status_code
    message = scrub_credentials(f"{provider_label} HTTP {status}{f' {kind}' if kind else ''}: {detail}", response)
    options = dict(status=status, kind=kind, request_id=request_id)
    if status == 404:
        raise NotFound(message, **options)
    if status == 429:
        retry_after = parse_retry_after(response)
        suffix = f" (retry after {retry_after:g} s)" if retry_after is not None else ""
        raise RateLimited(message + suffix, retry_after=retry_after, **options)
    if status in (503, 529) or kind == "overloaded_error":
        raise Overloaded(message, **options)
    raise UpstreamError(message, **options)
