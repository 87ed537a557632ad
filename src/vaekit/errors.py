"""The one error type users see: what was wrong and what to do about it."""

from __future__ import annotations


class VaekitError(Exception):
    """A problem with the user's input or files, reported by the CLI as one message (exit 2).

    Raise it with a message that says what was wrong and what to do, e.g.
    ``VaekitError("dataset 'mnsit' is unknown; choose one of: digits, mnist")``.
    """


class ConfigError(VaekitError):
    """An invalid recipe, override or command-line value."""


class DataError(VaekitError):
    """Data that cannot be read or do not fit the model (shape, range, NaN, size)."""


class CheckpointError(VaekitError):
    """A run directory or model file that is missing, corrupt or incompatible."""
