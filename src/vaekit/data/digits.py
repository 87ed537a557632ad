"""The 8x8 handwritten digits bundled with scikit-learn: a dataset that needs no download."""

from __future__ import annotations

import numpy as np
import torch

from .base import RawData, SourceOptions, Split

DIGITS_MAX_VALUE = 16.0  # pixels are counts of set bits in 4x4 blocks of a 32x32 bitmap
DIGITS_TEST_FRACTION = 0.2
# Fixed, not options.seed: every run must evaluate on the same held-out digits.
DIGITS_SPLIT_SEED = 0


def load_digits(options: SourceOptions) -> RawData:
    """1,797 digits [N, 1, 8, 8] in [0, 1] with labels 0..9; a fixed 20% are the test split.

    scikit-learn ships no test split, so a permutation with a fixed seed (independent of
    ``options``) puts its last 20% into test; train and test are the same in every run.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits  # deferred: slow import

    bunch = sklearn_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / DIGITS_MAX_VALUE  # [N, 8, 8]
    x = torch.from_numpy(images).unsqueeze(1)  # [N, 1, 8, 8]
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    generator = torch.Generator().manual_seed(DIGITS_SPLIT_SEED)
    order = torch.randperm(len(y), generator=generator)
    num_test = round(DIGITS_TEST_FRACTION * len(y))
    train_idx, test_idx = order[:-num_test].sort().values, order[-num_test:].sort().values
    return RawData(
        train=Split(x=x[train_idx], y=y[train_idx]), test=Split(x=x[test_idx], y=y[test_idx])
    )
