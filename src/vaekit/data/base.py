"""In-memory datasets: tensors for train/validation/test and the facts a model needs about them."""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import torch
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset

if TYPE_CHECKING:
    from .standardize import Standardization

Binarization = Literal["none", "dynamic", "static"]


@dataclass(frozen=True)
class Split:
    """One split held as tensors: ``x`` is float32 [N, C, H, W] (images) or [N, D] (vectors),
    ``y`` is [N] int64 or None."""

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
    ``feature_names`` names the features of vectors (a CSV file's header), or is empty.
    ``class_names`` names the labels 0..K-1 where the source names them (a CSV label column of
    text, class folders), or is empty.
    """

    train: Split
    test: Split | None
    value_range: Literal["unit", "real"] = "unit"
    extras: dict[str, Tensor] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()  # unreadable files left out (``skip_bad_files``)
    feature_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceOptions:
    """Where and how a loader finds its data; every loader takes the same options.

    ``root`` is the cache directory (see ``vaekit.data.default_data_root``); ``path`` an explicit
    file or folder for sources that need one (arrays, image folders, CelebA, SVHN);
    ``image_size`` a resize target for image sources; ``download`` allows network access;
    ``seed`` drives synthetic data; ``skip_bad_files`` leaves unreadable image files out
    instead of refusing the folder; ``label_column`` names a CSV file's label column;
    ``in_memory`` chooses between memory and a cache on disk for image sources.
    """

    root: Path
    path: Path | None = None
    image_size: int | None = None
    channels: int | None = None
    download: bool = True
    seed: int = 0
    skip_bad_files: bool = False
    label_column: str | None = None
    # image sources: True holds them in memory, False streams them from a uint8 cache on disk,
    # "auto" streams when they would not fit (vaekit.data.streamed.memory_budget)
    in_memory: bool | Literal["auto"] = "auto"


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
    feature_names: tuple[str, ...] = ()  # the names of a vector's features (a CSV header)
    class_names: tuple[str, ...] = ()  # the names of labels 0..K-1 (text labels, class folders)
    # per-feature statistics the splits were standardised with (``data.standardize``), or None
    standardization: Standardization | None = None
    # the training images read from disk batch by batch (items float [C, H, W]), or None; when
    # set, ``train`` holds only a sample of them (see vaekit.data.streamed)
    train_stream: TorchDataset[Tensor] | None = None
    # the labels of every streamed training image, in the stream's order, or None
    train_stream_labels: Tensor | None = None

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one datapoint: (C, H, W) for images, (D,) for vectors."""
        return tuple(int(n) for n in self.train.x.shape[1:])

    @property
    def train_size(self) -> int:
        """Number of training points (all of a streamed split, not only those in memory)."""
        if self.train_stream is None:
            return len(self.train)
        return len(cast(Sized, self.train_stream))  # map-style, of known length

    def train_points(self, index: Tensor) -> Tensor:
        """Training points at ``index``: from memory, or read from disk when the training split
        is streamed."""
        if self.train_stream is None:
            return self.train.x[index]
        return torch.stack([self.train_stream[i] for i in index.tolist()])

    def train_labels(self, index: Tensor) -> Tensor | None:
        """Labels of the training points at ``index`` (as ``train_points``), or None."""
        if self.train_stream is None:
            return None if self.train.y is None else self.train.y[index]
        return None if self.train_stream_labels is None else self.train_stream_labels[index]

    @property
    def is_images(self) -> bool:
        """Whether a datapoint is an image [C, H, W] (else a vector [D])."""
        return len(self.event_shape) == 3

    @property
    def num_classes(self) -> int | None:
        """Number of label classes, or None when the data have no labels: the classes the data
        name (``class_names``), or the largest label of any split plus one, whichever is more
        (a ``data.limit`` may leave a named class without images)."""
        splits = (self.train, self.val, self.test)
        labels = [s.y for s in splits if s.y is not None and len(s.y)]
        if self.train_stream_labels is not None and len(self.train_stream_labels):
            labels.append(self.train_stream_labels)
        if self.train.y is None or not labels:
            return None
        return max([int(y.max()) + 1 for y in labels] + [len(self.class_names)])
