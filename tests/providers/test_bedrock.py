"""Amazon Bedrock batch inference against httpx.MockTransport: recorded answers, SigV4 signing, paging,
stop, errors, secrets, and property tests over arbitrary JSON. No network, no database."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import botocore.session
import httpx
import pytest
from botocore.credentials import Credentials
from botocore.parsers import RestJSONParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.providers import bedrock
from dashboard.providers.base import (
    AccountSpec,
    AlreadyEnded,
    BadResponse,
    Batch,
    NotFound,
    ProviderError,
    RateLimited,
    UpstreamError,
)
from dashboard.providers.errors import EARLIEST, LATEST, MAX_COUNT, UnreadableBatch
from dashboard.simulator import sigv4

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bedrock"
ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLEsessionTOKEN0123456789abcdef"
BASE_URL = "https://bedrock.us-east-1.amazonaws.com"
JOB = "ab12cd34ef56"
JOB_ARN = f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{JOB}"
SERVICE_MODEL = botocore.session.get_session().get_service_model("bedrock")


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


IN_PROGRESS = fixture("get-model-invocation-job-in-progress.json")
LIST_PAGE = fixture("list-model-invocation-jobs.json")
ERRORS = fixture("errors.json")


def completed(**changes) -> dict:
    return {
        **IN_PROGRESS,
        "status": "Completed",
        "endTime": "2025-06-02T11:40:00Z",
        "processedRecordCount": 12000,
        "successRecordCount": 11950,
        "errorRecordCount": 50,
        **changes,
    }


class Upstream:
    """A scripted upstream that records every request it was sent, with the body it carried."""

    def __init__(self, *answers: Callable[[httpx.Request], httpx.Response]):
        self.answers = list(answers)
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.calls.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request)


def reply(status: int = 200, body=None, *, headers=None) -> Callable[[httpx.Request], httpx.Response]:
    """An answer holding `body` as Python's json writes it: NaN, Infinity and 400-digit numbers included."""
    content = json.dumps(body).encode()
    headers = {"content-type": "application/json", **(headers or {})}
    return lambda request: httpx.Response(status, content=content, headers=headers)


def aws_error(code: str, *, message: str | None = None) -> Callable[[httpx.Request], httpx.Response]:
    error = ERRORS[code]
    body = error["body"] if message is None else {"message": message}
    return reply(error["status"], body, headers=error["headers"])


def spec(**options: str) -> AccountSpec:
    options = {"region": "us-east-1", "access_key_id": ACCESS_KEY_ID, **options}
    return AccountSpec(name="ops", base_url=BASE_URL, api_key=SECRET, options=options)


def make(*answers, account: AccountSpec | None = None, secrets=()) -> tuple[bedrock.BedrockProvider, Upstream]:
    upstream = Upstream(*answers)
    connection = bedrock.connect(account or spec())
    client = httpx.Client(base_url=BASE_URL, transport=httpx.MockTransport(upstream), auth=connection.auth)
    secrets = secrets or connection.secrets
    return bedrock.BedrockProvider(client, account="bedrock-ops", secrets=secrets), upstream


def signature_holds(request: httpx.Request, secret: str = SECRET) -> bool:
    """What the simulator (and AWS) checks: the signature over what arrived, rebuilt with botocore."""
    try:
        sigv4.verify(
            method=request.method,
            scheme=request.url.scheme,
            path=request.url.path,
            query=request.url.query.decode(),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=request.content,
            secret=secret,
            service="bedrock",
            now=datetime.now(UTC),
        )
    except sigv4.Refusal:
        return False
    return True


# --- the recorded answers are what botocore reads, and what we read ----------------------------------------------


def botocore_reads(operation: str, body: dict, *, status: int = 200, headers=None) -> dict:
    headers = {name.lower(): value for name, value in (headers or {}).items()}  # as botocore's HTTPHeaders give them
    answer = {"status_code": status, "headers": headers, "body": json.dumps(body).encode()}
    return RestJSONParser().parse(answer, SERVICE_MODEL.operation_model(operation).output_shape)


def test_the_recorded_answers_are_what_botocore_reads():
    job = botocore_reads("GetModelInvocationJob", IN_PROGRESS)
    assert job["status"] == "InProgress" and job["totalRecordCount"] == 12000
    assert job["submitTime"] == datetime(2025, 6, 2, 9, 15, 42, 514000, tzinfo=job["submitTime"].tzinfo)
    listed = botocore_reads("ListModelInvocationJobs", LIST_PAGE)
    assert [summary["status"] for summary in listed["invocationJobSummaries"]] == ["Submitted", "PartiallyCompleted"]
    assert set(SERVICE_MODEL.shape_for("ModelInvocationJobStatus").enum) == set(bedrock.STATUSES)
    for code, error in ERRORS.items():
        parsed = botocore_reads(
            "GetModelInvocationJob", error["body"], status=error["status"], headers=error["headers"]
        )
        assert parsed["Error"]["Code"] == code


def test_every_timestamp_and_count_the_service_model_names_is_read():
    members = SERVICE_MODEL.shape_for("GetModelInvocationJobResponse").members
    timestamps = {name for name, shape in members.items() if shape.type_name == "timestamp"}
    counts = {name for name in members if name.endswith("RecordCount")}
    assert timestamps == set(bedrock.TIMESTAMPS)
    assert counts == set(bedrock.COUNTS)


def test_a_job_in_progress_is_read():
    batch = bedrock.parse_batch(IN_PROGRESS, account="bedrock-ops")
    assert (batch.provider, batch.id, batch.status) == ("bedrock", JOB, "InProgress")
    assert (batch.is_ended, batch.can_cancel, batch.counts.known) == (False, True, True)
    counts = batch.counts
    assert (counts.total, counts.processing, counts.succeeded, counts.errored) == (12000, 7482, 4501, 17)
    assert batch.created_at == datetime(2025, 6, 2, 9, 15, 42, 514000, tzinfo=UTC)
    assert batch.expires_at == datetime(2025, 6, 5, 9, 15, 42, 514000, tzinfo=UTC)
    assert batch.ended_at is None and batch.cancel_initiated_at is None
    assert set(batch.timestamps) == set(bedrock.TIMESTAMPS)


def test_a_job_without_record_counts_has_unknown_counts_not_zero():
    submitted = LIST_PAGE["invocationJobSummaries"][0]
    batch = bedrock.parse_batch(submitted, account="bedrock-ops")
    assert batch.status == "Submitted" and batch.counts.known is False
    partly = {key: value for key, value in IN_PROGRESS.items() if key != "errorRecordCount"}
    assert bedrock.parse_batch(partly, account="bedrock-ops").counts.known is False


def test_a_partially_completed_job_counts_the_records_left_as_expired():
    batch = bedrock.parse_batch(LIST_PAGE["invocationJobSummaries"][1], account="bedrock-ops")
    assert batch.is_ended and batch.status in bedrock.ENDED_BADLY
    counts = batch.counts
    assert (counts.total, counts.processing, counts.succeeded, counts.errored, counts.expired) == (1000, 0, 921, 19, 60)
    assert batch.ended_at == datetime(2025, 6, 2, 9, 15, 44, 20000, tzinfo=UTC)


def test_a_stopped_job_counts_the_records_left_as_canceled_and_says_when_it_stopped():
    stopped = completed(status="Stopped", processedRecordCount=100, successRecordCount=90, errorRecordCount=10)
    batch = bedrock.parse_batch(stopped, account="bedrock-ops")
    assert (batch.counts.canceled, batch.counts.processing, batch.can_cancel) == (11900, 0, False)
    assert batch.cancel_initiated_at == batch.ended_at == datetime(2025, 6, 2, 11, 40, tzinfo=UTC)
    stopping = bedrock.parse_batch({**IN_PROGRESS, "status": "Stopping"}, account="bedrock-ops")
    assert stopping.cancel_initiated_at == datetime(2025, 6, 2, 10, 2, 17, 228000, tzinfo=UTC)
    assert not stopping.is_ended and not stopping.can_cancel


def test_an_unknown_status_word_is_kept_not_ended_not_cancelable():
    batch = bedrock.parse_batch({**IN_PROGRESS, "status": "Paused"}, account="bedrock-ops")
    assert (batch.status, batch.is_ended, batch.can_cancel) == ("Paused", False, False)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"jobArn": "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/AB12CD34EF56"}, "jobArn"),
        ({"jobArn": f"{JOB_ARN}/../x"}, "jobArn"),
        ({"jobArn": None}, "jobArn"),
        ({"status": "in_progress"}, "status"),
        ({"submitTime": None}, "submitTime"),
        ({"submitTime": "0001-01-01T00:00:00Z"}, "submitTime"),
        ({"endTime": "2025-06-02T10:02:17"}, "endTime"),
        ({"totalRecordCount": -1}, "totalRecordCount"),
        ({"successRecordCount": 10**400}, "successRecordCount"),
        ({"errorRecordCount": 1.5}, "errorRecordCount"),
        ({"timeoutDurationInHours": 10**6}, "timeoutDurationInHours"),
    ],
)
def test_an_odd_field_makes_the_job_unreadable_naming_the_field_never_the_value(changes, field):
    with pytest.raises(UnreadableBatch) as caught:
        bedrock.parse_batch({**IN_PROGRESS, **changes}, account="bedrock-ops")
    assert field in caught.value.message
    assert "AB12CD34EF56" not in caught.value.message and "9" * 20 not in caught.value.message


def test_a_job_arn_holding_a_configured_key_is_no_id():
    key = "abcdefghij12"
    with pytest.raises(UnreadableBatch) as caught:
        bedrock.parse_batch({**IN_PROGRESS, "jobArn": JOB_ARN[:-12] + key}, account="x", secrets=(key,))
    assert caught.value.batch_id == "" and key not in caught.value.message


# --- requests: signed, paged, stopped ----------------------------------------------------------------------------


def test_every_request_is_signed_by_sigv4_for_bedrock_in_the_region():
    provider, upstream = make(reply(200, IN_PROGRESS))
    provider.retrieve(JOB)
    (request,) = upstream.calls
    assert request.url.path == f"/model-invocation-job/{JOB}"
    authorization = request.headers["authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")
    assert "/us-east-1/bedrock/aws4_request" in authorization
    assert signature_holds(request)
    assert not signature_holds(request, secret=SECRET + "x")
    assert SECRET not in str(request.headers)


def test_the_list_reads_newest_first_and_pages_by_next_token():
    token = "a+b/c= d"  # signed and sent as AWS canonicalizes it
    provider, upstream = make(reply(200, LIST_PAGE), reply(200, {"invocationJobSummaries": []}))
    first = provider.list_page(limit=50)
    assert [batch.id for batch in first.batches] == ["zz98yy76xx54", JOB]
    assert (first.has_more, first.next_cursor) == (True, LIST_PAGE["nextToken"])
    last = provider.list_page(limit=50, after=token)
    assert (last.has_more, last.next_cursor, last.batches) == (False, None, [])
    request = upstream.calls[0]
    assert request.url.path == "/model-invocation-jobs"
    assert dict(request.url.params) == {"maxResults": "50", "sortBy": "CreationTime", "sortOrder": "Descending"}
    assert upstream.calls[1].url.params["nextToken"] == token
    assert b"nextToken=a%2Bb%2Fc%3D%20d" in upstream.calls[1].url.query
    assert all(signature_holds(call) for call in upstream.calls)


@pytest.mark.parametrize("token", [12, "has space", "x" * 2049, ["t"]])
def test_a_next_token_that_is_no_page_token_is_a_bad_response(token):
    provider, _ = make(reply(200, {**LIST_PAGE, "nextToken": token}))
    with pytest.raises(BadResponse):
        provider.list_page(limit=10)


def test_one_unreadable_job_does_not_hide_the_others():
    broken = {**IN_PROGRESS, "jobArn": "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/zzzzzzzzzzzz"}
    broken["totalRecordCount"] = "many"
    provider, _ = make(reply(200, {"invocationJobSummaries": [broken, IN_PROGRESS]}))
    page = provider.list_page(limit=10)
    assert [batch.id for batch in page.batches] == [JOB]
    assert page.unreadable[0][0] == "zzzzzzzzzzzz" and "totalRecordCount" in page.unreadable[0][1]


def test_stop_posts_and_reads_the_job_after():
    provider, upstream = make(reply(200, {}), reply(200, {**IN_PROGRESS, "status": "Stopping"}))
    batch = provider.cancel(JOB)
    assert batch.status == "Stopping"
    assert [(call.method, call.url.path) for call in upstream.calls] == [
        ("POST", f"/model-invocation-job/{JOB}/stop"),
        ("GET", f"/model-invocation-job/{JOB}"),
    ]
    assert signature_holds(upstream.calls[0])


def test_a_refused_stop_of_an_ended_job_is_already_ended():
    provider, _ = make(aws_error("ConflictException"), reply(200, completed()))
    with pytest.raises(AlreadyEnded) as caught:
        provider.cancel(JOB)
    assert caught.value.current is not None and caught.value.current.status == "Completed"


@pytest.mark.parametrize("bad", ["", "AB12CD34EF56", "ab12cd34ef5", f"{JOB}/stop", "../../x", JOB_ARN, f"{JOB}\n"])
def test_an_id_that_is_not_a_job_id_never_reaches_a_url(bad):
    provider, upstream = make(reply(200, IN_PROGRESS))
    assert not provider.is_valid_id(bad)
    for call in (provider.retrieve, provider.cancel):
        with pytest.raises(ValueError):
            call(bad)
    assert upstream.calls == []


def test_an_answer_about_another_job_is_refused():
    provider, _ = make(reply(200, LIST_PAGE["invocationJobSummaries"][0]))
    with pytest.raises(BadResponse, match="another batch"):
        provider.retrieve(JOB)


# --- errors: AWS's shape, and no secret in them ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        ("UnrecognizedClientException", UpstreamError),
        ("InvalidSignatureException", UpstreamError),
        ("ValidationException", UpstreamError),
        ("ResourceNotFoundException", NotFound),
        ("ThrottlingException", RateLimited),
    ],
)
def test_aws_errors_are_read_from_their_type_header_and_message(code, error_class):
    provider, _ = make(aws_error(code))
    with pytest.raises(error_class) as caught:
        provider.retrieve(JOB)
    error = caught.value
    assert (error.status, error.kind) == (ERRORS[code]["status"], code)
    assert error.message.startswith(f"Amazon Bedrock HTTP {error.status} {code}: ")
    assert ERRORS[code]["body"]["message"][:40] in error.message


def test_an_error_code_in_the_body_alone_is_read():
    provider, _ = make(reply(400, {"__type": "com.amazon.coral.validate#ValidationException", "Message": "bad"}))
    with pytest.raises(UpstreamError) as caught:
        provider.retrieve(JOB)
    assert (caught.value.kind, caught.value.message) == (
        "ValidationException",
        "Amazon Bedrock HTTP 400 ValidationException: bad",
    )


def test_an_error_body_that_is_not_json_says_so():
    provider, _ = make(lambda request: httpx.Response(500, text="<html>oops</html>"))
    with pytest.raises(UpstreamError, match="the error body is not JSON"):
        provider.retrieve(JOB)


@pytest.mark.parametrize("echo", [SECRET, TOKEN, SECRET.lower(), TOKEN.upper(), SECRET[:20], TOKEN[:24]])
def test_a_secret_key_or_session_token_echoed_in_an_error_never_shows(echo):
    account = spec()
    account = AccountSpec(name="ops", base_url=BASE_URL, api_key=SECRET, options=account.options)
    provider, _ = make(aws_error("ValidationException", message=f"bad key {echo} here"), account=account)
    provider.secrets = (SECRET, TOKEN)
    with pytest.raises(UpstreamError) as caught:
        provider.retrieve(JOB)
    assert echo not in caught.value.message and echo.lower() not in caught.value.message.lower()
    assert "[redacted]" in caught.value.message


def test_a_session_token_sent_is_redacted_from_an_error_even_when_not_configured(monkeypatch):
    """Credentials from a role refresh themselves: the token sent with this request is redacted, whatever it is."""
    credentials = Credentials(ACCESS_KEY_ID, SECRET, TOKEN)
    provider, upstream = make(aws_error("ValidationException", message=f"token {TOKEN} refused"))
    provider.client.auth = bedrock.SigV4(credentials=credentials, region="us-east-1")
    provider.secrets = ()
    with pytest.raises(UpstreamError) as caught:
        provider.retrieve(JOB)
    assert upstream.calls[0].headers["x-amz-security-token"] == TOKEN
    assert TOKEN not in caught.value.message and "[redacted]" in caught.value.message


# --- credentials -------------------------------------------------------------------------------------------------


def test_explicit_keys_sign_and_their_secret_is_a_secret():
    connection = bedrock.connect(spec())
    assert connection.secrets == (SECRET,)
    assert connection.headers == {} and isinstance(connection.auth, bedrock.SigV4)


@pytest.fixture
def aws_environment(monkeypatch, tmp_path):
    """botocore's chain sees only what a test sets: no files of the machine's, no instance metadata."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    return tmp_path


def test_the_credential_chain_signs_from_the_environment_with_its_session_token(monkeypatch, aws_environment):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    account = AccountSpec(name="default", base_url=BASE_URL, api_key="", options={"region": "us-east-1"})
    assert set(bedrock.connect(account).secrets) == {SECRET, TOKEN}
    provider, upstream = make(reply(200, IN_PROGRESS), account=account)
    provider.retrieve(JOB)
    assert upstream.calls[0].headers["x-amz-security-token"] == TOKEN
    assert signature_holds(upstream.calls[0])


def test_the_credential_chain_reads_the_accounts_profile(aws_environment):
    (aws_environment / "credentials").write_text(
        f"[batch-watch]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET}\n"
    )
    account = AccountSpec(
        name="p", base_url=BASE_URL, api_key="", options={"region": "us-east-1", "profile": "batch-watch"}
    )
    provider, upstream = make(reply(200, IN_PROGRESS), account=account)
    provider.retrieve(JOB)
    assert signature_holds(upstream.calls[0])


@pytest.mark.parametrize("profile", ["", "no-such-profile"])
def test_without_credentials_each_request_fails_with_our_own_error_and_nothing_is_sent(profile, aws_environment):
    account = AccountSpec(
        name="none", base_url=BASE_URL, api_key="", options={"region": "us-east-1", "profile": profile}
    )
    connection = bedrock.connect(account)
    assert connection.secrets == ()
    provider, upstream = make(reply(200, IN_PROGRESS), account=account)
    with pytest.raises(ProviderError) as caught:
        provider.retrieve(JOB)
    assert caught.value.kind == "credentials" and "Amazon Bedrock" in caught.value.message
    assert upstream.calls == []


def test_credentials_are_frozen_per_request_so_those_that_refresh_sign_with_their_latest():
    class Rotating:
        """What RefreshableCredentials offers the signer: a fresh frozen set on each call."""

        def __init__(self):
            self.tokens = iter(["token-one-0123456789", "token-two-0123456789"])

        def get_frozen_credentials(self):
            return Credentials(ACCESS_KEY_ID, SECRET, next(self.tokens)).get_frozen_credentials()

    provider, upstream = make(reply(200, IN_PROGRESS))
    provider.client.auth = bedrock.SigV4(credentials=Rotating(), region="us-east-1")
    provider.retrieve(JOB)
    provider.retrieve(JOB)
    sent = [call.headers["x-amz-security-token"] for call in upstream.calls]
    assert sent == ["token-one-0123456789", "token-two-0123456789"]
    assert all(signature_holds(call) for call in upstream.calls)


# --- accounts: environment and file fields ------------------------------------------------------------------------


def test_aws_bedrock_region_opts_in_one_account_signed_by_the_chain():
    (account,) = bedrock.from_environment({"AWS_BEDROCK_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": "x" * 40})
    assert (account.name, account.base_url, account.api_key) == (
        "default",
        "https://bedrock.eu-west-1.amazonaws.com",
        "",
    )
    assert dict(account.options) == {"region": "eu-west-1"}
    named = bedrock.from_environment(
        {
            "AWS_BEDROCK_REGION": "us-west-2",
            "AWS_BEDROCK_ACCOUNT_NAME": "prod",
            "AWS_ENDPOINT_URL_BEDROCK": "https://vpce.example",
        }
    )
    assert (named[0].name, named[0].base_url) == ("prod", "https://vpce.example")


def test_aws_credentials_and_region_alone_make_no_bedrock_account():
    environ = {
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_PROFILE": "x",
    }
    assert bedrock.from_environment(environ) == []


def test_an_account_file_entry_needs_a_region():
    assert bedrock.base_url_for({"region": "ap-southeast-2"}) == "https://bedrock.ap-southeast-2.amazonaws.com"
    for region in ("", "us east 1", "evil.com/x", "us-east-1.attacker"):
        with pytest.raises(ValueError, match="region"):
            bedrock.base_url_for({"region": region})


def test_the_signing_region_is_the_accounts_or_its_addresses():
    assert (
        bedrock.region_of(AccountSpec(name="a", base_url="https://bedrock.eu-central-1.amazonaws.com", api_key=""))
        == "eu-central-1"
    )
    assert bedrock.region_of(spec(region="ca-central-1")) == "ca-central-1"


# --- results: where they are, not read here ----------------------------------------------------------------------


def test_results_are_named_where_they_are_and_not_read():
    provider, upstream = make(reply(200, completed()))
    batch = provider.retrieve(JOB)
    assert provider.result_sources(batch) == []
    with pytest.raises(NotFound) as caught, provider.open_results(JOB, known=batch):
        pass
    assert "s3://example-batch-output/claims/" in caught.value.message
    assert "does not read S3" in caught.value.message
    assert len(upstream.calls) == 1  # the known batch was not read again


def test_a_result_record_is_read_as_a_line():
    ok = {
        "recordId": "CALL0000001",
        "modelInput": {},
        "modelOutput": {
            "model": "claude",
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 12, "output_tokens": 30},
        },
    }
    line = bedrock.parse_result_line(1, ok, json.dumps(ok))
    assert (line.custom_id, line.type, line.input_tokens, line.output_tokens) == ("CALL0000001", "succeeded", 12, 30)
    failed = {
        "recordId": "CALL0000002",
        "modelInput": {},
        "error": {"errorCode": 400, "errorMessage": "Malformed input"},
    }
    line = bedrock.parse_result_line(2, failed, json.dumps(failed))
    assert (line.type, line.error_type, line.error_message) == ("errored", "400", "Malformed input")


def test_the_cancel_story_says_what_bedrock_does_not_tell():
    batch = bedrock.parse_batch(completed(status="Stopped", successRecordCount=5000, errorRecordCount=10), account="x")
    count, text = bedrock.after_cancel(batch, None)
    assert count is None and "does not say when a stop was requested" in text


def test_the_counts_read_right_after_a_stop_tell_how_many_records_finished_after_it():
    stopping = bedrock.parse_batch(
        completed(status="Stopping", successRecordCount=4000, errorRecordCount=7), account="x"
    )
    kept = bedrock.counts_at_cancel(stopping)
    assert kept == {name: stopping.raw[name] for name in bedrock.COUNTS}
    stopped = bedrock.parse_batch(
        completed(status="Stopped", successRecordCount=5000, errorRecordCount=10), account="x"
    )
    count, text = bedrock.after_cancel(stopped, kept)
    assert count == 1003 and "4007 records had finished when the stop was accepted" in text
    for unreadable in ({"successRecordCount": "many"}, {"errorRecordCount": -1}, {"successRecordCount": True}, []):
        assert bedrock.after_cancel(stopped, unreadable)[0] is None, unreadable


# --- properties: any JSON is a Batch or our own error ------------------------------------------------------------

FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
huge_ints = st.integers(min_value=10**399, max_value=10**400 - 1)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        ["2025-06-02T09:15:42Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00", JOB_ARN, "InProgress"]
    )
)
json_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=16,
)
FIELDS = sorted({*IN_PROGRESS, *bedrock.COUNTS, *bedrock.TIMESTAMPS, "message", "endTime"})


def read(data) -> Batch | UnreadableBatch:
    try:
        return bedrock.parse_batch(data, account="bedrock-ops", secrets=(SECRET,))
    except UnreadableBatch as error:
        return error


def assert_valid(batch: Batch) -> None:
    assert bedrock.BATCH_ID.fullmatch(batch.id) and bedrock.STATUS.fullmatch(batch.status)
    for value in batch.timestamps.values():
        assert value is None or (value.tzinfo is not None and EARLIEST <= value < LATEST)
    counts = batch.counts
    for value in (counts.total, counts.processing, counts.succeeded, counts.errored, counts.canceled, counts.expired):
        assert type(value) is int and 0 <= value <= 2 * MAX_COUNT
    if not counts.known:
        assert counts.total == counts.processing == counts.succeeded == counts.errored == 0
    copy.deepcopy(batch)


def assert_ours(error: UnreadableBatch) -> None:
    assert isinstance(error, UnreadableBatch) and len(error.message) <= 400
    assert error.batch_id == "" or bedrock.BATCH_ID.fullmatch(error.batch_id)


@FAST
@given(data=json_values | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=8))
def test_any_json_is_a_valid_job_or_our_own_error(data):
    answer = read(data)
    assert_valid(answer) if isinstance(answer, Batch) else assert_ours(answer)


@FAST
@given(
    base=st.sampled_from([IN_PROGRESS, completed(), *LIST_PAGE["invocationJobSummaries"]]),
    changes=st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1, max_size=4),
)
def test_a_valid_job_with_arbitrary_fields_changed_is_a_valid_job_or_our_own_error(base, changes):
    answer = read({**base, **changes})
    if isinstance(answer, Batch):
        assert_valid(answer)
    else:
        assert_ours(answer)
        arn_kept = changes.get("jobArn", base["jobArn"]) == base["jobArn"]
        assert answer.batch_id == (base["jobArn"][-12:] if arn_kept else answer.batch_id)


@FAST
@given(body=json_values)
def test_any_list_answer_is_a_page_or_our_own_error(body):
    provider, _ = make(reply(200, {"invocationJobSummaries": body} if not isinstance(body, dict) else body))
    try:
        page = provider.list_page(limit=10)
    except BadResponse:
        return
    for batch in page.batches:
        assert_valid(batch)
    assert page.has_more == (page.next_cursor is not None)


def test_the_simulators_check_refuses_a_stale_signature_another_region_and_a_changed_body():
    from datetime import timedelta

    provider, upstream = make(reply(200, {}), reply(200, IN_PROGRESS))
    provider.cancel(JOB)
    stop = upstream.calls[0]
    arrived = dict(
        method=stop.method,
        scheme="https",
        path=stop.url.path,
        query="",
        headers={name.lower(): value for name, value in stop.headers.items()},
        body=stop.content,
        secret=SECRET,
        service="bedrock",
    )
    sigv4.verify(**arrived, region="us-east-1", now=datetime.now(UTC))
    refusals = [
        dict(arrived, now=datetime.now(UTC) + timedelta(minutes=20), region="us-east-1"),
        dict(arrived, now=datetime.now(UTC), region="eu-west-1"),
        dict(arrived, now=datetime.now(UTC), region="us-east-1", body=b'{"x": 1}'),
        dict(arrived, now=datetime.now(UTC), region="us-east-1", path=f"/model-invocation-job/{JOB[::-1]}/stop"),
        dict(arrived, now=datetime.now(UTC), region="us-east-1", secret=None),
    ]
    codes = []
    for attempt in refusals:
        with pytest.raises(sigv4.Refusal) as caught:
            sigv4.verify(**attempt)
        codes.append(caught.value.code)
    assert codes == ["InvalidSignatureException"] * 4 + ["UnrecognizedClientException"]
