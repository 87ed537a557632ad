"""User data from ``.npy``/``.npz``/``.csv`` files: images as [N, C, H, W], vectors as [N, D].

Images may come in any common layout; a 2-D array or a table is a set of feature vectors.
"""

from __future__ import annotations

import csv
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
    """Data from ``options.path``: a ``.npy`` (x only), ``.npz`` or ``.csv`` file.

    An ``.npz`` holds ``x`` and optionally ``y``, or ``x_train``/``y_train``/``x_test``/``y_test``
    (labels optional). A ``.csv`` has a header row and numeric columns; the column named by
    ``options.label_column`` (if any) holds the labels (integers 0..K-1 are kept, other values
    become indices in sorted order). x may be [N, D] (feature vectors, kept as [N, D]),
    [N, H, W], [N, H, W, C] (channels-last when the last axis has size 1, 3 or 4 and axis 1
    does not) or [N, C, H, W]. uint8 is divided by 255, other numbers become float32 unchanged.
    ``value_range`` is "unit" when every value lies in [0, 1].
    """
    if options.path is None:
        raise DataError("arrays needs a path: set the data path to a .npy, .npz or .csv file")
    path = options.path
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "not found"
        raise DataError(
            f"data file {path} is {what}; set data.path (or --data-path for a run) to a .npy, "
            ".npz or .csv file"
        )
    if options.label_column is not None and path.suffix != ".csv":
        raise DataError(
            f"data.label_column names a column of a .csv file, but {path} is not one; "
            "in an .npz file save the labels as y"
        )
    names: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    if path.suffix == ".csv":
        arrays, names, classes = read_csv(path, options.label_column)
    else:
        arrays = _read(path)
    train = _to_split(arrays, "x_train" if "x_train" in arrays else "x", path)
    test = _to_split(arrays, "x_test", path) if "x_test" in arrays else None
    value_range = value_range_of(train.x, *([test.x] if test is not None else []))
    return RawData(
        train=train,
        test=test,
        value_range=cast(Literal["unit", "real"], value_range),
        feature_names=names,
        class_names=classes,
    )


def to_event_layout(x: np.ndarray, *, source: str) -> np.ndarray:
    """Keep [N, D] vectors; rearrange [N, H, W], [N, H, W, C] or [N, C, H, W] into [N, C, H, W]."""
    validate_images(x, source=source)
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return x[:, None]
    if x.shape[3] in CHANNEL_SIZES and x.shape[1] not in CHANNEL_SIZES:
        return x.transpose(0, 3, 1, 2)
    return x


def read_csv(
    path: Path, label_column: str | None
) -> tuple[dict[str, np.ndarray], tuple[str, ...], tuple[str, ...]]:
    """``{"x": [N, D] float64}`` (and ``"y"``) from a CSV file with a header row, the names of
    the D feature columns, and the names of the classes where the labels are not 0..K-1."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error}); save the table as UTF-8 CSV") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header row and at least one row of numbers")
    header = [name.strip() for name in rows[0]]
    if label_column is not None and label_column not in header:
        raise DataError(
            f"{path}: no column named {label_column!r} for data.label_column; "
            f"the columns are {', '.join(header)}"
        )
    columns: dict[str, list[str]] = {name: [] for name in header}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path}, line {line}: {len(row)} values for {len(header)} columns; "
                "every row needs one value per header column"
            )
        for name, cell in zip(header, row, strict=True):
            columns[name].append(cell.strip())
    arrays: dict[str, np.ndarray] = {}
    classes: tuple[str, ...] = ()
    if label_column is not None:
        arrays["y"], classes = _labels(columns.pop(label_column))
    features = []
    for name, cells in columns.items():
        try:
            features.append(np.array([float(cell) for cell in cells], dtype=np.float64))
        except ValueError:
            bad = next(cell for cell in cells if not _is_number(cell))
            hint = "" if label_column else "; if it holds labels, set data.label_column"
            raise DataError(
                f"{path}: column {name!r} holds {bad!r}, which is not a number{hint}"
            ) from None
    if not features:
        raise DataError(f"{path}: no feature columns besides the label column {label_column!r}")
    arrays["x"] = np.stack(features, axis=1)
    return arrays, tuple(columns), classes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _labels(cells: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integers 0..K-1 as given (no class names); any other values become their index in
    sorted order, and the sorted values are the class names."""
    if all(cell.isdigit() for cell in cells):
        return np.array([int(cell) for cell in cells], dtype=np.int64), ()
    classes = sorted(set(cells))
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[cell] for cell in cells], dtype=np.int64), tuple(classes)


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npy":
            return {"x": np.load(path, allow_pickle=False)}
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        else:
            raise DataError(f"{path}: expected a .npy, .npz or .csv file")
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
    images = to_event_layout(arrays[key], source=source)
    if images.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32) / 255.0
    else:
        try:
            with np.errstate(over="raise"):
                x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        except FloatingPointError:
            raise DataError(
                f"{source}: values beyond float32's range (about ±3.4e38); rescale the data"
            ) from None
    label_key = key.replace("x", "y", 1)
    if label_key not in arrays:
        return Split(x=x)
    labels = arrays[label_key]
    validate_labels(labels, x.shape[0], source=f"{path}[{label_key}]")
    return Split(x=x, y=torch.from_numpy(labels.astype(np.int64)))
