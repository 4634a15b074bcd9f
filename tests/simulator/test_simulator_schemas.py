"""Simulator responses, fetched as raw JSON over real HTTP, validated against the public OpenAPI specs.

The specs are copies of public files kept in tests/fixtures/specs (their origin is in SOURCES.md there):

- Anthropic: `anthropic-openapi.json` (OpenAPI 3.1, paths include /v1).
- OpenAI: `openai-openapi.yaml` (OpenAPI 3.1, 3 MB; parsed once per test process).

Each whole spec document is registered as one `referencing` resource, so the `#/components/schemas/...`
references inside a component resolve exactly as they do in the spec. Components are validated with
jsonschema's Draft 2020-12 validator (the dialect of OpenAPI 3.1 schemas). Formats are checked too:
`date-time` (RFC 3339, Anthropic timestamps) and OpenAI's own `unixtime` (a non-negative integer).

Known conflict, relaxed narrowly and on purpose
-----------------------------------------------
OpenAI's spec types the optional fields of `Batch` (`output_file_id`, `error_file_id`, the `*_at`
timestamps, `errors`, `model`, `usage`, ...) as non-nullable, and `ListBatchesResponse.first_id`/`last_id`
likewise. The real API returns them as JSON `null` when unset (the spec's own `Batch` example has
`"failed_at": null`; the API reference shows `"output_file_id": null`, `"errors": null`), and the official
`openai` SDK types them `Optional[...]`. The simulator follows the real API. So for those two schemas
only, a property that is NOT in the schema's `required` list also accepts null: its schema becomes
`{"anyOf": [original, {"type": "null"}]}`. Required properties stay strict, nested schemas stay strict, and
every other schema (`Error`, `ErrorResponse`, all of Anthropic's) is used as published.
`test_openai_null_relaxation_is_narrow` proves the relaxation cannot hide a wrong status, id or timestamp.

Undocumented keys
-----------------
Neither spec closes its objects (no `additionalProperties: false`), so a misspelt or invented key would
pass the checks above. `test_simulator_sends_no_undocumented_keys` validates against "closed" copies of
the schemas reachable from the ones tested (none of them uses `allOf`, so closing each object is sound).
"""

from __future__ import annotations

import copy
import json
import pickle
import re
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.services import made_once_per_run

SPECS = Path(__file__).parent.parent / "fixtures" / "specs"
ANTHROPIC_SPEC = "urn:spec:anthropic"
OPENAI_SPEC = "urn:spec:openai"
# The OpenAI spec with only `Batch` and `ListBatchesResponse` relaxed (see the module docstring).
OPENAI_SPEC_NULLABLE_OPTIONALS = "urn:spec:openai:batch-optionals-nullable"
RELAXED_OPENAI_SCHEMAS = ("Batch", "ListBatchesResponse")

ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-sim-ops", "anthropic-version": "2023-06-01"}
ANTHROPIC_RESEARCH_HEADERS = {"x-api-key": "sk-ant-sim-research", "anthropic-version": "2023-06-01"}
OPENAI_HEADERS = {"Authorization": "Bearer sk-sim-ops"}
OPENAI_RESEARCH_HEADERS = {"Authorization": "Bearer sk-sim-research"}
A_BATCHES = "/anthropic/v1/messages/batches"
O_BATCHES = "/openai/v1/batches"
O_FILES = "/openai/v1/files"

ANTHROPIC_NULLABLE_KEYS = ("archived_at", "cancel_initiated_at", "ended_at", "results_url")


# --- specs and validators ------------------------------------------------------------------


@cache
def anthropic_spec() -> dict:
    return json.loads((SPECS / "anthropic-openapi.json").read_text(encoding="utf-8"))


@cache
def openai_spec() -> dict:
    """The parsed 3 MB YAML, cached for the whole test process. Parsing it takes 1.2 to 1.8 CPU-seconds,
    so one xdist worker parses it and pickles it for the others (the YAML has dates: not JSON);
    unpickling takes 0.05 s."""

    def parse(into: Path) -> None:
        with open(SPECS / "openai-openapi.yaml", "rb") as handle:
            into.write_bytes(pickle.dumps(yaml.load(handle, Loader=yaml.CSafeLoader)))

    return pickle.loads(made_once_per_run("openai-openapi.pickle", parse).read_bytes())  # noqa: S301 (made above)


def nullable_optionals(schema: dict) -> dict:
    """A copy of an object schema whose properties outside `required` also accept null."""
    relaxed = copy.deepcopy(schema)
    required = set(relaxed.get("required", ()))
    for name, prop in relaxed["properties"].items():
        if name not in required:
            relaxed["properties"][name] = {"anyOf": [prop, {"type": "null"}]}
    return relaxed


def openai_spec_with_nullable_optionals(spec: dict) -> dict:
    """The whole OpenAI document with only the relaxed schemas swapped in.

    Being a whole document, `ListBatchesResponse.data.items` (`#/components/schemas/Batch`) resolves
    to the relaxed `Batch`, while `BatchRequestCounts`, `BatchError`, `Metadata` stay as published.
    """
    schemas = spec["components"]["schemas"]
    relaxed = {name: nullable_optionals(schemas[name]) for name in RELAXED_OPENAI_SCHEMAS}
    return {**spec, "components": {**spec["components"], "schemas": {**schemas, **relaxed}}}


DATA_KEYWORDS = frozenset({"example", "examples", "default", "const", "enum", "x-oaiMeta"})


def closed(schema: object) -> object:
    """A copy in which every object schema with `properties` and no `additionalProperties` is closed."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copied = {}
    for key, value in schema.items():
        if key in DATA_KEYWORDS:
            copied[key] = value
        elif key in ("properties", "patternProperties", "$defs") and isinstance(value, dict):
            copied[key] = {name: closed(sub) for name, sub in value.items()}  # names, not keywords
        else:
            copied[key] = closed(value)
    if isinstance(schema.get("properties"), dict) and "additionalProperties" not in schema:
        copied["additionalProperties"] = False
    return copied


def reachable(spec: dict, names: tuple[str, ...]) -> set[str]:
    """Component schemas reachable from `names` through local `$ref`s."""
    schemas, found, todo = spec["components"]["schemas"], set(), list(names)

    def refs(node: object):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/components/schemas/"):
                yield node["$ref"].rsplit("/", 1)[-1]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(refs(schemas[name]))
    return found


def with_closed_schemas(spec: dict, names: tuple[str, ...]) -> dict:
    schemas = spec["components"]["schemas"]
    swapped = {name: closed(schemas[name]) for name in reachable(spec, names)}
    return {**spec, "components": {**spec["components"], "schemas": {**schemas, **swapped}}}


ANTHROPIC_TESTED = (
    "MessageBatch",
    "ListResponse_MessageBatch_",
    "ErrorResponse",
    "MessageBatchIndividualResponse",
    "DeleteMessageBatchResponse",
)
OPENAI_TESTED = ("Batch", "ListBatchesResponse", "Error", "ErrorResponse")
ANTHROPIC_SPEC_CLOSED = "urn:spec:anthropic:closed"
OPENAI_SPEC_CLOSED = "urn:spec:openai:batch-optionals-nullable:closed"

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def is_rfc3339(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if not RFC3339.match(instance):
        return False
    datetime.fromisoformat(instance.replace("z", "Z"))
    return True


@FORMATS.checks("unixtime")
def is_unixtime(instance: object) -> bool:
    return not isinstance(instance, int) or instance >= 0


class Schemas:
    """Validators for `#/components/schemas/<name>` of each spec, over one shared registry."""

    def __init__(self) -> None:
        self.registry = Registry().with_resources(
            [
                (ANTHROPIC_SPEC, DRAFT202012.create_resource(anthropic_spec())),
                (OPENAI_SPEC, DRAFT202012.create_resource(openai_spec())),
                (
                    OPENAI_SPEC_NULLABLE_OPTIONALS,
                    DRAFT202012.create_resource(openai_spec_with_nullable_optionals(openai_spec())),
                ),
                (
                    ANTHROPIC_SPEC_CLOSED,
                    DRAFT202012.create_resource(with_closed_schemas(anthropic_spec(), ANTHROPIC_TESTED)),
                ),
                (
                    OPENAI_SPEC_CLOSED,
                    DRAFT202012.create_resource(
                        with_closed_schemas(openai_spec_with_nullable_optionals(openai_spec()), OPENAI_TESTED)
                    ),
                ),
            ]
        )
        self._validators: dict[tuple[str, str], Draft202012Validator] = {}

    def validator(self, spec: str, name: str) -> Draft202012Validator:
        key = (spec, name)
        if key not in self._validators:
            schema = {"$ref": f"{spec}#/components/schemas/{name}"}
            self._validators[key] = Draft202012Validator(schema, registry=self.registry, format_checker=FORMATS)
        return self._validators[key]

    def anthropic(self, name: str) -> Draft202012Validator:
        return self.validator(ANTHROPIC_SPEC, name)

    def openai(self, name: str) -> Draft202012Validator:
        """As published, except `Batch` and `ListBatchesResponse` (optional keys may be null)."""
        spec = OPENAI_SPEC_NULLABLE_OPTIONALS if name in RELAXED_OPENAI_SCHEMAS else OPENAI_SPEC
        return self.validator(spec, name)

    def openai_as_published(self, name: str) -> Draft202012Validator:
        return self.validator(OPENAI_SPEC, name)

    def closed(self, provider: str, name: str) -> Draft202012Validator:
        """The schema with no undocumented keys allowed anywhere (for OpenAI, on top of the relaxation)."""
        return self.validator(ANTHROPIC_SPEC_CLOSED if provider == "anthropic" else OPENAI_SPEC_CLOSED, name)


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    return Schemas()


def problems(validator: Draft202012Validator, instance: object) -> list[str]:
    found = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(map(str, error.absolute_path)) or "(root)"
        line = f"{where}: {error.message}"
        for sub in error.context or ():  # which branch of a oneOf/anyOf failed, and why
            sub_where = "/".join(map(str, sub.absolute_path)) or "(root)"
            line += f"\n    - {sub_where}: {sub.message}"
        found.append(line)
    return found


def assert_valid(validator: Draft202012Validator, instance: object, what: str) -> None:
    found = problems(validator, instance)
    name = validator.schema["$ref"].rsplit("/", 1)[-1]
    assert not found, (
        f"{what} does not match {name}:\n" + "\n".join(found) + "\n" + json.dumps(instance, indent=1)[:3000]
    )


# --- HTTP helpers --------------------------------------------------------------------------


@pytest.fixture
def http(simulator):
    with httpx.Client(base_url=simulator, timeout=20) as client:
        yield client


def json_of(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:500]}"
    )
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def poll(
    fetch: Callable[[], dict], until: Callable[[dict], bool], *, timeout: float = 20, what: str = ""
) -> list[dict]:
    """Every body fetched, oldest first, up to and including the first one `until` accepts."""
    deadline = time.monotonic() + timeout
    seen = [fetch()]
    while not until(seen[-1]):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}; last body: {json.dumps(seen[-1])[:800]}")
        time.sleep(0.1)
        seen.append(fetch())
    return seen


def message_requests(count: int) -> list[dict]:
    return [
        {
            "custom_id": f"req-{i:03d}",
            "params": {
                "model": "claude-sonnet-4-5",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": f"Question {i}"}],
            },
        }
        for i in range(count)
    ]


def create_anthropic(
    http: httpx.Client, count: int = 3, *, processing_seconds: float | None = None, headers: dict | None = None
) -> dict:
    extra = {} if processing_seconds is None else {"x-sim-processing-seconds": str(processing_seconds)}
    response = http.post(
        A_BATCHES, headers={**(headers or ANTHROPIC_HEADERS), **extra}, json={"requests": message_requests(count)}
    )
    return json_of(response)


def get_anthropic(http: httpx.Client, batch_id: str) -> dict:
    return json_of(http.get(f"{A_BATCHES}/{batch_id}", headers=ANTHROPIC_HEADERS))


def anthropic_results(http: httpx.Client, batch: dict) -> list[dict]:
    response = http.get(batch["results_url"], headers=ANTHROPIC_HEADERS)
    assert response.status_code == 200, response.text[:500]
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def openai_input(count: int, *, url: str = "/v1/chat/completions") -> bytes:
    lines = [
        json.dumps(
            {
                "custom_id": f"req-{i:03d}",
                "method": "POST",
                "url": url,
                "body": {
                    "model": "gpt-4.1-mini",
                    "messages": [{"role": "user", "content": f"Question {i}"}],
                    "max_tokens": 64,
                },
            }
        )
        for i in range(count)
    ]
    return ("\n".join(lines) + "\n").encode()


def upload_openai(http: httpx.Client, content: bytes, headers: dict | None = None) -> str:
    response = http.post(
        O_FILES,
        headers=headers or OPENAI_HEADERS,
        data={"purpose": "batch"},
        files={"file": ("input.jsonl", content, "application/jsonl")},
    )
    return json_of(response)["id"]


def create_openai(
    http: httpx.Client,
    count: int = 3,
    *,
    url: str = "/v1/chat/completions",
    processing_seconds: float | None = None,
    metadata: dict | None = None,
) -> dict:
    file_id = upload_openai(http, openai_input(count, url=url))
    extra = {} if processing_seconds is None else {"x-sim-processing-seconds": str(processing_seconds)}
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    if metadata is not None:
        body["metadata"] = metadata
    return json_of(http.post(O_BATCHES, headers={**OPENAI_HEADERS, **extra}, json=body))


def get_openai(http: httpx.Client, batch_id: str) -> dict:
    return json_of(http.get(f"{O_BATCHES}/{batch_id}", headers=OPENAI_HEADERS))


# --- Anthropic -----------------------------------------------------------------------------


def test_anthropic_in_progress_and_canceling_batches_match_message_batch(http, schemas):
    message_batch = schemas.anthropic("MessageBatch")
    created = create_anthropic(http, processing_seconds=60)
    assert created["processing_status"] == "in_progress"
    assert_valid(message_batch, created, "create response (in_progress)")
    assert_valid(message_batch, get_anthropic(http, created["id"]), "retrieve (in_progress)")

    canceling = json_of(http.post(f"{A_BATCHES}/{created['id']}/cancel", headers=ANTHROPIC_HEADERS))
    assert canceling["processing_status"] == "canceling"
    assert_valid(message_batch, canceling, "cancel response (canceling)")
    again = get_anthropic(http, created["id"])
    assert again["processing_status"] == "canceling"  # default cancel grace is 8 s
    assert_valid(message_batch, again, "retrieve (canceling)")


def test_anthropic_ended_batch_and_its_result_lines_match_the_spec(http, schemas, fast_simulator):
    # 100 requests with these percents: (rank*37 + seed) % 100 covers every slot once, so exactly
    # 10 lines are errored and 5 expired; the other 85 succeeded.
    fast_simulator.SIMULATOR_ERROR_PERCENT = 10
    fast_simulator.SIMULATOR_EXPIRE_PERCENT = 5
    created = create_anthropic(http, 100)
    seen = poll(lambda: get_anthropic(http, created["id"]), lambda b: b["processing_status"] == "ended", what="ended")
    for body in seen:
        assert_valid(schemas.anthropic("MessageBatch"), body, f"retrieve ({body['processing_status']})")
    ended = seen[-1]

    lines = anthropic_results(http, ended)
    individual = schemas.anthropic("MessageBatchIndividualResponse")
    for line in lines:
        assert_valid(individual, line, f"results line {line.get('custom_id')} ({line.get('result', {}).get('type')})")
    kinds = Counter(line["result"]["type"] for line in lines)
    assert kinds == {"succeeded": 85, "errored": 10, "expired": 5}
    assert {k: v for k, v in ended["request_counts"].items() if v} == dict(kinds)


def test_anthropic_canceled_result_lines_match_the_spec(http, schemas, fast_simulator):
    created = create_anthropic(http, 5, processing_seconds=60)
    canceling = json_of(http.post(f"{A_BATCHES}/{created['id']}/cancel", headers=ANTHROPIC_HEADERS))
    assert canceling["processing_status"] == "canceling"
    ended = poll(lambda: get_anthropic(http, created["id"]), lambda b: b["processing_status"] == "ended", what="ended")[
        -1
    ]
    assert_valid(schemas.anthropic("MessageBatch"), ended, "retrieve (ended by cancel)")
    assert ended["request_counts"]["canceled"] == 5

    lines = anthropic_results(http, ended)
    assert [line["result"]["type"] for line in lines] == ["canceled"] * 5
    for line in lines:
        assert_valid(schemas.anthropic("MessageBatchIndividualResponse"), line, f"results line {line['custom_id']}")


def test_anthropic_list_pages_match_list_response(http, schemas):
    list_response = schemas.anthropic("ListResponse_MessageBatch_")
    ids = [create_anthropic(http, processing_seconds=60)["id"] for _ in range(3)]
    json_of(http.post(f"{A_BATCHES}/{ids[0]}/cancel", headers=ANTHROPIC_HEADERS))

    full = json_of(http.get(A_BATCHES, headers=ANTHROPIC_HEADERS))
    assert_valid(list_response, full, "list")
    assert [b["id"] for b in full["data"]] == ids[::-1]
    first = json_of(http.get(A_BATCHES, headers=ANTHROPIC_HEADERS, params={"limit": 1}))
    assert first["has_more"] is True
    assert_valid(list_response, first, "list limit=1")
    after = json_of(http.get(A_BATCHES, headers=ANTHROPIC_HEADERS, params={"limit": 1, "after_id": first["last_id"]}))
    assert_valid(list_response, after, "list after_id")
    before = json_of(http.get(A_BATCHES, headers=ANTHROPIC_HEADERS, params={"before_id": after["first_id"]}))
    assert_valid(list_response, before, "list before_id")

    empty = json_of(http.get(A_BATCHES, headers=ANTHROPIC_RESEARCH_HEADERS))
    assert empty == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    assert_valid(list_response, empty, "empty list")


def test_anthropic_delete_response_matches_the_spec(http, schemas, fast_simulator):
    created = create_anthropic(http, 2, processing_seconds=0)
    poll(lambda: get_anthropic(http, created["id"]), lambda b: b["processing_status"] == "ended", what="ended")
    deleted = json_of(http.delete(f"{A_BATCHES}/{created['id']}", headers=ANTHROPIC_HEADERS))
    assert deleted == {"id": created["id"], "type": "message_batch_deleted"}
    assert_valid(schemas.anthropic("DeleteMessageBatchResponse"), deleted, "delete response")
    gone = http.get(f"{A_BATCHES}/{created['id']}", headers=ANTHROPIC_HEADERS)
    assert_valid(schemas.anthropic("ErrorResponse"), json_of(gone, 404), "retrieve after delete")


def test_anthropic_message_batch_always_has_every_nullable_key(http, fast_simulator):
    """The spec lists the nullable keys as required: they are sent as null, never left out."""
    slow = create_anthropic(http, processing_seconds=60)
    assert {key: slow[key] for key in ANTHROPIC_NULLABLE_KEYS} == dict.fromkeys(ANTHROPIC_NULLABLE_KEYS)
    canceling = json_of(http.post(f"{A_BATCHES}/{slow['id']}/cancel", headers=ANTHROPIC_HEADERS))
    assert isinstance(canceling["cancel_initiated_at"], str)
    assert {key: canceling[key] for key in ("archived_at", "ended_at", "results_url")} == dict.fromkeys(
        ("archived_at", "ended_at", "results_url")
    )

    quick = create_anthropic(http, processing_seconds=0)
    ended = poll(lambda: get_anthropic(http, quick["id"]), lambda b: b["processing_status"] == "ended", what="ended")[
        -1
    ]
    assert ended["archived_at"] is None and ended["cancel_initiated_at"] is None
    assert isinstance(ended["ended_at"], str) and isinstance(ended["results_url"], str)

    listed = json_of(http.get(A_BATCHES, headers=ANTHROPIC_HEADERS))["data"]
    assert len(listed) == 2
    for body in (slow, canceling, ended, *listed):
        assert set(ANTHROPIC_NULLABLE_KEYS) <= body.keys()


def anthropic_ended_batch_id(http: httpx.Client) -> str:
    batch = create_anthropic(http, 1, processing_seconds=0)
    poll(lambda: get_anthropic(http, batch["id"]), lambda b: b["processing_status"] == "ended", what="ended")
    return batch["id"]


ANTHROPIC_ERRORS = {
    "401-no-key": (
        401,
        "authentication_error",
        lambda http: http.get(A_BATCHES, headers={"anthropic-version": "2023-06-01"}),
    ),
    "401-bad-key": (
        401,
        "authentication_error",
        lambda http: http.get(A_BATCHES, headers={**ANTHROPIC_HEADERS, "x-api-key": "sk-ant-nope"}),
    ),
    "404-unknown-batch": (
        404,
        "not_found_error",
        lambda http: http.get(f"{A_BATCHES}/msgbatch_01nope", headers=ANTHROPIC_HEADERS),
    ),
    "404-unknown-route": (
        404,
        "not_found_error",
        lambda http: http.get("/anthropic/v1/nothing-here", headers=ANTHROPIC_HEADERS),
    ),
    "400-no-requests": (
        400,
        "invalid_request_error",
        lambda http: http.post(A_BATCHES, headers=ANTHROPIC_HEADERS, json={}),
    ),
    "400-bad-json": (
        400,
        "invalid_request_error",
        lambda http: http.post(
            A_BATCHES, headers={**ANTHROPIC_HEADERS, "content-type": "application/json"}, content=b"{nope"
        ),
    ),
    "400-no-version": (
        400,
        "invalid_request_error",
        lambda http: http.get(A_BATCHES, headers={"x-api-key": "sk-ant-sim-ops"}),
    ),
    "400-results-not-ready": (
        400,
        "invalid_request_error",
        lambda http: http.get(
            f"{A_BATCHES}/{create_anthropic(http, processing_seconds=60)['id']}/results", headers=ANTHROPIC_HEADERS
        ),
    ),
    "400-cancel-ended": (
        400,
        "invalid_request_error",
        lambda http: http.post(f"{A_BATCHES}/{anthropic_ended_batch_id(http)}/cancel", headers=ANTHROPIC_HEADERS),
    ),
    "405-method": (405, "invalid_request_error", lambda http: http.put(A_BATCHES, headers=ANTHROPIC_HEADERS)),
    "429": (
        429,
        "rate_limit_error",
        lambda http: http.get(A_BATCHES, headers={**ANTHROPIC_HEADERS, "x-sim-fault": "429"}),
    ),
    "500": (500, "api_error", lambda http: http.get(A_BATCHES, headers={**ANTHROPIC_HEADERS, "x-sim-fault": "500"})),
    "529": (
        529,
        "overloaded_error",
        lambda http: http.post(
            A_BATCHES, headers={**ANTHROPIC_HEADERS, "x-sim-fault": "529"}, json={"requests": message_requests(1)}
        ),
    ),
}


@pytest.mark.parametrize("case", list(ANTHROPIC_ERRORS))
def test_anthropic_error_bodies_match_error_response(http, schemas, fast_simulator, case):
    status, kind, send = ANTHROPIC_ERRORS[case]
    body = json_of(send(http), status)
    assert_valid(schemas.anthropic("ErrorResponse"), body, f"{case} error body")
    assert body["error"]["type"] == kind


# --- OpenAI --------------------------------------------------------------------------------


def test_openai_batch_in_validating_in_progress_cancelling_cancelled_matches_batch(http, schemas, fast_simulator):
    batch_schema = schemas.openai("Batch")
    created = create_openai(http, 4, processing_seconds=60)
    assert created["status"] == "validating"
    assert_valid(batch_schema, created, "create response (validating)")

    seen = poll(lambda: get_openai(http, created["id"]), lambda b: b["status"] == "in_progress", what="in_progress")
    for body in seen:
        assert_valid(batch_schema, body, f"retrieve ({body['status']})")

    cancelling = json_of(http.post(f"{O_BATCHES}/{created['id']}/cancel", headers=OPENAI_HEADERS))
    assert cancelling["status"] == "cancelling"
    assert_valid(batch_schema, cancelling, "cancel response (cancelling)")
    seen = poll(lambda: get_openai(http, created["id"]), lambda b: b["status"] == "cancelled", what="cancelled")
    for body in seen:
        assert_valid(batch_schema, body, f"retrieve ({body['status']})")


def test_openai_batch_in_finalizing_and_completed_matches_batch(http, schemas, fast_simulator):
    fast_simulator.SIMULATOR_FINALIZING_SECONDS = 2.0  # long enough to be seen by polling
    fast_simulator.SIMULATOR_ERROR_PERCENT = 10
    # 100 requests: (rank*37 + seed) % 100 covers every slot once, so exactly 10 fail.
    created = create_openai(http, 100, processing_seconds=0.5, metadata={"job": "schema-check"})
    seen = poll(lambda: get_openai(http, created["id"]), lambda b: b["status"] == "completed", what="completed")
    for body in seen:
        assert_valid(schemas.openai("Batch"), body, f"retrieve ({body['status']})")
    assert "finalizing" in {body["status"] for body in seen}
    completed = seen[-1]
    assert isinstance(completed["output_file_id"], str) and isinstance(completed["error_file_id"], str)
    assert completed["request_counts"] == {"total": 100, "completed": 90, "failed": 10}


def test_openai_failed_batch_matches_batch(http, schemas, fast_simulator):
    created = create_openai(http, 3, url="/v1/embeddings")  # batch endpoint is /v1/chat/completions
    seen = poll(lambda: get_openai(http, created["id"]), lambda b: b["status"] == "failed", what="failed")
    for body in seen:
        assert_valid(schemas.openai("Batch"), body, f"retrieve ({body['status']})")
    failed = seen[-1]
    assert [error["code"] for error in failed["errors"]["data"]] == ["mismatched_url"] * 3
    assert isinstance(failed["failed_at"], int)


def test_openai_expired_batch_matches_batch(http, schemas, monkeypatch):
    """`expired` needs the 24 h window to pass: the simulator reads time only through clock.now."""
    from dashboard.simulator import clock

    created = create_openai(http, 3, processing_seconds=30 * 3600)
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(hours=25))
    expired = get_openai(http, created["id"])
    assert expired["status"] == "expired"
    assert_valid(schemas.openai("Batch"), expired, "retrieve (expired)")


def test_openai_list_pages_match_list_batches_response(http, schemas, fast_simulator):
    list_schema = schemas.openai("ListBatchesResponse")
    ids = [create_openai(http, 2, processing_seconds=60)["id"] for _ in range(3)]
    full = json_of(http.get(O_BATCHES, headers=OPENAI_HEADERS))
    assert [b["id"] for b in full["data"]] == ids[::-1]
    assert_valid(list_schema, full, "list")
    first = json_of(http.get(O_BATCHES, headers=OPENAI_HEADERS, params={"limit": 2}))
    assert first["has_more"] is True
    assert_valid(list_schema, first, "list limit=2")
    rest = json_of(http.get(O_BATCHES, headers=OPENAI_HEADERS, params={"after": first["last_id"]}))
    assert_valid(list_schema, rest, "list after")

    empty = json_of(http.get(O_BATCHES, headers=OPENAI_RESEARCH_HEADERS))
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    assert_valid(list_schema, empty, "empty list")


def openai_failed_batch_id(http: httpx.Client) -> str:
    batch = create_openai(http, 1, url="/v1/embeddings")
    poll(lambda: get_openai(http, batch["id"]), lambda b: b["status"] == "failed", what="failed")
    return batch["id"]


OPENAI_ERRORS = {
    "401-no-key": (401, lambda http: http.get(O_BATCHES)),
    "401-bad-key": (401, lambda http: http.get(O_BATCHES, headers={"Authorization": "Bearer sk-nope-nope-nope"})),
    "404-unknown-batch": (404, lambda http: http.get(f"{O_BATCHES}/batch_nope", headers=OPENAI_HEADERS)),
    "404-unknown-file": (404, lambda http: http.get(f"{O_FILES}/file-nope/content", headers=OPENAI_HEADERS)),
    "404-unknown-route": (404, lambda http: http.get("/openai/v1/nothing-here", headers=OPENAI_HEADERS)),
    "400-missing-parameter": (
        400,
        lambda http: http.post(O_BATCHES, headers=OPENAI_HEADERS, json={"endpoint": "/v1/chat/completions"}),
    ),
    "400-bad-endpoint": (
        400,
        lambda http: http.post(
            O_BATCHES,
            headers=OPENAI_HEADERS,
            json={"input_file_id": "file-x", "endpoint": "/v1/nope", "completion_window": "24h"},
        ),
    ),
    "400-bad-limit": (400, lambda http: http.get(O_BATCHES, headers=OPENAI_HEADERS, params={"limit": "zero"})),
    "400-upload-without-purpose": (
        400,
        lambda http: http.post(
            O_FILES, headers=OPENAI_HEADERS, files={"file": ("x.jsonl", b"{}\n", "application/jsonl")}
        ),
    ),
    "409-cancel-failed": (
        409,
        lambda http: http.post(f"{O_BATCHES}/{openai_failed_batch_id(http)}/cancel", headers=OPENAI_HEADERS),
    ),
    "429": (429, lambda http: http.get(O_BATCHES, headers={**OPENAI_HEADERS, "x-sim-fault": "429"})),
    "500": (500, lambda http: http.get(O_BATCHES, headers={**OPENAI_HEADERS, "x-sim-fault": "500"})),
    "503": (503, lambda http: http.get(O_BATCHES, headers={**OPENAI_HEADERS, "x-sim-fault": "529"})),
}


@pytest.mark.parametrize("case", list(OPENAI_ERRORS))
def test_openai_error_bodies_match_error_response(http, schemas, fast_simulator, case):
    status, send = OPENAI_ERRORS[case]
    body = json_of(send(http), status)
    assert_valid(schemas.openai("ErrorResponse"), body, f"{case} error body")
    assert_valid(schemas.openai("Error"), body["error"], f"{case} error member")


# --- the OpenAI null relaxation: needed, narrow, and what the simulator sends ---------------

# Batch properties outside `required` in the copied spec: exactly these accept null.
BATCH_OPTIONAL = {
    "model",
    "errors",
    "output_file_id",
    "error_file_id",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "request_counts",
    "usage",
    "metadata",
}
# Of those, what a batch that is still validating (created without metadata) sends as null.
NULL_WHILE_VALIDATING = {
    "errors",
    "output_file_id",
    "error_file_id",
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "metadata",
}


def valid_batch() -> dict:
    return {
        "id": "batch_abc123",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "model": "gpt-4.1-mini",
        "errors": None,
        "input_file_id": "file-abc123",
        "completion_window": "24h",
        "status": "in_progress",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": 1711471533,
        "in_progress_at": 1711471538,
        "expires_at": 1711557933,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 100, "completed": 23, "failed": 1},
        "usage": None,
        "metadata": None,
    }


def test_openai_relaxed_properties_are_exactly_the_optional_ones(schemas):
    spec = openai_spec()["components"]["schemas"]
    batch = spec["Batch"]
    assert set(batch["properties"]) - set(batch["required"]) == BATCH_OPTIONAL
    listing = spec["ListBatchesResponse"]
    assert set(listing["properties"]) - set(listing["required"]) == {"first_id", "last_id"}
    # The published document itself is untouched by the relaxation.
    assert "anyOf" not in batch["properties"]["output_file_id"]


def test_openai_null_conflict_is_real(schemas):
    """As published, `Batch` rejects the nulls the real API sends, even in the spec's own example."""
    example = yaml.load(
        openai_spec()["components"]["schemas"]["Batch"]["x-oaiMeta"]["example"], Loader=yaml.CSafeLoader
    )
    assert example["failed_at"] is None  # (the example is not strict JSON: it has a trailing comma)
    assert problems(schemas.openai_as_published("Batch"), example)
    assert_valid(schemas.openai("Batch"), example, "the spec's own Batch example")

    assert problems(schemas.openai_as_published("Batch"), valid_batch())
    assert_valid(schemas.openai("Batch"), valid_batch(), "sample batch with nulls")
    empty = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    assert problems(schemas.openai_as_published("ListBatchesResponse"), empty)
    assert_valid(schemas.openai("ListBatchesResponse"), empty, "empty list")


@pytest.mark.parametrize(
    "change",
    [
        {"status": None},
        {"created_at": None},
        {"id": None},
        {"object": None},
        {"endpoint": None},
        {"input_file_id": None},
        {"completion_window": None},
        {"status": "done"},
        {"object": "batches"},
        {"status": "canceled"},
        {"created_at": "1711471533"},
        {"output_file_id": 123},
        {"in_progress_at": "2024-03-26T12:00:00Z"},
        {"in_progress_at": -5},
        {"request_counts": {"total": 1, "completed": None, "failed": 0}},
        {"request_counts": {"total": 1}},
        {"metadata": {"job": 7}},
        {"errors": {"object": "list", "data": [{"line": "3"}]}},
        {"usage": {"input_tokens": 1}},
    ],
    ids=lambda change: ",".join(f"{k}={v!r}" for k, v in change.items())[:60],
)
def test_openai_null_relaxation_is_narrow(schemas, change):
    bad = {**valid_batch(), **change}
    assert problems(schemas.openai("Batch"), bad), f"relaxed Batch accepted {change}"
    listing = {
        "object": "list",
        "data": [bad],
        "first_id": "batch_abc123",
        "last_id": "batch_abc123",
        "has_more": False,
    }
    assert problems(schemas.openai("ListBatchesResponse"), listing), f"relaxed list accepted an item with {change}"


@pytest.mark.parametrize("change", [{"has_more": None}, {"object": None}, {"data": None}, {"object": "page"}])
def test_openai_list_relaxation_is_narrow(schemas, change):
    listing = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False, **change}
    assert problems(schemas.openai("ListBatchesResponse"), listing)


def test_openai_batch_always_sends_null_for_unset_optional_keys(http):
    created = create_openai(http, 2, processing_seconds=60)
    assert created["status"] == "validating"  # default validating time is 3 s
    fetched = get_openai(http, created["id"])
    listed = json_of(http.get(O_BATCHES, headers=OPENAI_HEADERS))["data"]
    cancelling = json_of(http.post(f"{O_BATCHES}/{created['id']}/cancel", headers=OPENAI_HEADERS))
    assert cancelling["status"] == "cancelling"
    for body in (created, fetched, *listed, cancelling):
        assert BATCH_OPTIONAL <= body.keys(), f"missing keys: {BATCH_OPTIONAL - body.keys()}"
        # Optional keys that always have a value are never null.
        assert body["expires_at"] is not None and body["request_counts"] is not None and body["usage"] is not None
        assert body["model"] == "gpt-4.1-mini"
    for body in (created, fetched, *listed):
        assert {key for key in BATCH_OPTIONAL if body[key] is None} == NULL_WHILE_VALIDATING
    assert {key for key in BATCH_OPTIONAL if cancelling[key] is None} == NULL_WHILE_VALIDATING - {"cancelling_at"}


# --- validators are not vacuous, and the simulator invents no keys ---------------------------


def message_batch() -> dict:
    return {
        "id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message_batch",
        "processing_status": "in_progress",
        "request_counts": {"processing": 1, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
        "ended_at": None,
        "created_at": "2024-08-20T18:37:24.100435Z",
        "expires_at": "2024-08-21T18:37:24.100435Z",
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": None,
    }


@pytest.mark.parametrize(
    "name, instance",
    [
        ("MessageBatch", {**message_batch(), "processing_status": "done"}),
        ("MessageBatch", {**message_batch(), "created_at": "2024-08-20 18:37:24"}),  # not RFC 3339
        ("MessageBatch", {**message_batch(), "request_counts": {"processing": 1}}),  # through a $ref
        ("MessageBatch", {k: v for k, v in message_batch().items() if k != "results_url"}),
        (
            "ListResponse_MessageBatch_",
            {"data": [{**message_batch(), "type": "batch"}], "has_more": False, "first_id": None, "last_id": None},
        ),
        (
            "MessageBatchIndividualResponse",
            {"custom_id": "a", "result": {"type": "succeeded", "message": {"id": "msg_1"}}},
        ),
        ("MessageBatchIndividualResponse", {"custom_id": "a", "result": {"type": "vanished"}}),
        ("ErrorResponse", {"type": "error", "error": {"type": "weird_error", "message": "x"}, "request_id": "req_1"}),
        ("ErrorResponse", {"type": "error", "error": {"type": "api_error", "message": "x"}}),
        ("DeleteMessageBatchResponse", {"id": "msgbatch_1", "type": "message_batch"}),
    ],
)
def test_anthropic_schemas_reject_wrong_shapes(schemas, name, instance):
    assert problems(schemas.anthropic(name), instance)


def test_closed_schemas_reject_undocumented_keys(schemas):
    assert not problems(schemas.closed("anthropic", "MessageBatch"), message_batch())
    assert problems(schemas.closed("anthropic", "MessageBatch"), {**message_batch(), "colour": "red"})
    nested = {**message_batch(), "request_counts": {**message_batch()["request_counts"], "pending": 0}}
    assert problems(schemas.closed("anthropic", "MessageBatch"), nested)
    assert not problems(schemas.closed("openai", "Batch"), valid_batch())
    assert problems(schemas.closed("openai", "Batch"), {**valid_batch(), "colour": "red"})
    assert not problems(schemas.closed("openai", "Batch"), {**valid_batch(), "metadata": {"any": "key"}})  # a map


def test_simulator_sends_no_undocumented_keys(http, schemas, fast_simulator):
    fast_simulator.SIMULATOR_ERROR_PERCENT = 10
    fast_simulator.SIMULATOR_EXPIRE_PERCENT = 5
    seen: list[tuple[str, str, object]] = []

    # Anthropic: in_progress, canceling, ended (all four result types), list, delete, errors.
    slow = create_anthropic(http, 5, processing_seconds=60)
    canceling = json_of(http.post(f"{A_BATCHES}/{slow['id']}/cancel", headers=ANTHROPIC_HEADERS))
    quick = create_anthropic(http, 100, processing_seconds=0.3)
    ended = [
        poll(lambda i=i: get_anthropic(http, i), lambda b: b["processing_status"] == "ended", what="ended")[-1]
        for i in (slow["id"], quick["id"])
    ]
    seen += [("anthropic", "MessageBatch", body) for body in (slow, canceling, *ended)]
    seen.append(("anthropic", "ListResponse_MessageBatch_", json_of(http.get(A_BATCHES, headers=ANTHROPIC_HEADERS))))
    lines = anthropic_results(http, ended[0]) + anthropic_results(http, ended[1])
    assert {line["result"]["type"] for line in lines} == {"succeeded", "errored", "expired", "canceled"}
    seen += [("anthropic", "MessageBatchIndividualResponse", line) for line in lines]
    seen.append(
        (
            "anthropic",
            "DeleteMessageBatchResponse",
            json_of(http.delete(f"{A_BATCHES}/{quick['id']}", headers=ANTHROPIC_HEADERS)),
        )
    )
    for case in ("401-no-key", "404-unknown-batch", "400-no-requests", "429", "529"):
        status, _, send = ANTHROPIC_ERRORS[case]
        seen.append(("anthropic", "ErrorResponse", json_of(send(http), status)))

    # OpenAI: validating, cancelling, completed, failed, list, errors.
    fresh = create_openai(http, 2, processing_seconds=60, metadata={"job": "keys"})
    cancelling = json_of(http.post(f"{O_BATCHES}/{fresh['id']}/cancel", headers=OPENAI_HEADERS))
    done = create_openai(http, 100, processing_seconds=0.3)
    bad = create_openai(http, 2, url="/v1/embeddings")
    finished = [
        poll(lambda i=i: get_openai(http, i), lambda b: b["status"] in ("completed", "failed"), what="end")[-1]
        for i in (done["id"], bad["id"])
    ]
    seen += [("openai", "Batch", body) for body in (fresh, cancelling, *finished)]
    seen.append(("openai", "ListBatchesResponse", json_of(http.get(O_BATCHES, headers=OPENAI_HEADERS))))
    for case in ("401-bad-key", "404-unknown-batch", "400-bad-endpoint", "429", "500"):
        status, send = OPENAI_ERRORS[case]
        seen.append(("openai", "ErrorResponse", json_of(send(http), status)))

    found = []
    for provider, name, instance in seen:
        for problem in problems(schemas.closed(provider, name), instance):
            found.append(f"{provider} {name}: {problem}")
    assert not found, "undocumented keys:\n" + "\n".join(dict.fromkeys(found))
