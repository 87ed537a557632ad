"""Bernoulli binarisation of grey images in [0, 1]: once for the whole dataset, or per batch."""

from __future__ import annotations

import torch
from torch import Tensor

from vaekit.errors import DataError

from .base import Binarization, Split

BINARIZATIONS: tuple[Binarization, ...] = ("none", "dynamic", "static")


def binarize_batch(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """One Bernoulli draw per pixel with P(1) = x; ``generator`` must live on ``x``'s device.

    Used per batch for dynamic binarisation (a fresh draw every time a point is seen).
    """
    return torch.bernoulli(x, generator=generator)


def binarize_splits(
    train: Split, val: Split, test: Split, *, mode: Binarization, seed: int
) -> tuple[Split, Split, Split]:
    """Apply ``mode`` to three splits whose values lie in [0, 1]; labels are kept.

    "static": one seeded draw of every split. "dynamic": train stays grey (the trainer draws
    with ``binarize_batch``), validation and test get one seeded draw so evaluation is
    reproducible. The validation and test draws are the same under both modes for one seed,
    so models trained either way are scored on identical binary data.
    """
    if mode not in BINARIZATIONS:
        raise DataError(f"unknown binarisation {mode!r}; choose one of: {', '.join(BINARIZATIONS)}")
    if mode == "none":
        return train, val, test
    eval_generator = torch.Generator().manual_seed(seed)
    val = Split(x=binarize_batch(val.x, eval_generator), y=val.y)
    test = Split(x=binarize_batch(test.x, eval_generator), y=test.y)
    if mode == "static":
        # A separate stream, so the evaluation draws do not depend on the training set's size.
        train_generator = torch.Generator().manual_seed(seed + 1)
        train = Split(x=binarize_batch(train.x, train_generator), y=train.y)
    return train, val, test
