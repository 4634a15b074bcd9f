"""Every surface scoped by the grants, checked on the server: a property test over every URL the
dashboard serves, for users with random grants (no answer carries the id, metadata or results of an
account outside them, and no action succeeds on one), and each role's boundary."""

from __future__ import annotations

import itertools
import re

import pytest
from django.test import Client
from django.urls import get_resolver
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dashboard.access.models import Role
from dashboard.models import Alarm, BulkCancel, CancelAttempt, StoredBatch
from tests.conftest import make_user
from tests.factories import anthropic_batch, openai_batch, poll_store

HTMX = {"HTTP_HX_REQUEST": "true"}
ACCOUNTS = ("anthropic-ops", "anthropic-research", "openai-ops", "openai-research")
# Reached without signing in, or not about batches: what the property below need not visit.
NOT_ABOUT_BATCHES = {
    "login",
    "logout",
    "healthz",
    "metrics",  # behind its own token: README "Metrics"
    "oidc_authentication_init",
    "oidc_authentication_callback",
}
users = itertools.count(1)


def url_names() -> set[str]:
    return {pattern.name for pattern in get_resolver().url_patterns if getattr(pattern, "name", None)}


@pytest.fixture
def store(embedded_upstream, anthropic_sdk, openai_sdk):
    """In each account: a running batch and one that ended an hour ago (with results), each with a
    secret in its metadata where the provider has metadata; an alarm and an audited attempt on each."""
    made = {}
    for account in ACCOUNTS:
        provider, name = account.split("-")
        secret = f"secret-of-{account}"
        if provider == "anthropic":
            running = anthropic_batch(anthropic_sdk, name, count=2, seconds=3600)
            ended = anthropic_batch(anthropic_sdk, name, count=2, ended=True)
        else:
            running = openai_batch(openai_sdk, name, count=2, seconds=3600, metadata={"job": secret})
            ended = openai_batch(openai_sdk, name, count=2, metadata={"job": secret}, ago={"hours": 1})
        made[account] = {"running": running.id, "ended": ended.id, "secret": secret}
    poll_store()
    now = timezone.now()
    for account, batches in made.items():
        row = StoredBatch.objects.get(account=account, batch_id=batches["running"])
        alarm = Alarm.objects.create(
            rule="stuck", account=account, batch=row, opened_at=now, last_seen_at=now, detail=f"about {account}"
        )
        batches["alarm"] = alarm.pk
        CancelAttempt.objects.create(
            actor="someone", account=account, batch_id=batches["ended"], outcome="already_ended"
        )
    return made


def visits(batches: dict, other_operation: int) -> list[tuple[str, str, dict]]:
    """(url name, url, extra request options) for every URL: the pages, with the filters and search
    naming each account, and each batch's every URL."""
    found = [
        ("batch-list", "/?status=active", {}),
        ("list-header", "/summary", HTMX),
        ("alarm-list", "/alarms/", {}),
        ("alarm-badge", "/alarms/badge", HTMX),
        ("audit-log", "/audit/", {}),
        ("spend", "/spend/", {}),
        ("spend", "/spend/?format=csv", {}),
        ("bulk-cancel-list", "/bulk-cancel/", {}),
        ("bulk-cancel-preview", "/bulk-cancel/preview", {}),
        ("bulk-cancel-progress", f"/bulk-cancel/{other_operation}/", {}),
    ]
    for account, made in batches.items():
        found += [
            ("batch-list", f"/?account={account}", {}),
            ("batch-list", f"/?q={made['secret'] if account.startswith('openai') else made['running']}", {}),
            ("list-header", f"/summary?account={account}", HTMX),
            ("bulk-cancel-preview", f"/bulk-cancel/preview?account={account}", {}),
        ]
        for batch_id in (made["running"], made["ended"]):
            base = f"/batches/{account}/{batch_id}"
            found += [
                ("batch-detail", f"{base}/", {}),
                ("batch-row", f"{base}/row", HTMX),
                ("batch-alarms", f"{base}/alarms", HTMX),
                ("batch-results-summary", f"{base}/results/summary", HTMX),
                ("batch-results-download", f"{base}/results/download", {}),
                ("batch-results-export", f"{base}/results/export.csv", {}),
            ]
    return found


ROLES = st.frozensets(st.sampled_from(list(Role)))
GRANTS = st.fixed_dictionaries({account: ROLES for account in ACCOUNTS})


def holder_of(grants: dict[str, frozenset[str]]):
    username = f"user-{next(users)}"
    user = make_user(username, can_cancel=False, roles=())
    from dashboard.access import services as access

    for account, roles in grants.items():
        for role in roles:
            access.grant(group_name=f"{username}-team", patterns=[account], role=role, actor="tests", via="cli")
    if any(grants.values()):
        user.groups.add(user.groups.model.objects.get(name=f"{username}-team"))
    return user


def body_of(response) -> str:
    if hasattr(response, "streaming_content"):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def test_the_property_covers_every_url_the_dashboard_serves(store):
    covered = {name for name, _, _ in visits(store, 1)} | {"batch-cancel", "alarm-acknowledge", "bulk-cancel-confirm"}
    assert url_names() - NOT_ABOUT_BATCHES <= covered, "a new URL: visit it in the property below"


def test_no_answer_carries_an_account_outside_the_grants_and_no_action_succeeds_on_one(store, operator):
    from tests.bulk.test_bulk_cancel import preview as bulk_preview

    operator_client = Client()
    operator_client.force_login(operator)
    _, listed, token = bulk_preview(operator_client)
    everything = Client()
    everything.force_login(operator)
    assert (
        everything.post("/bulk-cancel/confirm", {"token": token, "batch": listed[:1], "typed": ""}).status_code == 302
    )
    other_operation = BulkCancel.objects.get().pk

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(grants=GRANTS)
    @example(grants=dict.fromkeys(ACCOUNTS, frozenset()))
    @example(grants={**dict.fromkeys(ACCOUNTS, frozenset()), "openai-ops": frozenset({Role.VIEWER})})
    @example(
        grants={"anthropic-ops": frozenset({Role.OPERATOR}), **dict.fromkeys(ACCOUNTS[1:], frozenset({Role.RESULTS}))}
    )
    def check(grants):
        client = Client()
        holder = holder_of(grants)
        client.force_login(holder)
        sees = {account for account, roles in grants.items() if roles}
        hidden = [store[account] for account in ACCOUNTS if account not in sees]
        secrets = [value for made in hidden for value in (made["running"], made["ended"], made["secret"])]
        hidden_accounts = [account for account in ACCOUNTS if account not in sees]
        for name, url, options in visits(store, other_operation):
            response = client.get(url, **options)
            assert response.status_code < 500, url
            body = body_of(response)
            typed = url.partition("?q=")[2]  # the page repeats what the user typed (search box, links)
            echoed = body.replace(typed, "") if typed else body
            for secret in secrets:
                assert secret not in echoed, f"{url} ({name}) shows {secret}"
            for account in hidden_accounts:
                assert f"/batches/{account}/" not in body, f"{url} links into {account}"
                if url.startswith(f"/batches/{account}/"):
                    assert response.status_code == 404, f"{url}: a batch one may not see is a 404"
            owner = re.match(r"/batches/([a-z-]+)/", url)
            if owner and owner.group(1) in sees and "/results/" in url and Role.RESULTS not in grants[owner.group(1)]:
                assert response.status_code == 403 and "results reader role" in body, url
        for account in ACCOUNTS:
            made, roles = store[account], grants[account]
            before = CancelAttempt.objects.filter(batch_id=made["running"]).exclude(outcome="refused").count()
            answer = client.post(f"/batches/{account}/{made['running']}/cancel", **HTMX)
            acknowledged = client.post(f"/alarms/{made['alarm']}/acknowledge", {"note": "x"}, **HTMX)
            after = CancelAttempt.objects.filter(batch_id=made["running"]).exclude(outcome="refused").count()
            if not roles:
                assert answer.status_code == 404 and acknowledged.status_code == 404
            elif Role.OPERATOR not in roles:
                assert answer.status_code == 403 and acknowledged.status_code == 403
            if Role.OPERATOR not in roles:
                assert after == before, "no cancel went upstream"
                assert Alarm.objects.get(pk=made["alarm"]).acknowledged_by_id != holder.pk
        assert client.post("/bulk-cancel/confirm", {"token": token, "batch": listed, "typed": "9"}).status_code in (
            400,
            403,
        ), "another user's preview, whatever the grants"

    check()


def test_a_viewer_without_the_results_grant_reads_no_result_line_anywhere(store):
    viewer = Client()
    viewer.force_login(make_user("looker", can_cancel=False, roles=("viewer",)))
    reader = Client()
    reader.force_login(make_user("reader", can_cancel=False, roles=("viewer", "results")))
    account, batch_id = "anthropic-ops", store["anthropic-ops"]["ended"]
    base = f"/batches/{account}/{batch_id}"
    shown = reader.get(f"{base}/").content.decode()
    assert "req-000" in shown and "results-table" in shown, "a results reader sees the lines"
    page = viewer.get(f"{base}/").content.decode()
    assert "req-000" not in page and "results-table" not in page and "takes the results reader role" in page
    assert (
        "req-000"
        not in viewer.get(
            f"{base}/", {"type": "succeeded"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="results"
        ).content.decode()
    )
    for part in ("results/summary", "results/download", "results/export.csv"):
        refused = viewer.get(f"{base}/{part}")
        assert refused.status_code == 403 and "req-000" not in body_of(refused), part
        assert reader.get(f"{base}/{part}").status_code == 200, part


def test_a_user_without_grants_sees_an_empty_dashboard_that_says_whom_to_ask(store, settings):
    settings.ACCESS_CONTACT = "#batch-dashboard on Slack"
    newcomer = Client()
    newcomer.force_login(make_user("newcomer", can_cancel=False, roles=()))
    page = newcomer.get("/")
    body = page.content.decode()
    assert page.status_code == 200 and "You may not see any account yet" in body and "#batch-dashboard on Slack" in body
    assert not re.search(r'<tr id="row-', body)
    assert newcomer.get("/alarms/").status_code == 200
    assert newcomer.get("/bulk-cancel/preview").status_code == 403


def test_the_account_menu_lists_only_the_accounts_granted(store):
    client = Client()
    client.force_login(make_user("openai-person", can_cancel=False, roles=("viewer",), accounts="openai-*"))
    body = client.get("/").content.decode()
    menu = re.search(r'<select name="account">(.*?)</select>', body, re.S).group(1)
    options = set(re.findall(r'<option value="([^"]+)"', menu)) - {""}
    assert options == {"openai-ops", "openai-research"}
