"""The bundled 8x8 digits: shapes, range, labels and a stable test split."""

from __future__ import annotations

from pathlib import Path

import torch

from vaekit.data import SourceOptions
from vaekit.data.digits import load_digits


def test_digits_shapes_range_labels() -> None:
    raw = load_digits(SourceOptions(root=Path(".")))
    assert raw.test is not None and raw.train.y is not None and raw.test.y is not None
    assert raw.train.x.shape[1:] == (1, 8, 8) and raw.test.x.shape[1:] == (1, 8, 8)
    assert len(raw.train) + len(raw.test) == 1797 and len(raw.test) == 359
    assert raw.train.x.dtype == torch.float32
    assert raw.train.x.min() == 0 and raw.train.x.max() == 1  # 16 -> 1
    assert set(raw.train.y.tolist()) == set(range(10)) == set(raw.test.y.tolist())


def test_digits_test_split_does_not_depend_on_seed() -> None:
    first = load_digits(SourceOptions(root=Path("."), seed=0))
    second = load_digits(SourceOptions(root=Path("."), seed=7))
    assert first.test is not None and second.test is not None
    assert torch.equal(first.test.x, second.test.x)
