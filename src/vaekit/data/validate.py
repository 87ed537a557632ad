"""Checks that turn malformed arrays into one ``DataError`` saying what was wrong and what to do."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vaekit.errors import DataError

from .base import Split

ArrayLike = Tensor | np.ndarray

_REDUCIBLE_DTYPES = (
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
)

# Fewer points than this per split cannot give a validation loss or a sample variance.
MIN_POINTS = 2


def validate_images(x: object, *, source: str) -> None:
    """Check that ``x`` holds at least two finite, numeric datapoints shaped like images.

    Accepts a tensor or numpy array shaped [N, D], [N, H, W] or [N, C, H, W] with a numeric
    (bool, integer or real floating) dtype. Raises ``DataError`` naming ``source`` for anything
    else, and never raises another exception type.
    """
    if not isinstance(x, (Tensor, np.ndarray)):
        raise DataError(f"{source}: expected a tensor or numpy array, got {type(x).__name__}")
    _check_dtype(x, source)
    shape = tuple(int(s) for s in x.shape)
    if len(shape) == 0:
        raise DataError(f"{source}: got a single number; expected an array of datapoints [N, ...]")
    if len(shape) == 1 and _is_integer(x):
        raise DataError(
            f"{source}: got an array of shape {shape}; this looks like labels, not images. "
            "Pass the images (shaped [N, D], [N, H, W] or [N, C, H, W]) as x and labels as y."
        )
    if len(shape) == 1 or len(shape) > 4:
        raise DataError(
            f"{source}: got an array of shape {shape}; expected [N, D], [N, H, W] or "
            "[N, C, H, W]. Reshape the data so the first axis indexes datapoints."
        )
    num_points = shape[0]
    event_size = int(np.prod(shape[1:], dtype=np.int64))
    if num_points == 0 or event_size == 0:
        raise DataError(f"{source}: the data are empty (shape {shape}); check the file or path")
    if event_size == 1:
        raise DataError(
            f"{source}: each datapoint holds a single value (shape {shape}); this looks like "
            "labels, not images. Pass the images as x and labels as y."
        )
    if num_points < MIN_POINTS:
        raise DataError(
            f"{source}: only {num_points} datapoint(s); at least {MIN_POINTS} are needed per "
            "split. Use more data or a smaller validation size."
        )
    num_nan, num_inf = _count_nonfinite(x)
    if num_nan or num_inf:
        raise DataError(
            f"{source}: the data contain {num_nan} NaN and {num_inf} infinite value(s); "
            "remove or impute them before training."
        )


def validate_labels(y: object, num_points: int, *, source: str) -> None:
    """Check that ``y`` is a 1-D integer array of ``num_points`` non-negative class labels."""
    if not isinstance(y, (Tensor, np.ndarray)):
        raise DataError(f"{source}: labels must be a tensor or array, got {type(y).__name__}")
    if not _is_integer(y) or y.ndim != 1:
        raise DataError(
            f"{source}: labels must be 1-D integers, got dtype {y.dtype} and shape "
            f"{tuple(y.shape)}; pass class indices 0..K-1 as y."
        )
    if int(y.shape[0]) != num_points:
        raise DataError(
            f"{source}: {int(y.shape[0])} labels for {num_points} datapoints; the counts must match"
        )
    if num_points and float(_min_max(y)[0]) < 0:
        raise DataError(f"{source}: labels must be non-negative class indices 0..K-1")


def validate_split(split: Split, *, source: str) -> None:
    """Check one split as ``Dataset`` holds it: float [N, C, H, W] images or [N, D] vectors,
    and matching labels."""
    validate_images(split.x, source=source)
    if split.x.ndim not in (2, 4) or not split.x.is_floating_point():
        raise DataError(
            f"{source}: a loader must return float [N, C, H, W] images or [N, D] vectors, got "
            f"dtype {split.x.dtype} and shape {tuple(split.x.shape)}"
        )
    if split.y is not None:
        validate_labels(split.y, len(split), source=source)


def value_range_of(*arrays: ArrayLike) -> str:
    """Return "unit" if every value of every array lies in [0, 1], else "real"."""
    for x in arrays:
        if _numel(x) == 0:
            continue
        low, high = _min_max(x)
        if low < 0 or high > 1:
            return "real"
    return "unit"


def check_range_for_likelihood(x: ArrayLike, likelihood: str) -> None:
    """Raise ``DataError`` if ``x`` cannot be scored by the named likelihood.

    A Bernoulli likelihood needs every value in [0, 1] (its log-probability is a cross-entropy
    against pixel intensities); other likelihoods accept any real value.
    """
    if likelihood != "bernoulli":
        return
    _check_dtype(x, "data")
    if _numel(x) == 0:
        return
    low, high = _min_max(x)
    if low < 0 or high > 1:
        raise DataError(
            f"a bernoulli likelihood needs data in [0, 1], but the data span [{low:.4g}, "
            f"{high:.4g}]; rescale the data to [0, 1] or choose a gaussian likelihood."
        )


def _check_dtype(x: ArrayLike, source: str) -> None:
    if isinstance(x, Tensor):
        ok = (
            not x.is_complex()
            and not x.is_quantized
            and x.layout == torch.strided
            and x.device.type != "meta"
            and (x.is_floating_point() or _is_integer(x) or x.dtype == torch.bool)
        )
    else:
        ok = x.dtype.kind in "biuf" and x.dtype.itemsize <= 8
    if not ok:
        raise DataError(
            f"{source}: unsupported dtype {x.dtype}; images must be bool, integer or "
            "floating-point numbers of at most 64 bits (convert strings, objects or complex "
            "values first)."
        )


def _numel(x: ArrayLike) -> int:
    return int(x.size) if isinstance(x, np.ndarray) else x.numel()


def _reducible(x: Tensor) -> Tensor:
    # torch implements min/max/isinf only for the common dtypes; widen the rare ones
    # (uint16/32/64, float8) so every numeric tensor can be checked.
    if x.dtype in _REDUCIBLE_DTYPES:
        return x.detach()
    return x.detach().to(torch.float64)


def _is_integer(x: ArrayLike) -> bool:
    if isinstance(x, Tensor):
        return not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool
    return x.dtype.kind in "iu"


def _count_nonfinite(x: ArrayLike) -> tuple[int, int]:
    if isinstance(x, Tensor):
        if not x.is_floating_point():
            return 0, 0
        values = _reducible(x)
        return int(torch.isnan(values).sum()), int(torch.isinf(values).sum())
    if x.dtype.kind != "f":
        return 0, 0
    return int(np.isnan(x).sum()), int(np.isinf(x).sum())


def _min_max(x: ArrayLike) -> tuple[float, float]:
    if isinstance(x, Tensor):
        values = _reducible(x)
        if values.dtype == torch.bool:
            values = values.to(torch.uint8)
        return float(values.min()), float(values.max())
    values_np = x.astype(np.uint8) if x.dtype.kind == "b" else x
    return float(np.min(values_np)), float(np.max(values_np))
