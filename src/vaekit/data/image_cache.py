"""Image files decoded once into a uint8 array on disk, reused until the files change.

A cache is ``<root>/image-cache/<key>.npy``, uint8 [N, C, S, S] (written with
``np.lib.format.open_memmap``), plus ``<key>.json`` describing it. The key is a hash of the file
list with every file's size and modification time, and of the decode settings (side, channels,
crop), so an edited, added or removed file, or another ``image_size``, gives a new cache. The
images are decoded in chunks by a thread pool straight into the array, so building never holds
more than one chunk of decoded images. The array is written under a temporary name and renamed,
and the JSON is written (atomically) last: a build that is interrupted leaves no cache, and the
next load builds it again.

Rows are read with positional reads (``os.preadv``) rather than through a memory map, so the
data stay in the operating system's page cache and a process's resident memory does not grow
with the number of images it has read. Rows become float32 in [0, 1] by ``x / 255``, the same
operation and the same values as the in-memory path (``images.read_images``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset

from vaekit.errors import DataError
from vaekit.files import write_json

from .base import SourceOptions
from .images import check_bad_files, decode_or_error, decode_settings, decode_workers

CACHE_FOLDER = "image-cache"
CACHE_FORMAT = 1
CHUNK_IMAGES = 512  # images decoded (and held) at once while a cache is built
READ_CHUNK_BYTES = 8 * 2**20  # float32 bytes made at once when many rows are read in turn


@dataclass(frozen=True)
class ImageCache:
    """A complete cache file: ``num_images`` uint8 rows of ``shape`` (C, S, S) after ``offset``
    header bytes, and the files left out as unreadable, each with its error, and their
    positions in the file list the cache was built from."""

    path: Path
    num_images: int
    shape: tuple[int, int, int]
    offset: int
    errors: tuple[tuple[Path, DataError], ...] = ()
    skipped_index: tuple[int, ...] = ()

    def named_for(self, files: Sequence[Path]) -> ImageCache:
        """This cache with its unreadable files named as ``files`` (the list its key was made
        of) names them now: a folder reached by another path reuses the cache of its files."""
        errors = tuple(
            (files[i], error) for i, (_, error) in zip(self.skipped_index, self.errors, strict=True)
        )
        return replace(self, errors=errors)

    @property
    def skipped(self) -> tuple[str, ...]:
        """The files left out as unreadable."""
        return tuple(str(path) for path, _ in self.errors)

    @property
    def row_bytes(self) -> int:
        """Bytes of one image."""
        c, h, w = self.shape
        return c * h * w

    def read(self, rows: Sequence[int] | np.ndarray, fd: int | None = None) -> Tensor:
        """Float32 images [B, C, S, S] in [0, 1] at cache ``rows`` (in that order).

        ``fd`` is an open descriptor of ``path`` to read through (default: opened for this call).
        """
        if fd is None:
            with open(self.path, "rb") as handle:
                return self.read(rows, handle.fileno())
        rows = np.asarray(rows, dtype=np.int64)
        pixels = np.empty((len(rows), *self.shape), dtype=np.uint8)  # [B, C, S, S]
        start = 0
        # consecutive rows are read with one call
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for stop in [*breaks.tolist(), len(rows)]:
            self._read_into(fd, pixels[start:stop], int(rows[start]))
            start = stop
        return torch.from_numpy(pixels).to(torch.float32).div_(255.0)  # as x / 255

    def chunks(self, rows: np.ndarray) -> Iterator[Tensor]:
        """``read(rows)`` in pieces of at most ``READ_CHUNK_BYTES`` of float32."""
        per_chunk = max(1, READ_CHUNK_BYTES // (4 * self.row_bytes))
        with open(self.path, "rb") as handle:
            for start in range(0, len(rows), per_chunk):
                yield self.read(rows[start : start + per_chunk], handle.fileno())

    def _read_into(self, fd: int, out: np.ndarray, first_row: int) -> None:
        view, position = out.data.cast("B"), self.offset + first_row * self.row_bytes
        while len(view):
            count = os.preadv(fd, [view], position)
            if count == 0:
                raise DataError(f"image cache {self.path} is truncated; delete it to rebuild it")
            view, position = view[count:], position + count


class CachedImages(TorchDataset[Tensor]):
    """The images at ``rows`` of a cache as a map-style torch Dataset: item i is float32
    [C, S, S] in [0, 1]. Safe in DataLoader workers (each process opens the file itself)."""

    def __init__(self, cache: ImageCache, rows: np.ndarray):
        self.cache, self.rows = cache, np.asarray(rows, dtype=np.int64)
        self._fd: tuple[int, int] | None = None  # (process id, descriptor)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Tensor:
        return self.cache.read(self.rows[index : index + 1], self._descriptor())[0]

    def __getitems__(self, indices: list[int]) -> list[Tensor]:
        """A whole batch in one read and one conversion (the DataLoader calls this)."""
        return list(self.cache.read(self.rows[indices], self._descriptor()))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if self._fd is not None and self._fd[0] == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd[1])

    def _descriptor(self) -> int:
        if self._fd is None or self._fd[0] != os.getpid():  # a forked worker opens its own
            self._fd = (os.getpid(), os.open(self.cache.path, os.O_RDONLY))
        return self._fd[1]


def cache_key(files: Sequence[Path], *, mode: str, size: int, crop: int | None) -> str:
    """A hash of the file names (relative to their common folder), sizes, modification times
    and the decode settings: equal keys mean the same decoded images."""
    folder = Path(os.path.commonpath(files)) if len(files) > 1 else files[0].parent
    digest = hashlib.sha256(f"vaekit-image-cache-{CACHE_FORMAT}\0{mode}\0{size}\0{crop}".encode())
    for path in files:
        stat = path.stat()
        name = path.relative_to(folder).as_posix()
        digest.update(f"\0{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def open_cache(files: Sequence[Path], options: SourceOptions, *, crop: int | None) -> ImageCache:
    """The cache of ``files`` decoded as ``options`` say (see ``images.read_images``) under
    ``options.root``: reused when complete, else built. Unreadable files are refused or, with
    ``options.skip_bad_files``, left out and named in ``skipped``."""
    if not files:
        raise DataError("no image files to read")
    mode, size = decode_settings(options)
    key = cache_key(files, mode=mode, size=size, crop=crop)
    folder = options.root / CACHE_FOLDER
    found = _complete(folder, key)
    if found is not None:
        found = found.named_for(files)
        check_bad_files(found.errors, len(files), options)  # the same refusal as a fresh build
        return found
    return _build(files, options, folder=folder, key=key, mode=mode, size=size, crop=crop)


def _complete(folder: Path, key: str) -> ImageCache | None:
    """The cache ``key`` if its description and its array are both there and agree, else None."""
    try:
        info = json.loads((folder / f"{key}.json").read_text())
        path = folder / f"{key}.npy"
        array = np.load(path, mmap_mode="r")  # reads the header only
        shape = tuple(int(n) for n in info["shape"])
        if info["format"] != CACHE_FORMAT or array.shape != (info["num_images"], *shape):
            return None
        # a cache written before the positions were kept is rebuilt where it left files out
        skipped_index = info.get("skipped_index", [] if not info["skipped"] else None)
        if skipped_index is None or len(skipped_index) != len(info["skipped"]):
            return None
        return ImageCache(
            path=path,
            num_images=int(info["num_images"]),
            shape=(shape[0], shape[1], shape[2]),
            offset=int(array.offset),
            errors=tuple(
                (Path(p), DataError(e))
                for p, e in zip(info["skipped"], info["errors"], strict=True)
            ),
            skipped_index=tuple(int(i) for i in skipped_index),
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _build(
    files: Sequence[Path],
    options: SourceOptions,
    *,
    folder: Path,
    key: str,
    mode: str,
    size: int,
    crop: int | None,
) -> ImageCache:
    folder.mkdir(parents=True, exist_ok=True)
    shape = (1 if mode == "L" else 3, size, size)
    fd, name = tempfile.mkstemp(prefix=f".{key}.", suffix=".npy.tmp", dir=folder)
    os.close(fd)
    staged = Path(name)
    try:
        offset = _allocate(staged, (len(files), *shape))
        with open(staged, "rb+") as handle:
            num_images, bad = _decode_into(
                handle.fileno(), offset, files, mode=mode, size=size, crop=crop
            )
            check_bad_files(bad, len(files), options)
            os.fsync(handle.fileno())
        if num_images < len(files):  # rows past num_images were never written: drop them
            staged = _truncated(staged, offset, (num_images, *shape))
        final = folder / f"{key}.npy"
        os.replace(staged, final)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    info: dict[str, Any] = {"format": CACHE_FORMAT, "num_images": num_images, "shape": list(shape)}
    info["skipped"], info["errors"] = [str(path) for path, _ in bad], [str(e) for _, e in bad]
    position = {path: i for i, path in enumerate(files)}
    info["skipped_index"] = [position[path] for path, _ in bad]
    info |= {"files": len(files), "first_file": str(files[0])}
    write_json(folder / f"{key}.json", info)  # last: the cache exists from here on
    cache = _complete(folder, key)
    if cache is None:
        raise DataError(f"image cache {final} could not be read back after writing it")
    return cache


def _allocate(path: Path, shape: tuple[int, ...]) -> int:
    """Make ``path`` a uint8 .npy file of ``shape`` (zeros, sparse); return its header bytes."""
    array = np.lib.format.open_memmap(path, "w+", np.uint8, shape)
    offset = int(array.offset)
    del array  # rows are written with os.pwrite: a mapping's dirty pages would count as memory
    return offset


def _decode_into(
    fd: int, offset: int, files: Sequence[Path], *, mode: str, size: int, crop: int | None
) -> tuple[int, list[tuple[Path, DataError]]]:
    """Decode ``files`` chunk by chunk into the rows after ``offset`` bytes of ``fd``, readable
    files only; (rows written, the unreadable files with their errors)."""
    count, bad = 0, []
    with ThreadPoolExecutor(max_workers=decode_workers()) as pool:
        for start in range(0, len(files), CHUNK_IMAGES):
            chunk = files[start : start + CHUNK_IMAGES]
            decoded = pool.map(lambda path: decode_or_error(path, mode, size, crop), chunk)
            good = []
            for path, out in zip(chunk, decoded, strict=True):
                if isinstance(out, DataError):
                    bad.append((path, out))
                else:
                    good.append(out)
            if good:
                block = np.ascontiguousarray(np.stack(good))  # [B, C, S, S]
                _write(fd, block.data.cast("B"), offset + count * block[0].nbytes)
                count += len(good)
    return count, bad


def _write(fd: int, data: memoryview, position: int) -> None:
    while len(data):
        written = os.pwrite(fd, data, position)
        data, position = data[written:], position + written


def _truncated(staged: Path, offset: int, shape: tuple[int, ...]) -> Path:
    """A copy of ``staged`` holding its first ``shape[0]`` rows (``staged`` is removed)."""
    fd, name = tempfile.mkstemp(prefix=f"{staged.name}.", suffix=".npy.tmp", dir=staged.parent)
    os.close(fd)
    target = Path(name)
    try:
        new_offset = _allocate(target, shape)
        remaining, position = int(np.prod(shape)), 0
        with open(staged, "rb") as source, open(target, "rb+") as copy:
            while remaining:
                data = os.pread(
                    source.fileno(), min(remaining, READ_CHUNK_BYTES), offset + position
                )
                _write(copy.fileno(), memoryview(data), new_offset + position)
                remaining, position = remaining - len(data), position + len(data)
            os.fsync(copy.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    staged.unlink()
    return target
