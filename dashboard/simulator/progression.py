"""Pure progression rules of a simulated batch: its state at any instant is a function of its plan.

A batch stores only its plan (request total, creation time, durations, seed, when cancel was
asked). Nothing runs in the background: every read computes the state for "now", so all server
processes agree and tests can inject any instant.

Requests finish one after another over `processing_seconds`, in an order given by a seeded
permutation of their indexes (their *rank*). The rank also decides each request's fate and token
usage through patterns that repeat every `PERIOD` ranks, so counts over the first n ranks are
computed in O(PERIOD), whatever the batch size.

A batch can be *stalled* (an operator's fault injection): from `stalled_at` its processing stops,
its counts freeze and its end moves away, until it is released. The time it spent stalled is kept
in `stalled_seconds`, so a released batch resumes where it stopped (nothing jumps) and ends that
much later; its 24-hour window does not move, so a long stall can make it expire.
"""

from __future__ import annotations

import math
import re
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import cached_property, lru_cache

PERIOD = 300
TALLY_FIELDS = 8  # errored, expired, succeeded, and five token counts: see _period_tallies
EXPIRY_WINDOW = timedelta(hours=24)
FINISHED_SLACK = 1e-6  # of a request: what microsecond instants and float seconds may lose
# The end of processing while a stall lasts: later than any instant compared with it (never added to).
NEVER = datetime.max.replace(tzinfo=UTC)


class Outcome(str, Enum):
    SUCCEEDED = "succeeded"
    ERRORED = "errored"
    CANCELED = "canceled"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Plan:
    total: int
    created_at: datetime
    seed: int
    processing_seconds: float
    cancel_grace_seconds: float
    error_percent: int
    expire_percent: int = 0
    cancel_initiated_at: datetime | None = None
    # OpenAI only
    validating_seconds: float = 0.0
    finalizing_seconds: float = 0.0
    input_is_valid: bool = True
    # A stall: processing stopped since `stalled_at` (None: not stalled now); `stalled_seconds` is
    # the processing time lost to stalls already released.
    stalled_at: datetime | None = None
    stalled_seconds: float = 0.0
    # Whether the batch expires at `expires_at` (Azure OpenAI's do not: they run on past their 24 hours).
    expires: bool = True
    # Bedrock: its timeoutDurationInHours; Gemini: 48 (the others' window is 24 hours)
    window_hours: int = 24

    @property
    def expires_at(self) -> datetime:
        return self.created_at + timedelta(hours=self.window_hours)

    @property
    def deadline(self) -> datetime:
        """When processing is cut short by expiry: `expires_at`, or NEVER for a batch that does not expire."""
        return self.expires_at if self.expires else NEVER

    # --- processing time, stalls taken out ---------------------------------------------------

    def processed_seconds(self, start: datetime, until: datetime) -> float:
        """Seconds of processing done between `start` (when processing began) and `until`: the time
        since `start`, less the time stalled (released stalls, and the current one so far)."""
        seconds = (until - start).total_seconds() - self.stalled_seconds
        if self.stalled_at is not None:
            frozen_from = max(self.stalled_at, start)
            if until > frozen_from:
                seconds -= (until - frozen_from).total_seconds()
        return max(0.0, seconds)

    def processing_end(self, start: datetime) -> datetime:
        """When processing that began at `start` is done; NEVER while a stall that began before then lasts."""
        end = start + timedelta(seconds=self.processing_seconds + self.stalled_seconds)
        if self.stalled_at is not None and max(self.stalled_at, start) < end:
            return NEVER
        return end

    def processing_stop(self, start: datetime) -> datetime:
        """When processing stops: done, at the end of the 24-hour window, or at a cancel's end,
        whichever comes first (NEVER while stalled with none of those ahead)."""
        stop = min(self.processing_end(start), self.deadline)
        if self.cancel_initiated_at is not None:
            stop = min(stop, self.cancel_initiated_at + timedelta(seconds=self.cancel_grace_seconds))
        return stop

    def stalled_seconds_after_release(self, start: datetime, now: datetime) -> float:
        """`stalled_seconds` once the current stall is released at `now`: the processing time it
        took away (none if processing had stopped before it began)."""
        if self.stalled_at is None:
            return self.stalled_seconds
        held = min(now, self.processing_stop(start)) - max(self.stalled_at, start)
        return self.stalled_seconds + max(0.0, held.total_seconds())

    # --- ranks and fates --------------------------------------------------------------------

    @cached_property
    def _multiplier(self) -> int:
        if self.total <= 1:
            return 1
        candidate = 2 * (self.seed % 997) + 1
        while math.gcd(candidate, self.total) != 1:
            candidate += 2
        return candidate % self.total or 1

    def rank_of(self, index: int) -> int:
        """The position at which request `index` finishes: a seeded bijection of 0..total-1."""
        return (index * self._multiplier + self.seed) % self.total

    def fate(self, rank: int) -> Outcome:
        """What happens to the request finishing at `rank` if it gets processed at all."""
        slot = (rank * 37 + self.seed) % 100
        if slot < self.error_percent:
            return Outcome.ERRORED
        if slot < self.error_percent + self.expire_percent:
            return Outcome.EXPIRED
        return Outcome.SUCCEEDED

    def input_tokens(self, rank: int) -> int:
        return 12 + (rank * 7 + self.seed) % 30

    def output_tokens(self, rank: int) -> int:
        return 20 + (rank * 11 + self.seed) % 100

    # Input read from a cache (a shared prompt prefix), on top of the fresh input above: 40% of requests.
    def cache_read_tokens(self, rank: int) -> int:
        rank %= PERIOD  # every count repeats every PERIOD ranks, so that `tally` is the sum of the lines
        return 1024 + (rank * 29 + self.seed) % 1024 if (rank * 13 + self.seed) % 10 < 4 else 0

    # Input written to a cache, where the API says so (Anthropic): 4% of requests.
    def cache_write_tokens(self, rank: int) -> int:
        rank %= PERIOD
        return 1024 + (rank * 31 + self.seed) % 512 if (rank * 17 + self.seed) % 25 == 0 else 0

    # Reasoning (thinking) tokens, on top of the output above, for a model that reasons (`reasons`).
    def reasoning_tokens(self, rank: int) -> int:
        rank %= PERIOD
        return 64 + (rank * 19 + self.seed) % 448

    def finished_by(self, seconds_of_processing: float) -> int:
        """How many requests have finished after this much processing time."""
        if seconds_of_processing <= 0:
            return 0
        if self.processing_seconds <= 0:
            return self.total
        # Instants are kept to the microsecond: a share a hair short of a whole request (all of
        # them, at the end of processing) is that request finished, not one left to expire.
        done = self.total * seconds_of_processing / self.processing_seconds
        return min(self.total, math.floor(done + FINISHED_SLACK))

    def tally(self, finished: int) -> Tally:
        """Fates and token usage of the first `finished` ranks."""
        tallies = _period_tallies(self.seed, self.error_percent, self.expire_percent)
        whole, rest = divmod(finished, PERIOD)
        full = tallies[PERIOD * TALLY_FIELDS : (PERIOD + 1) * TALLY_FIELDS]
        part = tallies[rest * TALLY_FIELDS : (rest + 1) * TALLY_FIELDS]
        errored, expired, succeeded, tokens_in, tokens_out, cache_read, cache_write, reasoning = (
            whole * f + p for f, p in zip(full, part, strict=True)
        )
        return Tally(
            finished=finished,
            errored=errored,
            expired=expired,
            succeeded=succeeded,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            reasoning_tokens=reasoning,
        )


# Models that reason (think) before answering, and report those tokens apart: OpenAI's o-series and
# GPT-5, Gemini 2.5 and later. The simulator gives their requests reasoning tokens.
REASONING_MODEL = re.compile(r"^(?:models/)?(?:o[1-9]|gpt-5|gemini-(?:2\.5|[3-9]))")


def reasons(model: str) -> bool:
    return bool(REASONING_MODEL.match(model))


# One table per batch seen (its seed), so kept as flat C ints: 9.5 KiB a batch, where tuples of
# Python ints took 74 KiB (300 MiB once the cache was full, in the poller's process when the
# simulator is embedded: bench/poller_memory.py --embedded). The sums stay far below 2**31 (a rank's
# tokens are at most ~2,000); one that did not would raise OverflowError, not wrap.
@lru_cache(maxsize=4096)
def _period_tallies(seed: int, error_percent: int, expire_percent: int) -> array:
    """Running sums over one period, TALLY_FIELDS per rank from 0 to PERIOD (row r: the first r ranks):
    (errored, expired, succeeded, input tokens, output tokens, cache read tokens, cache write tokens,
    reasoning tokens) of the requests that succeeded."""
    plan = Plan(
        total=PERIOD,
        created_at=datetime.min,
        seed=seed,
        processing_seconds=0,
        cancel_grace_seconds=0,
        error_percent=error_percent,
        expire_percent=expire_percent,
    )
    tallies = array("i", [0] * TALLY_FIELDS)
    errored = expired = succeeded = tokens_in = tokens_out = cache_read = cache_write = reasoning = 0
    for rank in range(PERIOD):
        fate = plan.fate(rank)
        errored += fate is Outcome.ERRORED
        expired += fate is Outcome.EXPIRED
        if fate is Outcome.SUCCEEDED:
            succeeded += 1
            tokens_in += plan.input_tokens(rank)
            tokens_out += plan.output_tokens(rank)
            cache_read += plan.cache_read_tokens(rank)
            cache_write += plan.cache_write_tokens(rank)
            reasoning += plan.reasoning_tokens(rank)
        tallies.extend((errored, expired, succeeded, tokens_in, tokens_out, cache_read, cache_write, reasoning))
    return tallies


@dataclass(frozen=True)
class Tally:
    finished: int
    errored: int
    expired: int
    succeeded: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # what the requests' reasoning would be, for a model that reasons


# --- Anthropic -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AnthropicState:
    processing_status: str  # in_progress | canceling | ended
    ended_at: datetime | None
    cancel_initiated_at: datetime | None
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int
    finished: int  # how many ranks finished with their own fate (the rest are canceled/expired)
    unfinished_outcome: Outcome

    @property
    def is_ended(self) -> bool:
        return self.processing_status == "ended"

    def outcome_of_rank(self, plan: Plan, rank: int) -> Outcome:
        if rank < self.finished:
            return plan.fate(rank)
        return self.unfinished_outcome


def anthropic_end(plan: Plan) -> tuple[datetime, bool]:
    """When the batch ends, and whether that end comes from a cancel."""
    natural_end = min(plan.processing_end(plan.created_at), plan.expires_at)
    if plan.cancel_initiated_at is not None and plan.cancel_initiated_at < natural_end:
        cancel_end = plan.cancel_initiated_at + timedelta(seconds=plan.cancel_grace_seconds)
        if cancel_end < natural_end:
            return cancel_end, True
    return natural_end, False


def anthropic_state(plan: Plan, now: datetime) -> AnthropicState:
    ended_at, by_cancel = anthropic_end(plan)
    canceling = plan.cancel_initiated_at is not None and plan.cancel_initiated_at <= now
    if now < ended_at:
        # Documented rule: every request counts as processing until the whole batch has ended.
        return AnthropicState(
            processing_status="canceling" if canceling else "in_progress",
            ended_at=None,
            cancel_initiated_at=plan.cancel_initiated_at if canceling else None,
            processing=plan.total,
            succeeded=0,
            errored=0,
            canceled=0,
            expired=0,
            finished=0,
            unfinished_outcome=Outcome.CANCELED if by_cancel else Outcome.EXPIRED,
        )
    finished = plan.finished_by(plan.processed_seconds(plan.created_at, ended_at))
    tally = plan.tally(finished)
    unfinished = plan.total - finished
    return AnthropicState(
        processing_status="ended",
        ended_at=ended_at,
        cancel_initiated_at=plan.cancel_initiated_at,
        processing=0,
        succeeded=tally.succeeded,
        errored=tally.errored,
        canceled=unfinished if by_cancel else 0,
        expired=tally.expired + (0 if by_cancel else unfinished),
        finished=finished,
        unfinished_outcome=Outcome.CANCELED if by_cancel else Outcome.EXPIRED,
    )


# --- OpenAI --------------------------------------------------------------------------------

OPENAI_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
# Once finalizing, every request has run: like the real API, there is nothing left to cancel.
OPENAI_CANCELABLE = frozenset({"validating", "in_progress"})


@dataclass(frozen=True)
class OpenAIState:
    status: str
    in_progress_at: datetime | None
    finalizing_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    expired_at: datetime | None
    cancelling_at: datetime | None
    cancelled_at: datetime | None
    total: int
    completed: int
    failed: int
    not_processed: int  # requests that never ran: listed as expired in the error file after expiry
    finished: int
    input_tokens: int  # fresh: the cached tokens are counted apart
    output_tokens: int  # reasoning left out: counted apart
    cached_tokens: int = 0
    reasoning_tokens: int = 0  # for a model that reasons (progression.reasons)

    @property
    def is_ended(self) -> bool:
        return self.status in OPENAI_ENDED

    @property
    def has_output_file(self) -> bool:
        return self.is_ended and self.completed > 0

    @property
    def has_error_file(self) -> bool:
        return self.is_ended and (self.failed > 0 or self.not_processed > 0)


def openai_start(plan: Plan) -> datetime:
    """When an OpenAI batch's processing begins: once validated."""
    return plan.created_at + timedelta(seconds=plan.validating_seconds)


def processing_start(plan: Plan, provider: str) -> datetime:
    """When the batch's processing begins in `provider`'s dialect (OpenAI and Azure OpenAI validate first;
    Bedrock is submitted, validated and scheduled first; a Gemini batch is pending first)."""
    return openai_start(plan) if provider in ("openai", "azure-openai", "bedrock", "gemini") else plan.created_at


def openai_state(plan: Plan, now: datetime) -> OpenAIState:
    start = openai_start(plan)
    processing_end = plan.processing_end(start)  # NEVER while stalled
    cancel_at = plan.cancel_initiated_at if plan.cancel_initiated_at and plan.cancel_initiated_at <= now else None
    blank = dict(
        in_progress_at=None,
        finalizing_at=None,
        completed_at=None,
        failed_at=None,
        expired_at=None,
        cancelling_at=None,
        cancelled_at=None,
        total=0,
        completed=0,
        failed=0,
        not_processed=0,
        finished=0,
        input_tokens=0,
        output_tokens=0,
    )

    def counted(status: str, processing_stop: datetime, **timestamps) -> OpenAIState:
        tally = plan.tally(plan.finished_by(plan.processed_seconds(start, min(now, processing_stop))))
        return OpenAIState(
            **{
                **blank,
                **timestamps,
                "status": status,
                "total": plan.total,
                "completed": tally.finished - tally.errored,
                "failed": tally.errored,
                "finished": tally.finished,
                "not_processed": plan.total - tally.finished if status == "expired" else 0,
                "input_tokens": tally.input_tokens,
                "output_tokens": tally.output_tokens,
                "cached_tokens": tally.cache_read_tokens,
                "reasoning_tokens": tally.reasoning_tokens,
            }
        )

    if cancel_at is not None and cancel_at < start:
        cancel_end = cancel_at + timedelta(seconds=plan.cancel_grace_seconds)
        if now < cancel_end:
            return OpenAIState(**{**blank, "status": "cancelling", "cancelling_at": cancel_at})
        return OpenAIState(**{**blank, "status": "cancelled", "cancelling_at": cancel_at, "cancelled_at": cancel_end})

    if now < start:
        return OpenAIState(**{**blank, "status": "validating"})
    if not plan.input_is_valid:
        return OpenAIState(**{**blank, "status": "failed", "failed_at": start})

    expires_at = plan.deadline
    if cancel_at is not None and cancel_at < processing_end and cancel_at < expires_at:
        cancel_end = min(cancel_at + timedelta(seconds=plan.cancel_grace_seconds), expires_at)
        if now < cancel_end:
            return counted("cancelling", cancel_end, in_progress_at=start, cancelling_at=cancel_at)
        return counted("cancelled", cancel_end, in_progress_at=start, cancelling_at=cancel_at, cancelled_at=cancel_end)

    if processing_end >= expires_at:
        if now < expires_at:
            return counted("in_progress", expires_at, in_progress_at=start)
        return counted("expired", expires_at, in_progress_at=start, expired_at=expires_at)

    if now < processing_end:
        return counted("in_progress", processing_end, in_progress_at=start)
    completed_at = processing_end + timedelta(seconds=plan.finalizing_seconds)
    if now < completed_at:
        return counted("finalizing", processing_end, in_progress_at=start, finalizing_at=processing_end)
    return counted(
        "completed", processing_end, in_progress_at=start, finalizing_at=processing_end, completed_at=completed_at
    )


# --- Amazon Bedrock ------------------------------------------------------------------------

BEDROCK_ENDED = frozenset({"Stopped", "Completed", "PartiallyCompleted", "Failed", "Expired"})
BEDROCK_STOPPABLE = frozenset({"Submitted", "Validating", "Scheduled", "InProgress"})
# Before processing (validating_seconds): Submitted, then Validating, then Scheduled, by these shares.
BEDROCK_PHASES = (("Submitted", 0.0), ("Validating", 0.2), ("Scheduled", 0.4))


@dataclass(frozen=True)
class BedrockState:
    status: str
    last_modified_at: datetime
    ended_at: datetime | None
    # (total, processed, success, error) records, or None while the job does not report them (before
    # it is validated): the counts are optional on the wire.
    records: tuple[int, int, int, int] | None

    @property
    def is_ended(self) -> bool:
        return self.status in BEDROCK_ENDED


def bedrock_state(plan: Plan, now: datetime) -> BedrockState:
    start = openai_start(plan)
    expires_at = plan.expires_at
    stop_at = plan.cancel_initiated_at if plan.cancel_initiated_at and plan.cancel_initiated_at <= now else None
    scheduled_at = plan.created_at + timedelta(seconds=plan.validating_seconds * BEDROCK_PHASES[2][1])
    validated = (plan.total, 0, 0, 0)

    def counted(status: str, processing_stop: datetime, changed: datetime, ended: datetime | None) -> BedrockState:
        tally = plan.tally(plan.finished_by(plan.processed_seconds(start, min(now, processing_stop))))
        records = (plan.total, tally.finished, tally.finished - tally.errored, tally.errored)
        return BedrockState(status=status, last_modified_at=changed, ended_at=ended, records=records)

    if stop_at is not None and stop_at < min(start, expires_at):
        stopped_at = stop_at + timedelta(seconds=plan.cancel_grace_seconds)
        records = validated if stop_at >= scheduled_at else None
        if now < stopped_at:
            return BedrockState(status="Stopping", last_modified_at=stop_at, ended_at=None, records=records)
        return BedrockState(status="Stopped", last_modified_at=stopped_at, ended_at=stopped_at, records=records)
    if now < min(start, expires_at):
        seconds = (now - plan.created_at).total_seconds()
        status, share = next(
            (name, share) for name, share in reversed(BEDROCK_PHASES) if seconds >= plan.validating_seconds * share
        )
        changed = plan.created_at + timedelta(seconds=plan.validating_seconds * share)
        return BedrockState(status, changed, None, validated if status == "Scheduled" else None)
    if not plan.input_is_valid:
        return BedrockState(status="Failed", last_modified_at=scheduled_at, ended_at=scheduled_at, records=None)
    if start >= expires_at:  # scheduled, never begun before its timeout
        return BedrockState(status="Expired", last_modified_at=expires_at, ended_at=expires_at, records=validated)
    processing_end = plan.processing_end(start)  # NEVER while stalled
    if stop_at is not None and stop_at < processing_end and stop_at < expires_at:
        stopped_at = min(stop_at + timedelta(seconds=plan.cancel_grace_seconds), expires_at)
        if now < stopped_at:
            return counted("Stopping", stopped_at, stop_at, None)
        return counted("Stopped", stopped_at, stopped_at, stopped_at)
    if processing_end >= expires_at:
        if now < expires_at:
            return counted("InProgress", expires_at, start, None)
        return counted("PartiallyCompleted", expires_at, expires_at, expires_at)
    if now < processing_end:
        return counted("InProgress", processing_end, start, None)
    return counted("Completed", processing_end, processing_end, processing_end)


# --- Gemini --------------------------------------------------------------------------------

GEMINI_WINDOW_HOURS = 48  # a batch pending or running for more than 48 hours expires


@dataclass(frozen=True)
class GeminiState:
    state: str  # BATCH_STATE_PENDING | _RUNNING | _SUCCEEDED | _FAILED | _CANCELLED | _EXPIRED
    updated_at: datetime
    ended_at: datetime | None
    total: int
    succeeded: int
    failed: int
    finished: int  # how many ranks finished with their own fate (the rest never ran)
    input_tokens: int
    output_tokens: int

    @property
    def is_ended(self) -> bool:
        return self.state not in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING")

    @property
    def pending(self) -> int:
        return 0 if self.is_ended else self.total - self.finished


def gemini_state(plan: Plan, now: datetime) -> GeminiState:
    """Pending for `validating_seconds`, running (counts growing) until done, expired at the end of
    its window, or cancelled once a cancel's grace is over: Gemini has no "cancelling" state, a batch
    being cancelled stays running until then. A batch whose input could not be read fails when it
    would have started."""
    start = openai_start(plan)
    cancel_at = plan.cancel_initiated_at if plan.cancel_initiated_at and plan.cancel_initiated_at <= now else None
    stop = plan.processing_stop(start)  # done, the window's end, or a cancel's end (NEVER while stalled)
    if not plan.input_is_valid:
        stop = start
    ended = now >= stop
    tally = plan.tally(plan.finished_by(plan.processed_seconds(start, min(now, stop))) if plan.input_is_valid else 0)
    if not ended:
        state = "BATCH_STATE_PENDING" if now < start else "BATCH_STATE_RUNNING"
    elif not plan.input_is_valid:
        state = "BATCH_STATE_FAILED"
    elif cancel_at is not None and stop == cancel_at + timedelta(seconds=plan.cancel_grace_seconds):
        state = "BATCH_STATE_CANCELLED"
    elif stop == plan.expires_at and tally.finished < plan.total:
        state = "BATCH_STATE_EXPIRED"
    else:
        state = "BATCH_STATE_SUCCEEDED"
    if ended:
        updated_at = stop
    elif now < start or not tally.finished or plan.total == 0:
        updated_at = plan.created_at if now < start else start
    else:  # when the last request counted finished (its stats changed then), stalls left aside
        updated_at = min(now, start + timedelta(seconds=plan.processing_seconds * tally.finished / plan.total))
    return GeminiState(
        state=state,
        updated_at=updated_at,
        ended_at=stop if ended else None,
        total=plan.total,
        succeeded=tally.finished - tally.errored,
        failed=tally.errored,
        finished=tally.finished,
        input_tokens=tally.input_tokens,
        output_tokens=tally.output_tokens,
    )
