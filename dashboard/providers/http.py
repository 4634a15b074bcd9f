"""The HTTP plumbing every provider module shares; each subclass says only what differs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from .base import BadResponse, Batch, Page, UpstreamError, refused_cancel
from .errors import Secrets, UnreadableBatch, checked_json
from .transport import DEFAULT_DEADLINES, Deadlines, send, stream


class BatchAPI:
    label: str  # shown to operators, e.g. "Anthropic"
    request_id_header: str
    batch_id: re.Pattern[str]
    batches_path: str  # e.g. "/v1/messages/batches": where each batch's own path starts
    after_param: str = "after"  # the list cursor's query parameter
    pages_by_id = True  # the list reads on after a batch id (False: after the provider's page token)
    answers_cancel_with_batch = True  # the cancel's answer is the batch (False: retrieve it after)
    parse: Callable[..., Batch]  # the module's parse_batch(data, account=..., secrets=...)
    cancel_suffix = "/cancel"  # POSTed to after the batch's own path

    @property
    def list_path(self) -> str:
        """Where the list is read (Bedrock lists at a path of its own); by default `batches_path`."""
        return self.batches_path

    def __init__(
        self, client: httpx.Client, *, account: str, secrets: Secrets = (), deadlines: Deadlines = DEFAULT_DEADLINES
    ):
        """`secrets`: the keys no answer may show (accounts passes every configured one)."""
        self.client = client
        self.account = account
        self.secrets = secrets
        self.deadlines = deadlines

    def is_valid_id(self, batch_id: str) -> bool:
        return bool(self.batch_id.fullmatch(batch_id))

    def results_elsewhere(self, batch: Batch) -> str:
        """Where the batch's results are when this dashboard does not read them (Bedrock's S3), in an
        operator's words; "" when it reads them through `result_sources`."""
        return ""

    def _json(self, method: str, path: str, **kwargs) -> dict[str, Any]:
        response = send(
            self.client, method, path, label=self.label, account=self.account, deadline=self.deadlines.call, **kwargs
        )
        return self._checked(response)

    def _checked(self, response: httpx.Response) -> dict[str, Any]:
        return checked_json(
            response, provider_label=self.label, request_id_header=self.request_id_header, secrets=self.secrets
        )

    @contextmanager
    def _stream(self, path: str) -> Iterator[httpx.Response]:
        """A streaming GET with its status checked; the body is left unread for the caller."""
        with stream(
            self.client,
            "GET",
            path,
            label=self.label,
            account=self.account,
            deadline=self.deadlines.download,
            error_deadline=self.deadlines.call,
        ) as response:
            if not response.is_success:
                response.read()
                self._checked(response)
            yield response

    def _batch_path(self, batch_id: str, suffix: str = "") -> str:
        if not self.is_valid_id(batch_id):
            raise ValueError(f"not a {self.label} batch id: {batch_id!r}")
        return f"{self.batches_path}/{batch_id}{suffix}"

    def _batch(self, data: Any) -> Batch:
        return type(self).parse(data, account=self.account, secrets=self.secrets)

    def list_params(self, *, limit: int, after: str | None) -> dict[str, Any]:
        """The list request's query parameters (this default: `limit` and the id to read on after)."""
        return {"limit": limit, **({self.after_param: after} if after else {})}

    def list_answer(self, body: dict[str, Any]) -> tuple[Any, bool, str | None]:
        """A list answer as (its batches, whether there are more, the cursor of the next page).

        This default reads `data`, `has_more` and `last_id` (or the last readable id) when the
        batches are paged by id; a provider paged by token returns its token as the cursor."""
        data = body.get("data")
        last_id = body.get("last_id")
        if not (isinstance(last_id, str) and self.is_valid_id(last_id)):
            last_id = None
        return data, body.get("has_more") is True, last_id

    def list_page(self, *, limit: int, after: str | None = None) -> Page:
        """One page of batches. A batch we cannot read does not hide the others: it is left out
        and listed in `Page.unreadable` as (its id, or "" if that is unreadable too; our message).

        `has_more` is only true with a cursor to read on from."""
        body = self._json("GET", self.list_path, params=self.list_params(limit=limit, after=after))
        data, has_more, cursor = self.list_answer(body)
        if not isinstance(data, list):
            raise BadResponse(f"{self.label} sent a batch list without a list of batches.")
        batches: list[Batch] = []
        unreadable: list[tuple[str, str]] = []
        ids: list[str] = []  # every readable id, in order, whether its batch was readable or not
        for item in data:
            try:
                batch = self._batch(item)
            except UnreadableBatch as error:
                unreadable.append((error.batch_id, error.message))
                ids.extend([error.batch_id] if error.batch_id else [])
            else:
                batches.append(batch)
                ids.append(batch.id)
        if cursor is None and self.pages_by_id and ids:
            cursor = ids[-1]
        return Page(
            batches=batches,
            has_more=has_more and cursor is not None,
            next_cursor=cursor if has_more else None,
            unreadable=tuple(unreadable),
        )

    def _the_batch(self, batch_id: str, data: Any) -> Batch:
        """The answer about `batch_id`, which must be that batch and no other."""
        batch = self._batch(data)
        if batch.id != batch_id:
            raise BadResponse(
                f"{self.label} answered a request about batch {batch_id} with another batch ({batch.id}); "
                "nothing of that answer is shown or stored."
            )
        return batch

    def retrieve(self, batch_id: str) -> Batch:
        return self._the_batch(batch_id, self._json("GET", self._batch_path(batch_id)))

    def cancel(self, batch_id: str) -> Batch:
        try:
            answer = self._json("POST", self._batch_path(batch_id, self.cancel_suffix))
            return self._the_batch(batch_id, answer) if self.answers_cancel_with_batch else self.retrieve(batch_id)
        except UpstreamError as error:
            # A refusal (each subclass says with which status) means ended, or not cancelable yet: ask the batch.
            raise refused_cancel(error, self.retrieve, batch_id) from None
