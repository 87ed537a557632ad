"""Samples (or any datapoints) written out as numbers: ``.npy`` keeps the shape, ``.csv`` has one
row per datapoint with a header (the feature names where known, else ``feature_0`` ... for
vectors, ``c0_y0_x0`` ... for images)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from vaekit.files import atomic_write


def write_npy(path: str | Path, x: Tensor) -> Path:
    """x [N, *event_shape] as a float32 ``.npy`` file (read it with ``np.load``)."""
    values = x.detach().cpu().float().numpy()

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.save(handle, values)

    return atomic_write(Path(path), write)


def write_csv(path: str | Path, x: Tensor, *, names: Sequence[str] = ()) -> Path:
    """x [N, *event_shape] as CSV: a header (``names`` where given), then one row of
    ``repr``-exact floats per point."""
    values = x.detach().cpu().float().flatten(1).numpy()
    shape = tuple(x.shape[1:])
    header = list(names) or [column_name(i, shape) for i in range(values.shape[1])]
    if len(header) != values.shape[1]:
        raise ValueError(f"{len(header)} column names for {values.shape[1]} values per row")

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows([[repr(float(v)) for v in row] for row in values])

    return atomic_write(Path(path), write)


def column_name(index: int, event_shape: tuple[int, ...]) -> str:
    """``feature_<i>`` for vectors; ``c<k>_y<i>_x<j>`` for the pixel of an image [C, H, W]."""
    if len(event_shape) != 3:
        return f"feature_{index}"
    c, y, x = np.unravel_index(index, event_shape)
    return f"c{c}_y{y}_x{x}"
