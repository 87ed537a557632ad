"""Carving held-out splits from a training split: by a seeded permutation or from the tail."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from vaekit.errors import DataError

from .base import Split
from .validate import MIN_POINTS

CarveFrom = Literal["random", "tail"]


def subset(split: Split, index: Tensor) -> Split:
    """The points of ``split`` at ``index`` (a 1-D integer tensor or a slice-equivalent)."""
    return Split(x=split.x[index], y=None if split.y is None else split.y[index])


def take_first(split: Split, count: int) -> Split:
    """The first ``count`` points of ``split`` (all of them if it has fewer)."""
    if count >= len(split):
        return split
    return Split(x=split.x[:count], y=None if split.y is None else split.y[:count])


def held_out_count(size: float, num_points: int, *, what: str) -> int:
    """How many of ``num_points`` to hold out: ``size`` < 1 is a fraction, >= 1 a count.

    A fraction holds out at least ``MIN_POINTS`` so tiny datasets still get a usable split.
    Raises ``DataError`` unless both the held-out part and the rest keep ``MIN_POINTS``.
    """
    if size <= 0:
        raise DataError(f"{what} size must be positive (a fraction below 1 or a count), not {size}")
    if size < 1:
        count = max(MIN_POINTS, round(size * num_points))
    elif float(size).is_integer():
        count = int(size)
    else:
        raise DataError(f"{what} size {size} is neither a fraction below 1 nor a whole count")
    if count < MIN_POINTS or num_points - count < MIN_POINTS:
        raise DataError(
            f"a {what} split of {count} out of {num_points} points leaves fewer than "
            f"{MIN_POINTS} on one side; use more data or change the {what} size"
        )
    return count


def carve(
    split: Split, count: int, *, carve_from: CarveFrom, generator: torch.Generator
) -> tuple[Split, Split]:
    """Split off ``count`` points; return (rest, held_out), both in their original order.

    "tail" holds out the last ``count`` points (the IWAE paper's MNIST validation set is the
    last 10k training images); "random" holds out a ``generator``-seeded random subset.
    """
    num_points = len(split)
    if carve_from == "tail":
        return take_first(split, num_points - count), subset(
            split, torch.arange(num_points - count, num_points)
        )
    if carve_from != "random":
        raise DataError(f"unknown split method {carve_from!r}; choose 'random' or 'tail'")
    order = torch.randperm(num_points, generator=generator)
    held_out = order[:count].sort().values
    rest = order[count:].sort().values
    return subset(split, rest), subset(split, held_out)
