"""The outbox: what an alarm change is to tell the channels, written with the change.

`alarms.evaluation.evaluate` hands what opened and resolved to `evaluation.alarms_changed`, inside its transaction;
that calls `write_outbox`, which writes one `Delivery` row per matching channel and event. A
notification is therefore recorded if and only if its alarm change is (a rolled-back evaluation
leaves none), and nothing is sent inside the transaction: workers send the outbox, each attempt a
task (dispatch.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import Alarm, Delivery, NotificationEvent, StoredBatch
from .channels import all_secrets, channels
from .messages import payload_for

Event = NotificationEvent


def write_outbox(opened: Sequence[Alarm], resolved: Sequence[Alarm]) -> list[Delivery]:
    """One delivery per enabled channel that wants each change; called inside the evaluation's
    transaction (alarms.evaluation.alarms_changed), so it is written if and only if the change is. No I/O."""
    targets = channels()
    if not targets:
        return []
    changes = [(alarm, Event.OPENED.value, alarm.opened_at) for alarm in opened]
    changes += [(alarm, Event.RESOLVED.value, alarm.resolved_at or alarm.last_seen_at) for alarm in resolved]
    wanted = [
        (alarm, event, at, channel)
        for alarm, event, at in changes
        for channel in targets
        if channel.wants(alarm.rule, alarm.account, event)
    ]
    if not wanted:
        return []
    batch_pks = {alarm.batch_id for alarm, *_ in wanted if alarm.batch_id is not None}
    upstream_ids = dict(StoredBatch.objects.filter(pk__in=batch_pks).values_list("pk", "batch_id"))
    secrets = all_secrets()
    payloads: dict[tuple[int, str], dict] = {}
    rows = []
    for alarm, event, at, channel in wanted:
        if (alarm.pk, event) not in payloads:
            batch_id = upstream_ids.get(alarm.batch_id)
            payloads[alarm.pk, event] = payload_for(alarm, event, batch_id=batch_id, secrets=secrets)
        rows.append(
            Delivery(
                channel=channel,
                alarm=alarm,
                event=event,
                payload=payloads[alarm.pk, event],
                created_at=at,
                next_attempt_at=at,
            )
        )
    return Delivery.objects.bulk_create(rows, batch_size=500)
