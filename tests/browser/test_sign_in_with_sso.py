"""Single sign-on in Chromium: the dashboard's sign-in page, the identity provider's own sign-in page
(a real OpenID Connect provider on loopback, tests/services.py), and back, signed in with the groups
of the provider's claim; signing out ends both sessions."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.services import signing_in_through

pytestmark = pytest.mark.browser


@pytest.fixture
def sso(transactional_db, settings, oidc_provider):
    with signing_in_through(oidc_provider, settings) as provider:
        yield provider


def test_a_person_signs_in_through_the_provider_s_page_sees_exactly_its_accounts_and_signs_out_of_both(
    page, live_server, sso, embedded_upstream
):
    from datetime import timedelta

    from django.utils import timezone

    from dashboard.access import services as access
    from tests.factories import stored_batch

    now = timezone.now()
    ours = [
        stored_batch(
            "anthropic-ops",
            f"msgbatch_01research{index:07d}",
            created=now - timedelta(minutes=index + 1),
            fetched_at=now,
        )
        for index in range(2)
    ]
    theirs = stored_batch("openai-ops", "batch_" + "f" * 32, created=now - timedelta(minutes=1), fetched_at=now)
    access.grant(group_name="research", patterns=["anthropic-*"], role="viewer", actor="tests", via="cli")
    sso.user(
        "ada-browser", {"preferred_username": "ada", "email": "ada@example.com", "groups": ["research", "prod-ops"]}
    )
    page.goto(live_server.url + "/alarms/")
    expect(page).to_have_url(f"{live_server.url}/login/?next=/alarms/")
    button = page.get_by_role("link", name="Sign in with single sign-on")
    box = button.bounding_box()
    assert box and box["height"] >= 30 and box["width"] >= 200, "a button one sees, not a bare link"
    button.click()

    page.wait_for_url(f"{sso.issuer}/oauth2/authorize*")
    page.fill("input[name=sub]", "ada-browser")
    page.get_by_role("button", name="Authorize").click()

    page.wait_for_url(f"{live_server.url}/alarms/")
    expect(page.locator(".whoami")).to_contain_text("ada")
    ada = get_user_model().objects.get(username="ada")
    assert sorted(ada.groups.values_list("name", flat=True)) == ["prod-ops", "research"]

    page.goto(live_server.url + "/")
    rows = page.locator("tr.batch-row")
    expect(rows).to_have_count(2)
    shown = {row.get_attribute("id") for row in rows.all()}
    assert shown == {f"row-anthropic-ops-{batch.batch_id}" for batch in ours}, "the accounts of its grants, no other"
    assert theirs.batch_id not in page.content()
    assert not page.locator("button.danger").count(), "a viewer: no Cancel"

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{sso.issuer}/oauth2/end_session*")
    page.goto(live_server.url + "/")
    expect(page).to_have_url(f"{live_server.url}/login/?next=/")
