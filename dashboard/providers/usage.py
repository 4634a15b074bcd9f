"""Token usage in one shape for every provider: five disjoint kinds that add up to what is billed.

`input` is fresh (uncached) input, `cache_read` input read from a cache, `cache_write` input written
to one, `output` output not counted as reasoning, `reasoning` reasoning (thinking) tokens the
provider reports apart (billed as output). Each provider's usage block is untrusted: one that is
missing a count, holds anything but a whole number in 0..MAX_TOKENS, or does not add up (cached
more than the input, reasoning more than the output, a total that is not the sum) reads as None,
unknown: never as zero, never negative. Read once per result line of a whole batch: plain lookups.

A result line carries its usage as a plain tuple of the five counts in KINDS order (Kinds), checked
once as it is read: a Usage is made only where one is kept (a batch object, a model's sums).
"""

from __future__ import annotations

from typing import Any, NamedTuple

MAX_TOKENS = 10**12  # more than any one request or batch object can carry: beyond it, a count is not believed
KINDS = ("input", "cache_read", "cache_write", "output", "reasoning")
# Below this, a count is one machine word to Python, compared in a few instructions: the parsers' quick
# checks of a usage block as the APIs write it take only counts below it (a single request is billed
# far fewer tokens) and leave any other block to the reader functions here, which allow MAX_TOKENS.
QUICK_MAX = 2**30 - 1


Kinds = tuple[int, int, int, int, int]  # a Usage's counts as a plain tuple, as a result line carries them


class Usage(NamedTuple):
    """Immutable, and a tuple of the five counts in KINDS order."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0

    @property
    def total(self) -> int:
        return self.input + self.cache_read + self.cache_write + self.output + self.reasoning


MAX_MODEL = 200  # characters of a model name kept (BatchTokens.model)


def model_name(value: Any, *, prefix: str = "") -> str:
    """A model as the provider names it (`prefix` left off), or "" when it names none we can keep."""
    if value.__class__ is not str:
        return ""
    if prefix and value.startswith(prefix):
        value = value[len(prefix) :]
    value = value.strip()
    return value if 0 < len(value) <= MAX_MODEL and value.isprintable() else ""


class _Untrusted(Exception):
    pass


def _count(value: Any) -> int:
    if value.__class__ is int and 0 <= value <= MAX_TOKENS:
        return value
    raise _Untrusted


def _optional(value: Any) -> int:
    """A count the provider may leave out or send as null: absent is none."""
    return 0 if value is None else _count(value)


# A Usage made without NamedTuple's Python-level __new__ (new_usage(Usage, (five counts))).
new_usage = tuple.__new__


def counted(fresh: Any, read: Any, written: Any, output: Any) -> Usage | None:
    """The four counts of an Anthropic-like usage (fresh input, cache read, cache written, output; the
    cache counts None when absent), or None unless each is a whole number in range."""
    if read is None:
        read = 0
    if written is None:
        written = 0
    if (
        fresh.__class__ is int
        and output.__class__ is int
        and read.__class__ is int
        and written.__class__ is int
        and 0 <= fresh <= MAX_TOKENS
        and 0 <= output <= MAX_TOKENS
        and 0 <= read <= MAX_TOKENS
        and 0 <= written <= MAX_TOKENS
    ):
        return new_usage(Usage, (fresh, read, written, output, 0))
    return None


def anthropic_usage(usage: Any) -> Usage | None:
    """A Messages `usage` (Anthropic, and Anthropic models on Bedrock): input_tokens already leaves
    out what was read from or written to the cache."""
    if usage.__class__ is not dict:
        return None
    return counted(
        usage.get("input_tokens"),
        usage.get("cache_read_input_tokens"),
        usage.get("cache_creation_input_tokens"),
        usage.get("output_tokens"),
    )


def openai_usage(usage: Any) -> Usage | None:
    """An OpenAI (and Azure OpenAI) `usage`: of a chat completion (prompt_tokens, completion_tokens),
    of a response or a Batch object (input_tokens, output_tokens), or of embeddings (prompt_tokens
    only). The input counts include the cached tokens, and those written to the cache where the API
    says so (`cache_write_tokens`, newer models), and the output the reasoning ones: all are taken out,
    so that the kinds are disjoint."""
    if usage.__class__ is not dict:
        return None
    if "prompt_tokens" in usage:
        given_in, given_out = usage["prompt_tokens"], usage.get("completion_tokens")
        if given_out is None:
            given_out = 0  # embeddings
        in_details, out_details = usage.get("prompt_tokens_details"), usage.get("completion_tokens_details")
    else:
        given_in, given_out = usage.get("input_tokens"), usage.get("output_tokens")
        in_details, out_details = usage.get("input_tokens_details"), usage.get("output_tokens_details")
    if in_details is None:
        cached = written = 0
    elif in_details.__class__ is dict:
        cached = in_details.get("cached_tokens")
        if cached is None:
            cached = 0
        written = in_details.get("cache_write_tokens")
        if written is None:
            written = 0
    else:
        return None
    if out_details is None:
        reasoning = 0
    elif out_details.__class__ is dict:
        reasoning = out_details.get("reasoning_tokens")
        if reasoning is None:
            reasoning = 0
    else:
        return None
    total = usage.get("total_tokens")
    if (
        given_in.__class__ is int
        and given_out.__class__ is int
        and cached.__class__ is int
        and written.__class__ is int
        and reasoning.__class__ is int
        and 0 <= cached
        and 0 <= written
        and cached + written <= given_in <= MAX_TOKENS
        and 0 <= reasoning <= given_out <= MAX_TOKENS
        and (total is None or (total.__class__ is int and total == given_in + given_out))
    ):
        return new_usage(Usage, (given_in - cached - written, cached, written, given_out - reasoning, reasoning))
    return None


def gemini_usage(usage: Any) -> Usage | None:
    """A Gemini `usageMetadata`: promptTokenCount includes the cached content; the tool-use prompt,
    the candidates and the thoughts are counted apart from it (a blocked prompt has no candidates)."""
    if usage.__class__ is not dict:
        return None
    try:
        prompt = _count(usage.get("promptTokenCount"))
        cached = _optional(usage.get("cachedContentTokenCount"))
        tool_use = _optional(usage.get("toolUsePromptTokenCount"))
        candidates = _optional(usage.get("candidatesTokenCount"))
        thoughts = _optional(usage.get("thoughtsTokenCount"))
        total = usage.get("totalTokenCount")
        if cached > prompt or (total is not None and _count(total) != prompt + tool_use + candidates + thoughts):
            return None
    except _Untrusted:
        return None
    return Usage(prompt - cached + tool_use, cached, 0, candidates, thoughts)


def bedrock_usage(output: Any) -> Usage | None:
    """A Bedrock record's `modelOutput`, in the shape of its model's native API where that shape is
    documented: Anthropic's Messages `usage`; Amazon Nova's `usage` (inputTokens, outputTokens,
    cacheReadInputTokenCount, cacheWriteInputTokenCount, where inputTokens leaves out the cache);
    Meta Llama's prompt_token_count and generation_token_count. Any other model: unknown."""
    if output.__class__ is not dict:
        return None
    usage = output.get("usage")
    if usage.__class__ is dict:
        if "input_tokens" in usage:
            return anthropic_usage(usage)
        try:
            return Usage(
                _count(usage.get("inputTokens")),
                _optional(usage.get("cacheReadInputTokenCount")),
                _optional(usage.get("cacheWriteInputTokenCount")),
                _count(usage.get("outputTokens")),
                0,
            )
        except _Untrusted:
            return None
    if "prompt_token_count" in output:
        try:
            return Usage(_count(output["prompt_token_count"]), 0, 0, _count(output.get("generation_token_count")), 0)
        except _Untrusted:
            return None
    return None
