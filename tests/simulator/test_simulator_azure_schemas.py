"""The simulated Azure OpenAI resource's GA route, as raw JSON over real HTTP, against Azure's own spec.

The spec is Microsoft's data-plane spec for api-version 2024-10-21 (tests/fixtures/specs/azure, its
origin in ../SOURCES.md): Swagger 2.0, so its definitions are JSON Schema draft 4. Relaxed narrowly,
as test_simulator_schemas.py relaxes OpenAI's: in `Batch` (and `BatchesList`) a property the schema
does not require also accepts null, as the spec's own recorded examples send it (`"output_file_id":
null`, `"errors": null`); and an enum Azure marks `modelAsString` (open to values it may add: error
codes such as API Management's "401") is checked as a string. Everything else is as published.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft4Validator

from dashboard.providers import azure_openai

SPEC = Path(__file__).parent.parent / "fixtures" / "specs" / "azure" / "azureopenai-2024-10-21.json"
NULLABLE_OPTIONALS = ("Batch", "BatchesList")
HEADERS = {"api-key": azure_openai.SIMULATOR_KEYS["ops"]}
VERSION = {"api-version": "2024-10-21"}


@cache
def definitions() -> dict:
    relaxed = copy.deepcopy(json.loads(SPEC.read_text())["definitions"])
    for schema in relaxed.values():
        if schema.get("x-ms-enum", {}).get("modelAsString"):
            del schema["enum"]
    for name in NULLABLE_OPTIONALS:
        schema = relaxed[name]
        required = set(schema.get("required", ()))
        for key, value in schema["properties"].items():
            if key not in required:
                schema["properties"][key] = {"anyOf": [value, {"type": "null"}]}
    return relaxed


def validate(instance: object, name: str) -> None:
    Draft4Validator({"$ref": f"#/definitions/{name}", "definitions": definitions()}).validate(instance)


def test_the_relaxation_still_refuses_a_wrong_batch():
    recorded = json.loads((SPEC.parent / "examples" / "get_batches.json").read_text())["responses"]["200"]["body"]
    validate(recorded, "BatchesList")
    (batch,) = recorded["data"]
    for wrong in ({"id": None}, {"created_at": "yesterday"}, {"request_counts": {"total": "5"}}, {"status": 3}):
        with pytest.raises(Exception, match="is not"):
            validate({**batch, **wrong}, "Batch")


def test_the_ga_routes_answers_match_azures_spec(simulator):
    base = simulator + "/azure-openai/openai"
    with httpx.Client(base_url=base, headers=HEADERS, params=VERSION, timeout=20) as http:
        line = {"custom_id": "a", "method": "POST", "url": "/chat/completions", "body": {"model": "gpt-4o-batch"}}
        upload = http.post("/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", json.dumps(line) + "\n")})
        assert upload.status_code == 201
        validate(upload.json(), "File")
        body = {"input_file_id": upload.json()["id"], "endpoint": "/chat/completions", "completion_window": "24h"}
        created = http.post("/batches", json={**body, "metadata": {"batch_description": "Evaluation job"}})
        assert created.status_code == 200
        batch_id = created.json()["id"]
        answers = {
            "Batch": [created, http.get(f"/batches/{batch_id}"), http.post(f"/batches/{batch_id}/cancel")],
            "BatchesList": [http.get("/batches"), http.get("/batches", params={"limit": 1})],
            "File": [http.get(f"/files/{upload.json()['id']}")],
            "ErrorResponse": [
                http.get("/batches/batch_00000000-0000-0000-0000-000000000000"),
                http.post("/batches", json={**body, "endpoint": "/images"}),
                http.get("/batches", headers={"api-key": "not-a-key"}),
                httpx.get(f"{base}/batches", headers=HEADERS, timeout=20),  # no api-version
                http.get("/no-such-path"),
            ],
        }
    for name, responses in answers.items():
        for response in responses:
            assert response.headers["apim-request-id"]
            validate(response.json(), name)
    assert [response.status_code for response in answers["ErrorResponse"]] == [404, 400, 401, 404, 404]
