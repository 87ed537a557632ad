"""Image folders (any Pillow format) and CelebA: centre-cropped, resized and held in memory."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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


def load_image_folder(options: SourceOptions) -> RawData:
    """Every image under ``options.path`` (recursively, sorted by path), unlabelled.

    Each image is centre-cropped to a square, resized to ``options.image_size`` (default 64),
    and converted to grey when ``options.channels == 1``, else RGB. There is no test split;
    ``load_dataset`` carves one.
    """
    if options.path is None:
        raise DataError("image-folder needs a path: set the data path to a folder of images")
    files = list_images(options.path)
    x, skipped = read_images(files, options, crop=None)
    return RawData(train=Split(x=x), test=None, skipped=skipped)


def load_celeba(options: SourceOptions) -> RawData:
    """Aligned CelebA faces (Liu et al. 2015), centre crop 140 then resize to 64x64 RGB.

    Reads ``options.path`` or ``options.root/celeba/img_align_celeba``. When the official
    ``list_eval_partition.txt`` sits next to that folder, its test partition becomes the test
    split (train and valid partitions form train); otherwise ``load_dataset`` carves a test split.
    CelebA cannot be downloaded automatically (it is hosted on Google Drive).
    """
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
        x, skipped = read_images(files, options, crop=CELEBA_CROP)
        return RawData(train=Split(x=x), test=None, skipped=skipped)
    train, skipped_train = read_images(train_files, options, crop=CELEBA_CROP)
    test, skipped_test = read_images(test_files, options, crop=CELEBA_CROP)
    return RawData(train=Split(x=train), test=Split(x=test), skipped=skipped_train + skipped_test)


def list_images(folder: Path) -> list[Path]:
    """All image files under ``folder``, recursively, in sorted order; ``DataError`` if none."""
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist; check the data path")
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )
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
    size = options.image_size if options.image_size is not None else DEFAULT_IMAGE_SIZE
    if options.channels not in (None, 1, 3):
        raise DataError(f"images can have 1 (grey) or 3 (RGB) channels, not {options.channels}")
    mode = "L" if options.channels == 1 else "RGB"
    if not files:
        raise DataError("no image files to read")
    if size < 1:
        raise DataError(f"image_size must be a positive number of pixels, not {size}")

    def decode(path: Path) -> np.ndarray | DataError:
        try:
            return _decode(path, mode=mode, size=size, crop=crop)
        except DataError as error:
            return error

    # Pillow releases the GIL while decoding, so threads give a near-linear speed-up.
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(decode, files))
    bad = [
        (path, out) for path, out in zip(files, decoded, strict=True) if isinstance(out, DataError)
    ]
    if bad and not options.skip_bad_files:
        names = ", ".join(str(path) for path, _ in bad[:3])
        raise DataError(
            f"{len(bad)} of {len(files)} image files cannot be read ({names}"
            f"{', ...' if len(bad) > 3 else ''}; first: {bad[0][1]}); remove or replace them, "
            "or set data.skip_bad_files = true to train without them"
        )
    images = [out for out in decoded if not isinstance(out, DataError)]
    if not images:
        raise DataError(f"none of the {len(files)} image files can be read ({bad[0][1]})")
    pixels = np.stack(images)  # [N, S, S] or [N, S, S, 3] uint8
    if pixels.ndim == 3:
        pixels = pixels[..., None]
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))  # [N, C, S, S]
    return x.to(torch.float32) / 255.0, tuple(str(path) for path, _ in bad)


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
