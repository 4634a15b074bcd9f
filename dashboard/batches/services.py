"""What the dashboard does upstream now, for the web views and the CLI alike: cancel (audited),
results and downloads. Everything else a page shows is read from the store (selectors.py), which
the poller keeps fresh; a cancel writes its answer into the store and wakes the poller for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .. import providers
from ..access.models import Role
from ..access.selectors import access_for
from ..accounts import Account, configured_secrets, find_account, provider_for
from ..models import AccountState, BatchTokens, CancelAttempt, ResultsSummary, StoredBatch
from ..providers.base import AlreadyEnded, BadResponse, Batch, NotFound, ProviderError, UpstreamTimeout
from ..providers.transport import jsonl_lines
from ..redaction import redact
from . import store
from .results import ErrorSummary, ResultLine, ResultPage, page_of, parse_stream, summarize

logger = logging.getLogger(__name__)


def may_cancel(user, *, account_key: str) -> bool:
    """Whether `user` may cancel this account's batches (one by one or in bulk): an operator of it."""
    return access_for(user=user).may(Role.OPERATOR, account_key)


def record_refused_cancel(*, account_key: str, batch_id: str, actor: str, user=None, via: str = "web") -> CancelAttempt:
    """A cancel the dashboard refused (its user is not an operator of the account), in the audit
    trail like any other attempt; nothing is asked upstream."""
    return CancelAttempt.objects.create(
        user=user,
        actor=actor,
        via=via,
        account=account_key,
        batch_id=batch_id,
        outcome=CancelAttempt.Outcome.REFUSED,
        message="Refused: not an operator of this account.",
        finished_at=timezone.now(),
    )


@dataclass(frozen=True)
class CancelResult:
    outcome: str
    message: str
    status_after: str  # as the provider answered, or as stored when it did not say
    attempt_id: int | None = None  # the CancelAttempt that records it


class UnknownBatch(Exception):
    """Account unknown or id malformed: answered as a 404 without any upstream call."""


def resolve(*, account_key: str, batch_id: str) -> Account:
    """The account of a batch URL, with the id checked against the provider's id shape."""
    account = find_account(account_key)
    if account is None or not provider_for(account).is_valid_id(batch_id):
        raise UnknownBatch(f"No batch {batch_id!r} in account {account_key!r}.")
    return account


def cancel_batch(
    *, account: Account, batch_id: str, actor: str, user=None, via: str = "web", attempt: CancelAttempt | None = None
) -> CancelResult:
    """Ask upstream to cancel, with the attempt recorded before the call and completed after it.
    `attempt`: a pending one the caller recorded already (bulk cancel links it to its item first)."""
    if attempt is None:
        attempt = CancelAttempt.objects.create(user=user, actor=actor, via=via, account=account.key, batch_id=batch_id)
    try:
        batch = provider_for(account).cancel(batch_id)
    except AlreadyEnded as error:
        attempt_outcome, message, batch = CancelAttempt.Outcome.ALREADY_ENDED, error.message, error.current
    except UpstreamTimeout as error:
        attempt_outcome, batch = CancelAttempt.Outcome.UPSTREAM_ERROR, None
        message = f"{error.message} The provider may still have accepted the cancel: check the batch's status."
    except ProviderError as error:
        # A refused cancel comes with the batch as it is now (see providers.base.refused_cancel).
        attempt_outcome, message, batch = CancelAttempt.Outcome.UPSTREAM_ERROR, error.message, error.current
    except Exception as error:
        # Whatever broke, the attempt is completed in the audit trail and the operator gets an answer.
        logger.exception("cancel of %s/%s failed unexpectedly", account.key, batch_id)
        attempt_outcome, batch = CancelAttempt.Outcome.UPSTREAM_ERROR, None
        message = (
            f"The cancel call failed unexpectedly ({type(error).__name__}); whether the provider "
            "canceled the batch is unknown: check its status."
        )
    else:
        attempt_outcome, message = CancelAttempt.Outcome.ACCEPTED, f"Cancel accepted; status is now {batch.status}."

    if isinstance(batch, Batch):
        _store(batch)
    # Either way the poller takes this account first in its next cycle and follows the batch.
    AccountState.objects.filter(account=account.key).update(next_poll_at=None)
    stored = StoredBatch.objects.filter(account=account.key, batch_id=batch_id).values_list("status", flat=True)
    attempt.outcome = attempt_outcome
    attempt.message = message
    attempt.status_after = batch.status if batch is not None else (stored.first() or "")
    if attempt_outcome == CancelAttempt.Outcome.ACCEPTED:
        attempt.counts_at_cancel = providers.module(batch.provider).counts_at_cancel(batch)
    attempt.finished_at = timezone.now()
    attempt.save(update_fields=["outcome", "message", "status_after", "finished_at", "counts_at_cancel"])
    return CancelResult(
        outcome=attempt_outcome, message=message, status_after=attempt.status_after, attempt_id=attempt.pk
    )


def reconcile_attempt(*, attempt: CancelAttempt, account: Account | None) -> CancelAttempt:
    """Settle a pending attempt whose process died before recording upstream's answer, by what upstream
    says of the batch now (`account` None: no longer configured, so not asked): a cancel requested
    (canceling, or ended canceled) means it was accepted; ended without one, it had already ended;
    otherwise not canceled (status_after says the status); unknown (status_after empty) if upstream
    could not be asked. A cancel someone else requested meanwhile counts too: upstream cannot tell.
    The attempt as settled, marked reconciled (by whichever process settled it first)."""
    batch: Batch | None = None
    try:
        if account is None:
            raise ProviderError("its account is not configured now")
        batch = provider_for(account).retrieve(attempt.batch_id)
    except Exception as error:
        if not isinstance(error, ProviderError):
            logger.exception("reconciling cancel attempt %s failed unexpectedly", attempt.pk)
        outcome = CancelAttempt.Outcome.UPSTREAM_ERROR
        why = error.message if isinstance(error, ProviderError) else type(error).__name__
        message = (
            "Its process died before recording upstream's answer, and asking upstream about the batch then "
            f"failed ({why}): whether it was canceled is unknown, check the batch's status."
        )
    else:
        _store(batch)
        if batch.cancel_initiated_at is not None:
            outcome = CancelAttempt.Outcome.ACCEPTED
            message = (
                "Cancel accepted (reconciled: its process died before recording the answer; upstream says a cancel "
                f"was requested at {batch.cancel_initiated_at:%Y-%m-%d %H:%M:%S} UTC, status {batch.status})."
            )
        elif batch.status in providers.module(batch.provider).CANCELED:
            # A provider that never says when a cancel was asked (Gemini) still says one took effect.
            outcome = CancelAttempt.Outcome.ACCEPTED
            message = (
                "Cancel accepted (reconciled: its process died before recording the answer; upstream says the "
                f"batch ended {batch.status})."
            )
        elif batch.is_ended:
            outcome = CancelAttempt.Outcome.ALREADY_ENDED
            message = f"The batch had already ended (reconciled: upstream says {batch.status}, never canceled)."
        else:
            outcome = CancelAttempt.Outcome.UPSTREAM_ERROR
            message = (
                "Not canceled (reconciled: its process died before recording upstream's answer, and upstream "
                f"says the batch is {batch.status} with no cancel requested)."
            )
    now = timezone.now()
    # counts_at_cancel stays empty: the counts now are not those at the cancel (see cancel_story).
    settled = CancelAttempt.objects.filter(pk=attempt.pk, outcome=CancelAttempt.Outcome.PENDING).update(
        outcome=outcome,
        message=message,
        status_after=batch.status if batch is not None else "",
        finished_at=now,
        reconciled_at=now,
    )
    if settled:
        logger.warning(
            "cancel attempt %s of %s/%s reconciled: %s", attempt.pk, attempt.account, attempt.batch_id, outcome
        )
    return CancelAttempt.objects.get(pk=attempt.pk)


def settle_abandoned_attempts(*, started_before: datetime) -> int:
    """Reconcile every attempt still pending that was made before `started_before` (its process is
    gone: no cancel call lasts that long); how many."""
    abandoned = list(
        CancelAttempt.objects.filter(outcome=CancelAttempt.Outcome.PENDING, requested_at__lt=started_before)
    )
    for attempt in abandoned:
        reconcile_attempt(attempt=attempt, account=find_account(attempt.account))
    return len(abandoned)


def _store(batch: Batch) -> None:
    try:
        store.record(batch, fetched_at=timezone.now())
    except Exception:
        # The cancel itself happened and is audited; the poller will catch the store up.
        logger.exception("storing the cancel answer of %s/%s failed", batch.account, batch.id)


def iter_results(*, account: Account, batch: Batch) -> Iterator[ResultLine]:
    """Every result line of an ended batch, parsed one at a time as it streams in."""
    provider = provider_for(account)
    sources = provider.result_sources(batch)
    named = providers.module(account.provider).LINES_NAME_SOURCE

    def lines() -> Iterator[tuple[str, bytes]]:
        for source in sources:
            with provider.open_results(batch.id, source, known=batch) as response:
                # zip pairs them in C: this runs for every line of a whole batch (summaries, exports).
                yield from zip(
                    repeat(source if named else ""), results_file_lines(response, label=provider.label, source=source)
                )

    return parse_stream(account.provider, lines())


def results_file_lines(response, *, label: str, source: str) -> Iterator[bytes]:
    """The lines of a results file, once its answer looks like one: an HTML page or any body whose
    first line is not a JSON object is the provider's failure (an error page served with 200), not
    a file of "invalid" result lines."""
    if "html" in response.headers.get("content-type", "").lower():
        raise BadResponse(f"{label} answered for the {source} file with an HTML page, not JSON lines.")
    lines = jsonl_lines(response)
    first = next(lines, None)
    if first is None:
        return
    if not first.lstrip().startswith(b"{"):
        raise BadResponse(f"{label} answered for the {source} file with a body that is not JSON lines.")
    yield first
    yield from lines


DOWNLOAD_CHUNK = 64 * 1024  # an upstream's smaller pieces are sent on in chunks of at least this size


class Download:
    """An upstream results file, its bytes unchanged (still compressed, if upstream compressed them),
    with what a download response must say of them: their length and encoding, when upstream said."""

    def __init__(self, body: Iterator[bytes], stack: ExitStack, *, length: int | None, encoding: str):
        self.body = body
        self.stack = stack  # the upstream response: closed with the body, or by `close` if never read
        self.length = length  # None: upstream did not say
        self.encoding = encoding  # the Content-Encoding of the bytes, "" if none

    def __iter__(self) -> Iterator[bytes]:
        return self.body

    def close(self) -> None:
        self.body.close()
        self.stack.close()


def _coalesced(chunks: Iterator[bytes], size: int = DOWNLOAD_CHUNK) -> Iterator[bytes]:
    """`chunks` as they come when they are large; small ones (an upstream writing a line at a time) are
    joined up to `size` first, so that the client gets one write per 64 KiB rather than per line."""
    pending: list[bytes] = []
    held = 0
    for chunk in chunks:
        if not pending and len(chunk) >= size:
            yield chunk
            continue
        pending.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


def open_download(*, account: Account, batch: Batch, source: str) -> Download:
    """The upstream JSONL bytes, unchanged. Upstream errors raise here, before any byte is sent."""
    stack = ExitStack()
    response = stack.enter_context(provider_for(account).open_results(batch.id, source, known=batch))
    encoding = response.headers.get("content-encoding", "").strip()
    encoding = "" if encoding.lower() == "identity" else encoding
    try:
        length: int | None = int(response.headers.get("content-length", ""))
    except ValueError:
        length = None

    def body() -> Iterator[bytes]:
        with stack:
            yield from _coalesced(response.iter_raw())

    return Download(body(), stack, length=length if length is not None and length >= 0 else None, encoding=encoding)


def results_page(
    *, account: Account, batch: Batch, offset: int, size: int, kind: str = "", source: str = "", custom_id: str = ""
) -> ResultPage:
    """One page of result lines; the upstream stream is read only as far as this page needs."""
    lines = iter_results(account=account, batch=batch)
    try:
        return page_of(lines, offset=offset, size=size, kind=kind, source=source, custom_id=custom_id)
    finally:
        lines.close()


def error_summary(*, account: Account, batch: Batch) -> ErrorSummary:
    """Results counted by type and by error. An ended batch's results never change: the first request
    counts them (one streaming pass) and stores the summary with the batch, keys redacted; every
    later one reads it from the database. A summary stored for other result sources than the batch
    has now is not this one's: counted anew. A failed count stores nothing."""
    sources = ",".join(provider_for(account).result_sources(batch))
    stored = ResultsSummary.objects.filter(batch__account=account.key, batch__batch_id=batch.id, sources=sources)
    # A summary stored before tokens were counted (tokens not known yet) is counted once more, for them.
    stored = stored.exclude(batch__tokens_source=StoredBatch.TokensSource.NOT_KNOWN_YET)
    summary = next((row.summary() for row in stored[:1]), None)
    if summary is not None:
        return summary
    secrets = configured_secrets()
    summary = summarize(iter_results(account=account, batch=batch), clean=lambda text: redact(text, secrets))
    if batch.is_ended:
        _keep_summary(account=account, batch=batch, sources=sources, summary=summary)
    return summary


def _keep_summary(*, account: Account, batch: Batch, sources: str, summary: ErrorSummary) -> None:
    """Store `summary` with the stored batch (if the store has it ended), and the tokens counted in the
    same pass; of concurrent first counts the first summary stored wins (counted from the same lines)."""
    row = StoredBatch.objects.filter(account=account.key, batch_id=batch.id, is_ended=True).values_list("id", flat=True)
    batch_row = row.first()
    if batch_row is None:
        return
    with transaction.atomic():
        try:
            with transaction.atomic():
                ResultsSummary.objects.create(
                    batch_id=batch_row,
                    sources=sources,
                    total=summary.total,
                    by_type=[list(pair) for pair in summary.by_type],
                    errors=[list(error) for error in summary.errors],
                    computed_at=timezone.now(),
                )
        except IntegrityError:
            pass  # stored meanwhile by a concurrent first request: the unique constraint keeps one
        # The same lines' tokens: written again by a concurrent count, the same (the batch row locked).
        _keep_tokens(batch_row=batch_row, summary=summary)


MAX_STORED_TOKENS = 2**63 - 1  # what a PositiveBigIntegerField holds on every database


def tokens_note(summary: ErrorSummary) -> str:
    """Why the tokens summed from `summary`'s lines are partial, in an operator's words; "" if they are not."""
    if not summary.usage_unknown:
        return ""
    billed = summary.usage_unknown + sum(tally.requests for tally in summary.tokens)
    return (
        f"{summary.usage_unknown:,} of {billed:,} results had no usage that could be read: "
        "their tokens are not counted."
    )


def _keep_tokens(*, batch_row: int, summary: ErrorSummary) -> None:
    """The batch's tokens summed from its results, unless its batch object reports them (OpenAI's
    usage: what the provider bills, kept as the poller stores it)."""
    stored = StoredBatch.objects.select_for_update().filter(pk=batch_row).values_list("tokens_source", flat=True)
    if stored.first() == StoredBatch.TokensSource.BATCH:
        return
    source, note = StoredBatch.TokensSource.RESULTS, tokens_note(summary)
    tallies = summary.tokens
    if any(value > MAX_STORED_TOKENS for tally in tallies for value in (*tally.usage, tally.usage.total)):
        source, tallies = StoredBatch.TokensSource.UNAVAILABLE, []
        note = "The results' usage adds up to more tokens than can be believed: not counted."
    BatchTokens.objects.filter(batch_id=batch_row).delete()
    BatchTokens.objects.bulk_create(
        BatchTokens(batch_id=batch_row, model=tally.model, requests=tally.requests, **tally.usage._asdict())
        for tally in tallies
    )
    StoredBatch.objects.filter(pk=batch_row).update(tokens_source=source, tokens_note=note)


def count_ended_results(*, account: Account, limit: int = 1) -> int:
    """Count the results (error summary and tokens, one pass) of up to `limit` of the account's ended
    batches whose tokens are not known yet, most recently ended first: spend needs every ended batch
    counted, whether or not anyone opens it. How many were counted or found uncountable. A batch
    whose results are elsewhere (Bedrock's S3), gone upstream or refused (404, a body that is no
    results file) is marked unavailable with why; a transient failure (timeout, 5xx, 429) raises,
    and the batch is counted again later."""
    rows = StoredBatch.objects.filter(account=account.key, is_ended=True, tokens_source="").order_by(
        F("ended_at").desc(nulls_last=True), "-id"
    )
    done = 0
    for row in rows[:limit]:
        batch = store.as_batch(row)
        elsewhere = provider_for(account).results_elsewhere(batch)
        if elsewhere:
            tokens_unavailable(account=account, batch=batch, note=elsewhere)
        elif row.gone_at is not None:
            note = "The batch was deleted upstream before its results were counted."
            tokens_unavailable(account=account, batch=batch, note=note)
        else:
            try:
                error_summary(account=account, batch=batch)
            except (NotFound, BadResponse) as refused:
                note = f"The results could not be read: {redact(refused.message, configured_secrets())}"
                tokens_unavailable(account=account, batch=batch, note=note)
        done += 1
    return done


def tokens_unavailable(*, account: Account, batch: Batch, note: str) -> None:
    """The batch's tokens cannot be counted (its results are where the dashboard does not read, or
    not there any more): said once, with why, rather than shown as zero."""
    StoredBatch.objects.filter(account=account.key, batch_id=batch.id, tokens_source="").update(
        tokens_source=StoredBatch.TokensSource.UNAVAILABLE, tokens_note=note[:1000]
    )


@dataclass(frozen=True)
class CancelStory:
    requested_at: datetime
    ended_at: datetime | None
    canceling_took: timedelta | None
    finished_after_cancel: int | None  # None: the provider does not tell
    canceled: int
    explanation: str


def cancel_story(*, batch: Batch, attempts: list[CancelAttempt]) -> CancelStory | None:
    """The story of the batch's cancel. A provider that does not say when a cancel was asked for
    (Gemini) has it told from when this dashboard's first accepted cancel asked (the audit trail)."""
    requested_at = batch.cancel_initiated_at
    if requested_at is None:
        requested_at = next((a.requested_at for a in attempts if a.outcome == CancelAttempt.Outcome.ACCEPTED), None)
    if requested_at is None:
        return None
    took = batch.ended_at - requested_at if batch.ended_at else None
    # The first accepted cancel is the one that stopped the batch: counts after it are what finished
    # meanwhile (a second cancel's answer would hide what finished between the two).
    accepted = next((a for a in attempts if a.outcome == CancelAttempt.Outcome.ACCEPTED and a.counts_at_cancel), None)
    finished_after, explanation = providers.module(batch.provider).after_cancel(
        batch, accepted.counts_at_cancel if accepted is not None else None
    )
    return CancelStory(
        requested_at=requested_at,
        ended_at=batch.ended_at,
        canceling_took=took,
        finished_after_cancel=finished_after,
        canceled=batch.counts.canceled,
        explanation=explanation,
    )


def cancel_attempts(*, account_key: str, batch_id: str) -> list[CancelAttempt]:
    return list(CancelAttempt.objects.filter(account=account_key, batch_id=batch_id).order_by("requested_at", "id"))
