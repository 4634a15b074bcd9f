"""Bulk-cancel confirmations racing on a real PostgreSQL: two sessions of one user posting at the
same moment (tests/integration/bulk_race.py, a process of its own, its simulator in process)."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from tests.services import ROOT, app_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_confirmations_at_the_same_moment_make_one_operation_per_preview_and_share_the_typed_number(
    postgres_server,
):
    database_url = postgres_server.create_database(migrated=True)
    env = app_env(DATABASE_URL=database_url)
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.bulk_race"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    answers = json.loads(done.stdout.strip().splitlines()[-1])

    # The same preview confirmed by both sessions at once: both are sent to the one operation it made.
    for both in answers["same_preview"]:
        assert [status for status, _ in both] == [302, 302], both
        assert both[0][1] == both[1][1], both
    # Two previews of three, confirmed at once without the number typed: six within the window, so
    # the one that comes second is refused (the user's confirmations are taken one at a time).
    assert answers["previewed"] == [3, 3]
    assert sorted(status for status, _ in answers["two_previews"]) == [302, 400]

    with psycopg.connect(database_url) as db:
        operations = db.execute("SELECT count(*), sum(total) FROM dashboard_bulkcancel").fetchone()
        assert operations == (7, 9)  # six of one batch, one of three
        per_batch = db.execute(
            "SELECT batch_id, count(*) FILTER (WHERE outcome = 'accepted'), count(*) FROM dashboard_cancelattempt "
            "GROUP BY batch_id"
        ).fetchall()
        assert len(per_batch) == 9 and {(accepted, made) for _, accepted, made in per_batch} == {(1, 1)}
        items = db.execute("SELECT state, attempt_id FROM dashboard_bulkcancelitem").fetchall()
        assert {state for state, _ in items} == {"canceled"}
        assert len({attempt for _, attempt in items}) == 9 and None not in {attempt for _, attempt in items}
