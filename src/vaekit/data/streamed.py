"""Image sources larger than memory: when to stream them, and their splits read from a cache.

``load_dataset`` streams an image folder or CelebA when ``data.in_memory`` is false, or "auto"
(the default) and the decoded float32 images would take more than ``memory_budget()``. Then:

- the images are decoded once into a uint8 cache on disk (``image_cache.py``), reused by later
  runs until the folder changes;
- the training split stays on disk: ``Dataset.train_stream`` reads it batch by batch in the
  trainer's order (DataLoader workers or the training process), so epochs, losses and exact
  resume are those of the in-memory path, and training memory does not grow with the folder;
- ``Dataset.train`` holds only ``TRAIN_SAMPLE_POINTS`` training images drawn at random (seeded,
  in file order), for what looks
  at training images outside training (the Gaussian fit of a plain autoencoder's codes, Markov
  chains started from data, ``vaekit evaluate --split train``);
- validation and test, the held-out fractions, are read into float32 tensors as in memory
  (``data.val_size`` as a count bounds the first; the test split is a tenth of the folder unless
  the source has its own);
- the splits, the binarisation and the dataset identity equal those of the in-memory path for
  the same folder and settings, so a run trained one way can be resumed the other way.

Static binarisation draws every training pixel once before training and cannot stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from vaekit.errors import DataError

from .base import Binarization, Dataset, SourceOptions, Split
from .binarize import binarize_splits
from .identity import hash_tensor, new_digest
from .image_cache import CachedImages, ImageCache, open_cache
from .images import IMAGE_SOURCES, decode_settings
from .splits import carve, held_out_count, subset, take_first
from .validate import MIN_POINTS

MEMORY_BUDGET_ENV = "VAEKIT_IMAGE_MEMORY_BUDGET"
# "auto" holds a folder in memory while its float32 images take at most this fraction of the
# memory available when the data are loaded (decoding briefly needs about 1.25 times as much).
MEMORY_FRACTION = 0.5
TRAIN_SAMPLE_POINTS = 1000


@dataclass(frozen=True)
class StreamedImages:
    """The caches of a streamed image source: training images, test images when the source
    has its own test split (else one is carved from the training images), and the training
    images' labels, row by row (None: unlabelled), with the class names."""

    train: ImageCache
    test: ImageCache | None
    train_labels: Tensor | None = None
    class_names: tuple[str, ...] = ()

    @property
    def skipped(self) -> tuple[str, ...]:
        """The files left out as unreadable."""
        return self.train.skipped + (self.test.skipped if self.test is not None else ())


def available_memory() -> int:
    """Bytes of memory new allocations can take now: ``MemAvailable`` in /proc/meminfo on
    Linux, else the free physical pages."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget() -> int:
    """Bytes of float32 images ``in_memory = "auto"`` loads into memory: the environment
    variable ``VAEKIT_IMAGE_MEMORY_BUDGET`` (a number of bytes) if set, else
    ``MEMORY_FRACTION`` of ``available_memory()``."""
    configured = os.environ.get(MEMORY_BUDGET_ENV)
    if configured:
        try:
            return int(configured)
        except ValueError:
            raise DataError(
                f"{MEMORY_BUDGET_ENV} must be a whole number of bytes, not {configured!r}"
            ) from None
    return int(MEMORY_FRACTION * available_memory())


def open_streamed(name: str, options: SourceOptions) -> StreamedImages | None:
    """The caches of source ``name`` if ``options.in_memory`` asks to stream it (building them
    if needed), else None (load it into memory). ``DataError`` for ``in_memory = false`` on a
    source that cannot stream."""
    list_files = IMAGE_SOURCES.get(name)
    if list_files is None:
        if options.in_memory is False:
            raise DataError(
                f"data.in_memory = false streams image sources ({', '.join(sorted(IMAGE_SOURCES))})"
                f'; {name!r} is always held in memory: set data.in_memory = "auto"'
            )
        return None
    if options.in_memory is True:
        return None
    files = list_files(options)
    if options.in_memory == "auto":
        mode, size = decode_settings(options)
        num_files = len(files.train) + len(files.test or [])
        if num_files * decoded_bytes(mode, size) <= memory_budget():
            return None
    test = open_cache(files.test, options, crop=files.crop) if files.test is not None else None
    train = open_cache(files.train, options, crop=files.crop)
    labels, classes = files.labels_of_kept(train.skipped)
    if labels is not None and len(labels) != train.num_images:
        raise DataError(
            f"image cache {train.path} holds {train.num_images} images but {len(labels)} files "
            "were labelled; delete that file and its .json to rebuild the cache"
        )
    return StreamedImages(train, test, labels, classes)


def decoded_bytes(mode: str, size: int) -> int:
    """Bytes of one decoded float32 image of Pillow ``mode`` ("L" or "RGB") and side ``size``."""
    return (1 if mode == "L" else 3) * size * size * 4


def streamed_dataset(
    name: str,
    images: StreamedImages,
    *,
    val_size: float,
    val_from: Literal["random", "tail"],
    binarize: Binarization,
    limit: int | None,
    seed: int,
    standardize: bool = False,
    carved_test: tuple[float, int],
) -> Dataset:
    """The ``Dataset`` ``load_dataset`` makes of the same images in memory (see there for the
    arguments; ``carved_test`` is its (fraction, seed) of a carved test split), with the
    training split streamed from ``images.train``."""
    if binarize == "static":
        raise DataError(
            f"{name}: binarize = 'static' draws every training pixel once and needs the images "
            "in memory, but they are streamed from disk (data.in_memory); set data.binarize = "
            "'dynamic' (a fresh draw per batch), or data.in_memory = true if they fit in memory"
        )
    if standardize:
        raise DataError(
            f"{name}: data.standardize fits statistics on the training images in memory, but "
            "they are streamed from disk (data.in_memory); set data.standardize = false"
        )
    # The splits are carved as load_dataset carves tensors, here on the positions of the images.
    train = Split(x=torch.arange(images.train.num_images), y=images.train_labels)
    test_cache = images.test if images.test is not None else images.train
    test = Split(x=torch.arange(images.test.num_images)) if images.test is not None else None
    if limit is not None:
        if limit < MIN_POINTS:
            raise DataError(f"limit must be at least {MIN_POINTS} points, not {limit}")
        train = take_first(train, limit)
        test = take_first(test, limit) if test is not None else None
    if len(train) < MIN_POINTS:
        raise DataError(f"{name} train: {len(train)} images, fewer than {MIN_POINTS}")
    if test is None:
        fraction, test_seed = carved_test
        count = held_out_count(fraction, len(train), what="test")
        generator = torch.Generator().manual_seed(test_seed)
        train, test = carve(train, count, carve_from=val_from, generator=generator)
    test_read = Split(x=_read(test_cache, test.x), y=test.y)
    if val_size == 0:  # no validation split: the test split is scored each epoch
        val_read = test_read
    else:
        count = held_out_count(val_size, len(train), what="validation")
        generator = torch.Generator().manual_seed(seed)
        train, val = carve(train, count, carve_from=val_from, generator=generator)
        val_read = Split(x=_read(images.train, val.x), y=val.y)
    train_rows = train.x.numpy()
    sample = subset(train, sample_rows(len(train), seed))  # positions in the cache, and labels
    sample = Split(x=_read(images.train, sample.x), y=sample.y)
    _, val_split, test_split = binarize_splits(
        sample, val_read, test_read, mode=binarize, seed=seed
    )
    identity = streamed_identity(
        name, binarize, images.train, train_rows, train.y, {"val": val_split, "test": test_split}
    )
    return Dataset(
        name=name,
        train=sample,
        val=val_split,
        test=test_split,
        value_range="unit",
        binarize=binarize,
        identity=identity,
        skipped=images.skipped,
        class_names=images.class_names,
        train_stream=CachedImages(images.train, train_rows),
        train_stream_labels=train.y,
    )


def sample_rows(num_points: int, seed: int) -> Tensor:
    """The positions in the training split of its in-memory sample: ``TRAIN_SAMPLE_POINTS`` of
    them drawn with ``seed`` (all when there are fewer), in order. A random sample, not the
    first images, so that a folder sorted by class or by date is represented whole."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_points, generator=generator)[:TRAIN_SAMPLE_POINTS].sort().values


def streamed_identity(
    name: str,
    binarize: Binarization,
    cache: ImageCache,
    train_rows: np.ndarray,
    train_labels: Tensor | None,
    held_out: dict[str, Split],
) -> str:
    """``vaekit.data.dataset_identity`` of the splits, hashing the training images from the
    cache chunk by chunk: the same bytes in the same order as for the tensors in memory."""
    digest = new_digest(name, binarize)
    shape = (len(train_rows), *cache.shape)
    digest.update(f"\0train.x:{torch.float32}:{shape}".encode())
    for chunk in cache.chunks(train_rows):
        digest.update(chunk.numpy().data)
    hash_tensor(digest, "train.y", train_labels)
    for split_name, split in held_out.items():
        hash_tensor(digest, f"{split_name}.x", split.x)
        hash_tensor(digest, f"{split_name}.y", split.y)
    return str(digest.hexdigest()[:16])


def _read(cache: ImageCache, rows: Tensor) -> Tensor:
    """Float32 images [N, C, S, S] at ``rows`` of ``cache``, read in chunks into one tensor."""
    x = torch.empty((len(rows), *cache.shape), dtype=torch.float32)
    start = 0
    for chunk in cache.chunks(rows.numpy()):
        x[start : start + len(chunk)] = chunk
        start += len(chunk)
    return x


__all__ = [
    "MEMORY_BUDGET_ENV",
    "MEMORY_FRACTION",
    "TRAIN_SAMPLE_POINTS",
    "StreamedImages",
    "available_memory",
    "memory_budget",
    "open_streamed",
    "streamed_dataset",
]
