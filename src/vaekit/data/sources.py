"""Where the trainer's batches come from: tensors held in memory, or a torch Dataset streamed.

``InMemory`` keeps the data as one tensor on the training device and gathers each batch by
index, the fastest path for data that fit. ``Streamed`` reads a map-style ``Dataset`` through a
``DataLoader`` with workers, in the order the trainer chooses (so epochs, resume and the data
order are the same as in memory), and never holds more than a few batches. ``LoaderStream``
takes the batches of a user's ``DataLoader`` or ``IterableDataset`` in their own order.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from vaekit.data.base import Binarization, Dataset, Split
from vaekit.errors import DataError


def batch_inputs(batch: Any) -> Tensor:
    """x of an item or a batch as a Dataset or DataLoader yields it: x itself (a tensor, an
    array or numbers), a pair or sequence whose first entry is the x tensor or array
    (``(x, y)``), or a mapping with key ``"x"``."""
    if isinstance(batch, dict) and "x" in batch:
        batch = batch["x"]
    elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor | np.ndarray):
        batch = batch[0]
    try:
        return torch.as_tensor(batch)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(
            "each item must be x (a tensor, array or numbers), a pair (x, y) or a dict with "
            f"key 'x'; got {type(batch).__name__}"
        ) from None


def collate_inputs(items: list[Any]) -> Tensor:
    """Stack the x of each item into one batch [B, *event_shape]."""
    return torch.stack([batch_inputs(item) for item in items])


class IndexedSource(ABC):
    """A split of ``len`` datapoints the trainer reads by index, in the order it chooses, and
    their labels ``y`` [N] held in memory, or None."""

    y: Tensor | None = None

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def gather(self, indices: Sequence[Tensor], device: torch.device) -> Iterator[Tensor]:
        """x [B, *event_shape] for each index tensor [B] in turn, on ``device``."""

    def gather_labels(self, indices: Sequence[Tensor], device: torch.device) -> Iterator[Tensor]:
        """y [B] for each index tensor [B] in turn, on ``device`` (the labels must exist)."""
        if self.y is None:
            raise DataError("these data have no labels")
        for index in indices:
            yield self.y[index.cpu()].to(device)


class InMemory(IndexedSource):
    """x [N, *event_shape] (and labels y [N]) as tensors; batches gathered by index."""

    def __init__(self, x: Tensor, y: Tensor | None = None):
        self.x, self.y = x, y
        self._on: dict[torch.device, Tensor] = {}

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def on(self, device: torch.device) -> Tensor:
        """x on ``device``, copied there once."""
        if device not in self._on:
            self._on[device] = self.x.to(device)
        return self._on[device]

    def gather(self, indices: Sequence[Tensor], device: torch.device) -> Iterator[Tensor]:
        x = self.on(device)
        for index in indices:
            # index_select: a third of the time of x[index] for MNIST rows on a CPU
            yield torch.index_select(x, 0, index.to(device))


def default_workers() -> int:
    """DataLoader workers when none are asked for: the cores beyond the two that the training
    step's threads use, at most 4 (0 on a 2-core machine, where worker processes would take
    the cores from the step: benchmarks/streamed_data.py)."""
    return max(0, min(4, (os.cpu_count() or 1) - 2))


class Streamed(IndexedSource):
    """A map-style torch ``Dataset`` whose items are x or (x, y), read by ``num_workers``
    DataLoader workers (None: ``default_workers()``; 0 reads in the training process) in the
    trainer's index order; nothing is materialised but the labels ``y`` [N], where given (those
    of a streamed image folder: a conditional model trains on it)."""

    def __init__(
        self,
        dataset: TorchDataset[Any],
        *,
        y: Tensor | None = None,
        num_workers: int | None = None,
    ):
        if num_workers is None:
            num_workers = default_workers()
        if num_workers < 0:
            raise ValueError(f"num_workers must be non-negative, got {num_workers}")
        self.dataset, self.num_workers, self.y = dataset, num_workers, y

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def gather(self, indices: Sequence[Tensor], device: torch.device) -> Iterator[Tensor]:
        loader = DataLoader(
            self.dataset,
            batch_sampler=[index.tolist() for index in indices],
            num_workers=self.num_workers,
            collate_fn=collate_inputs,
            pin_memory=device.type == "cuda",
        )
        for x in loader:
            yield x.to(device, non_blocking=True)


class LoaderStream:
    """A user's ``DataLoader`` (or one over an ``IterableDataset``): its batches, in its order.

    Resuming mid-epoch skips the batches already trained on, which repeats the interrupted
    epoch exactly only where the loader's order is a function of the epoch (no unseeded
    shuffling).
    """

    def __init__(self, loader: DataLoader[Any]):
        try:
            self._num_batches = len(loader)
        except TypeError:
            raise ValueError(
                "a DataLoader over an IterableDataset needs __len__ on the dataset (the number "
                "of items), so that the learning-rate schedule knows the steps per epoch"
            ) from None
        self.loader = loader

    def __len__(self) -> int:
        """Datapoints per epoch: the dataset's ``len``, else batches × batch size."""
        dataset = self.loader.dataset
        try:
            return len(dataset)  # type: ignore[arg-type]
        except TypeError:
            return self._num_batches * (self.loader.batch_size or 1)

    def num_batches(self) -> int:
        """Batches per epoch: the loader's ``len``."""
        return self._num_batches

    def batches(self, skip: int, device: torch.device) -> Iterator[Tensor]:
        """The loader's batches of x after the first ``skip``, on ``device``."""
        for i, batch in enumerate(self.loader):
            if i >= skip:
                yield batch_inputs(batch).to(device, non_blocking=True)


Source = IndexedSource | LoaderStream


@dataclass(frozen=True)
class TrainingData:
    """What the trainer trains on: a training source, an optional validation source, the shape
    of one datapoint, and the binarisation of the training batches."""

    train: Source
    val: IndexedSource | None
    event_shape: tuple[int, ...]
    binarize: Binarization = "none"


def in_memory(split: Split) -> InMemory:
    """A library ``Split`` as an in-memory source."""
    return InMemory(split.x, split.y)


def from_dataset(dataset: Dataset) -> TrainingData:
    """A library ``Dataset``'s training and validation splits: held in memory, except a training
    split read from disk (``Dataset.train_stream``), which is streamed."""
    stream = dataset.train_stream
    train = (
        in_memory(dataset.train)
        if stream is None
        else Streamed(stream, y=dataset.train_stream_labels)
    )
    return TrainingData(train, in_memory(dataset.val), dataset.event_shape, dataset.binarize)


def check_labels(source: Source | IndexedSource, classes: int) -> None:
    """Refuse, once before training, data a conditional model on ``classes`` classes cannot
    take: no labels (unlabelled data, or a user's DataLoader read in its own order), or labels
    outside 0..classes - 1."""
    if isinstance(source, LoaderStream):
        raise DataError(
            "a conditional model needs labels in the trainer's order, which a DataLoader read "
            "in its own order cannot give: pass its map-style Dataset of (x, y) items, or "
            "vaekit.fit(in_memory=True)"
        )
    if source.y is None:
        raise DataError(
            "a conditional model needs labels: pass (x, y) tensors, a Dataset of (x, y) items, "
            "or a labelled dataset (class folders, a CSV label column)"
        )
    if len(source.y) and not 0 <= int(source.y.min()) <= int(source.y.max()) < classes:
        raise DataError(
            f"the labels run from {int(source.y.min())} to {int(source.y.max())}, but the model "
            f"is conditioned on {classes} classes (0..{classes - 1}); build it with "
            f"num_classes = {int(source.y.max()) + 1}"
        )
