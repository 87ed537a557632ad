"""A user's own data as a training source: tensors, arrays, pairs, torch Datasets, DataLoaders.

``as_source`` accepts

- a Tensor or numpy array [N, *event_shape] (uint8 is divided by 255, other numbers become
  float32 unchanged);
- a pair ``(x, y)`` of such an x and labels y [N];
- a map-style ``torch.utils.data.Dataset`` whose items are x or ``(x, y)``;
- a ``DataLoader``, or an ``IterableDataset``.

In memory (the default) the data become one tensor, gathered by index every step. With
``in_memory=False`` a map-style Dataset is streamed through DataLoader workers in the trainer's
order, and a DataLoader is read batch by batch in its own; an ``IterableDataset`` is always
streamed. Nothing streamed is ever held whole, except the labels of a streamed Dataset that a
conditional model trains on: read in one pass before training (8 bytes an item).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.data import Dataset as TorchDataset

from vaekit.data.sources import (
    InMemory,
    LoaderStream,
    Source,
    Streamed,
    batch_inputs,
    collate_inputs,
    default_workers,
)
from vaekit.errors import DataError

# Rows checked for NaN at a time: a whole-tensor check would hold a mask as large as the data.
CHECK_ROWS = 4096
# data.name in the config.json of a run trained on data passed from Python (``vaekit.fit``)
PYTHON_DATA = "python"


def _as_float(x: Any, what: str) -> Tensor:
    """A float tensor from a Tensor or numpy array (uint8 / 255)."""
    if isinstance(x, np.ndarray):
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise DataError(f"{what} must be a numeric array, got dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise DataError(f"{what} must be a Tensor or a numpy array, got {type(x).__name__}")
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    if x.is_floating_point() and x.dtype != torch.float32:
        return x.to(torch.float32)
    return x.float() if not x.is_floating_point() else x


def _labels(y: Any, n: int, what: str) -> Tensor:
    """Integer class labels [n]; names, fractions and other values are refused, saying how to
    turn names into labels."""
    if not isinstance(y, Tensor):
        array = np.asarray(y)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise DataError(
                f"{what}: labels must be integers 0..K-1, got values of type {array.dtype}; "
                "turn names into labels with names, y = np.unique(y, return_inverse=True) and "
                "pass class_names=names to vaekit.fit"
            )
        y = torch.from_numpy(np.ascontiguousarray(array))
    if y.shape != (n,):
        raise DataError(f"{what}: labels must have shape [{n}], got {list(y.shape)}")
    whole = not y.is_complex() and (
        not y.is_floating_point() or bool((torch.isfinite(y) & (y == y.round())).all())
    )
    if not whole:
        raise DataError(f"{what}: labels must be whole numbers (class indices 0..K-1)")
    return y.to(torch.int64)


def _in_memory(x: Any, y: Any, what: str) -> InMemory:
    x = _as_float(x, what)
    if x.dim() < 2 or x.shape[0] == 0:
        raise DataError(f"{what} must be [N, *event_shape] with N >= 1, got {list(x.shape)}")
    if not all(bool(torch.isfinite(rows).all()) for rows in x.split(CHECK_ROWS)):
        raise DataError(f"{what} holds NaN or infinite values; clean or impute them first")
    return InMemory(x, None if y is None else _labels(y, x.shape[0], what))


def _item_label(item: Any) -> Tensor | None:
    """y of an item (or of a DataLoader's batch) ``(x, y, ...)`` as a flat tensor; None for an
    item without one."""
    if (
        isinstance(item, (tuple, list))
        and len(item) > 1
        and isinstance(item[0], Tensor | np.ndarray)
    ):
        return torch.as_tensor(item[1]).reshape(-1)
    return None


def _materialise(items: Any, what: str) -> InMemory:
    """Read a Dataset or DataLoader once into one tensor (and labels where every item has one)."""
    xs: list[Tensor] = []
    ys: list[Tensor] = []
    batched = isinstance(items, DataLoader)
    for item in items if batched else (items[i] for i in range(len(items))):
        xs.append(batch_inputs(item))
        if (y := _item_label(item)) is not None:
            ys.append(y)
    if not xs:
        raise DataError(f"{what} is empty")
    x = torch.cat(xs) if batched else torch.stack(xs)
    y = torch.cat(ys) if ys and len(ys) == len(xs) else None
    return _in_memory(x, y, what)


def _collate_labels(items: list[Any]) -> Tensor | None:
    """The labels [B] of a batch of items, or None where an item has none."""
    ys = [y for item in items if (y := _item_label(item)) is not None]
    return torch.cat(ys) if len(ys) == len(items) else None


def _streamed(
    data: TorchDataset[Any], *, labels: bool, num_workers: int | None, what: str
) -> Streamed:
    """A Dataset streamed in the trainer's order; with ``labels``, its items' labels read once
    (through the same workers) and held, for a conditional model. Items without a label leave
    y None, which the trainer refuses with what to do."""
    source = Streamed(data, num_workers=num_workers)
    if not labels or len(source) == 0:
        return source
    loader = DataLoader(
        data, batch_size=256, num_workers=source.num_workers, collate_fn=_collate_labels
    )
    ys: list[Tensor] = []
    for y in loader:
        if y is None:
            return source
        ys.append(y)
    source.y = _labels(torch.cat(ys), len(source), what)
    return source


def as_source(
    data: Any,
    *,
    in_memory: bool = True,
    batch_size: int = 64,
    num_workers: int | None = None,
    labels: bool = False,
    what: str,
) -> Source:
    """The training source for ``data`` (see the module docstring); ``what`` names it in
    errors ("train", "val"). ``batch_size`` and ``num_workers`` make the DataLoader of an
    ``IterableDataset``; ``labels`` reads a streamed Dataset's labels (a conditional model)."""
    if isinstance(data, (Tensor, np.ndarray)):
        return _in_memory(data, None, what)
    if isinstance(data, tuple) and len(data) == 2:
        return _in_memory(data[0], data[1], what)
    if isinstance(data, DataLoader):
        if in_memory and not isinstance(data.dataset, IterableDataset):
            return _materialise(data, what)
        return LoaderStream(data)
    if isinstance(data, IterableDataset):
        workers = default_workers() if num_workers is None else num_workers
        return LoaderStream(DataLoader(data, batch_size=batch_size, num_workers=workers))
    if isinstance(data, TorchDataset):
        try:
            len(data)  # type: ignore[arg-type]
        except TypeError:
            raise DataError(f"{what}: a map-style Dataset needs __len__") from None
        if in_memory:
            return _materialise(data, what)
        return _streamed(data, labels=labels, num_workers=num_workers, what=what)
    raise DataError(
        f"{what} must be a Tensor or numpy array [N, ...], a pair (x, y), a torch Dataset or a "
        f"DataLoader; got {type(data).__name__}"
    )


def first_batch(source: Source) -> Tensor:
    """A few datapoints of ``source`` (its first batch or first items), for shapes and figures."""
    if isinstance(source, InMemory):
        return source.x[:64]
    if isinstance(source, LoaderStream):
        # Read from the dataset, not the loader: iterating the loader would advance a sampler
        # that counts epochs.
        dataset = source.loader.dataset
        if isinstance(dataset, IterableDataset):
            return batch_inputs(next(iter(dataset))).unsqueeze(0)
        return collate_inputs([dataset[i] for i in range(min(len(source), 64))])
    count = min(len(source), 64)
    return next(source.gather([torch.arange(count)], torch.device("cpu")))


def source_identity(source: Source, first: Tensor) -> str:
    """A hash that tells datasets apart for resume: every byte of in-memory data; the length and
    ``first`` (its ``first_batch``, read once by the caller) of a streamed Dataset, which is
    never read whole; the length of a DataLoader's data (whose first batch may be shuffled)."""
    digest = hashlib.sha256(type(source).__name__.encode())
    digest.update(str(len(source)).encode())
    if isinstance(source, LoaderStream):
        return digest.hexdigest()[:16]
    tensors = [source.x] if isinstance(source, InMemory) else [first]
    if source.y is not None:
        tensors.append(source.y)
    for tensor in tensors:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()[:16]
