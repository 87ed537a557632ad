"""Run directories as a user sees them: save a trained model with its config, load it back."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch

from vaekit.build import build_model
from vaekit.config import Config, config_from_dict, config_to_dict
from vaekit.errors import CheckpointError, ConfigError
from vaekit.files import write_json
from vaekit.models.base import Autoencoder
from vaekit.runtime import RunDir
from vaekit.training.checkpoint import (
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    load_weights,
    read_json,
    save_weights,
)


@dataclass(frozen=True)
class Run:
    """A loaded run: its directory, resolved config, data shape and model."""

    dir: RunDir
    config: Config
    event_shape: tuple[int, int, int]
    model: Autoencoder


def write_run_config(run: RunDir, config: Config, event_shape: tuple[int, ...]) -> None:
    """Write config.json: the fully resolved config plus what is needed to rebuild the model."""
    write_json(
        run.config,
        {
            "format": RUN_FORMAT,
            "version": RUN_FORMAT_VERSION,
            "event_shape": list(event_shape),
            "config": config_to_dict(config),
        },
    )


def read_run_config(path: str | Path) -> tuple[Config, tuple[int, int, int]]:
    """Read and check a run's config.json."""
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise CheckpointError(f"run directory {str(run.path)!r} does not exist")
    meta = read_json(run.config, "run config")
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{str(run.config)!r} is not a vaekit run config")
    if meta.get("version") != RUN_FORMAT_VERSION:
        raise CheckpointError(
            f"{str(run.config)!r} has run format version {meta.get('version')!r}; "
            f"this vaekit reads version {RUN_FORMAT_VERSION}"
        )
    try:
        config = config_from_dict(meta["config"])
        c, h, w = (int(v) for v in meta["event_shape"])
    except (ConfigError, KeyError, TypeError, ValueError, OverflowError) as error:
        raise CheckpointError(f"{str(run.config)!r} is invalid: {error}") from None
    return config, (c, h, w)


def save_model(run: RunDir, model: Autoencoder) -> None:
    """Write the model's weights as ``model.safetensors``."""
    save_weights(run.model, model)


def load_run(path: str | Path, *, device: torch.device | str = "cpu") -> Run:
    """Rebuild a run's model from config.json and model.safetensors (no pickles involved)."""
    config, event_shape = read_run_config(path)
    run = RunDir(Path(path))
    model = build_model(config.model, event_shape)
    load_weights(run.model, model)
    model.eval()
    return Run(run, config, event_shape, model.to(device))


def load(path: str | Path, *, device: torch.device | str = "cpu") -> Autoencoder:
    """The trained model of a run directory, in eval mode on ``device``."""
    return load_run(path, device=device).model


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, platform and the command line, recorded with every run."""
    from vaekit import __version__

    return {
        "vaekit": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "argv": list(sys.argv if argv is None else argv),
    }
