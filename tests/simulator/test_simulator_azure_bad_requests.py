"""A bad request to the simulated Azure OpenAI resource is the caller's error, never a 500: whatever
bytes or JSON come in on either route, every 4xx is Azure's `{"error": {"code", "message"}}` (with
`target` naming a parameter) and carries an apim-request-id header. The OpenAI views it shares are
tested at length in test_simulator_bad_requests.py; this is the same property in Azure's dialect."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from dashboard.providers import azure_openai
from tests.simulator.test_simulator_bad_requests import CONTENT_TYPES, DEEP, PROPERTY_SETTINGS, json_texts

KEY = {"HTTP_API_KEY": azure_openai.SIMULATOR_KEYS["ops"]}
GA, V1 = "/simulator/azure-openai/openai", "/simulator/azure-openai/openai/v1"
VERSION = "?api-version=2024-10-21"
ENDPOINTS = [
    ("POST", f"{GA}/batches{VERSION}"),
    ("POST", f"{GA}/batches/batch_nope/cancel{VERSION}"),
    ("POST", f"{GA}/files{VERSION}"),
    ("POST", f"{V1}/batches"),
    ("POST", f"{V1}/files"),
    ("DELETE", f"{V1}/batches/batch_nope"),
]


def assert_answered_as_azure(response) -> None:
    assert response.status_code < 500, response.content[:500]
    assert response["apim-request-id"]
    if response.status_code < 400:
        assert isinstance(response.json(), dict)
        return
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) <= {"code", "message", "target"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@PROPERTY_SETTINGS
@given(st.sampled_from(ENDPOINTS), st.sampled_from(CONTENT_TYPES), st.binary(max_size=300))
@example(("POST", f"{V1}/files"), "multipart/form-data", b"--x\r\n")
def test_arbitrary_bytes_are_never_a_5xx(client, demo_accounts, endpoint, content_type, body):
    method, path = endpoint
    assert_answered_as_azure(client.generic(method, path, data=body, content_type=content_type, **KEY))


@PROPERTY_SETTINGS
@given(st.sampled_from(ENDPOINTS), json_texts())
@example(("POST", f"{GA}/batches{VERSION}"), b'{"metadata": ' + b"[" * DEEP)
def test_arbitrary_json_is_never_a_5xx(client, demo_accounts, endpoint, body):
    method, path = endpoint
    assert_answered_as_azure(client.generic(method, path, data=body, content_type="application/json", **KEY))


def test_a_path_with_a_newline_is_api_managements_404(client, demo_accounts):
    for path in (f"{V1}/batches%0A", "/simulator/azure-openai/%0A", f"{GA}/batches%0A{VERSION}"):
        response = client.get(path, **KEY)
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}
