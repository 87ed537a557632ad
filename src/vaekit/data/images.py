"""Image folders (any Pillow format) and CelebA: listed, centre-cropped, resized and decoded.

An image folder whose readable images all sit in first-level subfolders, two or more of them,
is a folder of class folders (torchvision's ImageFolder layout): each image is labelled with
the index of its subfolder's name in sorted order (``cat/``, ``dog/`` -> 0, 1). Any other
layout is unlabelled.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaekit.errors import DataError

from .base import RawData, SourceOptions, Split

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
DEFAULT_IMAGE_SIZE = 64
# Aligned CelebA images are 178x218; a central 140x140 crop keeps the face and drops the
# background, then a resize to 64x64 (the common DCGAN CelebA preprocessing).
CELEBA_CROP = 140
CELEBA_PARTITION_FILE = "list_eval_partition.txt"


@dataclass(frozen=True)
class ImageFiles:
    """The image files of a source before decoding: the training files, the test files (None:
    ``load_dataset`` carves a test split), the central crop applied before resizing, and the
    folder whose subfolders may be classes (None: unlabelled)."""

    train: list[Path]
    test: list[Path] | None
    crop: int | None = None
    class_root: Path | None = None

    def labels_of_kept(self, skipped: Sequence[str]) -> tuple[torch.Tensor | None, tuple[str, ...]]:
        """The class labels of the training files that were read (all but ``skipped``), int64
        [N], and the class names; (None, ()) where they are not a folder of class folders."""
        if self.class_root is None:
            return None, ()
        left_out = set(skipped)
        kept = [path for path in self.train if str(path) not in left_out]
        found = class_folder_labels(self.class_root, kept)
        if found is None:
            return None, ()
        labels, classes = found
        return torch.tensor(labels, dtype=torch.int64), classes


def class_folder_labels(
    folder: Path, files: Sequence[Path]
) -> tuple[list[int], tuple[str, ...]] | None:
    """Each file's class, the index of its first-level subfolder of ``folder`` among the sorted
    subfolder names, and those names, when every file lies in one and there are two or more;
    else None."""
    parts = [path.relative_to(folder).parts for path in files]
    if any(len(p) < 2 for p in parts):
        return None
    classes = sorted({p[0] for p in parts}, key=_class_order)
    if len(classes) < 2:
        return None
    index = {name: i for i, name in enumerate(classes)}
    return [index[p[0]] for p in parts], tuple(classes)


def image_folder_files(options: SourceOptions) -> ImageFiles:
    """The files ``load_image_folder`` reads: every image under ``options.path``, sorted, with
    their labels in a folder of class folders."""
    if options.path is None:
        raise DataError("image-folder needs a path: set the data path to a folder of images")
    return ImageFiles(train=list_images(options.path), test=None, class_root=options.path)


def celeba_files(options: SourceOptions) -> ImageFiles:
    """The files ``load_celeba`` reads, split by the official partition when it is present."""
    folder = (
        options.path if options.path is not None else options.root / "celeba" / "img_align_celeba"
    )
    if not folder.is_dir():
        raise DataError(
            f"CelebA folder {folder} not found; download img_align_celeba.zip from "
            "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and unzip it there "
            "(with list_eval_partition.txt next to the folder), or set the data path"
        )
    files = list_images(folder)
    partition_file = folder.parent / CELEBA_PARTITION_FILE
    partition = _read_partition(partition_file) if partition_file.is_file() else {}
    test_files = [path for path in files if partition.get(path.name) == 2]
    train_files = [path for path in files if partition.get(path.name) in (0, 1)]
    if not test_files or not train_files:  # no usable official split: carve one later
        return ImageFiles(train=files, test=None, crop=CELEBA_CROP)
    return ImageFiles(train=train_files, test=test_files, crop=CELEBA_CROP)


def load_image_folder(options: SourceOptions) -> RawData:
    """Every image under ``options.path`` (recursively, sorted by path), labelled by class
    folder where the folder is a folder of class folders (see the module's docstring).

    Each image is centre-cropped to a square, resized to ``options.image_size`` (default 64),
    and converted to grey when ``options.channels == 1``, else RGB. There is no test split;
    ``load_dataset`` carves one.
    """
    return _load(image_folder_files(options), options)


def load_celeba(options: SourceOptions) -> RawData:
    """Aligned CelebA faces (Liu et al. 2015), centre crop 140 then resize to 64x64 RGB.

    Reads ``options.path`` or ``options.root/celeba/img_align_celeba``. When the official
    ``list_eval_partition.txt`` sits next to that folder, its test partition becomes the test
    split (train and valid partitions form train); otherwise ``load_dataset`` carves a test split.
    CelebA cannot be downloaded automatically (it is hosted on Google Drive).
    """
    return _load(celeba_files(options), options)


# The sources whose files ``load_dataset`` can stream from an on-disk cache (image_cache.py).
IMAGE_SOURCES: dict[str, Callable[[SourceOptions], ImageFiles]] = {
    "image-folder": image_folder_files,
    "celeba": celeba_files,
}


def _load(files: ImageFiles, options: SourceOptions) -> RawData:
    train, skipped = read_images(files.train, options, crop=files.crop)
    labels, classes = files.labels_of_kept(skipped)
    train_split = Split(x=train, y=labels)
    if files.test is None:
        return RawData(train=train_split, test=None, skipped=skipped, class_names=classes)
    test, skipped_test = read_images(files.test, options, crop=files.crop)
    return RawData(
        train=train_split,
        test=Split(x=test),
        skipped=skipped + skipped_test,
        class_names=classes,
    )


def _class_order(name: str) -> tuple[int, str]:
    """Folders named by numbers go by value (2 before 10), before any other name."""
    return (int(name), name) if name.isascii() and name.isdigit() else (sys.maxsize, name)


def list_images(folder: Path) -> list[Path]:
    """All image files under ``folder``, recursively (through linked folders too, each folder
    once), in sorted order, leaving out hidden files and folders (names starting with ".",
    such as .ipynb_checkpoints); ``DataError`` if none."""
    if not folder.is_dir():
        what = "a file, not a folder" if folder.exists() else "not found"
        raise DataError(f"image folder {folder} is {what}; check the data path")
    found, seen = [], set()
    for top, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back to a folder already listed
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [
            Path(top) / name
            for name in names
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        ]
    files = sorted(path for path in found if path.is_file())
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise DataError(f"no images ({suffixes}) found under {folder}")
    return files


def read_images(
    files: list[Path], options: SourceOptions, *, crop: int | None
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Decode ``files`` into float images [N, C, S, S] in [0, 1], and the files left out.

    ``crop`` is the side of the central square cut first (None: the largest square); the crop
    is then resized to ``options.image_size`` (default 64) with bilinear, antialiased filtering.
    An unreadable file refuses the whole folder with a DataError naming the first bad files,
    unless ``options.skip_bad_files``: then it is left out and named in the second value.
    """
    mode, size = decode_settings(options)
    if not files:
        raise DataError("no image files to read")

    # Pillow releases the GIL while decoding, so threads give a near-linear speed-up.
    with ThreadPoolExecutor(max_workers=decode_workers()) as pool:
        decoded = list(pool.map(lambda path: decode_or_error(path, mode, size, crop), files))
    bad = [
        (path, out) for path, out in zip(files, decoded, strict=True) if isinstance(out, DataError)
    ]
    check_bad_files(bad, len(files), options)
    images = [out for out in decoded if not isinstance(out, DataError)]
    pixels = np.ascontiguousarray(np.stack(images))  # [N, C, S, S] uint8
    x = torch.from_numpy(pixels)
    return x.to(torch.float32) / 255.0, tuple(str(path) for path, _ in bad)


def decode_settings(options: SourceOptions) -> tuple[str, int]:
    """(Pillow mode, side in pixels) of the decoded images; ``DataError`` for invalid options."""
    size = options.image_size if options.image_size is not None else DEFAULT_IMAGE_SIZE
    if options.channels not in (None, 1, 3):
        raise DataError(f"images can have 1 (grey) or 3 (RGB) channels, not {options.channels}")
    if size < 1:
        raise DataError(f"image_size must be a positive number of pixels, not {size}")
    return ("L" if options.channels == 1 else "RGB"), size


def decode_workers() -> int:
    """Decoding threads: one per core, at most 16."""
    return min(16, os.cpu_count() or 1)


def decode_or_error(path: Path, mode: str, size: int, crop: int | None) -> np.ndarray | DataError:
    """One image as uint8 [C, S, S] (see ``read_images``), or the ``DataError`` saying why not."""
    try:
        pixels = _decode(path, mode=mode, size=size, crop=crop)  # [S, S] or [S, S, 3]
    except DataError as error:
        return error
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def check_bad_files(
    bad: Sequence[tuple[Path, DataError]], num_files: int, options: SourceOptions
) -> None:
    """Refuse unreadable files (``bad``: each with its error) unless ``options.skip_bad_files``;
    refuse a folder with no readable file at all."""
    if bad and not options.skip_bad_files:
        names = ", ".join(str(path) for path, _ in bad[:3])
        raise DataError(
            f"{len(bad)} of {num_files} image files cannot be read ({names}"
            f"{', ...' if len(bad) > 3 else ''}; first: {bad[0][1]}); remove or replace them, "
            "or set data.skip_bad_files = true to train without them"
        )
    if len(bad) == num_files:
        raise DataError(f"none of the {num_files} image files can be read ({bad[0][1]})")


def _decode(path: Path, *, mode: str, size: int, crop: int | None) -> np.ndarray:
    try:
        with Image.open(path) as opened:
            image = opened.convert(mode)
        width, height = image.size
        side = min(width, height) if crop is None else min(crop, width, height)
        left, top = (width - side) // 2, (height - side) // 2
        square = image.crop((left, top, left + side, top + side))
        resized = square.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(resized, dtype=np.uint8)
    except Exception as error:  # Pillow: OSError, SyntaxError (broken PNG), bomb errors, ...
        raise DataError(f"{path}: cannot read as an image ({error})") from error


def _read_partition(path: Path) -> dict[str, int]:
    # Lines read "000001.jpg 0" with 0 = train, 1 = valid, 2 = test.
    partition = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit():
            partition[fields[0]] = int(fields[1])
    return partition
