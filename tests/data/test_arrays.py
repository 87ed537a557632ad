"""User arrays in every accepted layout become [N, C, H, W] images or [N, D] vectors of floats
with the right value range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import SourceOptions, load_dataset
from vaekit.data.arrays import load_arrays
from vaekit.errors import DataError

RNG = np.random.default_rng(0)


def options_for(path: Path) -> SourceOptions:
    return SourceOptions(root=path.parent, path=path)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((10, 16), (10, 16)),  # [N, D] vectors stay vectors, whatever D
        ((10, 6), (10, 6)),
        ((10, 5, 7), (10, 1, 5, 7)),  # [N, H, W]
        ((10, 5, 7, 3), (10, 3, 5, 7)),  # [N, H, W, C] channels-last
        ((10, 5, 7, 1), (10, 1, 5, 7)),
        ((10, 3, 5, 7), (10, 3, 5, 7)),  # [N, C, H, W] kept
        ((10, 3, 4, 3), (10, 3, 4, 3)),  # ambiguous: axis 1 looks like channels, kept
    ],
)
def test_layouts(tmp_path: Path, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    x = RNG.random(shape).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    raw = load_arrays(options_for(path))
    assert tuple(raw.train.x.shape) == expected and raw.test is None
    assert raw.value_range == "unit"
    # The values are those of the file, only rearranged.
    assert torch.equal(raw.train.x.flatten().sort().values, torch.from_numpy(np.sort(x.ravel())))


def test_uint8_is_scaled_and_labels_kept(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    y = np.arange(8) % 3
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    raw = load_arrays(options_for(path))
    assert raw.train.x.shape == (8, 3, 6, 6)
    assert torch.allclose(raw.train.x, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
    assert raw.train.y is not None and raw.train.y.tolist() == y.tolist()


def test_train_test_keys_and_real_range(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x_train=RNG.normal(size=(9, 4)) * 3, x_test=RNG.normal(size=(5, 4)))
    raw = load_arrays(options_for(path))
    assert raw.value_range == "real" and raw.test is not None and len(raw.test) == 5
    assert raw.train.x.dtype == torch.float32 and raw.train.y is None
    with pytest.raises(DataError, match="needs data in \\[0, 1\\]"):
        load_dataset("arrays", options=options_for(path), binarize="static")


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        ({"images": np.zeros((4, 4))}, "expected keys"),
        ({"x": np.arange(10)}, "labels"),
        ({"x": np.zeros((4, 4)), "y": np.zeros(3, dtype=np.int64)}, "3 labels for 4"),
        ({"x": np.full((4, 4), np.nan)}, "16 NaN"),
        ({"x": np.full((4, 4), 1e300)}, "beyond float32's range"),
    ],
)
def test_bad_files_raise_data_error(tmp_path: Path, arrays: dict, fragment: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=fragment):
        load_arrays(options_for(path))


def test_object_arrays_are_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="cannot read"):
        load_arrays(options_for(path))
