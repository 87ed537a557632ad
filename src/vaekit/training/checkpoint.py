"""The resumable training state on disk (atomic): tensors and plain values, no pickled objects.

It is read back with ``torch.load(weights_only=True)``; weights and JSON files are in
``vaekit/weights.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vaekit.errors import CheckpointError
from vaekit.files import atomic_write

STATE_FORMAT_VERSION = 2


def state_writer(state: dict[str, Any]) -> Callable[[Path], None]:
    """A writer (for ``atomic_write``) of a training state: tensors and plain values only."""
    payload = {"format_version": STATE_FORMAT_VERSION, **state}
    return lambda tmp: torch.save(payload, tmp)


def save_training_state(path: Path, state: dict[str, Any]) -> Path:
    """Atomically write a training state (tensors and plain values only)."""
    return atomic_write(path, state_writer(state))


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a training state with ``weights_only=True`` and check its format version."""
    if not path.is_file():
        raise CheckpointError(f"training state {str(path)!r} is missing; cannot resume this run")
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or hostile files
        first = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise CheckpointError(
            f"training state {str(path)!r} is corrupt or not a vaekit state ({first}); the run "
            "cannot resume from it: restore the file from a copy, or start a new run (the run's "
            "model.safetensors still serves sample and evaluate)"
        ) from None
    version = state.get("format_version") if isinstance(state, dict) else None
    if version != STATE_FORMAT_VERSION:
        raise CheckpointError(
            f"training state {str(path)!r} has format version {version!r}; this vaekit reads "
            f"version {STATE_FORMAT_VERSION}. Start a new run or use the vaekit that wrote it."
        )
    return state
