"""The four documented demo accounts; only SHA-256 digests of their keys are stored."""

import hashlib

from django.db import migrations

DEMO_ACCOUNTS = [
    ("anthropic", "ops", "sk-ant-sim-ops"),
    ("anthropic", "research", "sk-ant-sim-research"),
    ("openai", "ops", "sk-sim-ops"),
    ("openai", "research", "sk-sim-research"),
]


def create_accounts(apps, schema_editor):
    SimAccount = apps.get_model("simulator", "SimAccount")
    for provider, name, key in DEMO_ACCOUNTS:
        SimAccount.objects.get_or_create(
            provider=provider, name=name, defaults={"key_sha256": hashlib.sha256(key.encode()).hexdigest()}
        )


class Migration(migrations.Migration):
    dependencies = [("simulator", "0001_initial")]
    operations = [migrations.RunPython(create_accounts, migrations.RunPython.noop)]
