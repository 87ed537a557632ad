"""In-memory datasets: tensors for train/validation/test and the facts a model needs about them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

Binarization = Literal["none", "dynamic", "static"]


@dataclass(frozen=True)
class Split:
    """One split held as tensors: ``x`` is [N, C, H, W] float32, ``y`` is [N] int64 or None."""

    x: Tensor
    y: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class RawData:
    """What a loader returns before the common steps (validation carving, binarisation, hashing).

    ``test`` may be None for sources without a test split; one is then carved from ``train``.
    ``value_range`` is "unit" when every value lies in [0, 1] (images), "real" otherwise.
    ``extras`` holds known ground truth, e.g. the pPCA parameters ``W``, ``mu``, ``sigma``.
    ``skipped`` names the files left out as unreadable (``SourceOptions.skip_bad_files``).
    """

    train: Split
    test: Split | None
    value_range: Literal["unit", "real"] = "unit"
    extras: dict[str, Tensor] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()  # unreadable files left out (``skip_bad_files``)


@dataclass(frozen=True)
class SourceOptions:
    """Where and how a loader finds its data; every loader takes the same options.

    ``root`` is the cache directory (see ``vaekit.data.default_data_root``); ``path`` an explicit
    file or folder for sources that need one (arrays, image folders, CelebA, SVHN);
    ``image_size`` a resize target for image sources; ``download`` allows network access;
    ``seed`` drives synthetic data; ``skip_bad_files`` leaves unreadable image files out
    instead of refusing the folder.
    """

    root: Path
    path: Path | None = None
    image_size: int | None = None
    channels: int | None = None
    download: bool = True
    seed: int = 0
    skip_bad_files: bool = False


@dataclass(frozen=True)
class Dataset:
    """A dataset ready for training: three splits plus provenance and known ground truth."""

    name: str
    train: Split
    val: Split
    test: Split
    value_range: Literal["unit", "real"]
    binarize: Binarization
    identity: str
    extras: dict[str, Tensor] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    @property
    def event_shape(self) -> tuple[int, int, int]:
        """Shape of one datapoint, (C, H, W)."""
        c, h, w = self.train.x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int | None:
        """Number of label classes, or None when the data have no labels."""
        if self.train.y is None:
            return None
        return int(torch.max(self.train.y).item()) + 1
