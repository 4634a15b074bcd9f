"""One way to keep API keys out of anything shown, logged or stored. No Django here: the secrets are
passed in (the configured accounts' keys are `accounts.configured_secrets()`)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable

REDACTED = "[redacted]"
# Shorter "keys" would redact ordinary words; no real API key is this short.
MIN_SECRET_LENGTH = 8
# A key's first characters are enough to find it: any run of at least this many of them (a key
# cut short by us or by an upstream that echoes it truncated) is redacted like the whole key.
PREFIX_LENGTH = 16


def _matched(text: str, start: int, secret: str) -> int:
    """How many characters of `secret` (any letter case) `text` holds from `start`: 0 if not its head."""
    size = 0
    for expected, found in zip(secret, text[start : start + len(secret)], strict=False):
        if expected != found and expected.lower() != found.lower() and expected.upper() != found.upper():
            break
        size += 1
    return size if size >= min(len(secret), PREFIX_LENGTH) else 0


@functools.lru_cache(maxsize=32)
def _searched_for(secrets: tuple[str, ...]) -> tuple[tuple[str, ...], re.Pattern | None]:
    """The secrets worth looking for, longest first, and the pattern of their heads (None if there is
    none). Made once per set of secrets: a poll redacts every string of every batch it stores."""
    wanted = tuple(sorted({secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH}, key=len, reverse=True))
    if not wanted:
        return wanted, None
    heads = sorted({secret[:PREFIX_LENGTH] for secret in wanted}, key=len, reverse=True)
    return wanted, re.compile("|".join(re.escape(head) for head in heads), flags=re.IGNORECASE)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (any letter case) replaced by [redacted], longest match first.

    A secret's first PREFIX_LENGTH characters, followed by any more of it, count as the secret:
    a cut-off key is redacted too, and nothing of it beyond the cut is left behind.
    """
    if not text:
        return text
    return redactor(secrets)(text)


def redactor(secrets: Iterable[str]) -> Callable[[str], str]:
    """`redact` with these secrets, for many texts: the secrets are looked up once, not per text
    (a poll redacts every string of every batch it stores, with every configured account's key)."""
    wanted, pattern = _searched_for(tuple(secrets))
    if pattern is None:
        return lambda text: text

    def redacted(text: str) -> str:
        parts, position = [], 0
        while text and (match := pattern.search(text, position)):
            start = match.start()
            # The longest of the keys that start here (several may share their first characters).
            size = max([_matched(text, start, secret) for secret in wanted] + [len(match.group())])
            parts += [text[position:start], REDACTED]
            position = start + size
        return "".join(parts) + text[position:] if parts else text

    return redacted
