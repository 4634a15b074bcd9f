"""boto3's `bedrock` client, over real HTTP, against the simulator's Amazon Bedrock batch inference.

The SDK signs every request with SigV4 and the simulator checks the signature with botocore, so what
is asserted here is what a client of the real control plane sees: the job's fields, its statuses in
time, paging by nextToken, stop, and botocore's ClientError with AWS's error codes.
"""

from __future__ import annotations

import time

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from dashboard.providers import bedrock
from dashboard.providers.base import AccountSpec
from dashboard.simulator import stall
from dashboard.simulator.bedrock_api import RECORDS_TAG

OPS = ("AKIASIMULATOROPS", "sim-secret-ops")
RESEARCH = ("AKIASIMULATORRESEARCH", "sim-secret-research")
ROLE = "arn:aws:iam::123456789012:role/BedrockBatchInferenceRole"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
def bedrock_client(simulator):
    """`bedrock_client(access_key_id, secret, headers={...})`: boto3 at the simulator, no retries."""
    clients = []

    def build(access_key_id: str = OPS[0], secret: str = OPS[1], *, headers: dict | None = None):
        client = boto3.client(
            "bedrock",
            endpoint_url=simulator + "/bedrock",
            region_name="us-east-1",
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret,
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10),
        )

        def add_headers(request, **kwargs):
            for name, value in (headers or {}).items():
                request.headers[name] = value

        client.meta.events.register("before-sign.bedrock.*", add_headers)  # signed, as any header
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


def create(client, name: str, *, records: int = 20, timeout: int | None = None, tags: tuple = ()) -> str:
    options = {"timeoutDurationInHours": timeout} if timeout else {}
    answer = client.create_model_invocation_job(
        jobName=name,
        roleArn=ROLE,
        modelId=MODEL,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://example-input/{name}/", "s3InputFormat": "JSONL"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://example-output/{name}/"}},
        tags=[{"key": RECORDS_TAG, "value": str(records)}, *tags],
        **options,
    )
    return answer["jobArn"]


def wait_for(client, arn: str, statuses: set[str], *, seconds: float = 15) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        job = client.get_model_invocation_job(jobIdentifier=arn)
        if job["status"] in statuses or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def error_code(caught: pytest.ExceptionInfo) -> tuple[str, int]:
    error = caught.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]


def test_a_created_job_answers_every_documented_field(bedrock_client, settings):
    settings.SIMULATOR_VALIDATING_SECONDS = 60  # submitted for its first 12 s, however slow the machine
    client = bedrock_client()
    arn = create(client, "claims-1", records=1234, timeout=48)
    assert arn.startswith("arn:aws:bedrock:us-east-1:") and ":model-invocation-job/" in arn
    job = client.get_model_invocation_job(jobIdentifier=arn)
    assert job["jobArn"] == arn and job["jobName"] == "claims-1" and job["modelId"] == MODEL
    assert job["roleArn"] == ROLE and job["timeoutDurationInHours"] == 48
    assert job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] == "s3://example-output/claims-1/"
    assert job["status"] == "Submitted" and "totalRecordCount" not in job  # not reported before validation
    assert (job["jobExpirationTime"] - job["submitTime"]).total_seconds() == 48 * 3600
    assert job["ResponseMetadata"]["RequestId"]
    by_id = client.get_model_invocation_job(jobIdentifier=arn.rsplit("/", 1)[1])
    assert by_id["jobArn"] == arn


def test_a_job_goes_through_its_statuses_to_completed_with_its_records_counted(bedrock_client, fast_simulator):
    fast_simulator.SIMULATOR_PROCESSING_SECONDS = 2  # long enough to be seen InProgress on a busy machine
    client = bedrock_client()
    arn = create(client, "runs-to-the-end", records=40)
    seen = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        job = client.get_model_invocation_job(jobIdentifier=arn)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] == "Completed":
            break
        time.sleep(0.05)
    order = ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
    assert seen == sorted(seen, key=order.index) and seen[-1] == "Completed"  # in order, none skipped back
    assert "InProgress" in seen
    assert job["totalRecordCount"] == 40 and job["processedRecordCount"] == 40
    assert job["successRecordCount"] + job["errorRecordCount"] == 40
    assert job["endTime"] >= job["submitTime"]
    parsed = bedrock.parse_batch(
        {**job, **{name: job[name].isoformat() for name in bedrock.TIMESTAMPS if name in job}}, account="x"
    )
    assert parsed.is_ended and parsed.counts.total == 40


def test_the_list_reads_every_page_newest_first(bedrock_client):
    client = bedrock_client()
    arns = [create(client, f"paged-{number}") for number in range(5)]
    paginator = client.get_paginator("list_model_invocation_jobs")
    pages = list(paginator.paginate(sortBy="CreationTime", sortOrder="Descending", PaginationConfig={"PageSize": 2}))
    assert [len(page["invocationJobSummaries"]) for page in pages] == [2, 2, 1]
    listed = [summary["jobArn"] for page in pages for summary in page["invocationJobSummaries"]]
    assert listed == arns[::-1]
    assert "nextToken" not in pages[-1]
    ascending = client.list_model_invocation_jobs(sortOrder="Ascending", maxResults=1000)
    assert [summary["jobArn"] for summary in ascending["invocationJobSummaries"]] == arns
    only = client.list_model_invocation_jobs(nameContains="paged-3")["invocationJobSummaries"]
    assert [summary["jobName"] for summary in only] == ["paged-3"]


def test_a_page_token_from_another_order_is_a_validation_error(bedrock_client):
    client = bedrock_client()
    for number in range(2):
        create(client, f"token-{number}")
    token = client.list_model_invocation_jobs(maxResults=1)["nextToken"]
    with pytest.raises(ClientError) as caught:
        client.list_model_invocation_jobs(maxResults=1, sortOrder="Ascending", nextToken=token)
    assert error_code(caught) == ("ValidationException", 400)


def test_stop_goes_stopping_then_stopped_and_a_second_stop_is_a_conflict(bedrock_client, fast_simulator):
    fast_simulator.SIMULATOR_PROCESSING_SECONDS = 60
    client = bedrock_client()
    arn = create(client, "to-stop", records=600)
    assert wait_for(client, arn, {"InProgress"})["status"] == "InProgress"
    assert client.stop_model_invocation_job(jobIdentifier=arn)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert client.get_model_invocation_job(jobIdentifier=arn)["status"] == "Stopping"
    job = wait_for(client, arn, {"Stopped"})
    assert job["status"] == "Stopped" and job["processedRecordCount"] < 600
    with pytest.raises(ClientError) as caught:
        client.stop_model_invocation_job(jobIdentifier=arn)
    assert error_code(caught) == ("ConflictException", 400)


def test_a_wrong_secret_is_aws_invalid_signature_and_an_unknown_key_is_unrecognized(bedrock_client):
    with pytest.raises(ClientError) as caught:
        bedrock_client(OPS[0], "not-the-secret").list_model_invocation_jobs()
    assert error_code(caught) == ("InvalidSignatureException", 403)
    assert "Secret Access Key" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        bedrock_client("AKIANOSUCHKEY0000000", "whatever").list_model_invocation_jobs()
    assert error_code(caught) == ("UnrecognizedClientException", 403)


def test_a_malformed_id_is_a_validation_error_and_an_unknown_job_is_not_found(bedrock_client):
    client = bedrock_client()
    with pytest.raises(ClientError) as caught:
        client.get_model_invocation_job(jobIdentifier="NOT-A-JOB")
    assert error_code(caught) == ("ValidationException", 400)
    with pytest.raises(ClientError) as caught:
        client.get_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert error_code(caught) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as caught:
        client.stop_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert error_code(caught) == ("ResourceNotFoundException", 404)


def test_accounts_are_isolated(bedrock_client):
    arn = create(bedrock_client(), "ops-only")
    research = bedrock_client(*RESEARCH)
    with pytest.raises(ClientError) as caught:
        research.get_model_invocation_job(jobIdentifier=arn)
    assert error_code(caught)[0] == "ResourceNotFoundException"
    assert research.list_model_invocation_jobs()["invocationJobSummaries"] == []


def test_create_checks_what_the_service_model_constrains_and_is_idempotent(bedrock_client):
    client = bedrock_client()
    with pytest.raises(ClientError) as caught:
        create(client, "too-many", records=50_001)
    assert error_code(caught) == ("ValidationException", 400)
    with pytest.raises(ClientError) as caught:
        create(client, "bad-timeout", timeout=500)
    assert error_code(caught) == ("ValidationException", 400)
    arn = create(client, "once")
    with pytest.raises(ClientError) as caught:
        create(client, "once")
    assert error_code(caught) == ("ConflictException", 400)
    again = {"jobName": "twice", "roleArn": ROLE, "modelId": MODEL, "clientRequestToken": "same-token-1"}
    configs = {
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://example-input/x/"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://example-output/x/"}},
    }
    first = client.create_model_invocation_job(**again, **configs)["jobArn"]
    assert client.create_model_invocation_job(**again, **configs)["jobArn"] == first != arn


def test_a_job_tagged_to_fail_validation_fails(bedrock_client, fast_simulator):
    client = bedrock_client()
    arn = create(client, "broken-input", tags=({"key": "simulator:fail-validation", "value": "true"},))
    job = wait_for(client, arn, {"Failed"})
    assert job["status"] == "Failed" and job["message"] and "totalRecordCount" not in job


def test_a_stalled_job_stops_counting(bedrock_client, fast_simulator):
    fast_simulator.SIMULATOR_PROCESSING_SECONDS = 20
    client = bedrock_client()
    arn = create(client, "stalls", records=1000)
    wait_for(client, arn, {"InProgress"})
    assert stall.stall(arn[-12:])
    frozen = client.get_model_invocation_job(jobIdentifier=arn)["processedRecordCount"]
    time.sleep(0.5)
    assert client.get_model_invocation_job(jobIdentifier=arn)["processedRecordCount"] == frozen
    assert stall.release(arn[-12:])


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [
        ("429", "ThrottlingException", 429),
        ("500", "InternalServerException", 500),
        ("529", "ServiceUnavailableException", 503),
    ],
)
def test_faults_are_aws_errors(bedrock_client, fault, code, status):
    client = bedrock_client(headers={"x-sim-fault": fault})
    with pytest.raises(ClientError) as caught:
        client.list_model_invocation_jobs()
    assert error_code(caught) == (code, status)


def test_faults_still_require_a_valid_signature(bedrock_client):
    with pytest.raises(ClientError) as caught:
        bedrock_client(OPS[0], "wrong-secret", headers={"x-sim-fault": "500"}).list_model_invocation_jobs()
    assert error_code(caught) == ("InvalidSignatureException", 403)


def test_latency_delays_the_answer(bedrock_client):
    started = time.monotonic()
    bedrock_client(headers={"x-sim-latency-ms": "300"}).list_model_invocation_jobs()
    assert time.monotonic() - started >= 0.3


def test_an_unknown_route_is_an_aws_error(simulator):
    answer = httpx.get(simulator + "/bedrock/no-such-operation")
    assert answer.status_code == 404 and set(answer.json()) == {"message"}
    assert answer.headers["x-amzn-ErrorType"].startswith("ResourceNotFoundException:")
    assert answer.headers["x-amzn-RequestId"]


# --- the dashboard's own provider module, signing with httpx, against the same simulator ----------------------------


def test_the_dashboard_provider_lists_reads_and_stops_signed_by_its_own_auth(bedrock_client, simulator):
    client = bedrock_client()
    arns = [create(client, f"dash-{number}") for number in range(3)]
    account = AccountSpec(
        name="ops", base_url=simulator + "/bedrock", api_key=OPS[1], options=bedrock.SIMULATOR_OPTIONS["ops"]
    )
    connection = bedrock.connect(account)
    with httpx.Client(base_url=account.base_url, auth=connection.auth, timeout=10) as http:
        provider = bedrock.BedrockProvider(http, account="bedrock-ops", secrets=connection.secrets)
        first = provider.list_page(limit=2)
        rest = provider.list_page(limit=2, after=first.next_cursor)
        assert [batch.id for batch in first.batches + rest.batches] == [arn[-12:] for arn in arns[::-1]]
        assert rest.has_more is False
        assert provider.retrieve(arns[0][-12:]).status in bedrock.STATUSES
        stopped = provider.cancel(arns[1][-12:])
        assert stopped.status == "Stopping" and stopped.cancel_initiated_at is not None
        assert not stopped.counts.known or stopped.counts.total == 20


def test_seed_demo_seeds_jobs_of_every_kind_for_both_accounts(bedrock_client):
    from dashboard.simulator.demo import seed_demo_batches

    seed_demo_batches()
    for keys in (OPS, RESEARCH):
        jobs = bedrock_client(*keys).list_model_invocation_jobs()["invocationJobSummaries"]
        statuses = {job["status"] for job in jobs}
        assert {"InProgress", "Completed", "PartiallyCompleted", "Expired", "Failed", "Stopping", "Stopped"} <= statuses
        assert statuses & {"Submitted", "Validating", "Scheduled"}
        assert any("totalRecordCount" not in job for job in jobs)  # a job not yet validated: counts unknown
        for job in jobs:
            wire = {**job, **{name: job[name].isoformat() for name in bedrock.TIMESTAMPS if name in job}}
            assert bedrock.parse_batch(wire, account="x").status == job["status"]
