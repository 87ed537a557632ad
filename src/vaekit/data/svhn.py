"""SVHN cropped digits (Netzer et al. 2011): 32x32 RGB house numbers from ``*_32x32.mat``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vaekit.errors import DataError

from .base import RawData, SourceOptions, Split
from .download import download_file

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
# md5 of each file as published with the dataset (and used by torchvision).
SVHN_MD5 = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
}


def load_svhn(options: SourceOptions) -> RawData:
    """SVHN train (73,257) and test (26,032) images [N, 3, 32, 32] in [0, 1], labels 0..9.

    Reads ``train_32x32.mat`` and ``test_32x32.mat`` from ``options.path`` (a folder) or
    ``options.root/svhn``, downloading them there first when allowed.
    """
    folder = options.path if options.path is not None else options.root / "svhn"
    train_path, test_path = fetch_svhn(folder, download=options.download)
    return RawData(train=read_svhn_mat(train_path), test=read_svhn_mat(test_path))


def fetch_svhn(folder: Path, *, download: bool = True) -> list[Path]:
    """The train and test ``.mat`` files in ``folder``; missing ones are downloaded if allowed."""
    paths = []
    for name, md5 in SVHN_MD5.items():
        path = folder / name
        if not path.is_file():
            if not download:
                raise DataError(
                    f"SVHN file {path} not found; download {SVHN_URL}{name} into {folder}/ "
                    "or allow downloads"
                )
            download_file(SVHN_URL + name, path, md5=md5)
        paths.append(path)
    return paths


def read_svhn_mat(path: Path) -> Split:
    """Read one SVHN ``.mat``: X is [32, 32, 3, N] uint8 and y is [N, 1] in 1..10 (10 means 0)."""
    import scipy.io  # deferred: scipy.io is slow to import and only this loader needs it

    try:
        contents = scipy.io.loadmat(str(path))
    except (OSError, ValueError, NotImplementedError, scipy.io.matlab.MatReadError) as error:
        raise DataError(
            f"{path}: cannot read as a MATLAB file ({error}); fetch it again"
        ) from error
    if "X" not in contents or "y" not in contents:
        raise DataError(f"{path}: expected variables X and y, found {sorted(contents)}")
    images = np.asarray(contents["X"])
    labels = np.asarray(contents["y"]).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[2] != 3:
        raise DataError(
            f"{path}: expected X as uint8 [H, W, 3, N], got {images.dtype} {images.shape}"
        )
    if labels.shape[0] != images.shape[3]:
        raise DataError(
            f"{path}: {images.shape[3]} images but {labels.shape[0]} labels; fetch the file again"
        )
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)))  # [N, 3, H, W]
    y = torch.from_numpy(labels.astype(np.int64) % 10)  # the digit 0 is stored as label 10
    return Split(x=x.to(torch.float32) / 255.0, y=y)
