"""Run as `python -m tests.integration.bulk_race` on a migrated database (DATABASE_URL): one user's
bulk-cancel confirmations posted from two sessions at the same moment; prints what they were
answered, as JSON, once every operation's task has run.

1. `same_preview`: six previews of one batch each, each confirmed by both sessions at once.
2. `two_previews`: two previews of three batches each (past the typed-number window of the
   first part), confirmed at once without the number typed: six in all, so one must be refused.
"""

from __future__ import annotations

import json
import threading

import django


def at_once(posts) -> list[tuple[int, str]]:
    """Run each `post()` on a thread of its own, released together; (status, Location) of each."""
    from django.db import connections

    barrier = threading.Barrier(len(posts))
    answers: list[tuple[int, str] | None] = [None] * len(posts)

    def run(index: int) -> None:
        try:
            barrier.wait()
            response = posts[index]()
            answers[index] = (response.status_code, response.get("Location", ""))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(posts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return [answer or (0, "") for answer in answers]


def token_of(client, query: str) -> tuple[str, list[str]]:
    import re

    body = client.get("/bulk-cancel/preview?" + query).content.decode()
    batches = re.findall(r'<input type="checkbox" name="batch" value="([^"]+)"', body)
    return re.search(r'name="token" value="([^"]*)"', body).group(1), batches


def main() -> None:
    django.setup()
    from datetime import timedelta

    from django.test import Client
    from django.utils import timezone

    from dashboard import background
    from dashboard.bulk import operations
    from dashboard.models import BulkCancel
    from dashboard.simulator.demo import ensure_demo_accounts
    from tests.conftest import make_user
    from tests.factories import anthropic_batch, embedded_anthropic, embedded_openai, openai_batch, poll_store

    ensure_demo_accounts()
    user = make_user("racer", can_cancel=True)
    sessions = []
    for _ in range(2):
        session = Client(HTTP_HOST="127.0.0.1")
        session.force_login(user)
        sessions.append(session)

    ids = [anthropic_batch(embedded_anthropic, seconds=3600).id for _ in range(3)]
    ids += [openai_batch(embedded_openai, seconds=3600).id for _ in range(3)]
    poll_store()
    same_preview = []
    for batch_id in ids:
        token, batches = token_of(sessions[0], f"q={batch_id}")
        form = {"token": token, "batch": batches, "typed": "1"}
        same_preview.append(
            at_once([lambda s=session, f=form: s.post("/bulk-cancel/confirm", f) for session in sessions])
        )

    background.run_ready(worker_id="bulk-race")  # a worker cancels those six: no longer cancelable below
    BulkCancel.objects.update(created_at=timezone.now() - operations.TYPED_WINDOW - timedelta(minutes=1))
    for _ in range(3):
        anthropic_batch(embedded_anthropic, seconds=3600)
        openai_batch(embedded_openai, seconds=3600)
    poll_store()
    forms = []
    for account in ("anthropic-ops", "openai-ops"):
        token, batches = token_of(sessions[0], f"account={account}")
        forms.append({"token": token, "batch": batches})
    two_previews = at_once(
        [
            lambda s=session, f=form: s.post("/bulk-cancel/confirm", f)
            for session, form in zip(sessions, forms, strict=True)
        ]
    )

    background.run_ready(worker_id="bulk-race")  # every operation's task, as a worker runs them
    print(
        json.dumps(
            {"same_preview": same_preview, "two_previews": two_previews, "previewed": [len(f["batch"]) for f in forms]}
        )
    )


if __name__ == "__main__":
    main()
