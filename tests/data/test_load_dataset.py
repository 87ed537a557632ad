"""load_dataset: registry lookup, limits, validation carving, binarisation and identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import DATASETS, RawData, SourceOptions, Split, default_data_root, load_dataset
from vaekit.errors import DataError

NUM_POINTS = 40


@pytest.fixture
def numbered(monkeypatch: pytest.MonkeyPatch) -> SourceOptions:
    """A registered toy dataset whose point i has every pixel equal to i / 100 and label i."""

    def load_numbered(options: SourceOptions) -> RawData:
        x = (torch.arange(NUM_POINTS, dtype=torch.float32) / 100).reshape(-1, 1, 1, 1)
        return RawData(
            train=Split(x=x.expand(-1, 1, 2, 2).clone(), y=torch.arange(NUM_POINTS)), test=None
        )

    monkeypatch.setitem(DATASETS, "numbered", load_numbered)
    return SourceOptions(root=Path("."))


def ids(split: Split) -> list[int]:
    assert split.y is not None
    return split.y.tolist()


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(DataError, match="choose one of: arrays, celeba, digits"):
        load_dataset("mnsit", options=SourceOptions(root=Path(".")))


def test_default_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("VAEKIT_DATA")
    assert default_data_root() == Path.home() / ".cache" / "vaekit" / "data"


def test_tail_and_random_carving(numbered: SourceOptions) -> None:
    tail = load_dataset("numbered", options=numbered, val_size=8, val_from="tail")
    # Test carved first (fixed 10% = 4 points), then the last 8 of the rest are validation.
    assert ids(tail.test) == [36, 37, 38, 39] and ids(tail.val) == list(range(28, 36))
    assert ids(tail.train) == list(range(28))
    random = load_dataset("numbered", options=numbered, val_size=0.25, seed=1)
    assert len(random.test) == 4 and len(random.val) == 9 and len(random.train) == 27
    everything = ids(random.train) + ids(random.val) + ids(random.test)
    assert sorted(everything) == list(range(NUM_POINTS))
    assert ids(random.val) != list(range(27, 36))
    # Images travel with their labels.
    assert torch.allclose(random.val.x[:, 0, 0, 0], torch.tensor(ids(random.val)) / 100)
    same = load_dataset("numbered", options=numbered, val_size=0.25, seed=1)
    other = load_dataset("numbered", options=numbered, val_size=0.25, seed=2)
    assert ids(same.val) == ids(random.val) and ids(other.val) != ids(random.val)
    assert ids(other.test) == ids(random.test)  # the carved test split ignores the seed


def test_bad_sizes(numbered: SourceOptions) -> None:
    with pytest.raises(DataError, match="validation"):
        load_dataset("numbered", options=numbered, val_size=35)
    with pytest.raises(DataError, match="whole count"):
        load_dataset("numbered", options=numbered, val_size=2.5)
    with pytest.raises(DataError, match="limit"):
        load_dataset("numbered", options=numbered, limit=1)


def test_limit_keeps_first_points(numbered: SourceOptions) -> None:
    limited = load_dataset("numbered", options=numbered, limit=20, val_size=4, val_from="tail")
    assert ids(limited.train) == list(range(14)) and ids(limited.val) == list(range(14, 18))
    assert ids(limited.test) == [18, 19]  # carved from the limited points only
    digits = load_dataset("digits", options=SourceOptions(root=Path(".")), limit=50)
    assert len(digits.train) + len(digits.val) == 50 and len(digits.test) == 50


def test_static_binarisation_is_reproducible() -> None:
    options = SourceOptions(root=Path("."))
    first = load_dataset("digits", options=options, binarize="static", seed=3)
    again = load_dataset("digits", options=options, binarize="static", seed=3)
    other = load_dataset("digits", options=options, binarize="static", seed=4)
    for split in ("train", "val", "test"):
        x = getattr(first, split).x
        assert set(x.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(x, getattr(again, split).x)
    assert not torch.equal(first.train.x, other.train.x)
    assert first.identity == again.identity != other.identity


def test_dynamic_keeps_train_grey_and_fixes_evaluation() -> None:
    options = SourceOptions(root=Path("."))
    grey = load_dataset("digits", options=options, seed=3)
    dynamic = load_dataset("digits", options=options, binarize="dynamic", seed=3)
    static = load_dataset("digits", options=options, binarize="static", seed=3)
    assert torch.equal(dynamic.train.x, grey.train.x)
    assert set(dynamic.val.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(
        dynamic.val.x, load_dataset("digits", options=options, binarize="dynamic", seed=3).val.x
    )
    # Static and dynamic runs with one seed are evaluated on the same binary pixels.
    assert torch.equal(dynamic.test.x, static.test.x) and torch.equal(dynamic.val.x, static.val.x)
    assert dynamic.binarize == "dynamic" and len({grey.identity, dynamic.identity}) == 2


def test_identity_tracks_content(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.linspace(0, 1, 60, dtype=np.float32).reshape(20, 3))
    options = SourceOptions(root=tmp_path, path=path)
    first = load_dataset("arrays", options=options)
    assert (
        len(first.identity) == 16
        and first.identity == load_dataset("arrays", options=options).identity
    )
    np.save(path, np.linspace(0, 0.5, 60, dtype=np.float32).reshape(20, 3))
    assert load_dataset("arrays", options=options).identity != first.identity


def test_loader_lying_about_range_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        DATASETS,
        "liar",
        lambda options: RawData(train=Split(x=torch.full((6, 1, 2, 2), 3.0)), test=None),
    )
    with pytest.raises(DataError, match="exceed"):
        load_dataset("liar", options=SourceOptions(root=Path(".")))


def test_ppca_extras_survive() -> None:
    dataset = load_dataset("ppca", options=SourceOptions(root=Path("."), seed=1))
    assert dataset.value_range == "real" and set(dataset.extras) == {"W", "mu", "sigma"}
    assert len(dataset.train) == 4500 and len(dataset.val) == 500 and len(dataset.test) == 1000


def test_val_size_zero_trains_on_everything_and_validates_on_test(tmp_path: Path) -> None:
    full = load_dataset("digits", options=SourceOptions(root=tmp_path), val_size=0)
    split = load_dataset("digits", options=SourceOptions(root=tmp_path), val_size=0.1)
    assert len(full.train) == len(split.train) + len(split.val)
    assert torch.equal(full.val.x, full.test.x)
