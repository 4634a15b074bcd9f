"""The price table: model → US dollars per million tokens of each kind, the batch discount, a date and a source.

Pure: no Django. The shipped table is prices.json beside this module; an override file of the same format
(negotiated rates) replaces entries of the same provider and model and adds the others. Amounts are Decimal
from the JSON text itself (never through a float), and so is every cost.

Token kinds are disjoint and add up to what was billed (see BatchTokens): `input` (fresh input),
`cache_read`, `cache_write`, `output` and `reasoning` (billed at the output price unless an entry prices it).

Model matching, for the names upstream sends (`claude-sonnet-4-5-20250929`, `models/gemini-2.5-flash`,
`us.anthropic.claude-3-5-sonnet-20240620-v1:0`, ...): the name is lower-cased and stripped of a resource
prefix (`models/`, `publishers/<vendor>/models/`) and, unless an entry names the profile itself (a Bedrock
cross-region profile may cost more than its model), of a Bedrock cross-region prefix (`us.`, `eu.`, `global.`,
...); then among the provider's entries, the longest alias that is the whole name, or the name
minus a version suffix (a date stamp `-20250929` or `-2024-08-06`, `-latest`, a Bedrock `-v1:0` or `:0`,
`@20240620`), wins. Anything else after an alias is another model (`-mini`, `-5`, `-pro`): never priced
as its neighbour, so `gpt-4o-mini` is not `gpt-4o` and `claude-sonnet-4-5` is not `claude-sonnet-4`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from functools import cached_property
from pathlib import Path

KINDS: tuple[str, ...] = ("input", "cache_read", "cache_write", "output", "reasoning")
KIND_LABELS: dict[str, str] = {
    "input": "input",
    "cache_read": "cache reads",
    "cache_write": "cache writes",
    "output": "output",
    "reasoning": "reasoning",
}
SHIPPED_PATH = Path(__file__).with_name("prices.json")
# A price per million tokens beyond this is a typo in a file, not a rate.
MAX_PRICE = Decimal(100_000)

_RESOURCE_PREFIX = re.compile(r"^(?:publishers/[^/]+/)?models/")
_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca)\.(?=[a-z0-9-]+\.)")
_VERSION_SUFFIX = re.compile(r"(?:-\d{8}|-\d{4}-\d{2}-\d{2}|-latest|-v\d+(?::\d+)?|:\d+|@\d{8})*")


class PriceFileError(ValueError):
    """A price file that cannot be used, with a sentence saying where and why."""


@dataclass(frozen=True)
class PriceEntry:
    provider: str
    model: str
    aliases: tuple[str, ...]
    per_million: Mapping[str, Decimal]  # list prices by kind; a kind missing has no price
    batch_discount: Decimal  # the share taken off every kind for batch requests, 0 to 1
    as_of: dt.date
    source: str
    note: str = ""
    overridden: bool = False  # from the override file
    # A kind whose batch price is not the list price less the discount (Gemini 2.5 Pro's cache reads are
    # not discounted in a batch): its batch price per million as given, discount already included.
    batch_per_million: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def source_url(self) -> str:
        """The source's web address, when it starts with one (an override file may name a contract instead)."""
        first = self.source.split(maxsplit=1)[0] if self.source else ""
        return first if first.startswith(("https://", "http://")) else ""

    @property
    def source_via(self) -> str:
        """What the source says after its address: where the price was copied from (LiteLLM's dataset)."""
        parts = self.source.split(maxsplit=1)
        return parts[1] if self.source_url and len(parts) > 1 else ""

    @cached_property
    def batch_prices(self) -> dict[str, Decimal | None]:
        """batch_price of every kind, worked out once: a report prices hundreds of groups."""
        return {kind: self.batch_price(kind) for kind in KINDS}

    def batch_price(self, kind: str) -> Decimal | None:
        """Dollars per million tokens of `kind` in a batch, after the discount; None when not priced."""
        if kind in self.batch_per_million:
            return self.batch_per_million[kind]
        if kind == "reasoning" and "reasoning" not in self.per_million and "output" in self.batch_per_million:
            return self.batch_per_million["output"]
        price = self.per_million.get(kind)
        if price is None and kind == "reasoning":
            price = self.per_million.get("output")
        if price is None:
            return None
        with localcontext() as context:
            context.prec = 60
            return price * (1 - self.batch_discount)


@dataclass(frozen=True)
class Estimate:
    """What tokens cost at an entry's prices: exact Decimal dollars, by kind and in total."""

    entry: PriceEntry
    by_kind: Mapping[str, Decimal]
    total: Decimal
    unpriced: tuple[str, ...] = field(default=())  # kinds with tokens but no price: left out of `total`

    @property
    def complete(self) -> bool:
        return not self.unpriced


def normalise_model(name: str) -> str:
    """The model name as the table spells its aliases (see the module's docstring)."""
    return _REGION_PREFIX.sub("", _alias_form(name))


def _alias_form(name: str) -> str:
    """Lower-cased, without a resource prefix, a region prefix kept: an alias may name a Bedrock cross-region
    profile whose price differs from the model's own (`us.anthropic.claude-opus-4-7`)."""
    return _RESOURCE_PREFIX.sub("", name.strip().lower())


def _alias_matches(alias: str, name: str) -> bool:
    if not name.startswith(alias):
        return False
    return _VERSION_SUFFIX.fullmatch(name[len(alias) :]) is not None


MATCHES_KEPT = 4096  # model names whose entry a table remembers: upstream names them, so not without bound


@dataclass(frozen=True)
class PriceTable:
    entries: tuple[PriceEntry, ...]
    # (model, provider) -> its entry or None, found once per process: a report prices hundreds of groups.
    _matched: dict[tuple[str, str], PriceEntry | None] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def entry_for(self, model: str, provider: str) -> PriceEntry | None:
        """The entry pricing `model` of `provider`: the longest matching alias (an override's on a tie); None
        when none matches."""
        key = (model, provider)
        if key in self._matched:
            return self._matched[key]
        found = self._entry_for(model, provider)
        if len(self._matched) < MATCHES_KEPT:
            self._matched[key] = found
        return found

    def _entry_for(self, model: str, provider: str) -> PriceEntry | None:
        with_region = _alias_form(model)
        # A region profile's own entry first; else the model's, as most profiles cost what the model does.
        for name in dict.fromkeys((with_region, normalise_model(with_region))):
            if not name:
                return None
            best: tuple[int, bool, PriceEntry] | None = None
            for entry in self.entries:
                if entry.provider != provider:
                    continue
                for alias in entry.aliases:
                    rank = (len(alias), entry.overridden)
                    if _alias_matches(alias, name) and (best is None or rank > best[:2]):
                        best = (*rank, entry)
            if best:
                return best[2]
        return None

    def cost(self, tokens_by_kind: Mapping[str, int], model: str, provider: str) -> Estimate | None:
        """What `tokens_by_kind` of `model` cost as a batch; None when the model has no price."""
        entry = self.entry_for(model, provider)
        if entry is None:
            return None
        return estimate(entry, tokens_by_kind)


def estimate(entry: PriceEntry, tokens_by_kind: Mapping[str, int]) -> Estimate:
    by_kind: dict[str, Decimal] = {}
    unpriced: list[str] = []
    with localcontext() as context:
        context.prec = 60  # exact: no sum here comes near 60 digits
        for kind in KINDS:
            count = tokens_by_kind.get(kind, 0)
            if count < 0:
                raise ValueError(f"{kind} tokens cannot be negative ({count})")
            price = entry.batch_prices[kind]
            if price is None:
                if count:
                    unpriced.append(kind)
                continue
            by_kind[kind] = (Decimal(count) * price).scaleb(-6)
        total = sum(by_kind.values(), Decimal(0))
    return Estimate(entry=entry, by_kind=by_kind, total=total, unpriced=tuple(unpriced))


def cost(tokens_by_kind: Mapping[str, int], model: str, provider: str, *, table: PriceTable) -> Estimate | None:
    """What these tokens of `model` at `provider` cost as a batch, at `table`'s prices; None = price unknown."""
    return table.cost(tokens_by_kind, model, provider)


# Reading price files


def _decimal(value: object, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise PriceFileError(f"{where}: {value!r} is not a number")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise PriceFileError(f"{where}: {value!r} is not a number") from None
    if not number.is_finite():
        raise PriceFileError(f"{where}: {value!r} is not a finite number")
    return number


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PriceFileError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _entry(data: object, where: str, *, overridden: bool) -> PriceEntry:
    if not isinstance(data, dict):
        raise PriceFileError(f"{where}: expected an object, got {type(data).__name__}")
    allowed = {
        "provider",
        "model",
        "aliases",
        "usd_per_million_tokens",
        "batch_usd_per_million_tokens",
        "batch_discount",
        "as_of",
        "source",
        "note",
    }
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise PriceFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
    provider = _text(data.get("provider"), f"{where}.provider")
    model = _alias_form(_text(data.get("model"), f"{where}.model"))
    aliases_data = data.get("aliases", [])
    if not isinstance(aliases_data, list):
        raise PriceFileError(f"{where}.aliases: expected a list of names")
    aliases = [model] + [_alias_form(_text(alias, f"{where}.aliases")) for alias in aliases_data]
    prices_data = data.get("usd_per_million_tokens")
    if not isinstance(prices_data, dict) or not prices_data:
        raise PriceFileError(f"{where}.usd_per_million_tokens: expected an object of prices by kind")
    per_million = _prices_by_kind(prices_data, f"{where}.usd_per_million_tokens")
    if "input" not in per_million or "output" not in per_million:
        raise PriceFileError(f"{where}.usd_per_million_tokens: input and output prices are required")
    batch_data = data.get("batch_usd_per_million_tokens", {})
    if not isinstance(batch_data, dict):
        raise PriceFileError(f"{where}.batch_usd_per_million_tokens: expected an object of prices by kind")
    batch_per_million = _prices_by_kind(batch_data, f"{where}.batch_usd_per_million_tokens")
    unlisted = sorted(set(batch_per_million) - set(per_million))
    if unlisted:
        raise PriceFileError(f"{where}.batch_usd_per_million_tokens: {', '.join(unlisted)} without a list price")
    discount = _decimal(data.get("batch_discount"), f"{where}.batch_discount")
    if not Decimal(0) <= discount <= Decimal(1):
        raise PriceFileError(f"{where}.batch_discount: {discount} is not a share between 0 and 1")
    as_of_text = _text(data.get("as_of"), f"{where}.as_of")
    try:
        as_of = dt.date.fromisoformat(as_of_text)
    except ValueError:
        raise PriceFileError(f"{where}.as_of: {as_of_text!r} is not a date (YYYY-MM-DD)") from None
    source = _text(data.get("source"), f"{where}.source")
    note = data.get("note", "")
    if not isinstance(note, str):
        raise PriceFileError(f"{where}.note: expected a string")
    return PriceEntry(
        provider=provider,
        model=model,
        aliases=tuple(dict.fromkeys(aliases)),
        per_million=per_million,
        batch_discount=discount,
        as_of=as_of,
        source=source,
        note=note,
        overridden=overridden,
        batch_per_million=batch_per_million,
    )


def _prices_by_kind(prices_data: dict, where: str) -> dict[str, Decimal]:
    per_million: dict[str, Decimal] = {}
    for kind, value in prices_data.items():
        if kind not in KINDS:
            raise PriceFileError(f"{where}: unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
        price = _decimal(value, f"{where}.{kind}")
        if not Decimal(0) <= price <= MAX_PRICE:
            raise PriceFileError(f"{where}.{kind}: {price} is out of range (0 to {MAX_PRICE})")
        per_million[kind] = price
    return per_million


def parse_entries(text: str, *, name: str, overridden: bool = False) -> list[PriceEntry]:
    """The entries of a price file's text; PriceFileError naming `name` and the place when it is malformed."""
    try:
        data = json.loads(text, parse_float=Decimal)
    except ValueError as error:
        raise PriceFileError(f"{name}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise PriceFileError(f'{name}: expected an object with a list of "entries"')
    entries = [
        _entry(item, f"{name}: entries[{index}]", overridden=overridden) for index, item in enumerate(data["entries"])
    ]
    seen: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(entries):
        for alias in entry.aliases:
            other = seen.setdefault((entry.provider, alias), index)
            if other != index:
                raise PriceFileError(
                    f"{name}: entries[{other}] and entries[{index}] both name {alias!r} of {entry.provider}"
                )
    return entries


def merge(shipped: Iterable[PriceEntry], overrides: Iterable[PriceEntry]) -> PriceTable:
    """The shipped entries with each override replacing the one of the same provider and model, or added."""
    by_key = {(entry.provider, entry.model): entry for entry in shipped}
    for entry in overrides:
        by_key[(entry.provider, entry.model)] = entry
    return PriceTable(entries=tuple(by_key.values()))


def read_file(path: str | Path, *, overridden: bool) -> list[PriceEntry]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise PriceFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise PriceFileError(f"{path}: is not UTF-8 text") from None
    return parse_entries(text, name=str(path), overridden=overridden)


def load_table(override_path: str | Path | None = None) -> PriceTable:
    """The shipped table, with the override file's entries when a path is given; PriceFileError if malformed."""
    shipped = read_file(SHIPPED_PATH, overridden=False)
    overrides = read_file(override_path, overridden=True) if override_path else []
    return merge(shipped, overrides)
