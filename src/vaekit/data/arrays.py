"""User arrays from ``.npy``/``.npz`` files, in any common image layout, as [N, C, H, W] floats."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch

from vaekit.errors import DataError

from .base import RawData, SourceOptions, Split
from .validate import validate_images, validate_labels, value_range_of

# A trailing axis of this size, after a leading one that is not, is read as channels-last.
CHANNEL_SIZES = (1, 3, 4)
NPZ_LAYOUTS = (("x", "y"), ("x_train", "y_train", "x_test", "y_test"))


def load_arrays(options: SourceOptions) -> RawData:
    """Data from ``options.path``: a ``.npy`` (images only) or ``.npz`` file.

    An ``.npz`` holds ``x`` and optionally ``y``, or ``x_train``/``y_train``/``x_test``/``y_test``
    (labels optional). Images may be [N, D] (D a perfect square becomes [N, 1, √D, √D], any
    other D [N, 1, 1, D]), [N, H, W], [N, H, W, C] (channels-last when the last axis has size
    1, 3 or 4 and axis 1 does not) or [N, C, H, W]. uint8 is divided by 255, other numbers
    become float32 unchanged. ``value_range`` is "unit" when every value lies in [0, 1].
    """
    if options.path is None:
        raise DataError("arrays needs a path: set the data path to a .npy or .npz file")
    path = options.path
    arrays = _read(path)
    train = _to_split(arrays, "x_train" if "x_train" in arrays else "x", path)
    test = _to_split(arrays, "x_test", path) if "x_test" in arrays else None
    value_range = value_range_of(train.x, *([test.x] if test is not None else []))
    return RawData(train=train, test=test, value_range=cast(Literal["unit", "real"], value_range))


def to_nchw(x: np.ndarray, *, source: str) -> np.ndarray:
    """Rearrange [N, D], [N, H, W], [N, H, W, C] or [N, C, H, W] into [N, C, H, W]."""
    validate_images(x, source=source)
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side == x.shape[1]:
            return x.reshape(x.shape[0], 1, side, side)
        return x.reshape(x.shape[0], 1, 1, x.shape[1])
    if x.ndim == 3:
        return x[:, None]
    if x.shape[3] in CHANNEL_SIZES and x.shape[1] not in CHANNEL_SIZES:
        return x.transpose(0, 3, 1, 2)
    return x


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npy":
            return {"x": np.load(path, allow_pickle=False)}
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        else:
            raise DataError(f"{path}: expected a .npy or .npz file")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        # allow_pickle=False turns object arrays into a ValueError: refuse, never unpickle.
        raise DataError(f"{path}: cannot read ({error}); save plain numeric arrays") from error
    for layout in NPZ_LAYOUTS:
        if layout[0] in arrays and set(arrays) <= set(layout):
            return arrays
    raise DataError(
        f"{path}: found arrays {sorted(arrays)}; expected keys x (and y), or x_train, y_train, "
        "x_test, y_test (labels optional). Save them with np.savez(path, x=..., y=...)."
    )


def _to_split(arrays: dict[str, np.ndarray], key: str, path: Path) -> Split:
    source = f"{path}[{key}]"
    images = to_nchw(arrays[key], source=source)
    if images.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32) / 255.0
    else:
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    label_key = key.replace("x", "y", 1)
    if label_key not in arrays:
        return Split(x=x)
    labels = arrays[label_key]
    validate_labels(labels, x.shape[0], source=f"{path}[{label_key}]")
    return Split(x=x, y=torch.from_numpy(labels.astype(np.int64)))
