"""SVHN from a small .mat file in the published layout: X [32, 32, 3, N], labels 1..10."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from vaekit.data import SourceOptions, load_dataset
from vaekit.data.svhn import load_svhn
from vaekit.errors import DataError


def write_mat(path: Path, num_points: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (32, 32, 3, num_points), dtype=np.uint8)
    labels = (np.arange(num_points) % 10 + 1).reshape(-1, 1)  # 1..10, 10 meaning the digit 0
    scipy.io.savemat(path, {"X": images, "y": labels})
    return images


def test_svhn_layout_and_labels(tmp_path: Path) -> None:
    train = write_mat(tmp_path / "train_32x32.mat", 12, seed=0)
    write_mat(tmp_path / "test_32x32.mat", 5, seed=1)
    raw = load_svhn(SourceOptions(root=tmp_path, path=tmp_path, download=False))
    assert raw.train.x.shape == (12, 3, 32, 32) and raw.test is not None and len(raw.test) == 5
    expected = torch.from_numpy(train[:, :, :, 3]).permute(2, 0, 1).float() / 255
    assert torch.allclose(raw.train.x[3], expected)
    assert raw.train.y is not None
    assert raw.train.y.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]


def test_svhn_from_cache_root_and_missing(tmp_path: Path) -> None:
    options = SourceOptions(root=tmp_path, download=False)
    with pytest.raises(DataError, match=r"train_32x32\.mat"):
        load_svhn(options)
    (tmp_path / "svhn").mkdir()
    write_mat(tmp_path / "svhn" / "train_32x32.mat", 10, seed=0)
    write_mat(tmp_path / "svhn" / "test_32x32.mat", 4, seed=1)
    dataset = load_dataset("svhn", options=options)
    assert dataset.event_shape == (3, 32, 32) and dataset.num_classes == 10
