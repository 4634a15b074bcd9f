"""How a provider module reads its accounts from the environment, as its official SDK would."""

from __future__ import annotations

from collections.abc import Mapping

from .base import AccountSpec


def key_account(
    environ: Mapping[str, str], *, keys: tuple[str, ...], base_url: str, name: str, default_base_url: str
) -> list[AccountSpec]:
    """One account when one of `keys` (the SDK's API key variables, in its order) is set, else none.

    `base_url` and `name` are the variables of its address and its name in the dashboard ("default")."""
    api_key = next((environ[variable] for variable in keys if environ.get(variable)), "")
    if not api_key:
        return []
    return [
        AccountSpec(
            name=environ.get(name) or "default",
            base_url=environ.get(base_url) or default_base_url,
            api_key=api_key,
        )
    ]
