"""Run files on disk: safetensors weights + JSON config, resumable training state (atomic).

No pickled objects: weights go through safetensors, the training state holds only tensors and
plain values and is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vaekit.errors import CheckpointError
from vaekit.files import atomic_write

RUN_FORMAT = "vaekit-run"
RUN_FORMAT_VERSION = 1
STATE_FORMAT_VERSION = 2


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file, or raise CheckpointError saying which file is missing or corrupt."""
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} is missing; is this a vaekit run directory?")
    try:
        return json.loads(path.read_text())
    except (ValueError, RecursionError) as error:  # bad JSON, bad UTF-8, absurd nesting
        raise CheckpointError(f"{what} {str(path)!r} is corrupt ({error})") from None


def weights_writer(module: nn.Module) -> Callable[[Path], None]:
    """A writer (for ``atomic_write``) of ``module``'s state dict as safetensors."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    # One key: safetensors writes metadata from a hash map in random order, and equal weights
    # should give byte-identical files.
    metadata = {"format": f"{RUN_FORMAT} {RUN_FORMAT_VERSION}"}
    return lambda tmp: save_file(tensors, str(tmp), metadata=metadata)


def save_weights(path: Path, module: nn.Module) -> Path:
    """Atomically write ``module``'s state dict as safetensors."""
    return atomic_write(path, weights_writer(module))


def load_weights(path: Path, module: nn.Module) -> None:
    """Load safetensors weights into ``module``; missing, corrupt or mismatched files raise."""
    if not path.is_file():
        raise CheckpointError(f"model file {str(path)!r} is missing")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"model file {str(path)!r} is corrupt or truncated ({error})"
        ) from None
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(
            f"model file {str(path)!r} does not match its config.json ({first})"
        ) from None


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
        raise CheckpointError(
            f"training state {str(path)!r} is corrupt or not a vaekit state ({error})"
        ) from None
    version = state.get("format_version") if isinstance(state, dict) else None
    if version != STATE_FORMAT_VERSION:
        raise CheckpointError(
            f"training state {str(path)!r} has format version {version!r}; this vaekit reads "
            f"version {STATE_FORMAT_VERSION}. Start a new run or use the vaekit that wrote it."
        )
    return state
