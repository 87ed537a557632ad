"""A training run's files: its metrics.jsonl, its complete-or-absent checkpoints, and the
config hash that ties a training state to its run (``run_claim``: the directory itself)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from torch import nn

from vaekit.config import Config, config_to_dict
from vaekit.errors import CheckpointError
from vaekit.files import atomic_write, atomic_write_many
from vaekit.runtime import RunDir
from vaekit.training.checkpoint import state_writer
from vaekit.weights import read_json, weights_writer


def read_metrics(run: RunDir) -> list[dict[str, float]]:
    """The per-epoch rows of metrics.jsonl ([] if the run has none yet)."""
    if not run.metrics.is_file():
        return []
    return [json.loads(line) for line in run.metrics.read_text().splitlines() if line]


def write_metrics(run: RunDir, history: Sequence[dict[str, float]]) -> None:
    """Rewrite metrics.jsonl from the history (atomic; resume-safe)."""
    text = "".join(json.dumps(record) + "\n" for record in history)
    atomic_write(run.metrics, lambda tmp: tmp.write_text(text))


def write_checkpoint(
    run: RunDir, model: nn.Module, state: dict[str, Any], history: Sequence[dict[str, float]]
) -> None:
    """Write weights, metrics and training state complete-or-absent (see ``atomic_write_many``).

    training_state.pt is renamed last: it alone is what --resume reads, so a crash at any point
    leaves the previous resumable checkpoint or the new one, never a mixture.
    """
    text = "".join(json.dumps(record) + "\n" for record in history)
    files = [
        (run.model, weights_writer(model)),
        (run.metrics, lambda tmp: tmp.write_text(text)),
        (run.training_state, state_writer(state)),
    ]
    try:
        atomic_write_many(files)
    except OSError as error:
        raise CheckpointError(
            f"could not write a checkpoint in {str(run.path)!r} ({error}); the previous "
            f"checkpoint is intact: free space and run vaekit train --resume {run.path}"
        ) from None


def config_sha256(config: Config | dict[str, Any]) -> str:
    """A hash of the resolved config, recorded with the run and in every training state."""
    tree = config if isinstance(config, dict) else config_to_dict(config)
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_config_sha256(run: RunDir) -> str:
    """``config_sha256`` of the config as the run's config.json records it.

    A resumed run is checked against this, not against the config as this vaekit resolves it:
    a setting added to vaekit since the run started (with a default that keeps the old
    behaviour) changes the resolved config's hash, and must not make the run unresumable.
    """
    meta = read_json(run.config, "run config")
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{str(run.config)!r} is not a vaekit run config")
    return config_sha256(meta["config"])
