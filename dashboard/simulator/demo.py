"""The documented demo accounts of the simulator and the seeded demo set of batches."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from django.db import transaction

from . import clock
from .models import Provider, SimAccount, SimBatch, SimFile, SimRequest, anthropic_batch_id, key_digest, openai_batch_id

DEMO_KEYS = {
    (Provider.ANTHROPIC, "ops"): "sk-ant-sim-ops",
    (Provider.ANTHROPIC, "research"): "sk-ant-sim-research",
    (Provider.OPENAI, "ops"): "sk-sim-ops",
    (Provider.OPENAI, "research"): "sk-sim-research",
}


def ensure_demo_accounts() -> list[SimAccount]:
    accounts = []
    for (provider, name), key in DEMO_KEYS.items():
        account, _ = SimAccount.objects.get_or_create(
            provider=provider, name=name, defaults={"key_sha256": key_digest(key)}
        )
        accounts.append(account)
    return accounts
