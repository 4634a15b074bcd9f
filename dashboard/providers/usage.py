"""Token usage in one shape for every provider: five disjoint kinds that add up to what is billed.

`input` is fresh (uncached) input, `cache_read` input read from a cache, `cache_write` input written
to one, `output` output not counted as reasoning, `reasoning` reasoning (thinking) tokens the
provider reports apart (billed as output). Each provider's usage block is untrusted: one that is
missing a count, holds anything but a whole number in 0..MAX_TOKENS, or does not add up (cached
more than the input, reasoning more than the output, a total that is not the sum) reads as None,
unknown: never as zero, never negative. Read once per result line of a whole batch: plain lookups.
"""

from __future__ import annotations

from typing import Any, NamedTuple

MAX_TOKENS = 10**12  # more than any one request or batch object can carry: beyond it, a count is not believed
KINDS = ("input", "cache_read", "cache_write", "output", "reasoning")


class Usage(NamedTuple):
    """Immutable, and a tuple: made once per result line, it must cost little to build."""

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


def _details(block: Any, name: str) -> int:
    """A count in a details object (OpenAI's *_tokens_details), which may be absent or null."""
    if block is None:
        return 0
    if block.__class__ is not dict:
        raise _Untrusted
    return _optional(block.get(name))


def anthropic_usage(usage: Any) -> Usage | None:
    """A Messages `usage` (Anthropic, and Anthropic models on Bedrock): input_tokens already leaves
    out what was read from or written to the cache."""
    if usage.__class__ is not dict:
        return None
    try:
        return Usage(
            _count(usage.get("input_tokens")),
            _optional(usage.get("cache_read_input_tokens")),
            _optional(usage.get("cache_creation_input_tokens")),
            _count(usage.get("output_tokens")),
            0,
        )
    except _Untrusted:
        return None


def openai_usage(usage: Any) -> Usage | None:
    """An OpenAI (and Azure OpenAI) `usage`: of a chat completion (prompt_tokens, completion_tokens),
    of a response or a Batch object (input_tokens, output_tokens), or of embeddings (prompt_tokens
    only). The input counts include the cached tokens and the output the reasoning ones: both are
    taken out, so that the kinds are disjoint."""
    if usage.__class__ is not dict:
        return None
    try:
        if "prompt_tokens" in usage:
            given_in, given_out = _count(usage["prompt_tokens"]), _optional(usage.get("completion_tokens"))
            cached = _details(usage.get("prompt_tokens_details"), "cached_tokens")
            reasoning = _details(usage.get("completion_tokens_details"), "reasoning_tokens")
        else:
            given_in, given_out = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
            cached = _details(usage.get("input_tokens_details"), "cached_tokens")
            reasoning = _details(usage.get("output_tokens_details"), "reasoning_tokens")
        total = usage.get("total_tokens")
        if cached > given_in or reasoning > given_out or (total is not None and _count(total) != given_in + given_out):
            return None
    except _Untrusted:
        return None
    return Usage(given_in - cached, cached, 0, given_out - reasoning, reasoning)


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
