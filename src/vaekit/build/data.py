"""The dataset a config names, and the checks that the model's likelihood can score it."""

from __future__ import annotations

from pathlib import Path

import torch

from vaekit.build.lookup import lookup
from vaekit.config import DataConfig, ModelConfig
from vaekit.data import DATASETS, default_data_root, load_dataset
from vaekit.data.base import Dataset, SourceOptions
from vaekit.data.user import PYTHON_DATA
from vaekit.distributions.likelihoods import UNIT_INTERVAL
from vaekit.errors import DataError


def build_dataset(cfg: DataConfig, seed: int) -> Dataset:
    """Load the configured dataset (validation carved with ``seed``)."""
    if cfg.name == PYTHON_DATA:
        raise DataError(
            "this run was trained on data passed from Python (vaekit.fit), which the command "
            "line cannot load; score it in Python, e.g. vaekit.evaluation.log_likelihood(model, x)"
        )
    lookup(DATASETS, cfg.name, "dataset")
    options = SourceOptions(
        root=Path(cfg.root) if cfg.root else default_data_root(),
        path=Path(cfg.path) if cfg.path else None,
        image_size=cfg.image_size,
        channels=cfg.channels,
        download=cfg.download,
        seed=seed,
        skip_bad_files=cfg.skip_bad_files,
        in_memory=cfg.in_memory,
        label_column=cfg.label_column,
    )
    return load_dataset(
        cfg.name,
        options=options,
        val_size=cfg.val_size,
        val_from=cfg.val_from,
        binarize=cfg.binarize,
        limit=cfg.limit,
        seed=seed,
        standardize=cfg.standardize,
    )


# Feature scales (standard deviations) further apart than this defeat a Gaussian likelihood with
# one shared or freely learned scale: the widest features dominate the loss (or the KL explodes).
MAX_SCALE_RATIO = 100.0


def check_data_fits(dataset: Dataset, cfg: ModelConfig) -> None:
    """Refuse data a likelihood cannot score: Bernoulli needs values in [0, 1]; a Gaussian on
    feature vectors whose scales differ by more than ``MAX_SCALE_RATIO`` needs them standardised.
    """
    if cfg.likelihood in UNIT_INTERVAL and dataset.value_range != "unit":
        fix = (
            "set model.likelihood=gaussian"
            if dataset.standardization is None
            else "standardised data are real-valued: set model.likelihood=gaussian"
        )
        raise DataError(
            f"dataset {dataset.name!r} has values outside [0, 1], which a {cfg.likelihood} "
            f"likelihood cannot score; rescale the data to [0, 1] or {fix}"
        )
    unscaled_vectors = dataset.standardization is None and not dataset.is_images
    if cfg.likelihood.startswith("gaussian") and unscaled_vectors:
        _check_scales(dataset, cfg.likelihood)


def _check_scales(dataset: Dataset, likelihood: str) -> None:
    std = dataset.train.x.double().std(0, correction=0)
    varying = std > 0
    if int(varying.sum()) < 2:
        return
    widest = int(std.argmax())
    narrowest = int(torch.where(varying, std, torch.inf).argmin())
    ratio = float(std[widest] / std[narrowest])
    if ratio > MAX_SCALE_RATIO:
        raise DataError(
            f"the {len(std)} features differ in scale by {ratio:.0f}x (std of "
            f"feature {widest} is {float(std[widest]):.4g}, of feature {narrowest} "
            f"{float(std[narrowest]):.4g}); a {likelihood} likelihood would model only the "
            "widest ones: set data.standardize = true (samples are mapped back to the "
            "original units)"
        )
