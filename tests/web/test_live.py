"""The live pages' one request per interval (dashboard/web/live.py): what changed since the page's
cursor, only that, out of band; 204 when nothing did. Through Django's test client with htmx headers."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from dashboard.models import Alarm, StoredBatch
from tests.factories import HTMX, anthropic_batch, assert_no_keys, fault, openai_batch, poll_store, text, time_passes

FEED = re.compile(r'id="live-feed"[^>]*?hx-get="([^"]+)"', re.S)
ROW = re.compile(
    r'<tr id="row-(?P<account>[a-z0-9-]+?)-(?P<id>(?:msgbatch|batch)_[A-Za-z0-9_-]+)"(?P<attributes>[^>]*)>'
)


def feed_url(response) -> str:
    match = FEED.search(text(response))
    assert match, "the page has no live feed"
    return html.unescape(match.group(1))


def sent_rows(response) -> list[tuple[str, bool]]:
    """(batch id, out of band) of each row in the answer, in order."""
    return [(match["id"], 'hx-swap-oob="true"' in match["attributes"]) for match in ROW.finditer(text(response))]


def row_of(response, batch_id: str) -> str:
    match = re.search(rf'<tr id="row-[a-z0-9-]+-{batch_id}".*?</tr>', text(response), re.S)
    assert match, f"no row of {batch_id}"
    return match.group(0)


def ask(client: Client, url: str):
    response = client.get(url, **HTMX)
    assert response.status_code in (200, 204), response.status_code
    return response


# --- the list --------------------------------------------------------------------------------


def test_the_list_makes_one_request_for_all_its_rows_and_none_of_its_own(operator_client, four_accounts):
    page = text(operator_client.get("/"))
    assert page.count("hx-trigger=") == 2  # the feed and the header's summary (every minute)
    assert 'hx-trigger="every 3s, alarms-changed from:body"' in page
    assert "/row" not in page  # no row polls itself
    assert page.count(" data-live") == 4
    # The header's alarm badge comes with the feed, not on its own.
    badge = re.search(r'<a id="alarm-badge".*?</a>', page, re.S).group(0)
    assert "hx-get" not in badge


def test_nothing_changed_is_204_even_when_the_poller_read_it_all_again(operator_client, four_accounts):
    url = feed_url(operator_client.get("/"))
    nothing = ask(operator_client, url)
    assert nothing.status_code == 204 and nothing.content == b""
    poll_store()  # every batch fetched again, saying the same
    assert ask(operator_client, url).status_code == 204


def test_one_batch_that_changed_is_sent_alone_out_of_band_then_no_more_once_ended(operator_client, four_accounts):
    _, (_, openai_ops), *_ = four_accounts
    url = feed_url(operator_client.get("/"))
    time_passes(openai_ops, hours=1)  # it has ended upstream
    poll_store()
    answer = ask(operator_client, url)
    assert answer.status_code == 200
    assert sent_rows(answer) == [(openai_ops, True)]
    row = row_of(answer, openai_ops)
    assert 'data-status="completed"' in row and "data-live" not in row and "final · fetched" in row
    assert text(answer).lstrip().startswith('<tr id="live-feed"')  # the feed again, with its new cursor
    assert_no_keys(answer)
    # Ended: it is sent once, then the feed no longer watches it.
    again = feed_url(answer)
    assert again != url
    assert ask(operator_client, again).status_code == 204
    # The old cursor still sees it as it was: a page that missed an answer is not left behind.
    assert sent_rows(ask(operator_client, url)) == [(openai_ops, True)]


def test_counts_that_move_send_the_row_and_its_new_numbers(operator_client, embedded_upstream, openai_sdk):
    batch = openai_batch(openai_sdk, count=10, seconds=600).id
    poll_store()
    url = feed_url(operator_client.get("/"))
    time_passes(batch, minutes=5)  # about half its requests done, still running
    poll_store()
    answer = ask(operator_client, url)
    assert sent_rows(answer) == [(batch, True)]
    row = row_of(answer, batch)
    assert "data-live" in row and 'data-status="in_progress"' in row
    assert re.search(r"succeeded [1-9]", row), row


def test_a_new_batch_arrives_at_the_top_and_is_watched_from_then_on(operator_client, four_accounts, anthropic_sdk):
    url = feed_url(operator_client.get("/"))
    newer = anthropic_batch(anthropic_sdk, "research", seconds=600).id
    poll_store()
    answer = ask(operator_client, url)
    body = text(answer).lstrip()
    assert body.startswith('<tr id="live-feed"')  # swapped in place of the feed, so above the first row
    assert sent_rows(answer) == [(newer, False)]
    assert "data-live" in row_of(answer, newer)
    # The next cursor asks for what is newer still, and watches the new row.
    following = feed_url(answer)
    assert ask(operator_client, following).status_code == 204
    time_passes(newer, hours=1)
    poll_store()
    assert sent_rows(ask(operator_client, following)) == [(newer, True)]


def test_a_failing_account_marks_its_rows_stale_and_recovering_clears_them(operator_client, four_accounts):
    (_, anthropic_ops), *_ = four_accounts
    url = feed_url(operator_client.get("/"))
    fault("anthropic", "ops", "529")
    poll_store()
    answer = ask(operator_client, url)
    assert sent_rows(answer) == [(anthropic_ops, True)]
    row = row_of(answer, anthropic_ops)
    assert "is-stale" in row and "Polls of this account are failing" in row and "Overloaded" in row
    assert f'hx-post="/batches/anthropic-ops/{anthropic_ops}/cancel"' in row  # cancel stays on offer
    failing = feed_url(answer)
    fault("anthropic", "ops", "")
    poll_store()
    recovered = ask(operator_client, failing)
    assert sent_rows(recovered) == [(anthropic_ops, True)]
    assert "is-stale" not in row_of(recovered, anthropic_ops)


def test_rows_not_refreshed_for_three_poll_intervals_turn_stale_without_any_write(
    operator_client, settings, four_accounts
):
    url = feed_url(operator_client.get("/"))
    # As if the poller had stopped 20 s ago: the store does not change, time does.
    StoredBatch.objects.update(last_fetched_at=timezone.now() - timedelta(seconds=3 * settings.POLL_SECONDS + 11))
    answer = ask(operator_client, url)
    assert sorted(batch_id for batch_id, oob in sent_rows(answer) if oob) == sorted(b for _, b in four_accounts)
    row = row_of(answer, four_accounts[0][1])
    assert "is-stale" in row and "not refreshed since <time" in row and "is the poller running?" in row
    # Stale it stays, and is not sent again as its seconds go by.
    assert ask(operator_client, feed_url(answer)).status_code == 204


def test_the_feed_keeps_to_the_page_filters(operator_client, four_accounts, anthropic_sdk, openai_sdk):
    (_, anthropic_ops), (_, openai_ops), *_ = four_accounts
    page = operator_client.get("/", {"provider": "anthropic"})
    url = feed_url(page)
    assert "provider=anthropic" in url
    time_passes(openai_ops, hours=1)  # not on this page
    time_passes(anthropic_ops, hours=1)
    openai_batch(openai_sdk, seconds=600)  # filtered out
    newer = anthropic_batch(anthropic_sdk, seconds=600).id
    poll_store()
    answer = ask(operator_client, url)
    assert sent_rows(answer) == [(newer, False), (anthropic_ops, True)]


def test_a_later_page_has_no_arrivals_and_no_feed_once_its_rows_ended(operator_client, settings, four_accounts):
    settings.LIST_PAGE_SIZE = 2
    first = operator_client.get("/")
    older = re.search(r'<a href="([^"]*)" rel="next">', text(first)).group(1)
    later = operator_client.get(html.unescape(older))
    url = feed_url(later)
    for _, batch_id in four_accounts:
        time_passes(batch_id, hours=1)
    poll_store()
    answer = ask(operator_client, url)
    assert sent_rows(answer) == [(batch_id, True) for _, batch_id in four_accounts[2:]]
    assert 'id="live-feed"' not in text(answer)  # nothing left to watch: the feed stops
    time_passes(four_accounts[0][1], hours=1)
    assert 'id="live-feed"' not in text(operator_client.get(html.unescape(older)))


def test_rows_sent_to_a_viewer_offer_no_cancel(viewer_client, four_accounts):
    (_, anthropic_ops), *_ = four_accounts
    url = feed_url(viewer_client.get("/"))
    fault("anthropic", "ops", "529")
    poll_store()
    row = row_of(ask(viewer_client, url), anthropic_ops)
    assert "is-stale" in row and "hx-post" not in row


def test_a_cursor_made_for_another_user_who_may_cancel_sends_every_row_again(client, operator, viewer, four_accounts):
    client.force_login(operator)
    url = feed_url(client.get("/"))
    client.force_login(viewer)
    answer = ask(client, url)
    assert len(sent_rows(answer)) == 4 and "hx-post" not in text(answer)


def test_the_feed_is_login_only_and_answers_only_cursors_it_made(operator_client, four_accounts):
    url = feed_url(operator_client.get("/"))
    anonymous = Client()
    response = anonymous.get(url, **HTMX)
    assert response.status_code == 401 and response["HX-Redirect"].startswith("/login/")
    assert anonymous.get(url).status_code == 302
    prefix, _, cursor = url.partition("feed=")
    for forged in ("", "garbage", cursor[:-3] + "AAA", cursor.replace(":", ".", 1)):
        response = operator_client.get(prefix + "feed=" + forged, **HTMX)
        assert response.status_code == 400
        assert response["Content-Type"].startswith("text/plain") and "reload the page" in text(response)
    # A cursor of another page is not this one's.
    detail = operator_client.get(f"/batches/anthropic-ops/{four_accounts[0][1]}/")
    assert operator_client.get("/?" + feed_url(detail).partition("?")[2], **HTMX).status_code == 400


def test_a_revoked_grant_stops_the_feed_sending_those_rows_and_a_deactivated_user_is_signed_out_at_once(
    client, four_accounts
):
    """The feed reads the user and their grants from caches (web/auth.py): a grant taken away or a
    user deactivated still counts from the very next request."""
    from django.contrib.auth import get_user_model

    from dashboard.access import services as access
    from tests.conftest import make_user

    watcher = make_user("watcher", can_cancel=False, roles=("viewer",), accounts="anthropic-*,openai-*")
    client.force_login(watcher)
    url = feed_url(client.get("/"))
    assert ask(client, url).status_code == 204  # the session, user and grants are cached now
    access.revoke(group_name="watcher-team", patterns=["openai-*"], role="viewer", actor="tests", via="cli")
    # Every row changes (not refreshed for three poll intervals): only those still granted are sent.
    StoredBatch.objects.update(last_fetched_at=timezone.now() - timedelta(hours=1))
    answer = ask(client, url)
    anthropic = sorted(batch_id for account, batch_id in four_accounts if account.startswith("anthropic"))
    assert sorted(batch_id for batch_id, _ in sent_rows(answer)) == anthropic
    assert "openai" not in text(answer)
    following = feed_url(answer)
    StoredBatch.objects.update(last_fetched_at=timezone.now())
    assert sorted(batch_id for batch_id, _ in sent_rows(ask(client, following))) == anthropic
    get_user_model().objects.filter(pk=watcher.pk).update(is_active=False)  # SQL: no signal, no cache dropped
    signed_out = client.get(following, **HTMX)
    assert signed_out.status_code == 401 and signed_out["HX-Redirect"].startswith("/login/")


def test_viewers_asking_the_same_share_one_answer_but_never_one_made_for_other_accounts(four_accounts, monkeypatch):
    """After a change every viewer of a page asks the same question: one answer is made for all who
    may see the same accounts. Who sees fewer (here: the same cursor, the same Cancel buttons, but no
    OpenAI account) gets an answer of their own, whose cursor watches none of the rows hidden from them."""
    from django.core import signing

    from dashboard.access import services as access
    from dashboard.web import live
    from tests.conftest import make_user

    (_, anthropic_ops), *_ = four_accounts
    both = make_user("both", can_cancel=True, roles=("operator",), accounts="anthropic-*")
    access.grant(group_name="both-team", patterns=["openai-*"], role="viewer", actor="tests", via="cli")
    fewer = make_user("fewer", can_cancel=True, roles=("operator",), accounts="anthropic-*")
    browsers = [Client(), Client(), Client()]
    for browser, user in zip(browsers, (both, both, fewer), strict=True):
        browser.force_login(user)
    url = feed_url(browsers[0].get("/"))
    assert ask(browsers[0], url).status_code == 204
    fault("anthropic", "ops", "529")
    poll_store()
    first = ask(browsers[0], url)
    assert sent_rows(first) == [(anthropic_ops, True)]
    rendered = []
    monkeypatch.setattr("django.template.base.Template.render", lambda *args, **kwargs: rendered.append(args))
    again = ask(browsers[1], url)  # another viewer of the same accounts, asking the same
    assert rendered == [] and again.content == first.content
    monkeypatch.undo()

    def watched(answer) -> set[int]:
        return set(map(int, signing.loads(feed_url(answer).partition("feed=")[2], salt=live._SALT)["rows"]))

    stored = dict(StoredBatch.objects.values_list("batch_id", "pk"))
    openai = {stored[batch_id] for account, batch_id in four_accounts if account.startswith("openai")}
    assert openai <= watched(first)
    own = ask(browsers[2], url)  # the same cursor and Cancel buttons (anthropic-*), fewer accounts
    assert sent_rows(own) == [(anthropic_ops, True)] and not openai & watched(own)


def test_a_feed_request_without_htmx_is_the_page(operator_client, four_accounts):
    url = feed_url(operator_client.get("/"))
    assert "<html" in text(operator_client.get(url))


def test_the_header_badge_comes_with_the_feed_when_its_counts_move(operator_client, four_accounts):
    url = feed_url(operator_client.get("/"))
    (_, anthropic_ops), *_ = four_accounts
    stored = StoredBatch.objects.get(batch_id=anthropic_ops)
    now = timezone.now()
    Alarm.objects.create(
        rule="stuck", account="anthropic-ops", batch=stored, opened_at=now, last_seen_at=now, detail="no progress"
    )
    answer = ask(operator_client, url)
    badge = re.search(r'<a id="alarm-badge"[^>]*>.*?</a>', text(answer), re.S).group(0)
    assert 'hx-swap-oob="true"' in badge and "hx-get" not in badge and 'class="alarm-count"' in badge
    # Its row says it has an open alarm: sent too.
    assert sent_rows(answer) == [(anthropic_ops, True)] and "1 open alarm" in row_of(answer, anthropic_ops)


# --- the detail page ---------------------------------------------------------------------------


def test_the_detail_page_has_one_feed_for_its_row_its_alarms_and_the_badge(operator_client, four_accounts):
    (_, anthropic_ops), *_ = four_accounts
    path = f"/batches/anthropic-ops/{anthropic_ops}/"
    page = text(operator_client.get(path))
    assert page.count("hx-trigger=") == 1 and "/row" not in page and f'hx-get="{path}alarms"' not in page
    url = feed_url(operator_client.get(path))
    assert url.startswith(path + "?feed=")
    poll_store()
    assert ask(operator_client, url).status_code == 204
    # Its row, when it changes; then its alarms and the badge, when those do.
    fault("anthropic", "ops", "529")
    poll_store()
    answer = ask(operator_client, url)
    assert sent_rows(answer) == [(anthropic_ops, True)] and "is-stale" in row_of(answer, anthropic_ops)
    assert '<section id="alarms"' not in text(answer) and 'id="alarm-badge"' not in text(answer)
    url = feed_url(answer)
    now = timezone.now()
    stuck = Alarm.objects.create(
        rule="stuck",
        account="anthropic-ops",
        batch=StoredBatch.objects.get(batch_id=anthropic_ops),
        opened_at=now,
        last_seen_at=now,
        detail="no progress",
    )
    answer = ask(operator_client, url)
    section = re.search(r'<section id="alarms"[^>]*>.*?</section>', text(answer), re.S).group(0)
    assert 'hx-swap-oob="true"' in section and f'id="alarm-{stuck.pk}"' in section and "hx-get" not in section
    assert re.search(r'<a id="alarm-badge"[^>]*hx-swap-oob="true"', text(answer))
    assert sent_rows(answer) == [(anthropic_ops, True)]  # "1 open alarm" in its row
    url = feed_url(answer)
    # The evaluator seeing it again within the minute is not a change.
    Alarm.objects.filter(pk=stuck.pk).update(last_seen_at=now.replace(second=0, microsecond=0) + timedelta(seconds=30))
    assert ask(operator_client, url).status_code == 204


def test_a_detail_page_whose_batch_ended_stops_watching_the_row_but_not_its_alarms(operator_client, four_accounts):
    (_, anthropic_ops), *_ = four_accounts
    url = feed_url(operator_client.get(f"/batches/anthropic-ops/{anthropic_ops}/"))
    time_passes(anthropic_ops, hours=1)
    poll_store()
    answer = ask(operator_client, url)
    assert sent_rows(answer) == [(anthropic_ops, True)] and 'data-status="ended"' in row_of(answer, anthropic_ops)
    assert ask(operator_client, feed_url(answer)).status_code == 204


def test_a_detail_feed_is_login_only_and_its_own(operator_client, four_accounts):
    (_, anthropic_ops), (_, openai_ops), *_ = four_accounts
    url = feed_url(operator_client.get(f"/batches/anthropic-ops/{anthropic_ops}/"))
    assert Client().get(url, **HTMX).status_code == 401
    other = f"/batches/openai-ops/{openai_ops}/?" + url.partition("?")[2]
    assert operator_client.get(other, **HTMX).status_code == 400
    assert operator_client.get(f"/batches/nobody/{anthropic_ops}/?" + url.partition("?")[2], **HTMX).status_code == 404


# --- the alarms page ---------------------------------------------------------------------------


def test_the_alarms_page_feed_sends_its_lists_when_an_alarm_opens_or_is_acknowledged(
    operator_client, operator, four_accounts
):
    url = feed_url(operator_client.get("/alarms/"))
    assert url.startswith("/alarms/?feed=")
    assert ask(operator_client, url).status_code == 204
    now = timezone.now()
    stuck = Alarm.objects.create(rule="failing_account", account="anthropic-ops", opened_at=now, last_seen_at=now)
    answer = ask(operator_client, url)
    listed = re.search(r'<div id="alarm-list"[^>]*>', text(answer)).group(0)
    assert 'hx-swap-oob="true"' in listed and f'id="alarm-{stuck.pk}"' in text(answer)
    assert re.search(r'<a id="alarm-badge"[^>]*hx-swap-oob="true"', text(answer))
    url = feed_url(answer)
    assert ask(operator_client, url).status_code == 204
    Alarm.objects.filter(pk=stuck.pk).update(acknowledged_at=timezone.now(), acknowledged_by=operator)
    answer = ask(operator_client, url)
    assert "Acknowledged by <strong>operator</strong>" in text(answer)
    assert Client().get(url, **HTMX).status_code == 401


def test_nothing_changed_costs_three_queries_and_no_rendering(
    operator_client, four_accounts, django_assert_num_queries, monkeypatch
):
    """The signed-in user's password hash and active flag (auth.py), the watched rows' columns, and
    one query for the store's newest key and the badge's counts; no template is rendered."""
    url = feed_url(operator_client.get("/"))
    assert ask(operator_client, url).status_code == 204  # fills the session, user and permission caches
    rendered = []
    monkeypatch.setattr("django.template.base.Template.render", lambda *args, **kwargs: rendered.append(args))
    with django_assert_num_queries(3):
        assert ask(operator_client, url).status_code == 204
    assert rendered == []


def test_a_changed_row_is_rendered_once_for_every_viewer_who_may_do_the_same(
    operator, viewer, four_accounts, monkeypatch
):
    (_, anthropic_ops), *_ = four_accounts
    viewers = [Client(), Client()]
    for browser in viewers:
        browser.force_login(operator)
    urls = [feed_url(browser.get("/")) for browser in viewers]
    watcher = Client()
    watcher.force_login(viewer)
    viewer_url = feed_url(watcher.get("/"))
    fault("anthropic", "ops", "529")
    poll_store()
    first = ask(viewers[0], urls[0])
    from django.template.loader import render_to_string as real

    rendered = []
    monkeypatch.setattr(
        "dashboard.web.rows.render_to_string", lambda *args, **kwargs: rendered.append(args[0]) or real(*args, **kwargs)
    )
    second = ask(viewers[1], urls[1])
    assert rendered == [] and row_of(second, anthropic_ops) == row_of(first, anthropic_ops)
    # Who may not cancel gets a row of their own (no Cancel button), rendered for them.
    third = ask(watcher, viewer_url)
    assert rendered == ["batches/list.html#row"] and "hx-post" not in row_of(third, anthropic_ops)
