"""Token usage per provider (dashboard/providers/usage.py): five disjoint kinds that add up to what is
billed, read from untrusted usage blocks. Hypothesis properties over classes of bad input (missing,
null, strings, floats, bools, negative, beyond 10^12, cached more than the input, reasoning more than
the output, totals that do not add up): a bad block is unknown usage (None), never a crash, never a
negative, never a zero passed off as known. No network, no database."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dashboard.batches.results import parse_line
from dashboard.providers import anthropic, bedrock, gemini, openai
from dashboard.providers.lines import token_count
from dashboard.providers.usage import (
    KINDS,
    MAX_TOKENS,
    Usage,
    anthropic_usage,
    bedrock_usage,
    gemini_usage,
    model_name,
    openai_usage,
)
from tests.providers.test_providers import OPENAI_COMPLETED, OPENAI_IN_PROGRESS, make_azure, make_openai, reply
from tests.providers.test_untrusted_upstream import FAST, json_values

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

counts = st.integers(min_value=0, max_value=MAX_TOKENS)
small = st.integers(min_value=0, max_value=10**7)
# Every class of value that is not a token count.
not_a_count = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=MAX_TOKENS + 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=6),
    st.integers(min_value=0, max_value=10**6).map(str),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
readers = st.sampled_from([anthropic_usage, openai_usage, gemini_usage, bedrock_usage])


def assert_trusted(usage: Usage | None, *, of_a_line: bool = False) -> None:
    """Unknown, or five whole numbers in range: nothing else may come out of a reader. A result line
    carries them as a plain tuple (its parser's quick check) or as its reader's Usage."""
    if usage is not None:
        assert type(usage) in ((Usage, tuple) if of_a_line else (Usage,)) and len(usage) == len(KINDS)
        assert all(type(value) is int and 0 <= value <= 2 * MAX_TOKENS for value in usage)


# --- well-formed blocks: the kinds are disjoint and add up to the billed total -----------------------------


@given(fresh=small, written=small, read=small, output=small)
def test_anthropic_input_already_leaves_out_the_cache(fresh, written, read, output):
    block = {
        "input_tokens": fresh,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": output,
    }
    assert anthropic_usage(block) == Usage(fresh, read, written, output, 0)


def test_anthropic_cache_counts_may_be_absent_or_null():
    assert anthropic_usage({"input_tokens": 5, "output_tokens": 7}) == Usage(input=5, output=7)
    block = {
        "input_tokens": 5,
        "output_tokens": 7,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
    }
    assert anthropic_usage(block) == Usage(input=5, output=7)


def openai_block(prompt: int, input_details: dict, completion: int, reasoning: int, responses_shape: bool) -> dict:
    """A usage block as the Responses API writes it, or as Chat Completions (and the Batch object) do."""
    if responses_shape:
        return {
            "input_tokens": prompt,
            "input_tokens_details": input_details,
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + completion,
        }
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {**input_details, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "accepted_prediction_tokens": 0},
    }


@given(prompt=small, cached=small, completion=small, reasoning=small, responses_shape=st.booleans())
def test_openai_cached_and_reasoning_tokens_are_taken_out_of_input_and_output(
    prompt, cached, completion, reasoning, responses_shape
):
    assume(cached <= prompt and reasoning <= completion)
    usage = openai_usage(openai_block(prompt, {"cached_tokens": cached}, completion, reasoning, responses_shape))
    assert usage == Usage(prompt - cached, cached, 0, completion - reasoning, reasoning)
    assert usage.total == prompt + completion


@given(prompt=small, cached=small, written=small, completion=small, reasoning=small, responses_shape=st.booleans())
def test_openai_cache_writes_are_their_own_kind_taken_out_of_input(
    prompt, cached, written, completion, reasoning, responses_shape
):
    """Newer models say how many input tokens were written to the cache (`cache_write_tokens`, in the
    same details object as the cached ones, both counted in the input): a kind of its own, priced apart."""
    assume(cached + written <= prompt and reasoning <= completion)
    details = {"cached_tokens": cached, "cache_write_tokens": written}
    block = openai_block(prompt, details, completion, reasoning, responses_shape)
    expected = Usage(prompt - cached - written, cached, written, completion - reasoning, reasoning)
    assert openai_usage(block) == expected
    line = parse_line("openai", 1, orjson.dumps(LINES["openai"](block)))  # the line parser's quick path steps aside
    assert line.usage == expected and line.input_tokens == prompt and line.output_tokens == completion


@FAST
@given(cached=small, written=small, extra=st.integers(min_value=1, max_value=10**6))
def test_more_cached_and_written_than_input_is_unknown(cached, written, extra):
    for details in ({"cached_tokens": cached, "cache_write_tokens": written}, {"cache_write_tokens": written}):
        given = sum(details.values()) - extra
        assume(given >= 0)
        assert openai_usage({"prompt_tokens": given, "prompt_tokens_details": details}) is None
        block = {"input_tokens": given, "input_tokens_details": details, "output_tokens": 0}
        assert openai_usage(block) is None
    for bad in (-1, 1.5, "3", True):
        assert openai_usage({"prompt_tokens": 9, "prompt_tokens_details": {"cache_write_tokens": bad}}) is None


def test_openai_embeddings_have_input_only():
    assert openai_usage({"prompt_tokens": 8, "total_tokens": 8}) == Usage(input=8)


def test_openai_details_may_be_absent_or_null():
    block = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12, "prompt_tokens_details": None}
    assert openai_usage(block) == Usage(input=9, output=3)


@given(prompt=small, cached=small, tool_use=small, candidates=small, thoughts=small)
def test_gemini_prompt_includes_the_cache_and_thoughts_are_reasoning(prompt, cached, tool_use, candidates, thoughts):
    assume(cached <= prompt)
    block = {
        "promptTokenCount": prompt,
        "cachedContentTokenCount": cached,
        "toolUsePromptTokenCount": tool_use,
        "candidatesTokenCount": candidates,
        "thoughtsTokenCount": thoughts,
        "totalTokenCount": prompt + tool_use + candidates + thoughts,
    }
    usage = gemini_usage(block)
    assert usage == Usage(prompt - cached + tool_use, cached, 0, candidates, thoughts)
    assert usage.total == block["totalTokenCount"]


def test_gemini_a_blocked_prompt_has_no_candidates_count():
    assert gemini_usage({"promptTokenCount": 13, "totalTokenCount": 13}) == Usage(input=13)


def test_bedrock_reads_the_documented_shapes_of_its_models():
    claude = {"usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 2}}
    nova = {"usage": {"inputTokens": 10, "outputTokens": 4, "cacheReadInputTokenCount": 3, "totalTokens": 17}}
    llama = {"generation": "...", "prompt_token_count": 10, "generation_token_count": 4}
    assert bedrock_usage(claude) == Usage(input=10, cache_read=2, output=4)
    assert bedrock_usage(nova) == Usage(input=10, cache_read=3, output=4)
    assert bedrock_usage(llama) == Usage(input=10, output=4)
    assert bedrock_usage({"outputs": [{"text": "mistral says no usage"}]}) is None


# --- bad blocks: unknown, whatever the class of bad value --------------------------------------------------------

REQUIRED = {
    anthropic_usage: ({"input_tokens": 5, "output_tokens": 7}, ["input_tokens", "output_tokens"]),
    openai_usage: ({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}, ["prompt_tokens"]),
    gemini_usage: ({"promptTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 12}, ["promptTokenCount"]),
}
EVERY_COUNT = {
    anthropic_usage: ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"],
    openai_usage: ["prompt_tokens", "completion_tokens", "total_tokens"],
    gemini_usage: [
        "promptTokenCount",
        "candidatesTokenCount",
        "totalTokenCount",
        "cachedContentTokenCount",
        "thoughtsTokenCount",
        "toolUsePromptTokenCount",
    ],
}


@pytest.mark.parametrize("reader", list(REQUIRED), ids=lambda reader: reader.__name__)
def test_a_block_missing_a_required_count_is_unknown_not_zero(reader):
    good, required = REQUIRED[reader]
    assert reader(good) is not None
    for name in required:
        assert reader({key: value for key, value in good.items() if key != name}) is None
        assert reader({**good, name: None}) is None


@FAST
@given(reader=st.sampled_from(list(EVERY_COUNT)), data=st.data(), bad=not_a_count)
def test_any_count_that_is_not_a_whole_number_in_range_makes_the_block_unknown(reader, data, bad):
    good, _ = REQUIRED[reader]
    name = data.draw(st.sampled_from(EVERY_COUNT[reader]))
    assert reader({**good, name: bad}) is None


@FAST
@given(cached=small, extra=st.integers(min_value=1, max_value=10**6))
def test_more_cached_than_input_is_unknown(cached, extra):
    assert openai_usage({"prompt_tokens": cached, "prompt_tokens_details": {"cached_tokens": cached + extra}}) is None
    block = {"input_tokens": cached, "input_tokens_details": {"cached_tokens": cached + extra}, "output_tokens": 0}
    assert openai_usage(block) is None
    assert gemini_usage({"promptTokenCount": cached, "cachedContentTokenCount": cached + extra}) is None


@FAST
@given(reasoning=small, extra=st.integers(min_value=1, max_value=10**6))
def test_more_reasoning_than_output_is_unknown(reasoning, extra):
    block = {
        "prompt_tokens": 1,
        "completion_tokens": reasoning,
        "completion_tokens_details": {"reasoning_tokens": reasoning + extra},
    }
    assert openai_usage(block) is None
    block = {
        "input_tokens": 1,
        "output_tokens": reasoning,
        "output_tokens_details": {"reasoning_tokens": reasoning + extra},
        "input_tokens_details": {"cached_tokens": 0},
    }
    assert openai_usage(block) is None


@FAST
@given(prompt=small, completion=small, off=st.integers(min_value=1, max_value=10**6))
def test_a_total_that_is_not_the_sum_is_unknown(prompt, completion, off):
    total = prompt + completion + off
    assert openai_usage({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}) is None
    assert (
        gemini_usage({"promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": total}) is None
    )


@FAST
@given(reader=st.sampled_from(list(EVERY_COUNT)), bad=not_a_count)
def test_details_that_are_not_objects_are_unknown(reader, bad):
    assume(bad is not None and not isinstance(bad, dict))
    if reader is openai_usage:
        assert openai_usage({"prompt_tokens": 3, "prompt_tokens_details": bad}) is None
        assert openai_usage({"prompt_tokens": 3, "completion_tokens": 1, "completion_tokens_details": bad}) is None


@FAST
@given(reader=readers, block=json_values)
def test_any_json_at_all_reads_as_unknown_or_as_whole_numbers_in_range(reader, block):
    assert_trusted(reader(block))


@FAST
@given(
    reader=readers,
    block=st.dictionaries(
        st.sampled_from(sorted({name for names in EVERY_COUNT.values() for name in names} | {"usage"})),
        st.one_of(counts, not_a_count, st.none()),
        max_size=6,
    ),
)
def test_blocks_of_the_right_names_read_as_unknown_or_as_whole_numbers_in_range(reader, block):
    assert_trusted(reader(block))


# --- through the result-line parsers, on the fast (orjson) path and the exact one ------------------------------

LINES = {
    "anthropic": lambda usage: {
        "custom_id": "a",
        "result": {"type": "succeeded", "message": {"model": "claude-x", "usage": usage}},
    },
    "openai": lambda usage: {
        "custom_id": "a",
        "response": {"status_code": 200, "body": {"model": "gpt-x", "usage": usage}},
    },
    "azure-openai": lambda usage: {
        "custom_id": "a",
        "response": {"status_code": 200, "body": {"model": "gpt-x", "usage": usage}},
    },
    "gemini": lambda usage: {"key": "a", "response": {"modelVersion": "gemini-x", "usageMetadata": usage}},
    "bedrock": lambda usage: {"recordId": "a", "modelOutput": {"model": "claude-x", "usage": usage}},
}


@FAST
@given(provider=st.sampled_from(sorted(LINES)), usage=json_values | st.dictionaries(st.text(max_size=20), not_a_count))
def test_a_result_line_with_any_usage_parses_and_its_usage_is_unknown_or_in_range(provider, usage):
    line = parse_line(
        provider, 1, orjson.dumps(LINES[provider](usage)) if _orjson_can(usage) else _dumps(LINES[provider](usage))
    )
    assert line.type == "succeeded"
    assert_trusted(line.usage, of_a_line=True)


def _orjson_can(value) -> bool:
    try:
        orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True


def _dumps(value) -> bytes:
    return json.dumps(value).encode()


def test_a_count_beyond_64_bits_in_a_line_is_unknown_usage():
    line = b'{"custom_id": "a", "result": {"type": "succeeded", "message": {"usage": {"input_tokens": 2361183241434822606848, "output_tokens": 1}}}}'  # noqa: E501
    parsed = parse_line("anthropic", 1, line)
    assert parsed.input_tokens == 2361183241434822606848 and parsed.usage is None


def test_an_errored_line_has_no_usage():
    data = {"custom_id": "a", "result": {"type": "errored", "error": {"type": "error", "error": {"type": "x"}}}}
    assert parse_line("anthropic", 1, orjson.dumps(data)).usage is None


def test_the_recorded_gemini_responses_have_their_usage_read():
    lines = (FIXTURES / "gemini" / "responses.jsonl").read_bytes().splitlines()
    parsed = [parse_line("gemini", number, line) for number, line in enumerate(lines, 1)]
    assert parsed[0].usage == Usage(input=13, output=8)
    assert all(line.usage is not None for line in parsed if line.type == "succeeded")


# --- the batch object: OpenAI's and Azure's usage and model, Gemini's model, Bedrock's modelId -------------------

BATCH_USAGE = {
    "input_tokens": 1500,
    "input_tokens_details": {"cached_tokens": 500},
    "output_tokens": 900,
    "output_tokens_details": {"reasoning_tokens": 400},
    "total_tokens": 2400,
}


def test_an_openai_batch_object_carries_its_model_and_usage_read_over_http():
    body = {**OPENAI_COMPLETED, "model": "gpt-5-2025-08-07", "usage": BATCH_USAGE}
    provider, _ = make_openai(reply(200, body))
    batch = provider.retrieve(body["id"])
    assert batch.model == "gpt-5-2025-08-07"
    assert batch.usage == Usage(input=1000, cache_read=500, output=500, reasoning=400)


def test_an_azure_batch_object_carries_its_usage_too():
    body = {**OPENAI_COMPLETED, "model": "gpt-4o-batch", "usage": BATCH_USAGE}
    provider, _ = make_azure(reply(200, body))
    batch = provider.retrieve(body["id"])
    assert (batch.model, batch.usage.total) == ("gpt-4o-batch", 2400)


def test_a_batch_object_from_before_usage_was_reported_has_none():
    batch = openai.parse_batch(OPENAI_IN_PROGRESS, account="openai-ops")
    assert (batch.model, batch.usage) == ("", None)


@FAST
@given(usage=json_values, model=json_values)
def test_a_batch_object_with_bad_usage_or_model_is_still_read_with_usage_unknown(usage, model):
    body = {**OPENAI_IN_PROGRESS, "usage": usage, "model": model}
    batch = openai.parse_batch(body, account="openai-ops")
    assert batch.id == OPENAI_IN_PROGRESS["id"]
    assert_trusted(batch.usage)
    assert batch.model == "" or (isinstance(model, str) and batch.model == model.strip())


def test_model_names_are_kept_only_when_they_are_printable_text_of_a_sane_length():
    assert model_name("models/gemini-2.5-flash", prefix="models/") == "gemini-2.5-flash"
    assert model_name(" gpt-4o ") == "gpt-4o"
    assert [model_name(value) for value in ("", "x" * 201, "a\nb", 7, None, ["m"])] == [""] * 6


def test_gemini_and_bedrock_batches_name_their_model():
    running = json.loads((FIXTURES / "gemini" / "batch_running.json").read_text())
    assert gemini.parse_batch(running, account="gemini-ops").model == running["metadata"]["model"].removeprefix(
        "models/"
    )
    job = json.loads(next((FIXTURES / "bedrock").glob("get*.json")).read_text())
    assert bedrock.parse_batch(job, account="bedrock-ops").model == job["modelId"]


def test_the_reader_functions_never_mutate_what_they_read():
    block = copy.deepcopy(BATCH_USAGE)
    openai_usage(block)
    assert block == BATCH_USAGE


# --- the parsers' fast reading of a well-formed block reads exactly what the readers read --------------------
# Each result-line parser checks the block as its API writes it in a few operations and leaves any other block
# to the reader function: whatever the block, the line's usage and counts are the reader's.


def _anthropic_block(fresh, read, written, output):
    return {
        "input_tokens": fresh,
        "output_tokens": output,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": written},
        "service_tier": "batch",
    }


def _openai_block(fresh, cached, output, reasoning):
    """A chat completion's usage of these disjoint counts (the prompt counts the cached tokens, the
    completion the reasoning ones)."""
    prompt, completion = fresh + cached, output + reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "accepted_prediction_tokens": 0},
    }


def _gemini_block(fresh, cached, candidates, thoughts):
    """A usageMetadata of these disjoint counts (the prompt counts the cached content; zeros left out)."""
    prompt = fresh + cached
    block = {"promptTokenCount": prompt, "candidatesTokenCount": candidates}
    if cached:
        block["cachedContentTokenCount"] = cached
    if thoughts:
        block["thoughtsTokenCount"] = thoughts
    block["totalTokenCount"] = prompt + candidates + thoughts
    return block


# Counts that fit and counts at and around the edges (0, MAX_TOKENS, sums and bitwise ors beyond it).
edge_counts = st.one_of(small, counts, st.sampled_from([0, 1, MAX_TOKENS - 1, MAX_TOKENS, 2**39, 2**40 - 1]))
WELL_FORMED = {
    "anthropic": st.builds(_anthropic_block, edge_counts, edge_counts, edge_counts, edge_counts),
    "openai": st.builds(_openai_block, edge_counts, edge_counts, edge_counts, edge_counts),
    "gemini": st.builds(_gemini_block, edge_counts, edge_counts, edge_counts, edge_counts),
}
PARSED_AS = {  # provider: (its reader, the line's own input and output counts as the block gives them)
    "anthropic": (anthropic_usage, lambda block: (block.get("input_tokens"), block.get("output_tokens"))),
    "openai": (
        openai_usage,
        lambda block: (
            block.get("prompt_tokens", block.get("input_tokens")),
            block.get("completion_tokens", block.get("output_tokens")),
        ),
    ),
    "gemini": (gemini_usage, lambda block: (block.get("promptTokenCount"), block.get("candidatesTokenCount"))),
}
PARSERS = {
    "anthropic": anthropic.parse_result_line,
    "openai": openai.parse_result_line,
    "gemini": gemini.parse_result_line,
}


COUNT_PATHS = {  # every count the parsers read, and the objects that hold them
    "anthropic": [
        ("input_tokens",),
        ("output_tokens",),
        ("cache_read_input_tokens",),
        ("cache_creation_input_tokens",),
    ],
    "openai": [
        ("prompt_tokens",),
        ("completion_tokens",),
        ("total_tokens",),
        ("prompt_tokens_details",),
        ("prompt_tokens_details", "cached_tokens"),
        ("prompt_tokens_details", "cache_write_tokens"),
        ("completion_tokens_details",),
        ("completion_tokens_details", "reasoning_tokens"),
    ],
    "gemini": [
        ("promptTokenCount",),
        ("candidatesTokenCount",),
        ("totalTokenCount",),
        ("cachedContentTokenCount",),
        ("thoughtsTokenCount",),
        ("toolUsePromptTokenCount",),
    ],
}
# Whatever a count may be instead: another count, a bad one, null, any JSON.
any_count = st.one_of(edge_counts, not_a_count, st.none(), json_values)


def _changed(provider: str, block: dict, data) -> dict:
    """`block` with one of its counts (or details objects) set to anything, left out, or one off (a total
    that no longer adds up, a cached count beyond the input, a count below zero or beyond the limit)."""
    block = copy.deepcopy(block)
    *parents, name = data.draw(st.sampled_from(COUNT_PATHS[provider]))
    holder = block
    for parent in parents:
        holder = holder.get(parent)
    if not isinstance(holder, dict):  # the details object was changed already
        return block
    change = data.draw(st.sampled_from(["set", "remove", "off by one"]))
    if change == "remove":
        holder.pop(name, None)
    elif change == "off by one" and type(holder.get(name)) is int:
        holder[name] += data.draw(st.sampled_from([1, -1]))
    else:
        holder[name] = data.draw(any_count)
    return block


@FAST
@pytest.mark.parametrize("provider", sorted(WELL_FORMED))
@given(data=st.data(), changes=st.integers(min_value=0, max_value=2))
def test_a_parser_reads_any_usage_block_exactly_as_its_reader_does(provider, data, changes):
    reader, counts_of = PARSED_AS[provider]
    block = data.draw(WELL_FORMED[provider])
    for _ in range(changes):
        block = _changed(provider, block, data)
    line = PARSERS[provider](1, LINES[provider](block), "")
    assert line.usage == reader(block)
    assert_trusted(line.usage, of_a_line=True)
    given_in, given_out = counts_of(block)
    assert (line.input_tokens, line.output_tokens) == (token_count(given_in), token_count(given_out))


@pytest.mark.parametrize(
    ("provider", "path"),
    [(provider, path) for provider, paths in COUNT_PATHS.items() for path in paths],
    ids=lambda value: "/".join(value) if isinstance(value, tuple) else value,
)
@given(fresh=small, read=small, written=small, output=small, bad=not_a_count, retyped=st.booleans())
def test_a_parser_finds_a_bad_count_in_a_block_otherwise_well_formed(
    provider, path, fresh, read, written, output, bad, retyped
):
    block = {
        "anthropic": _anthropic_block(fresh, read, written, output),
        "openai": _openai_block(fresh, read, output, written),
        "gemini": _gemini_block(fresh, read, output, written),
    }[provider]
    *parents, name = path
    holder = block
    for parent in parents:
        holder = holder[parent]
    if retyped:  # the count it had (a zero left out), as a float: a total that adds up is no less bad
        bad = float(holder.get(name, 0)) if isinstance(holder.get(name, 0), int) else bad
    holder[name] = bad
    reader = PARSED_AS[provider][0]
    line = PARSERS[provider](1, LINES[provider](block), "")
    assert line.usage == reader(block)
    if name in EVERY_COUNT.get(PARSED_AS[provider][0], ()) or len(path) > 1:
        assert line.usage is None  # a count that is not a whole number in range: the block is unknown


@given(
    fresh=small,
    cached=small,
    tool_use=st.integers(min_value=1, max_value=10**7),
    candidates=small,
    thoughts=small,
    counted=st.booleans(),
)
def test_a_gemini_line_reads_tool_use_prompt_tokens_as_input_only_when_the_total_counts_them(
    fresh, cached, tool_use, candidates, thoughts, counted
):
    # The parser's quick check takes no block with tool-use prompt tokens (gemini_usage reads them): a
    # total that leaves them out must not pass for one that adds up.
    block = _gemini_block(fresh, cached, candidates, thoughts)
    block["toolUsePromptTokenCount"] = tool_use
    if counted:
        block["totalTokenCount"] += tool_use
    line = PARSERS["gemini"](1, LINES["gemini"](block), "")
    assert line.usage == (Usage(fresh + tool_use, cached, 0, candidates, thoughts) if counted else None)
    assert line.usage == gemini_usage(block)
    assert (line.input_tokens, line.output_tokens) == (fresh + cached, candidates)


@given(fresh=small, read=small, written=small, output=small, reasoning=small)
def test_well_formed_blocks_as_the_apis_write_them_are_read_through_the_parsers(
    fresh, read, written, output, reasoning
):
    anthropic_line = PARSERS["anthropic"](1, LINES["anthropic"](_anthropic_block(fresh, read, written, output)), "")
    assert anthropic_line.usage == Usage(fresh, read, written, output, 0)
    openai_block = _openai_block(fresh, read, output, reasoning)
    assert PARSERS["openai"](1, LINES["openai"](openai_block), "").usage == Usage(fresh, read, 0, output, reasoning)
    gemini_block = _gemini_block(fresh, read, output, reasoning)
    assert PARSERS["gemini"](1, LINES["gemini"](gemini_block), "").usage == Usage(fresh, read, 0, output, reasoning)
