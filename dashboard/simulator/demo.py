"""The documented demo accounts of the simulator and the seeded demo set of batches."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from django.db import transaction

from . import clock, results_cache
from .models import (
    Provider,
    SimAccount,
    SimBatch,
    SimFile,
    add_requests,
    anthropic_batch_id,
    bedrock_job_id,
    gemini_batch_id,
    key_digest,
)

DEMO_KEYS = {
    (Provider.ANTHROPIC, "ops"): "sk-ant-sim-ops",
    (Provider.ANTHROPIC, "research"): "sk-ant-sim-research",
    (Provider.OPENAI, "ops"): "sk-sim-ops",
    (Provider.OPENAI, "research"): "sk-sim-research",
    (Provider.AZURE_OPENAI, "ops"): "azure-sim-ops",
    (Provider.AZURE_OPENAI, "research"): "azure-sim-research",
    (Provider.BEDROCK, "ops"): "sim-secret-ops",  # the secret access key of AKIASIMULATOROPS
    (Provider.BEDROCK, "research"): "sim-secret-research",  # of AKIASIMULATORRESEARCH
    (Provider.GEMINI, "ops"): "gemini-sim-ops",
    (Provider.GEMINI, "research"): "gemini-sim-research",
}


def ensure_demo_accounts() -> list[SimAccount]:
    accounts = []
    for (provider, name), key in DEMO_KEYS.items():
        account, _ = SimAccount.objects.get_or_create(
            provider=provider, name=name, defaults={"key_sha256": key_digest(key)}
        )
        accounts.append(account)
    return accounts


ANTHROPIC_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")
OPENAI_MODELS = ("gpt-4.1-mini", "gpt-4o", "gpt-5-mini")
GEMINI_MODELS = ("gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro")


def _seconds(**kwargs: float) -> float:
    return timedelta(**kwargs).total_seconds()


# (label, total, created this long ago, processing span, cancel this long after creation, cancel grace)
ANTHROPIC_PLANS = [
    ("nightly-eval", 400, _seconds(seconds=10), _seconds(minutes=2), None, 8),
    ("support-triage", 1500, _seconds(minutes=1), _seconds(minutes=7), None, 8),
    ("backfill-summaries", 3000, _seconds(hours=3), _seconds(hours=20), None, 8),
    ("prompt-ab-test", 600, _seconds(minutes=5), _seconds(hours=1), _seconds(minutes=5, seconds=-10), 90),
    ("weekly-report", 250, _seconds(days=2), _seconds(minutes=40), None, 8),
    ("translation-run", 900, _seconds(days=1), _seconds(hours=2), _seconds(minutes=30), 60),
    ("archive-reindex", 120, _seconds(hours=30), _seconds(hours=30), None, 8),
]

# (label, total, created ago, validating, processing, finalizing, cancel after creation, cancel grace, valid input)
OPENAI_PLANS = [
    ("fresh-upload", 300, 0, 45, _seconds(minutes=5), 20, None, 8, True),
    ("embeddings-refresh", 800, 20, 5, _seconds(minutes=3), 20, None, 8, True),
    ("catalog-descriptions", 2500, _seconds(hours=1), 30, _seconds(hours=5), 60, None, 8, True),
    ("moderation-sweep", 200, _seconds(minutes=10), 5, _seconds(minutes=10, seconds=-15), 120, None, 8, True),
    ("faq-answers", 450, _seconds(hours=3), 20, _seconds(minutes=40), 60, None, 8, True),
    ("bad-input", 30, _seconds(hours=6), 10, 60, 10, None, 8, False),
    ("stale-queue", 150, _seconds(days=2), 30, _seconds(hours=30), 60, None, 8, True),
    (
        "classifier-retrain",
        1000,
        _seconds(minutes=15),
        10,
        _seconds(hours=2),
        60,
        _seconds(minutes=15, seconds=-5),
        120,
        True,
    ),
    ("old-experiment", 700, _seconds(days=1), 15, _seconds(hours=3), 60, _seconds(minutes=20), 60, True),
]

# (job name, records, submitted ago, before processing, processing, stop after submit, stop grace, timeout hours, valid)
# Before processing: Submitted, Validating and Scheduled; a job whose processing would start after its
# timeout expires (Expired), one that times out while processing ends PartiallyCompleted.
BEDROCK_PLANS = [
    ("nightly-triage", 800, 0, 90, _seconds(minutes=6), None, 8, 168, True),
    ("claims-summaries", 2400, _seconds(minutes=3), 30, _seconds(minutes=40), None, 8, 72, True),
    ("catalog-enrichment", 1200, _seconds(minutes=1), 150, _seconds(hours=2), None, 8, 168, True),
    ("ticket-tags", 600, _seconds(hours=2), 60, _seconds(minutes=30), None, 8, 24, True),
    ("doc-qa", 3000, _seconds(hours=25), 120, _seconds(hours=30), None, 8, 24, True),
    ("stale-queue", 500, _seconds(hours=26), _seconds(hours=25), 600, None, 8, 24, True),
    ("bad-manifest", 300, _seconds(hours=4), 60, 600, None, 8, 24, False),
    ("reindex-archive", 900, _seconds(hours=1), 30, _seconds(hours=3), _seconds(minutes=20), 45, 168, True),
    ("eval-sweep", 1500, _seconds(minutes=4), 20, _seconds(hours=1), _seconds(minutes=4, seconds=-15), 120, 168, True),
]
BEDROCK_MODELS = (
    "anthropic.claude-3-5-haiku-20241022-v1:0",
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "amazon.nova-lite-v1:0",
)


def _bedrock_job(label: str, account: SimAccount, model: str) -> dict:
    return {
        "jobName": label,
        "roleArn": "arn:aws:iam::111122223333:role/BedrockBatchInference",
        "modelId": model,
        "inputDataConfig": {
            "s3InputDataConfig": {"s3InputFormat": "JSONL", "s3Uri": f"s3://demo-{account.name}-batch-input/{label}/"}
        },
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://demo-{account.name}-batch-output/{label}/"}},
    }


# Azure's: OpenAI's plans, but one batch runs on past its 24 hours, as Azure lets it (it does not expire).
PAST_24_HOURS = ("past-24-hours", 150, _seconds(hours=26), 30, _seconds(hours=30), 60, None, 8, True)
AZURE_PLANS = [PAST_24_HOURS if plan[0] == "stale-queue" else plan for plan in OPENAI_PLANS]
# (label, total, created ago, pending, processing, cancel after creation, cancel grace, source: inline | file | broken)
GEMINI_PLANS = [
    ("fresh-eval", 40, 0, 30, _seconds(minutes=5), None, 8, "inline"),
    ("catalog-tags", 1200, 20, 5, _seconds(minutes=10), None, 8, "file"),
    ("support-summaries", 300, _seconds(hours=2), 20, _seconds(minutes=30), None, 8, "file"),
    ("translation-ab", 60, _seconds(minutes=10), 5, _seconds(hours=1), _seconds(minutes=10, seconds=-10), 60, "inline"),
    ("weekly-digest", 25, _seconds(days=1), 10, _seconds(minutes=20), None, 8, "inline"),
    ("stale-backfill", 500, _seconds(days=3), 30, _seconds(hours=60), None, 8, "file"),
    ("bad-input", 20, _seconds(hours=5), 10, 60, None, 8, "broken"),
]


# One running batch of the demo errs above the error-rate alarm's threshold (10%) per provider whose
# counts move while it runs, so that alarm can be seen; the others stay under it, or a first start
# would open one alarm for every third running batch.
NOISY_ANTHROPIC_PLAN = "backfill-summaries"
NOISY_OPENAI_PLAN = "classifier-retrain"
NOISY_ERROR_PERCENT = 12
QUIET_ERROR_PERCENT = 6


def demo_error_percent(drawn: int, *, noisy: bool) -> int:
    """The share of a demo batch's requests that error; `drawn` keeps the demo's random sequence as it was."""
    return NOISY_ERROR_PERCENT if noisy else min(drawn, QUIET_ERROR_PERCENT)


def _demo_metadata(label: str, account: SimAccount) -> dict:
    metadata = {"job": label, "team": account.name}
    if label == "faq-answers":
        # Upstream text is untrusted: the dashboard must show this literally, never run it.
        metadata["note"] = "<script>alert('metadata')</script> & <b>bold</b>"
    return metadata


def _openai_input(label: str, total: int, model: str, *, valid: bool, prefix: str = "/v1") -> bytes:
    lines = []
    for i in range(total):
        url = f"{prefix}/chat/completions" if valid or i % 7 else f"{prefix}/embeddings"
        lines.append(
            json.dumps(
                {
                    "custom_id": f"{label}-{i:05d}",
                    "method": "POST",
                    "url": url,
                    "body": {
                        "model": model,
                        "messages": [{"role": "user", "content": f"Question {i}"}],
                        "max_tokens": 256,
                    },
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()


@transaction.atomic
def seed_demo_batches() -> int:
    """Replace the demo batches with a fresh set whose clock starts now; keeps API-made batches."""
    from . import azure_openai_api, openai_api

    ensure_demo_accounts()
    old_inputs = list(
        SimBatch.objects.filter(is_demo=True).exclude(input_file=None).values_list("input_file", flat=True)
    )
    gone = list(SimBatch.objects.filter(is_demo=True).values_list("account_id", "pk"))
    SimBatch.objects.filter(is_demo=True).delete()
    transaction.on_commit(lambda: results_cache.forget(gone))
    SimFile.objects.filter(pk__in=old_inputs).delete()

    now = clock.now()
    rng = random.Random(20261124)
    created = 0
    for account in SimAccount.objects.order_by("provider", "name"):
        is_research = account.name == "research"
        if account.provider == Provider.ANTHROPIC:
            for label, total, ago, span, cancel_after, grace in ANTHROPIC_PLANS:
                total = total // 2 if is_research else total
                model = ANTHROPIC_MODELS[rng.randrange(len(ANTHROPIC_MODELS))]
                created_at = now - timedelta(seconds=ago)
                batch = SimBatch.objects.create(
                    account=account,
                    public_id=anthropic_batch_id(),
                    created_at=created_at,
                    total=total,
                    seed=rng.randrange(2**31),
                    processing_seconds=span,
                    cancel_grace_seconds=grace,
                    error_percent=demo_error_percent(
                        rng.choice((3, 8, 15)), noisy=label == NOISY_ANTHROPIC_PLAN and not is_research
                    ),
                    # As on Anthropic, requests expire only when their batch outlives its 24 hours.
                    expire_percent=0,
                    is_demo=True,
                    cancel_initiated_at=None if cancel_after is None else created_at + timedelta(seconds=cancel_after),
                    output_file_id="",
                    error_file_id="",
                )
                _add_requests(batch, (f"{label}-{i:05d}" for i in range(total)), model)
                created += 1
        elif account.provider == Provider.BEDROCK:
            for label, total, ago, before, span, stop_after, grace, hours, valid in BEDROCK_PLANS:
                total = total // 2 if is_research else total
                model = BEDROCK_MODELS[rng.randrange(len(BEDROCK_MODELS))]
                created_at = now - timedelta(seconds=ago)
                SimBatch.planned(
                    account=account,
                    public_id=bedrock_job_id(),
                    created_at=created_at,
                    total=total,
                    seed=rng.randrange(2**31),
                    processing_seconds=span,
                    cancel_grace_seconds=grace,
                    error_percent=rng.choice((1, 4, 9)),
                    validating_seconds=before,
                    timeout_hours=hours,
                    is_demo=True,
                    cancel_initiated_at=None if stop_after is None else created_at + timedelta(seconds=stop_after),
                    model=model,
                    job_config=_bedrock_job(label, account, model),
                    validation_errors=None if valid else {"demo": "invalid input"},
                    output_file_id="",
                    error_file_id="",
                ).save()
                created += 1
        elif account.provider == Provider.GEMINI:
            created += _seed_gemini(account, rng, now, is_research)
        else:
            is_azure = account.provider == Provider.AZURE_OPENAI
            dialect = azure_openai_api.V1 if is_azure else openai_api.DIALECT
            prefix = "" if is_azure else "/v1"  # Azure's own examples name endpoints without /v1
            for label, total, ago, validating, span, finalizing, cancel_after, grace, valid in (
                AZURE_PLANS if is_azure else OPENAI_PLANS
            ):
                total = total // 2 if is_research else total
                model = OPENAI_MODELS[rng.randrange(len(OPENAI_MODELS))]
                created_at = now - timedelta(seconds=ago)
                content = _openai_input(label, total, model, valid=valid, prefix=prefix)
                input_file = SimFile.objects.create(
                    account=account,
                    public_id=dialect.new_file_id(),
                    purpose="batch",
                    filename=f"{label}.jsonl",
                    content=content,
                    created_at=created_at,
                )
                requests, problems = openai_api.input_problems(content, f"{prefix}/chat/completions", dialect)
                batch = SimBatch.planned(
                    account=account,
                    public_id=dialect.new_batch_id(),
                    expires=dialect.batches_expire,
                    output_file_id=dialect.new_file_id(),
                    error_file_id=dialect.new_file_id(),
                    created_at=created_at,
                    total=0 if problems else len(requests),
                    seed=rng.randrange(2**31),
                    processing_seconds=span,
                    cancel_grace_seconds=grace,
                    error_percent=demo_error_percent(
                        rng.choice((2, 6, 12)), noisy=label == NOISY_OPENAI_PLAN and not (is_research or is_azure)
                    ),
                    validating_seconds=validating,
                    finalizing_seconds=finalizing,
                    is_demo=True,
                    cancel_initiated_at=None if cancel_after is None else created_at + timedelta(seconds=cancel_after),
                    endpoint=f"{prefix}/chat/completions",
                    completion_window="24h",
                    input_file=input_file,
                    input_file_public_id=input_file.public_id,
                    metadata=_demo_metadata(label, account),
                    model=model,
                    validation_errors={"object": "list", "data": problems} if problems else None,
                )
                batch.save()
                if not problems:
                    _add_requests(batch, (custom_id for custom_id, _ in requests), model)
                created += 1
    return created


def _seed_gemini(account: SimAccount, rng: random.Random, now, is_research: bool) -> int:
    from .gemini_api import UPLOADED_PURPOSE, file_requests, lower_id
    from .progression import GEMINI_WINDOW_HOURS

    for label, total, ago, pending, span, cancel_after, grace, source in GEMINI_PLANS:
        total = total // 2 if is_research else total
        model = GEMINI_MODELS[rng.randrange(len(GEMINI_MODELS))]
        created_at = now - timedelta(seconds=ago)
        input_file, problems = None, []
        if source == "inline":
            requests = [(json.dumps({"key": f"{label}-{i:05d}"}, separators=(",", ":")), "") for i in range(total)]
        else:
            lines = [
                {"key": f"{label}-{i:05d}", "request": {"contents": [{"parts": [{"text": f"Q{i}"}]}]}}
                for i in range(total)
            ]
            content = "".join(json.dumps(line) + "\n" for line in lines).encode()
            if source == "broken":
                content = b"this is not JSON\n" + content
            input_file = SimFile.objects.create(
                account=account,
                public_id=lower_id(),
                purpose=UPLOADED_PURPOSE,
                filename=f"{label}.jsonl",
                content=content,
                created_at=created_at,
            )
            requests, problems = file_requests(content)
        batch = SimBatch.planned(
            account=account,
            public_id=gemini_batch_id(),
            created_at=created_at,
            total=len(requests),
            seed=rng.randrange(2**31),
            processing_seconds=span,
            cancel_grace_seconds=grace,
            error_percent=rng.choice((2, 5, 10)),
            validating_seconds=pending,
            timeout_hours=GEMINI_WINDOW_HOURS,
            is_demo=True,
            cancel_initiated_at=None if cancel_after is None else created_at + timedelta(seconds=cancel_after),
            model=f"models/{model}",
            metadata={"displayName": label},
            input_file=input_file,
            input_file_public_id=input_file.public_id if input_file else "",
            validation_errors={"data": problems} if problems else None,
            output_file_id="",
            error_file_id="",
        )
        batch.save()
        add_requests(batch, requests)
    return len(GEMINI_PLANS)


def _add_requests(batch: SimBatch, custom_ids, model: str) -> None:
    add_requests(batch, ((custom_id, model) for custom_id in custom_ids))
