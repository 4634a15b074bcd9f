"""Amazon Bedrock jobs through the dashboard's pages: polled from the simulator over real HTTP (signed by
the provider module's SigV4 auth), listed, shown with where their records are, and stopped."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from dashboard.models import CancelAttempt
from dashboard.providers import bedrock
from dashboard.simulator.bedrock_api import RECORDS_TAG
from tests.factories import HTMX, poll_store, text

OPS = ("AKIASIMULATOROPS", "sim-secret-ops")


@pytest.fixture
def bedrock_job(dashboard_upstream, settings):
    """A job of 30 records created by boto3 in the ops demo account: (its id, the client). Submitted,
    then validating for a minute: its record counts not reported yet."""
    settings.SIMULATOR_VALIDATING_SECONDS = 60
    client = boto3.client(
        "bedrock",
        endpoint_url=dashboard_upstream + "/bedrock",
        region_name="us-east-1",
        aws_access_key_id=OPS[0],
        aws_secret_access_key=OPS[1],
        config=Config(retries={"total_max_attempts": 1}),
    )
    arn = client.create_model_invocation_job(
        jobName="page-walk",
        roleArn="arn:aws:iam::123456789012:role/Batch",
        modelId="anthropic.claude-3-haiku-20240307-v1:0",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://walk-input/jobs/"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://walk-output/jobs/"}},
        tags=[{"key": RECORDS_TAG, "value": "30"}],
    )["jobArn"]
    yield arn.rsplit("/", 1)[1], client
    client.close()


def test_a_bedrock_job_is_listed_shown_with_its_s3_output_and_stopped(operator_client, bedrock_job):
    job_id, client = bedrock_job
    poll_store()
    listing = text(operator_client.get("/"))
    assert "request counts unknown" in listing
    assert f'id="row-bedrock-ops-{job_id}"' in listing
    assert '<option value="bedrock">Amazon Bedrock</option>' in listing
    assert '<option value="InProgress">InProgress (Amazon Bedrock)</option>' in listing
    found = text(operator_client.get("/", {"q": "PAGE-WALK"}))  # its name, searched like metadata
    assert f'id="row-bedrock-ops-{job_id}"' in found

    detail = text(operator_client.get(f"/batches/bedrock-ops/{job_id}/"))
    assert "writes this job&#x27;s records to S3, under s3://walk-output/jobs/" in detail
    assert "This dashboard does not read S3" in detail
    assert "<th>outputDataConfig.s3OutputDataConfig.s3Uri</th><td><code>s3://walk-output/jobs/</code>" in detail
    assert "unknown: Amazon Bedrock · ops has not reported request counts" in detail
    assert "Counting errors" not in detail and "Results are available once" not in detail
    assert OPS[1] not in detail

    response = operator_client.post(f"/batches/bedrock-ops/{job_id}/cancel", **HTMX)
    assert response.status_code == 200
    assert 'data-status="Stopping"' in text(response)
    attempt = CancelAttempt.objects.get()
    assert (attempt.outcome, attempt.status_after, attempt.account) == ("accepted", "Stopping", "bedrock-ops")
    assert client.get_model_invocation_job(jobIdentifier=job_id)["status"] == "Stopping"


def test_the_demo_accounts_sign_with_their_access_keys(dashboard_upstream):
    from dashboard.accounts import configured_accounts, configured_secrets

    accounts = {account.key: account for account in configured_accounts() if account.provider == "bedrock"}
    assert sorted(accounts) == ["bedrock-ops", "bedrock-research"]
    assert dict(accounts["bedrock-ops"].options) == bedrock.SIMULATOR_OPTIONS["ops"]
    assert {"sim-secret-ops", "sim-secret-research"} <= set(configured_secrets())


def test_the_cli_says_a_jobs_counts_are_unknown_rather_than_zero(db, monkeypatch):
    from datetime import UTC, datetime
    from io import StringIO

    from django.core.management import call_command

    from dashboard.batches import store
    from tests.providers.test_bedrock import IN_PROGRESS, LIST_PAGE

    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "BATCH_ACCOUNTS_FILE", "AWS_BEDROCK_REGION"):
        monkeypatch.delenv(name, raising=False)
    for body in (LIST_PAGE["invocationJobSummaries"][0], IN_PROGRESS):
        store.record(bedrock.parse_batch(body, account="bedrock-ops"), fetched_at=datetime.now(UTC))
    out = StringIO()
    call_command("batches", "list", "--account", "bedrock-ops", stdout=out, stderr=StringIO())
    lines = {line.split()[1]: line for line in out.getvalue().splitlines()[1:]}
    assert lines["zz98yy76xx54"].rstrip().endswith("requests unknown")
    assert "4501 ok, 17 err, 7482 processing of 12000" in lines["ab12cd34ef56"]


def test_the_demo_jobs_are_polled_in_process_and_listed_in_every_status(operator_client, embedded_upstream):
    from dashboard.models import StoredBatch
    from dashboard.simulator.demo import seed_demo_batches

    seed_demo_batches()
    poll_store()
    stored = StoredBatch.objects.filter(provider="bedrock")
    assert set(stored.values_list("account", flat=True)) == {"bedrock-ops", "bedrock-research"}
    statuses = set(stored.values_list("status", flat=True))
    assert {"InProgress", "Completed", "PartiallyCompleted", "Expired", "Failed", "Stopped"} <= statuses
    page = text(operator_client.get("/", {"provider": "bedrock"}))
    assert page.count('id="row-bedrock-') == stored.count() == 18  # nine demo jobs in each account, one page
