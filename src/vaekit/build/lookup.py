"""Names in a config looked up in the registries, with the valid names on a miss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vaekit.errors import ConfigError


def lookup(registry: Mapping[str, Any], name: str, what: str) -> Any:
    """``registry[name]``, or a ConfigError listing the valid names."""
    try:
        return registry[name]
    except KeyError:
        valid = ", ".join(sorted(registry))
        raise ConfigError(f"unknown {what} {name!r}; choose one of: {valid}") from None
