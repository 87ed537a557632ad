"""Datasets: the loader registry and ``load_dataset``, which turns a name into three splits.

Every loader maps ``SourceOptions`` to ``RawData``; ``load_dataset`` then applies the steps all
datasets share: limiting, carving validation (and, if missing, test) splits, validation,
binarisation and a content hash that identifies the exact tensors a model saw.
Image sources too large for memory are streamed from a cache on disk (``streamed.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch

from vaekit.errors import DataError

from .arrays import load_arrays
from .base import Binarization, Dataset, RawData, SourceOptions, Split
from .batches import iterate_batches
from .binarize import binarize_batch, binarize_splits
from .digits import load_digits
from .fetch import fetch
from .identity import dataset_identity
from .images import load_celeba, load_image_folder
from .mnist import load_fashion_mnist, load_mnist
from .splits import carve, held_out_count, take_first
from .standardize import Standardization
from .streamed import open_streamed, streamed_dataset
from .svhn import load_svhn
from .synthetic import load_ppca, ppca_log_prob, ppca_marginal, ppca_posterior
from .validate import (
    MIN_POINTS,
    check_range_for_likelihood,
    validate_images,
    validate_split,
    value_range_of,
)

__all__ = [
    "DATASETS",
    "Binarization",
    "Dataset",
    "Loader",
    "RawData",
    "SourceOptions",
    "Split",
    "Standardization",
    "binarize_batch",
    "check_range_for_likelihood",
    "dataset_identity",
    "default_data_root",
    "fetch",
    "iterate_batches",
    "load_dataset",
    "ppca_log_prob",
    "ppca_marginal",
    "ppca_posterior",
    "validate_images",
]

Loader = Callable[[SourceOptions], RawData]

DATASETS: dict[str, Loader] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "svhn": load_svhn,
    "celeba": load_celeba,
    "image-folder": load_image_folder,
    "arrays": load_arrays,
    "ppca": load_ppca,
}

# Built-in datasets that never read ``data.path`` (the cached downloads sit under
# ``data.root``; ppca is generated)
READS_NO_PATH = frozenset({"digits", "mnist", "fashion-mnist", "ppca"})

DATA_ROOT_ENV = "VAEKIT_DATA"
# Sources without a test split lose this fraction to one, carved with a fixed seed so every
# run (whatever its seed) is evaluated on the same points.
CARVED_TEST_FRACTION = 0.1
CARVED_TEST_SEED = 0


def default_data_root() -> Path:
    """The dataset cache: ``$VAEKIT_DATA`` if set, else ``~/.cache/vaekit/data``."""
    configured = os.environ.get(DATA_ROOT_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "vaekit" / "data"


def load_dataset(
    name: str,
    *,
    options: SourceOptions,
    val_size: float = 0.1,
    val_from: Literal["random", "tail"] = "random",
    binarize: Binarization = "none",
    limit: int | None = None,
    seed: int = 0,
    standardize: bool = False,
) -> Dataset:
    """Load dataset ``name`` from the registry and prepare train/validation/test splits.

    ``limit`` keeps the first ``limit`` training and test points (for quick runs).
    ``val_size`` below 1 is a fraction of the training points, otherwise a count; 0 means no
    validation split (all training points are trained on and ``val`` is the test split, the
    protocol of scripts that report test loss per epoch). Held-out points are taken at random
    (seeded by ``seed``) or, with ``val_from="tail"``, the last ones as in the IWAE paper
    (Burda et al. 2016). A missing test split is carved first, with a fixed seed.
    ``binarize`` is "none", "static" (one seeded draw of all splits) or "dynamic" (train stays
    grey for per-batch draws, validation and test get one seeded draw); it needs data in [0, 1].
    ``standardize`` centres and scales every feature with the training split's mean and standard
    deviation (kept as ``Dataset.standardization`` to map samples back to the data's units).
    Every problem is reported as a ``DataError``.
    """
    loader = DATASETS.get(name)
    if loader is None:
        raise DataError(
            f"dataset {name!r} is unknown; choose one of: {', '.join(sorted(DATASETS))}"
        )
    streamed = open_streamed(name, options)  # None: the data are loaded into memory
    if streamed is not None:
        return streamed_dataset(
            name,
            streamed,
            val_size=val_size,
            val_from=val_from,
            binarize=binarize,
            limit=limit,
            seed=seed,
            standardize=standardize,
            carved_test=(CARVED_TEST_FRACTION, CARVED_TEST_SEED),
        )
    raw = loader(options)
    validate_split(raw.train, source=f"{name} train")
    if raw.test is not None:
        validate_split(raw.test, source=f"{name} test")
    _check_value_range(name, raw)
    if standardize and binarize != "none":
        raise DataError(
            "standardised data are real-valued and cannot be binarised; set "
            'data.binarize = "none" or data.standardize = false'
        )
    if binarize != "none" and raw.value_range != "unit":
        raise DataError(
            f"{name}: binarisation draws pixels with P(1) = x and needs data in [0, 1], but these "
            "are real-valued; use binarize='none'"
        )

    train, test = raw.train, raw.test
    if limit is not None:
        if limit < MIN_POINTS:
            raise DataError(f"limit must be at least {MIN_POINTS} points, not {limit}")
        train = take_first(train, limit)
        test = take_first(test, limit) if test is not None else None
    if test is None:
        count = held_out_count(CARVED_TEST_FRACTION, len(train), what="test")
        test_generator = torch.Generator().manual_seed(CARVED_TEST_SEED)
        train, test = carve(train, count, carve_from=val_from, generator=test_generator)
    if val_size == 0:
        train, val, test = binarize_splits(train, test, test, mode=binarize, seed=seed)
    else:
        count = held_out_count(val_size, len(train), what="validation")
        val_generator = torch.Generator().manual_seed(seed)
        train, val = carve(train, count, carve_from=val_from, generator=val_generator)
        train, val, test = binarize_splits(train, val, test, mode=binarize, seed=seed)
    standardization = Standardization.fit(train.x) if standardize else None
    if standardization is not None:
        same = val is test  # val_size=0: validation is the test split, and stays that one tensor
        train, val, test = (standardization.split(s) for s in (train, val, test))
        val = test if same else val
    splits = {"train": train, "val": val, "test": test}
    return Dataset(
        name=name,
        train=train,
        val=val,
        test=test,
        value_range="real" if standardize else raw.value_range,
        binarize=binarize,
        identity=dataset_identity(name, binarize, splits, raw.extras),
        extras=raw.extras,
        skipped=raw.skipped,
        feature_names=raw.feature_names,
        class_names=raw.class_names,
        standardization=standardization,
    )


def _check_value_range(name: str, raw: RawData) -> None:
    if raw.value_range != "unit":
        return
    splits = [raw.train.x] + ([raw.test.x] if raw.test is not None else [])
    if value_range_of(*splits) != "unit":
        raise DataError(
            f"{name}: the loader reports values in [0, 1] but the data exceed that range; "
            "rescale the data to [0, 1]"
        )
