"""Grants of roles on account patterns to groups (dashboard/access/): what each role gives, the
services that change grants with their audit rows, the `access` command, the admin, and
`ensure_operator`'s every-role grant."""

from __future__ import annotations

import getpass
from fnmatch import fnmatchcase

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from hypothesis import given
from hypothesis import strategies as st

from dashboard.access import selectors, services
from dashboard.access.models import AccessChange, AccessGrant, Role
from tests.conftest import make_user

ROLES = list(Role)
KEY = st.from_regex(r"[a-z0-9]{1,4}(-[a-z0-9]{1,4}){0,2}", fullmatch=True)
PATTERN = st.from_regex(r"[a-z0-9*?]{1,3}(-[a-z0-9*?]{1,3}){0,2}", fullmatch=True)


def member(username: str, *groups: str):
    user = make_user(username, can_cancel=False, roles=())
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def grant(group: str, accounts: str, role: Role):
    return services.grant(
        group_name=group, patterns=services.account_patterns(accounts), role=role, actor="tester", via="cli"
    )


# --- what a grant gives ----------------------------------------------------------------------------


@given(grants=st.lists(st.tuples(st.sampled_from(ROLES), PATTERN), max_size=6), key=KEY, asked=st.sampled_from(ROLES))
def test_a_role_is_held_on_an_account_exactly_when_a_grant_giving_it_matches_the_key(grants, key, asked):
    patterns: dict[str, tuple[str, ...]] = {}
    for role, pattern in grants:
        patterns[role] = (*patterns.get(role, ()), pattern)
    access = selectors.Access(patterns=patterns)
    givers = {Role.VIEWER: set(ROLES), Role.OPERATOR: {Role.OPERATOR}, Role.RESULTS: {Role.RESULTS}}[asked]
    expected = any(role in givers and fnmatchcase(key, pattern) for role, pattern in grants)
    assert access.may(asked, key) is expected


def test_grants_reach_a_user_through_its_groups_and_are_read_once_a_request(db, django_assert_num_queries):
    grant("research", "anthropic-*", Role.VIEWER)
    grant("prod-ops", "openai-ops,azure-openai-*", Role.OPERATOR)
    grant("analysts", "openai-ops", Role.RESULTS)
    user = member("ada", "research", "prod-ops")
    with django_assert_num_queries(1):
        access = selectors.access_for(user=user)
        assert selectors.access_for(user=user) is access
    assert access.may(Role.VIEWER, "anthropic-research") and not access.may(Role.OPERATOR, "anthropic-research")
    assert access.may(Role.OPERATOR, "openai-ops") and access.may(Role.VIEWER, "azure-openai-ops")
    assert not access.may(Role.RESULTS, "openai-ops"), "results are a grant of their own"
    assert not access.may(Role.VIEWER, "gemini-ops")


def test_no_grant_no_group_an_inactive_or_anonymous_user_holds_nothing_and_a_superuser_everything(db):
    from django.contrib.auth.models import AnonymousUser

    grant("everyone", "*", Role.OPERATOR)
    lonely = member("lonely")
    inactive = member("gone", "everyone")
    inactive.is_active = False
    assert not selectors.access_for(user=lonely).has_any
    assert not selectors.access_for(user=inactive).may(Role.VIEWER, "openai-ops")
    assert not selectors.access_for(user=AnonymousUser()).has_any
    boss = member("boss")
    boss.is_superuser = True
    assert selectors.access_for(user=boss).may(Role.RESULTS, "anything-at-all")


# --- changing grants: services and their audit trail -----------------------------------------------


def test_a_grant_makes_its_group_is_audited_once_and_a_revoke_takes_it_away_audited(db):
    made = grant("idp-team", "prod-*,azure-*", Role.OPERATOR)
    assert [row.accounts for row in made] == ["prod-*", "azure-*"] and Group.objects.filter(name="idp-team").exists()
    assert grant("idp-team", "prod-*", Role.OPERATOR) == [], "granted already: nothing new, nothing audited"
    assert (
        services.revoke(group_name="idp-team", patterns=["prod-*"], role=Role.OPERATOR, actor="tester", via="cli") == 1
    )
    assert list(AccessGrant.objects.values_list("accounts", flat=True)) == ["azure-*"]
    trail = list(AccessChange.objects.order_by("id").values_list("action", "group", "accounts", "role", "actor", "via"))
    assert trail == [
        ("granted", "idp-team", "prod-*", "operator", "tester", "cli"),
        ("granted", "idp-team", "azure-*", "operator", "tester", "cli"),
        ("revoked", "idp-team", "prod-*", "operator", "tester", "cli"),
    ]


@pytest.mark.parametrize("text", ["", " , ", "Prod-*", "prod_*", "prod/*", "a" * 101, "prod-*,../x", "pro\nd", "pro d"])
def test_a_pattern_that_cannot_match_an_account_key_is_refused_by_name(text):
    with pytest.raises(ValidationError):
        services.account_patterns(text)


# --- the command -----------------------------------------------------------------------------------


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("access", *args, stdout=out)
    return out.getvalue()


def test_the_command_grants_revokes_and_shows_as_the_os_user(db, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    said = run("grant", "--group", "research", "--accounts", "anthropic-*,nothing-here-*", "--role", "viewer")
    assert f"as OS user {getpass.getuser()}" in said and "2 of 2 granted" in said
    assert "no configured account matches nothing-here-*" in said
    assert AccessChange.objects.filter(actor=getpass.getuser(), via="cli", action="granted").count() == 2
    member("ada", "research")
    shown = run("show", "--user", "ada")
    assert "groups research" in shown
    lines = dict(line.strip().split("\t") for line in shown.splitlines()[1:])
    assert lines["anthropic-ops"] == "viewer" and lines["openai-ops"] == "-"
    assert "research\tviewer\tanthropic-*" in run("show")
    assert "1 of 1 revoked" in run("revoke", "--group", "research", "--accounts", "anthropic-*", "--role", "viewer")
    assert (
        dict(line.strip().split("\t") for line in run("show", "--user", "ada").splitlines()[1:])["anthropic-ops"] == "-"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("grant", "--group", "g", "--accounts", "PROD", "--role", "viewer"), "is not an account pattern"),
        (("grant", "--group", " ", "--accounts", "prod-*", "--role", "viewer"), "--group is empty"),
        (("show", "--user", "nobody"), "No user 'nobody'"),
    ],
)
def test_the_command_refuses_bad_input_with_a_clear_error_and_changes_nothing(db, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not AccessGrant.objects.exists() and not AccessChange.objects.exists()


def test_the_command_knows_only_the_three_roles(db):
    with pytest.raises(CommandError):
        run("grant", "--group", "g", "--accounts", "*", "--role", "admin")


# --- the admin -------------------------------------------------------------------------------------


def test_the_admin_gives_and_revokes_grants_audited_under_the_staff_user_and_never_edits_one(admin_client, admin_user):
    group = Group.objects.create(name="prod-ops")
    answer = admin_client.post(
        "/admin/dashboard/accessgrant/add/", {"group": group.pk, "accounts": "prod-*", "role": "operator"}
    )
    assert answer.status_code == 302
    row = AccessGrant.objects.get()
    assert (row.accounts, row.role, row.granted_by) == ("prod-*", "operator", admin_user.username)
    refused = admin_client.post(
        "/admin/dashboard/accessgrant/add/", {"group": group.pk, "accounts": "prod-*,dev-*", "role": "viewer"}
    )
    assert refused.status_code == 200 and "One account or pattern per grant" in refused.content.decode()
    change = admin_client.post(
        f"/admin/dashboard/accessgrant/{row.pk}/change/", {"group": group.pk, "accounts": "*", "role": "operator"}
    )
    assert change.status_code == 403 and AccessGrant.objects.get().accounts == "prod-*"
    admin_client.post(f"/admin/dashboard/accessgrant/{row.pk}/delete/", {"post": "yes"})
    assert not AccessGrant.objects.exists()
    trail = list(AccessChange.objects.order_by("id").values_list("action", "actor", "via", "user"))
    assert trail == [
        ("granted", admin_user.username, "web", admin_user.pk),
        ("revoked", admin_user.username, "web", admin_user.pk),
    ]


# --- make run's operator -----------------------------------------------------------------------------


def test_ensure_operator_gives_make_run_s_operator_every_role_on_every_account(db):
    from django.contrib.auth import get_user_model

    call_command("ensure_operator", stdout=None)
    call_command("ensure_operator", stdout=None)  # again: the same grants, not two of each
    operator = get_user_model().objects.get(username="operator")
    access = selectors.access_for(user=operator)
    assert all(access.may(role, key) for role in Role for key in ("anthropic-ops", "bedrock-research", "any-new-one"))
    assert AccessGrant.objects.count() == 2
