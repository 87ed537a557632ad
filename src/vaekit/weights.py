"""A run's weights and JSON files: safetensors and JSON only, so that loading runs no code.

Reading a saved run needs this module alone, not the training package.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vaekit.errors import CheckpointError
from vaekit.files import atomic_write

RUN_FORMAT = "vaekit-run"
RUN_FORMAT_VERSION = 1


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


def load_weights(path: Path, module: nn.Module, *, against: str = "its config.json") -> None:
    """Load safetensors weights into ``module``; missing, corrupt or mismatched files raise
    (``against`` names what the weights must match in the message)."""
    repair = (
        f"a run that still has its training_state.pt writes it again with vaekit train --resume "
        f"{path.parent}; otherwise restore it from a copy"
    )
    if not path.is_file():
        raise CheckpointError(f"model file {str(path)!r} is missing; {repair}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"model file {str(path)!r} is corrupt or truncated ({error}); {repair}"
        ) from None
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        # the first line names the module only; the next says which key or shape differs
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        first = (lines[1] if len(lines) > 1 else lines[0])[:300]
        raise CheckpointError(
            f"model file {str(path)!r} does not match {against} ({first})"
        ) from None
