"""The price table: model matching, the batch discount, cached-token prices, override files, unknown
models, and cost as exact Decimal arithmetic over any token counts."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.core import checks
from hypothesis import given
from hypothesis import strategies as st

from dashboard.spend import prices, table
from dashboard.spend.prices import KINDS, PriceFileError, load_table, normalise_model

SHIPPED = load_table()


def entry(model: str = "acme-large", provider: str = "openai", **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "provider": provider,
        "model": model,
        "usd_per_million_tokens": {"input": "2", "cache_read": "0.5", "output": "8"},
        "batch_discount": "0.5",
        "as_of": "2026-12-01",
        "source": "https://example.com/our-contract",
    }
    data.update(overrides)
    return data


def write(tmp_path: Path, *entries: object, raw: str | None = None) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(raw if raw is not None else json.dumps({"entries": list(entries)}))
    return path


# The shipped table


OFFICIAL_PAGES = {
    "anthropic": ("https://platform.claude.com/", "https://docs.anthropic.com/"),
    "openai": ("https://developers.openai.com/",),
    "azure-openai": ("https://prices.azure.com/", "https://azure.microsoft.com/"),
    "gemini": ("https://ai.google.dev/",),
    "bedrock": ("https://pricing.us-east-1.amazonaws.com/", "https://aws.amazon.com/"),
}
DATASET = "(via LiteLLM 1.110.2 model_prices_and_context_window, entry "


def test_every_shipped_entry_says_where_and_when_its_prices_were_read() -> None:
    assert {item.provider for item in SHIPPED.entries} == set(OFFICIAL_PAGES)
    for item in SHIPPED.entries:
        assert item.source.startswith(OFFICIAL_PAGES[item.provider]), item
        # Only Anthropic's were read on the official pages; every other entry names the dataset it is from.
        assert item.provider == "anthropic" or DATASET in item.source, item
        assert item.as_of.year >= 2026
        assert item.batch_discount == Decimal("0.5")
        assert not item.overridden


@pytest.mark.parametrize(
    ("upstream", "provider", "expected"),
    [
        ("gpt-4o-mini-2024-07-18", "openai", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "openai", "gpt-4o"),
        ("gpt-4o-2024-05-13", "openai", "gpt-4o-2024-05-13"),  # the first gpt-4o snapshot cost more
        ("gpt-5-mini-2025-08-07", "openai", "gpt-5-mini"),
        ("gpt-5.4-nano", "openai", "gpt-5.4-nano"),
        ("o4-mini-2025-04-16", "openai", "o4-mini"),
        ("gpt-4.1-mini", "azure-openai", "gpt-4.1-mini"),
        ("gpt-4o-2024-11-20", "azure-openai", "gpt-4o"),
        ("models/gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
        ("models/gemini-2.5-flash-lite", "gemini", "gemini-2.5-flash-lite"),
        ("gemini-2.5-pro", "gemini", "gemini-2.5-pro"),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock", "anthropic.claude-sonnet-4-5"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock", "us.anthropic.claude-sonnet-4-5"),
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock", "anthropic.claude-sonnet-4-5"),
        ("amazon.nova-lite-v1:0", "bedrock", "amazon.nova-lite"),
        ("us.amazon.nova-lite-v1:0", "bedrock", "amazon.nova-lite"),  # the same price in the dataset
    ],
)
def test_the_other_providers_names_match_their_own_models_entry(upstream: str, provider: str, expected: str) -> None:
    found = SHIPPED.entry_for(upstream, provider)
    assert found is not None and found.model == expected


@pytest.mark.parametrize(
    ("upstream", "provider"),
    [
        ("gpt-4o-audio-preview", "openai"),
        ("gpt-5-mini-search", "openai"),
        ("prod-gpt4o-eastus", "azure-openai"),  # a deployment's name says nothing of its model
        ("gpt4o", "azure-openai"),
        ("models/gemini-2.5-flash-image", "gemini"),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic"),  # a Bedrock ID is not an Anthropic name
        ("gpt-4o", "bedrock"),
    ],
)
def test_a_name_that_is_not_a_priced_model_of_that_provider_stays_unknown(upstream: str, provider: str) -> None:
    assert SHIPPED.entry_for(upstream, provider) is None


def test_a_bedrock_cross_region_profile_is_priced_at_its_own_rate_where_the_dataset_gives_one() -> None:
    tokens = {"input": 1_000_000, "output": 1_000_000}
    in_region = SHIPPED.cost(tokens, "anthropic.claude-haiku-4-5-20251001-v1:0", "bedrock")
    us_profile = SHIPPED.cost(tokens, "us.anthropic.claude-haiku-4-5-20251001-v1:0", "bedrock")
    assert in_region is not None and us_profile is not None
    assert in_region.total == Decimal(3)  # ($1 + $5) halved
    assert us_profile.total == Decimal("3.3")  # ($1.10 + $5.50) halved


def test_a_kind_whose_batch_price_is_not_discounted_keeps_its_own_batch_price() -> None:
    # Gemini's batch mode halves input and output but not cache reads (LiteLLM's dataset: $0.125 both ways).
    estimate = SHIPPED.cost({"input": 1_000_000, "cache_read": 1_000_000}, "models/gemini-2.5-pro", "gemini")
    assert estimate is not None
    assert estimate.by_kind["input"] == Decimal("0.625")
    assert estimate.by_kind["cache_read"] == Decimal("0.125")


def test_a_source_s_address_is_its_first_word_and_what_follows_says_where_the_price_was_copied_from() -> None:
    found = SHIPPED.entry_for("gpt-4o", "openai")
    assert found is not None
    assert found.source_url == "https://developers.openai.com/api/docs/pricing"
    assert found.source_via == "(via LiteLLM 1.110.2 model_prices_and_context_window, entry gpt-4o)"
    official = SHIPPED.entry_for("claude-opus-4-1", "anthropic")
    assert official is not None and official.source_url == official.source and official.source_via == ""


def test_a_batch_price_of_a_kind_must_have_a_list_price(tmp_path: Path) -> None:
    path = write(tmp_path, entry(batch_usd_per_million_tokens={"cache_write": "1"}))
    with pytest.raises(PriceFileError, match="cache_write without a list price"):
        load_table(path)
    path = write(tmp_path, entry(batch_usd_per_million_tokens={"output": "-1"}))
    with pytest.raises(PriceFileError, match="out of range"):
        load_table(path)


def test_the_demos_models_of_every_provider_have_a_price() -> None:
    from dashboard.simulator import demo

    models = {
        "anthropic": demo.ANTHROPIC_MODELS,
        "openai": demo.OPENAI_MODELS,
        "azure-openai": demo.OPENAI_MODELS,
        "gemini": tuple(f"models/{model}" for model in demo.GEMINI_MODELS),
        "bedrock": ("amazon.nova-lite-v1:0",),
    }
    for provider, names in models.items():
        for name in names:
            assert SHIPPED.entry_for(name, provider) is not None, (provider, name)


def test_the_batch_discount_halves_the_list_price() -> None:
    estimate = SHIPPED.cost({"input": 1_000_000, "output": 1_000_000}, "claude-opus-4-1", "anthropic")
    assert estimate is not None
    # list: $15 input and $75 output per million; the Batch API halves both
    assert estimate.by_kind["input"] == Decimal("7.5")
    assert estimate.by_kind["output"] == Decimal("37.5")
    assert estimate.total == Decimal("45")
    assert estimate.complete


def test_cache_reads_and_writes_have_their_own_prices_not_the_input_price() -> None:
    estimate = SHIPPED.cost(
        {"input": 1_000_000, "cache_read": 1_000_000, "cache_write": 1_000_000}, "claude-sonnet-4-20250514", "anthropic"
    )
    assert estimate is not None
    assert estimate.by_kind == {
        "input": Decimal("1.5"),  # $3 list, halved
        "cache_read": Decimal("0.15"),  # $0.30
        "cache_write": Decimal("1.875"),  # $3.75 (5-minute writes)
        "output": Decimal(0),
        "reasoning": Decimal(0),
    }
    assert estimate.total == Decimal("3.525")


def test_reasoning_tokens_are_billed_at_the_output_price() -> None:
    with_reasoning = SHIPPED.cost({"output": 600, "reasoning": 400}, "claude-opus-4-5", "anthropic")
    all_output = SHIPPED.cost({"output": 1000}, "claude-opus-4-5", "anthropic")
    assert with_reasoning is not None and all_output is not None
    assert with_reasoning.total == all_output.total == Decimal("0.0125")


def test_a_kind_without_a_price_is_named_and_left_out_never_counted_as_free() -> None:
    # gpt-4o's first snapshot has no cached-input price in the dataset
    estimate = SHIPPED.cost({"input": 2_000_000, "cache_read": 500}, "gpt-4o-2024-05-13", "openai")
    assert estimate is not None
    assert estimate.unpriced == ("cache_read",)
    assert not estimate.complete
    assert estimate.total == Decimal(5)  # the input only: $5 list, halved, for 2 million
    no_cache = SHIPPED.cost({"input": 2_000_000}, "gpt-4o-2024-05-13", "openai")
    assert no_cache is not None and no_cache.complete


def test_an_unknown_model_has_no_price() -> None:
    assert SHIPPED.cost({"input": 10}, "claude-fable-9", "anthropic") is None
    assert SHIPPED.cost({"input": 10}, "", "anthropic") is None
    assert SHIPPED.cost({"input": 10}, "acme-large", "openai") is None


def test_a_model_is_priced_only_under_its_own_provider() -> None:
    assert SHIPPED.entry_for("claude-opus-4-1", "anthropic") is not None
    assert SHIPPED.entry_for("claude-opus-4-1", "bedrock") is None


# Model matching


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("Claude-Sonnet-4-5-Latest", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("  claude-3-haiku-20240307 ", "claude-3-haiku"),
        ("claude-sonnet-5-5", "claude-sonnet-5-5"),
        ("claude-sonnet-5", "claude-sonnet-5"),
        ("claude-opus-5-5", "claude-opus-5-5"),
        ("claude-opus-5-latest", "claude-opus-5"),
    ],
)
def test_upstream_names_match_the_entry_of_their_own_model(upstream: str, expected: str) -> None:
    found = SHIPPED.entry_for(upstream, "anthropic")
    assert found is not None and found.model == expected


@pytest.mark.parametrize(
    "upstream",
    [
        "claude-sonnet-4-7",  # a newer Sonnet, not Sonnet 4 with a suffix
        "claude-sonnet-5-7",  # not Sonnet 5
        "claude-opus-4-9",
        "claude-opus-4-1-fast",
        "claude-sonnet-4-5-20250929-preview",
        "xclaude-sonnet-4-5",
    ],
)
def test_a_neighbouring_model_is_never_priced_as_its_family(upstream: str) -> None:
    assert SHIPPED.entry_for(upstream, "anthropic") is None


def test_prefixes_are_normalised_away() -> None:
    assert normalise_model("models/gemini-2.5-flash") == "gemini-2.5-flash"
    assert normalise_model("publishers/google/models/gemini-2.5-pro") == "gemini-2.5-pro"
    assert normalise_model("us.anthropic.claude-3-5-sonnet-v1:0") == "anthropic.claude-3-5-sonnet-v1:0"
    assert normalise_model("global.anthropic.claude-haiku-4-5-v1:0") == "anthropic.claude-haiku-4-5-v1:0"
    assert normalise_model("anthropic.claude-3-haiku") == "anthropic.claude-3-haiku"  # a vendor is not a region
    assert normalise_model("gpt-4o") == "gpt-4o"


def test_the_longest_alias_wins_and_version_suffixes_of_every_provider_match(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        entry("gpt-4o", usd_per_million_tokens={"input": "2.5", "output": "10"}),
        entry("gpt-4o-mini", usd_per_million_tokens={"input": "0.15", "output": "0.6"}),
        entry("gemini-2.5-flash", provider="gemini"),
        entry("gemini-2.5-flash-lite", provider="gemini"),
        entry("anthropic.claude-3-5-sonnet", provider="bedrock", aliases=["anthropic.claude-3-5-sonnet-20240620"]),
        entry("anthropic.claude-3-5-sonnet-v2", provider="bedrock", aliases=["anthropic.claude-3-5-sonnet-20241022"]),
    )
    merged = load_table(path)
    cases = {
        ("gpt-4o-2024-08-06", "openai"): "gpt-4o",
        ("gpt-4o-mini-2024-07-18", "openai"): "gpt-4o-mini",
        ("models/gemini-2.5-flash", "gemini"): "gemini-2.5-flash",
        ("models/gemini-2.5-flash-lite", "gemini"): "gemini-2.5-flash-lite",
        ("us.anthropic.claude-3-5-sonnet-20240620-v1:0", "bedrock"): "anthropic.claude-3-5-sonnet",
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "bedrock"): "anthropic.claude-3-5-sonnet-v2",
    }
    for (upstream, provider), expected in cases.items():
        found = merged.entry_for(upstream, provider)
        assert found is not None and found.model == expected, upstream
    assert merged.entry_for("gpt-4o-audio-preview", "openai") is None
    assert merged.entry_for("models/gemini-2.5-ultra", "gemini") is None


# Override files


def test_an_override_replaces_a_shipped_price_and_adds_a_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        entry(
            "claude-opus-4-1",
            provider="anthropic",
            usd_per_million_tokens={"input": "10", "output": "50", "cache_read": "1", "cache_write": "12"},
            batch_discount="0.6",
        ),
        entry("my-deployment-gpt", provider="azure-openai"),
    )
    merged = load_table(path)
    replaced = merged.cost({"input": 1_000_000, "output": 1_000_000}, "claude-opus-4-1-20250805", "anthropic")
    assert replaced is not None and replaced.entry.overridden
    assert replaced.total == Decimal(24)  # (10 + 50) × 40%
    added = merged.cost({"input": 1_000_000, "cache_read": 1_000_000}, "my-deployment-gpt", "azure-openai")
    assert added is not None and added.total == Decimal("1.25")
    # the others are still the shipped ones
    assert len(merged.entries) == len(SHIPPED.entries) + 1
    kept = merged.entry_for("claude-3-haiku", "anthropic")
    assert kept is not None and not kept.overridden


def test_an_override_alias_wins_over_a_shipped_one_of_the_same_length(tmp_path: Path) -> None:
    path = write(tmp_path, entry("our-opus", provider="anthropic", aliases=["claude-opus-4-5"]))
    found = load_table(path).entry_for("claude-opus-4-5-20251101", "anthropic")
    assert found is not None and found.model == "our-opus"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', '"entries"'),
        ('{"entries": [42]}', "entries[0]: expected an object"),
        (json.dumps({"entries": [entry(usd_per_million_tokens={"input": "-1", "output": "1"})]}), "out of range"),
        (json.dumps({"entries": [entry(usd_per_million_tokens={"input": "abc", "output": "1"})]}), "not a number"),
        (json.dumps({"entries": [entry(usd_per_million_tokens={"input": "NaN", "output": "1"})]}), "not a finite"),
        (json.dumps({"entries": [entry(usd_per_million_tokens={"input": 1e300, "output": "1"})]}), "out of range"),
        (json.dumps({"entries": [entry(usd_per_million_tokens={"input": True, "output": "1"})]}), "not a number"),
        (json.dumps({"entries": [entry(usd_per_million_tokens={"input": "1"})]}), "input and output prices"),
        (json.dumps({"entries": [entry(usd_per_million_tokens={"input": "1", "output": "1", "audio": "3"})]}), "audio"),
        (json.dumps({"entries": [entry(batch_discount="1.5")]}), "between 0 and 1"),
        (json.dumps({"entries": [entry(batch_discount=None)]}), "batch_discount"),
        (json.dumps({"entries": [entry(as_of="last week")]}), "not a date"),
        (json.dumps({"entries": [entry(source="")]}), "source"),
        (json.dumps({"entries": [entry(model=None)]}), "model"),
        (json.dumps({"entries": [entry(prices={"input": "1"})]}), "unknown field"),
        (json.dumps({"entries": [entry(), entry("other", aliases=["acme-large"])]}), "both name"),
    ],
)
def test_a_malformed_override_file_is_a_clear_error(tmp_path: Path, content: str, says: str) -> None:
    path = write(tmp_path, raw=content)
    with pytest.raises(PriceFileError) as error:
        load_table(path)
    assert says in str(error.value)
    assert str(path) in str(error.value)


def test_a_missing_override_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match="cannot be read"):
        load_table(tmp_path / "nowhere.json")


def test_the_system_check_reports_a_malformed_override_file_at_start(tmp_path: Path, settings) -> None:
    settings.PRICES_FILE = str(write(tmp_path, raw="{broken"))
    errors = checks.run_checks()
    spend_errors = [message for message in errors if message.id == "spend.E001"]
    assert len(spend_errors) == 1
    assert "not valid JSON" in spend_errors[0].msg
    settings.PRICES_FILE = str(write(tmp_path, entry()))
    assert not [message for message in checks.run_checks() if message.id == "spend.E001"]
    assert table.cost({"input": 1_000_000}, "acme-large", "openai") is not None


# Cost over any token counts

token_counts = st.fixed_dictionaries({kind: st.integers(min_value=0, max_value=10**12) for kind in KINDS})


@given(token_counts)
def test_cost_is_never_negative_and_is_the_exact_sum_of_its_kinds(tokens: dict[str, int]) -> None:
    estimate = SHIPPED.cost(tokens, "claude-opus-4-1", "anthropic")
    assert estimate is not None
    assert estimate.total >= 0
    assert estimate.total == sum(estimate.by_kind.values())
    # exact: dollars per token × tokens, with no rounding anywhere
    list_prices = {"input": 15, "cache_read": "1.5", "cache_write": "18.75", "output": 75, "reasoning": 75}
    expected = sum(Decimal(tokens[kind]) * Decimal(list_prices[kind]) for kind in KINDS) / 2 / 1_000_000
    assert estimate.total == expected


@given(token_counts, st.sampled_from(KINDS), st.integers(min_value=1, max_value=10**9))
def test_more_tokens_never_cost_less(tokens: dict[str, int], kind: str, more: int) -> None:
    before = SHIPPED.cost(tokens, "claude-sonnet-5", "anthropic")
    after = SHIPPED.cost({**tokens, kind: tokens[kind] + more}, "claude-sonnet-5", "anthropic")
    assert before is not None and after is not None
    assert after.total > before.total


@given(token_counts, token_counts)
def test_the_cost_of_two_batches_is_the_sum_of_their_costs(first: dict[str, int], second: dict[str, int]) -> None:
    together = {kind: first[kind] + second[kind] for kind in KINDS}
    costs = [SHIPPED.cost(tokens, "claude-3-5-haiku", "anthropic") for tokens in (first, second, together)]
    assert all(item is not None for item in costs)
    assert costs[0].total + costs[1].total == costs[2].total  # type: ignore[union-attr]


def test_negative_token_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        SHIPPED.cost({"input": -1}, "claude-opus-4-1", "anthropic")


def test_the_module_level_cost_uses_the_table_it_is_given() -> None:
    assert prices.cost({"input": 1}, "claude-opus-4-1", "anthropic", table=SHIPPED) == SHIPPED.cost(
        {"input": 1}, "claude-opus-4-1", "anthropic"
    )


def test_the_readmes_override_example_is_a_valid_price_file(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("## Spend", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    merged = load_table(write(tmp_path, raw=example))
    found = merged.entry_for("prod-gpt4o", "openai")
    assert found is not None and found.model == "gpt-4o" and found.overridden
    assert found.source_url == ""  # a contract, not a web address


def test_the_web_process_and_the_poller_refuse_to_start_on_a_malformed_price_file(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    bad = write(tmp_path, raw='{"entries": [{"provider": "openai"}]}')
    env = {**os.environ, "PRICES_FILE": str(bad), "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    root = Path(__file__).resolve().parents[2]
    web = subprocess.run(
        [sys.executable, "-c", "import dashboard.wsgi"], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    assert web.returncode != 0
    assert "ImproperlyConfigured: The price table cannot be read:" in web.stderr and str(bad) in web.stderr
    checked = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    assert checked.returncode != 0 and "spend.E001" in checked.stderr
    env["PRICES_FILE"] = ""
    fine = subprocess.run(
        [sys.executable, "-c", "import dashboard.wsgi"], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    assert fine.returncode == 0, fine.stderr
