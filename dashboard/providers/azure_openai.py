"""Azure OpenAI batches: OpenAI's Batch API and Files API on an Azure resource's endpoint.

The wire is OpenAI's (openai.py parses it); this module says only what differs: where an account's
API is (its endpoint, the v1 route or the dated GA route with `api-version` on every request), how
it authenticates (the `api-key` header, or an Entra ID bearer token), that a batch past its 24 hours
is not expired (Azure's own words: "we do not expire the jobs that take longer", so `expires_at` is
no deadline), and that results may sit in blob storage (`output_blob`, `error_blob`) instead of files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from . import openai
from .base import AccountSpec, Batch, Connection
from .errors import Secrets

NAME = "azure-openai"  # in account keys, the store and URLs
LABEL = "Azure OpenAI"  # shown to operators
DEFAULT_BASE_URL = ""  # none: every Azure resource has an endpoint of its own
SIMULATOR_PATH = "/azure-openai/openai/v1"  # where the embedded simulator speaks this API (the v1 route)
SIMULATOR_KEYS = {"ops": "azure-sim-ops", "research": "azure-sim-research"}  # its demo accounts (v1 route)
SIMULATOR_OPTIONS: dict[str, dict[str, str]] = {}
# Accounts-file fields: the resource's endpoint, the dated api-version (the GA route; the v1 route
# without it) and `auth` "bearer" when the secret is an Entra ID token rather than an API key.
ACCOUNT_OPTIONS = ("endpoint", "api_version", "auth")
KEY_IS_OPTIONAL = False
REQUEST_ID_HEADER = "apim-request-id"  # Azure API Management's id of the request
BEARER = "bearer"
# A dated api-version (2024-10-21, 2025-04-01-preview) speaks the GA route {endpoint}/openai; any
# other (none, "preview", "latest") the v1 route {endpoint}/openai/v1, as Azure's docs pair them.
DATED_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
# The same wire: the same status words, counts, timestamps, result files and result lines.
STATUSES, ENDED, CANCELABLE, ENDED_BADLY = openai.STATUSES, openai.ENDED, openai.CANCELABLE, openai.ENDED_BADLY
CANCELED = openai.CANCELED
COUNTS_ARE_FINAL_ONLY, TIMESTAMPS = openai.COUNTS_ARE_FINAL_ONLY, openai.TIMESTAMPS
MAX_PAGE_LIMIT, BATCH_ID = openai.MAX_PAGE_LIMIT, openai.BATCH_ID
RESULT_SOURCES, DEFAULT_RESULT_SOURCE = openai.RESULT_SOURCES, openai.DEFAULT_RESULT_SOURCE
LINES_NAME_SOURCE, parse_result_line = openai.LINES_NAME_SOURCE, openai.parse_result_line
counts_at_cancel, after_cancel = openai.counts_at_cancel, openai.after_cancel
# Shown on the detail page: OpenAI's, and where a batch that writes to blob storage reads and puts its files.
DETAIL_FIELDS = (*openai.DETAIL_FIELDS, "input_blob", "output_blob", "error_blob")


def base_url_for(options: Mapping[str, str]) -> str:
    """The API's address from the resource's endpoint (ValueError without one, as the SDK's)."""
    endpoint = (options.get("endpoint") or "").rstrip("/")
    if not endpoint:
        raise ValueError(f"An {LABEL} account needs its resource's endpoint (AZURE_OPENAI_ENDPOINT or endpoint).")
    if not endpoint.startswith(("https://", "http://")):
        raise ValueError(f"An {LABEL} endpoint is a URL, e.g. https://my-resource.openai.azure.com.")
    route = "/openai" if DATED_VERSION.fullmatch(options.get("api_version") or "") else "/openai/v1"
    return endpoint + route


def from_environment(environ: Mapping[str, str]) -> list[AccountSpec]:
    """AZURE_OPENAI_API_KEY (or AZURE_OPENAI_AD_TOKEN, which the SDK prefers), AZURE_OPENAI_ENDPOINT,
    OPENAI_API_VERSION and AZURE_OPENAI_ACCOUNT_NAME: one account, as openai.AzureOpenAI reads them."""
    token, api_key = environ.get("AZURE_OPENAI_AD_TOKEN"), environ.get("AZURE_OPENAI_API_KEY")
    if not (token or api_key):
        return []
    options = {
        name: value
        for name, value in (
            ("endpoint", environ.get("AZURE_OPENAI_ENDPOINT", "")),
            ("api_version", environ.get("OPENAI_API_VERSION", "")),
            ("auth", BEARER if token else ""),
        )
        if value
    }
    return [
        AccountSpec(
            name=environ.get("AZURE_OPENAI_ACCOUNT_NAME") or "default",
            base_url=base_url_for(options),
            api_key=token or api_key or "",
            options=options,
        )
    ]


def connect(account: AccountSpec) -> Connection:
    """The key in `api-key` (an Entra ID token as a bearer token); the api-version, if any, on every request."""
    if account.options.get("auth") == BEARER:
        headers = {"Authorization": f"Bearer {account.api_key}"}
    else:
        headers = {"api-key": account.api_key}
    version = account.options.get("api_version")
    return Connection(headers=headers, params={"api-version": version} if version else {}, secrets=(account.api_key,))


def parse_batch(data: Any, *, account: str, secrets: Secrets = ()) -> Batch:
    """OpenAI's batch, named as Azure's, without a deadline: Azure lets a batch run past `expires_at`
    (it stays among the timestamps, as sent)."""
    batch = openai.parse_batch(data, account=account, secrets=secrets, provider=NAME, label=LABEL)
    return replace(batch, expires_at=None)


class AzureOpenAIProvider(openai.OpenAIProvider):
    """OpenAI's calls on the account's route. Results are read through the Files API when the batch names
    file ids; a batch that wrote to blob storage names none (its output_blob and error_blob are shown)."""

    name = NAME
    label = LABEL
    request_id_header = REQUEST_ID_HEADER
    parse = staticmethod(parse_batch)


API = AzureOpenAIProvider
