"""Run as `python -m tests.integration.background_work RECEIVER_URL` on a migrated database
(DATABASE_URL): makes 8 running batches (the simulator in process, its tables in that database),
a bulk cancel of each (8 operations, so 8 tasks), a webhook channel to RECEIVER_URL and 6 alarm
changes for it (6 deliveries); prints their ids as JSON. Worker processes do the rest."""

from __future__ import annotations

import json
import sys

import django


def main(receiver_url: str) -> None:
    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from dashboard.accounts import configured_accounts
    from dashboard.alarms import evaluation
    from dashboard.batches.selectors import ListFilters
    from dashboard.bulk import operations
    from dashboard.models import Alarm, NotificationChannel
    from dashboard.simulator.demo import ensure_demo_accounts
    from tests.conftest import make_user
    from tests.factories import anthropic_batch, embedded_anthropic, embedded_openai, openai_batch, poll_store

    ensure_demo_accounts()
    user = make_user("operator", can_cancel=True)
    ids = [anthropic_batch(embedded_anthropic, seconds=3600).id for _ in range(4)]
    ids += [openai_batch(embedded_openai, seconds=3600).id for _ in range(4)]
    poll_store()
    made = []
    for batch_id in ids:
        shown = operations.preview(user=user, accounts=configured_accounts(), filters=ListFilters(search=batch_id))
        selected = [operations.batch_key(row["account"], row["batch_id"]) for row in shown.batches]
        operation, _ = operations.create(
            user=user, accounts=configured_accounts(), token=shown.token, selected=selected, typed="1"
        )
        made.append(operation.pk)

    NotificationChannel.objects.create(name="ops", kind="webhook", target=receiver_url, secret_env="NOTIFY_TEST_SECRET")
    for number in range(6):
        with transaction.atomic():  # as an evaluation writes the outbox
            now = timezone.now()
            alarm = Alarm.objects.create(
                rule="stuck", account=f"openai-ops-{number}", opened_at=now, last_seen_at=now, detail="stuck"
            )
            evaluation.alarms_changed([alarm], [])
    print(json.dumps({"operations": made, "batches": ids}))


if __name__ == "__main__":
    main(sys.argv[1])
