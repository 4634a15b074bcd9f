"""Upstream answers are untrusted (issue 9): property tests with hypothesis.

- Whatever JSON a provider sends as a batch, its parser returns a valid Batch or raises our own
  UnreadableBatch, never TypeError, OverflowError, ValueError, OSError...
- One unreadable batch in a list page does not hide the readable ones, down to the list page.
- No configured key, in any letter case, cut short or not, survives into an error message.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

import httpx
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from dashboard.accounts import configured_secrets
from dashboard.providers import anthropic, azure_openai, openai
from dashboard.providers.base import Batch, Page, ProviderError
from dashboard.providers.errors import (
    EARLIEST,
    EARLIEST_EPOCH,
    LATEST,
    LATEST_EPOCH,
    MAX_COUNT,
    MAX_MESSAGE,
    UnreadableBatch,
    scrub_credentials,
)
from dashboard.redaction import PREFIX_LENGTH, REDACTED, redact
from tests.factories import poll_store
from tests.providers.test_providers import (
    ANTHROPIC_ENDED,
    ANTHROPIC_RUNNING,
    OPENAI_COMPLETED,
    OPENAI_IN_PROGRESS,
    anthropic_error,
    azure_error,
    make_anthropic,
    make_azure,
    make_openai,
    openai_error,
    reply,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AZURE_BLOB_COMPLETED = json.loads((FIXTURES / "azure" / "blob_batch_completed.json").read_text())
FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def holds_no_key(batch_id: str) -> bool:
    """An id holding a configured key (hypothesis finds the demo keys among the code's constants) is refused
    as unreadable by design (errors.known_id): not a valid id for these properties."""
    return redact(batch_id, configured_secrets()) == batch_id


PROVIDERS = {
    "anthropic": dict(
        module=anthropic,
        make=make_anthropic,
        valid=[ANTHROPIC_RUNNING, ANTHROPIC_ENDED],
        id_strategy=st.text(string.ascii_letters + string.digits, min_size=1, max_size=30)
        .map("msgbatch_{}".format)
        .filter(holds_no_key),
        counts=("processing", "succeeded", "errored", "canceled", "expired"),
        status="processing_status",
        error=lambda message: anthropic_error("authentication_error", message),
    ),
    "openai": dict(
        module=openai,
        make=make_openai,
        valid=[OPENAI_IN_PROGRESS, OPENAI_COMPLETED],
        id_strategy=st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=30)
        .map("batch_{}".format)
        .filter(holds_no_key),
        counts=("total", "completed", "failed"),
        status="status",
        error=lambda message: openai_error(message, "invalid_request_error"),
    ),
    "azure-openai": dict(
        module=azure_openai,
        make=make_azure,
        valid=[OPENAI_IN_PROGRESS, AZURE_BLOB_COMPLETED],
        id_strategy=st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=30)
        .map("batch_{}".format)
        .filter(holds_no_key),
        counts=("total", "completed", "failed"),
        status="status",
        error=lambda message: azure_error("401", message),
    ),
}
NAMES = sorted(PROVIDERS)


def reply_json(status: int, body) -> Callable[[httpx.Request], httpx.Response]:
    """An answer holding `body` as Python's json writes it: NaN, Infinity and 400-digit numbers included."""
    content = json.dumps(body).encode()
    return lambda request: httpx.Response(status, content=content, headers={"content-type": "application/json"})


def read(name: str, data, *, secrets: tuple[str, ...] | None = None) -> Batch | UnreadableBatch:
    """parse_batch's answer, given the configured keys as accounts gives them (or `secrets`): a Batch,
    or the UnreadableBatch it raised. Any other exception fails the test."""
    secrets = tuple(configured_secrets()) if secrets is None else secrets
    try:
        return PROVIDERS[name]["module"].parse_batch(data, account=f"{name}-ops", secrets=secrets)
    except UnreadableBatch as error:
        return error


def assert_valid(batch: Batch, name: str) -> None:
    """What the rest of the dashboard relies on, whatever upstream sent."""
    module = PROVIDERS[name]["module"]
    assert isinstance(batch, Batch)
    assert isinstance(batch.id, str) and module.BATCH_ID.fullmatch(batch.id)
    assert isinstance(batch.status, str) and re.fullmatch(r"[a-z][a-z_]*", batch.status)
    for value in batch.timestamps.values():
        assert value is None or (value.tzinfo is not None and EARLIEST <= value < LATEST)
    assert batch.created_at is not None
    counts = batch.counts
    for value in (counts.total, counts.processing, counts.succeeded, counts.errored, counts.canceled, counts.expired):
        assert type(value) is int and 0 <= value <= 5 * MAX_COUNT
    assert 0.0 <= counts.percent(counts.processing) < float("inf")
    with pytest.raises(AttributeError):
        batch.status = "ended"  # frozen
    # What the list's cache does with it, and what the raw view does with it.
    assert pickle.loads(pickle.dumps(batch)).id == batch.id  # noqa: S301 (our own bytes)
    sorted([batch, batch], key=lambda item: item.created_at)


def assert_ours(error: UnreadableBatch, *, batch_id: str = "") -> None:
    assert isinstance(error, UnreadableBatch) and isinstance(error, ProviderError)
    assert isinstance(error.message, str) and len(error.message) <= 400
    assert error.batch_id == batch_id
    if batch_id:
        assert batch_id in error.message


# --- strategies -------------------------------------------------------------------------------------------------

huge_ints = st.integers(min_value=10**399, max_value=10**400 - 1) | st.integers(
    min_value=-(10**400), max_value=-(10**399)
)
odd_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [float("nan"), float("inf"), float("-inf"), 6.4e17, -1.0, 1e308, 5e-324, -0.0]
)
json_leaves = st.none() | st.booleans() | st.integers() | huge_ints | odd_floats | st.text(max_size=20)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=16,
)
FIELDS = sorted(
    {"id", "status", "processing_status", "request_counts", *anthropic.TIMESTAMPS, *openai.TIMESTAMPS, "metadata"}
)
batch_like = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=8)

# RFC 3339 offsets are whole minutes (and Python 3.11's fromisoformat drops sub-second ones).
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def iso(moment: datetime) -> str:
    return moment.isoformat()


# Out of range by more than any offset can bring back: years 1..1999-12-30 and 2200-01-02..9999.
far_datetimes = st.datetimes(max_value=datetime(1999, 12, 30)) | st.datetimes(min_value=datetime(2200, 1, 2))
bad_iso_times = st.one_of(
    st.builds(lambda moment, zone: iso(moment.replace(tzinfo=zone)), far_datetimes, offsets),
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+23:59"]),
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2199, 12, 30)).map(iso),  # no time zone
    st.sampled_from(["yesterday", "", "2024-13-45T00:00:00Z", "1711471533", "2024-09-24T18:37:24Z" * 10]),
    st.text(max_size=30).filter(lambda text: not re.match(r"\d{4}", text)),
    st.booleans(),
    st.integers(),
    huge_ints,
    odd_floats,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
bad_epochs = st.one_of(
    st.integers(max_value=EARLIEST_EPOCH - 1),
    st.integers(min_value=LATEST_EPOCH),
    st.floats(max_value=EARLIEST_EPOCH - 1) | st.floats(min_value=LATEST_EPOCH),
    st.sampled_from([6.4e17, -1, -1.5, 0, float("nan"), float("inf"), float("-inf"), 1711471533000]),
    huge_ints,
    st.booleans(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=2),
)
bad_counts = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=MAX_COUNT + 1),
    huge_ints,
    odd_floats,
    st.booleans(),
    st.text(max_size=10),
    st.sampled_from(["100", "1e999", [1], {"n": 1}]),
)
good_epochs = st.integers(min_value=EARLIEST_EPOCH, max_value=LATEST_EPOCH - 1)
good_isos = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone),
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2199, 12, 30)),
    offsets,
)


# --- any JSON: a Batch or our own error -------------------------------------------------------------------------


@FAST
@given(name=st.sampled_from(NAMES), data=json_values | batch_like)
def test_any_json_is_a_valid_batch_or_our_own_error(name, data):
    answer = read(name, data)
    if isinstance(answer, Batch):
        assert_valid(answer, name)
    else:
        assert_ours(answer, batch_id=answer.batch_id)


@pytest.mark.slow
@FAST
@given(
    name=st.sampled_from(NAMES),
    which=st.integers(0, 1),
    changes=st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1, max_size=4),
    count_changes=st.dictionaries(st.text(max_size=12), json_values, max_size=3),
)
def test_a_valid_batch_with_arbitrary_fields_changed_is_a_valid_batch_or_our_own_error(
    name, which, changes, count_changes
):
    spec = PROVIDERS[name]
    body = {**spec["valid"][which], **changes}
    if isinstance(body.get("request_counts"), dict):
        body["request_counts"] = {**body["request_counts"], **count_changes}
    answer = read(name, body)
    if isinstance(answer, Batch):
        assert_valid(answer, name)
    else:
        valid_id = isinstance(body.get("id"), str) and spec["module"].BATCH_ID.fullmatch(body["id"])
        assert_ours(answer, batch_id=body["id"] if valid_id else "")


# --- targeted: extreme numbers and dates in an otherwise valid batch ---------------------------------------------


def assert_refused(name: str, body: dict, field: str, value) -> UnreadableBatch:
    answer = read(name, body)
    assert isinstance(answer, UnreadableBatch), f"{field}={value!r} was accepted"
    assert_ours(answer, batch_id=body["id"])
    assert field in answer.message
    text = str(value) if not isinstance(value, int) or abs(value) < 10**300 else "9" * 20
    if len(text) >= 6 and text[:20] in answer.message.replace(body["id"], ""):
        # Only a quote if the same refusal of another value lacks it ("reques" is in "request_counts").
        other = read(name, with_value_replaced(body, value, "\u2603" * 6))
        assert isinstance(other, UnreadableBatch)
        assert text[:20] in other.message.replace(body["id"], ""), "the bad value is quoted"
    return answer


def with_value_replaced(data, value, replacement):
    """`data` with every occurrence of `value` (the same object, or an equal one of the same type) replaced."""
    if data is value or (type(data) is type(value) and data == value):
        return replacement
    if isinstance(data, dict):
        return {key: with_value_replaced(item, value, replacement) for key, item in data.items()}
    if isinstance(data, list):
        return [with_value_replaced(item, value, replacement) for item in data]
    return data


@FAST
@given(field=st.sampled_from(anthropic.TIMESTAMPS), value=bad_iso_times, batch_id=PROVIDERS["anthropic"]["id_strategy"])
@example(field="created_at", value="0001-01-01T00:00:00Z", batch_id="msgbatch_01")
@example(field="ended_at", value="9999-12-31T23:59:59Z", batch_id="msgbatch_01")
def test_anthropic_timestamps_out_of_range_or_not_timestamps_are_refused(field, value, batch_id):
    assert_refused("anthropic", {**ANTHROPIC_ENDED, "id": batch_id, field: value}, field, value)


@FAST
@given(field=st.sampled_from(openai.TIMESTAMPS), value=bad_epochs, batch_id=PROVIDERS["openai"]["id_strategy"])
@example(field="created_at", value=6.4e17, batch_id="batch_abc")
@example(field="completed_at", value=float("inf"), batch_id="batch_abc")
@example(field="expires_at", value=-1, batch_id="batch_abc")
@example(field="created_at", value=10**400, batch_id="batch_abc")
def test_openai_timestamps_out_of_range_or_not_numbers_are_refused(field, value, batch_id):
    assert_refused("openai", {**OPENAI_COMPLETED, "id": batch_id, field: value}, field, value)


@FAST
@given(name=st.sampled_from(NAMES), data=st.data(), value=bad_counts)
@example(name="anthropic", data=None, value=float("inf"))
@example(name="openai", data=None, value=10**400)
@example(name="anthropic", data=None, value="reques")  # a value that is a word of our own message
def test_counts_that_are_not_plausible_whole_numbers_are_refused(name, data, value):
    spec = PROVIDERS[name]
    which = data.draw(st.sampled_from(spec["counts"])) if data is not None else spec["counts"][0]
    body = spec["valid"][1]
    body = {**body, "request_counts": {**body["request_counts"], which: value}}
    assert_refused(name, body, f"request_counts.{which}", value)


@FAST
@given(
    name=st.sampled_from(NAMES),
    status=st.text(max_size=50).filter(lambda text: not re.fullmatch(r"[a-z][a-z_]{0,39}", text))
    | st.integers()
    | st.booleans()
    | st.lists(st.text(), max_size=2),
)
def test_a_status_that_is_not_a_status_word_is_refused(name, status):
    spec = PROVIDERS[name]
    body = {**spec["valid"][0], spec["status"]: status}
    answer = read(name, body)
    assert isinstance(answer, UnreadableBatch)
    assert spec["status"] in answer.message


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_status_word_is_kept_as_neither_ended_nor_cancelable(name):
    spec = PROVIDERS[name]
    batch = read(name, {**spec["valid"][0], spec["status"]: "paused_for_review"})
    assert isinstance(batch, Batch) and batch.status == "paused_for_review"
    assert not batch.is_ended and not batch.can_cancel


@FAST
@given(created=good_epochs, total=st.integers(0, MAX_COUNT), done=st.integers(0, MAX_COUNT))
def test_openai_plausible_epochs_and_counts_are_read_as_sent(created, total, done):
    body = {**OPENAI_IN_PROGRESS, "created_at": created, "request_counts": {"total": total, "completed": done}}
    batch = read("openai", body)
    assert isinstance(batch, Batch)
    assert batch.created_at == datetime.fromtimestamp(created, tz=UTC)
    assert (batch.counts.total, batch.counts.succeeded) == (total, done)


@FAST
@given(created=good_isos, processing=st.integers(0, MAX_COUNT))
def test_anthropic_plausible_timestamps_and_counts_are_read_as_sent(created, processing):
    body = {
        **ANTHROPIC_RUNNING,
        "created_at": created.isoformat(),
        "request_counts": {**ANTHROPIC_RUNNING["request_counts"], "processing": processing},
    }
    batch = read("anthropic", body)
    assert isinstance(batch, Batch)
    assert batch.created_at == created and batch.counts.processing == processing


def test_missing_or_malformed_ids_are_refused_without_being_quoted():
    key_like = "sk-ant-api03-" + "Q" * 40
    for name in NAMES:
        for bad in (None, 7, ["msgbatch_1"], "../../v1/files", key_like):
            body = {**PROVIDERS[name]["valid"][0], "id": bad}
            answer = read(name, body)
            assert isinstance(answer, UnreadableBatch) and answer.batch_id == ""
            assert "id" in answer.message and key_like not in answer.message


def test_an_id_that_echoes_a_configured_key_is_refused():
    key = "sk-proj-" + "K" * 40
    answer = read("openai", {**OPENAI_IN_PROGRESS, "id": f"batch_{key}"}, secrets=(key,))
    assert isinstance(answer, UnreadableBatch) and answer.batch_id == ""
    assert key not in answer.message and key[:PREFIX_LENGTH] not in answer.message


def test_an_unreadable_batch_error_survives_the_cache():
    error = read("openai", {**OPENAI_IN_PROGRESS, "created_at": 6.4e17})
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert (type(copy), copy.message, copy.batch_id, copy.field) == (
        UnreadableBatch,
        error.message,
        "batch_abc123",
        "created_at",
    )


# --- one bad batch does not hide the others ----------------------------------------------------------------------

bad_fields = {
    "anthropic": st.one_of(
        st.tuples(st.sampled_from(anthropic.TIMESTAMPS), bad_iso_times),
        st.tuples(st.just("processing_status"), st.integers() | st.none()),
        st.tuples(st.just("request_counts"), st.just({"processing": -1})),
        st.tuples(st.just("request_counts"), bad_counts.map(lambda value: {"processing": value})),
    ),
    "openai": st.one_of(
        st.tuples(st.sampled_from(openai.TIMESTAMPS), bad_epochs),
        st.tuples(st.just("status"), st.integers() | st.none()),
        st.tuples(st.just("request_counts"), bad_counts.map(lambda value: {"total": value})),
    ),
}
bad_fields["azure-openai"] = bad_fields["openai"]  # the same wire


@st.composite
def pages_with_one_bad_batch(draw):
    name = draw(st.sampled_from(NAMES))
    spec = PROVIDERS[name]
    ids = draw(st.lists(spec["id_strategy"], min_size=2, max_size=6, unique=True))
    bodies = [{**draw(st.sampled_from(spec["valid"])), "id": batch_id} for batch_id in ids]
    bad = draw(st.integers(0, len(bodies) - 1))
    field, value = draw(bad_fields[name])
    if field == "request_counts":
        value = {**bodies[bad]["request_counts"], **value}
    bodies[bad] = {**bodies[bad], field: value}
    keep_id = draw(st.booleans())
    if not keep_id:
        bodies[bad]["id"] = draw(st.sampled_from([None, 12, "not an id", ""]))
    return name, bodies, bad, field, keep_id


@FAST
@given(pages_with_one_bad_batch(), st.booleans())
def test_one_unreadable_batch_in_a_list_page_does_not_hide_the_others(case, with_last_id):
    name, bodies, bad, field, keep_id = case
    body = {"data": bodies, "has_more": True, **({"last_id": bodies[-1]["id"]} if with_last_id else {})}
    provider, _ = PROVIDERS[name]["make"](reply_json(200, body))
    page = provider.list_page(limit=len(bodies))
    good = [item["id"] for index, item in enumerate(bodies) if index != bad]
    assert [batch.id for batch in page.batches] == good
    assert len(page.unreadable) == 1
    batch_id, message = page.unreadable[0]
    assert batch_id == (bodies[bad]["id"] if keep_id else "")
    assert field in message or (not keep_id and "id" in message)
    assert page.has_more is True
    expected_last = bodies[-1]["id"] if keep_id or bad != len(bodies) - 1 else good[-1]
    assert page.next_cursor == expected_last
    assert pickle.loads(pickle.dumps(page)) == page  # noqa: S301 (our own bytes: the page is cached)


def test_a_list_item_that_is_not_an_object_is_reported_beside_the_others():
    provider, _ = make_openai(reply(200, {"data": [OPENAI_IN_PROGRESS, "junk", 7, None, []], "has_more": True}))
    page = provider.list_page(limit=5)
    assert [batch.id for batch in page.batches] == ["batch_abc123"]
    assert [batch_id for batch_id, _ in page.unreadable] == ["", "", "", ""]
    assert isinstance(page, Page) and page.next_cursor == "batch_abc123"


@pytest.mark.parametrize("body", ['{"data": [' + "1" * 5000 + "]}", "[" * 100_000 + "]" * 100_000])
def test_json_python_cannot_even_hold_is_a_bad_response_not_a_crash(body):
    provider, _ = make_anthropic(lambda request: httpx.Response(200, content=body.encode()))
    with pytest.raises(ProviderError):
        provider.list_page(limit=1)


# --- the pages: one bad batch is a warning, not a 500 -------------------------------------------------------------


@pytest.fixture
def one_bad_batch_upstream(monkeypatch, settings):
    """Two accounts, each listing one good batch and one whose created_at is in year 1 / an epoch of 6.4e17."""
    from dashboard import accounts
    from dashboard.batches import poller, services

    for variable in ("BATCH_ACCOUNTS_FILE",):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-" + "A" * 40)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-" + "O" * 40)
    bad_anthropic = {**ANTHROPIC_RUNNING, "id": "msgbatch_01BAD", "created_at": "0001-01-01T00:00:00+01:00"}
    bad_openai = {**OPENAI_IN_PROGRESS, "id": "batch_bad", "created_at": 6.4e17, "expires_at": 10**400}

    def answer(request: httpx.Request) -> httpx.Response:
        anthropic_side = "messages" in request.url.path
        good, bad = (ANTHROPIC_RUNNING, bad_anthropic) if anthropic_side else (OPENAI_IN_PROGRESS, bad_openai)
        if request.url.path.endswith(bad["id"]):
            return reply_json(200, bad)(request)
        if request.url.path.endswith(good["id"]):
            return httpx.Response(200, json=good)
        return reply_json(200, {"data": [bad, good], "has_more": False})(request)

    def provider_for(account):
        module = accounts.PROVIDERS[account.provider]
        client = httpx.Client(
            base_url=account.base_url,
            transport=httpx.MockTransport(answer),
            headers=module.auth_headers(account.api_key),
        )
        kind = module.AnthropicProvider if account.provider == "anthropic" else module.OpenAIProvider
        return kind(client, account=account.key)

    monkeypatch.setattr(services, "provider_for", provider_for)
    monkeypatch.setattr(poller, "provider_for", provider_for)
    poll_store()
    return bad_anthropic, bad_openai


def test_the_list_page_shows_the_good_batches_and_warns_about_the_bad_one(operator_client, one_bad_batch_upstream):
    response = operator_client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert ANTHROPIC_RUNNING["id"] in page and OPENAI_IN_PROGRESS["id"] in page
    warnings = re.findall(r'<div class="banner banner-warning unreadable-batches".*?</div>', page, re.S)
    assert len(warnings) == 2
    assert "msgbatch_01BAD" in warnings[0] + warnings[1] and "batch_bad" in warnings[0] + warnings[1]
    assert "created_at" in page and "0001-01-01" not in page and "640000000000000000" not in page
    assert 'id="row-anthropic-default-msgbatch_01BAD"' not in page


@pytest.mark.parametrize("path", ["/batches/anthropic-default/msgbatch_01BAD/", "/batches/openai-default/batch_bad/"])
def test_the_row_and_detail_pages_of_the_bad_batch_answer_without_a_500(operator_client, one_bad_batch_upstream, path):
    for suffix in ("", "row"):
        response = operator_client.get(path + suffix, HTTP_HX_REQUEST="true" if suffix else "")
        assert response.status_code != 500, (path + suffix, response.status_code)
        assert "could not read this batch" in response.content.decode()


# --- redaction ---------------------------------------------------------------------------------------------------

keys = st.builds(
    str.__add__,
    st.sampled_from(["sk-ant-api03-", "sk-proj-", "sk-", ""]),
    st.text(string.ascii_letters + string.digits + "-_", min_size=20, max_size=100),
)
casings = st.sampled_from([str, str.upper, str.lower, str.swapcase, str.title])
filler = st.text(max_size=400)


def shows(secret: str, text: str) -> bool:
    """Whether `text` holds `secret` or its first PREFIX_LENGTH characters, in any letter case."""
    return bool(re.search(re.escape(secret[:PREFIX_LENGTH]), text, re.IGNORECASE))


@FAST
@given(
    secret=keys, others=st.lists(keys, max_size=3), case=casings, before=filler, after=filler, cut=st.integers(0, 200)
)
def test_redact_leaves_no_key_nor_its_first_characters_in_any_case(secret, others, case, before, after, cut):
    echoed = case(secret)[: max(PREFIX_LENGTH, len(secret) - cut)]  # whole, or cut short by whoever echoed it
    text = before + echoed + after
    redacted = redact(text, [secret, *others])
    assert not shows(secret, redacted)
    assert REDACTED in redacted


@FAST
@given(
    name=st.sampled_from(NAMES),
    sent=keys,
    configured=keys,
    which=st.sampled_from(["sent", "configured"]),
    case=casings,
    padding=st.integers(0, MAX_MESSAGE + 50),
    before=filler,
    after=filler,
    status=st.sampled_from([400, 401, 403, 404, 409, 500, 502, 503, 529]),
    in_kind=st.booleans(),
)
def test_no_key_survives_into_an_upstream_error_message(
    name, sent, configured, which, case, padding, before, after, status, in_kind
):
    assume(sent.lower()[:PREFIX_LENGTH] != configured.lower()[:PREFIX_LENGTH])
    spec = PROVIDERS[name]
    echoed = case(sent if which == "sent" else configured)
    # Anywhere: often right across the cut at MAX_MESSAGE characters.
    detail = (before + "x" * padding)[: padding + 40] + echoed + after
    body = spec["error"](detail)
    if in_kind:
        body["error"]["type"] = echoed + after[:10]
    environment = {"ANTHROPIC_API_KEY": sent, "OPENAI_API_KEY": configured} if name == "anthropic" else {}
    environment = environment or {"ANTHROPIC_API_KEY": configured, "OPENAI_API_KEY": sent}
    with mock.patch.dict(os.environ, environment):
        os.environ.pop("BATCH_ACCOUNTS_FILE", None)
        # Every configured key, as accounts.provider_for gives them to a provider.
        provider, _ = spec["make"](reply(status, body), key=sent, secrets=tuple(configured_secrets()))
    with pytest.raises(ProviderError) as raised:
        provider.retrieve(spec["valid"][0]["id"])
    error = raised.value
    for secret in (sent, configured):
        assert not shows(secret, error.message), error.message
        assert not shows(secret, error.kind)
    assert len(error.message) <= MAX_MESSAGE


@FAST
@given(secret=keys, padding=st.integers(MAX_MESSAGE - 60, MAX_MESSAGE + 5), case=casings)
def test_a_key_cut_by_our_own_truncation_leaves_no_prefix(secret, padding, case):
    """Redacting only after the cut would leave the key's start at the end of the message."""
    response = httpx.Response(401, request=httpx.Request("GET", "https://x", headers={"x-api-key": secret}))
    message = scrub_credentials("y" * padding + case(secret) + " was refused", response)
    assert len(message) <= MAX_MESSAGE
    assert not shows(secret, message)
    # And nothing of it at the cut: not even fewer than PREFIX_LENGTH characters.
    tail = message.rstrip("…")
    assert not any(tail.lower().endswith(secret[:size].lower()) for size in range(4, len(secret)))


@pytest.mark.parametrize("name", NAMES)
def test_our_cannot_read_messages_never_quote_a_key_in_a_2xx_body(name):
    key = "sk-ant-api03-" + "Z" * 40
    spec = PROVIDERS[name]
    for field in ("created_at", spec["status"], "request_counts", "id"):
        body = {**spec["valid"][0], field: key}
        provider, _ = spec["make"](reply(200, {"data": [body], "has_more": False}), key=key, secrets=(key,))
        page = provider.list_page(limit=1)
        assert page.batches == [] and len(page.unreadable) == 1
        assert not shows(key, repr(page.unreadable))


def test_the_cli_lists_the_good_batches_and_names_the_skipped_ones(db, one_bad_batch_upstream):
    import io

    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    call_command("batches", "list", stdout=out, stderr=err)
    assert ANTHROPIC_RUNNING["id"] in out.getvalue() and OPENAI_IN_PROGRESS["id"] in out.getvalue()
    assert "anthropic-default: skipped msgbatch_01BAD" in err.getvalue()
    assert "openai-default: skipped batch_bad" in err.getvalue()
    assert "0001-01-01" not in err.getvalue()
