"""Tables and feature vectors: CSV reading with a label column, [N, D] kept as vectors, and
standardisation whose statistics come from the training split only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import SourceOptions, Standardization, load_dataset
from vaekit.data.arrays import load_arrays
from vaekit.errors import CheckpointError, DataError


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join(",".join(str(v) for v in row) for row in [header, *rows]) + "\n")
    return path


def wine_like(path: Path, n: int = 150, seed: int = 0) -> Path:
    """A CSV like the wine table: three classes named by strings, 13 features whose scales
    range from 0.1 to 1000."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    scales = np.logspace(-1, 3, 13)
    centres = rng.normal(size=(3, 13))
    x = (centres[labels] + 0.5 * rng.normal(size=(n, 13))) * scales + 10 * scales
    header = [f"f{i}" for i in range(13)] + ["kind"]
    rows = [
        [*(repr(float(v)) for v in row), ["red", "white", "rose"][k]]
        for row, k in zip(x, labels, strict=True)
    ]
    return write_csv(path, header, rows)


def test_csv_with_a_string_label_column(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv", ["a", "label", "b"], [[1.5, "cat", 2], [-3, "dog", 4e2], [0, "cat", 1]]
    )
    raw = load_arrays(SourceOptions(root=tmp_path, path=path, label_column="label"))
    assert raw.train.x.dtype == torch.float32 and raw.train.x.shape == (3, 2)
    assert raw.train.x.tolist() == [[1.5, 2.0], [-3.0, 400.0], [0.0, 1.0]]
    assert raw.train.y is not None and raw.train.y.tolist() == [0, 1, 0]  # sorted class names
    assert raw.value_range == "real" and raw.feature_names == ("a", "b")


def test_csv_integer_labels_are_kept(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["y", "a", "b"], [[2, 0.1, 0.2], [0, 0.3, 0.4]])
    raw = load_arrays(SourceOptions(root=tmp_path, path=path, label_column="y"))
    assert raw.train.y is not None and raw.train.y.tolist() == [2, 0]
    assert raw.value_range == "unit"


@pytest.mark.parametrize(
    ("header", "rows", "label", "message"),
    [
        (["a", "b"], [[1, "x"], [2, "y"]], None, r"column 'b' holds 'x'.*data\.label_column"),
        (["a", "b"], [[1, 2], [3]], None, r"line 3: 1 values for 2 columns"),
        (["a", "b"], [[1, 2]], "c", r"no column named 'c'.*the columns are a, b"),
        (["a"], [[1], [2]], "a", r"no feature columns"),
        (["a", "b"], [], None, r"a header row and at least one row"),
    ],
)
def test_bad_csv_files_say_what_to_fix(
    tmp_path: Path, header: list[str], rows: list[list[object]], label: str | None, message: str
) -> None:
    path = write_csv(tmp_path / "t.csv", header, rows)
    with pytest.raises(DataError, match=message):
        load_arrays(SourceOptions(root=tmp_path, path=path, label_column=label))


def test_label_column_needs_a_csv(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3)))
    with pytest.raises(DataError, match=r"in an \.npz file save the labels as y"):
        load_arrays(SourceOptions(root=tmp_path, path=tmp_path / "d.npz", label_column="y"))


def test_standardisation_uses_the_training_split_only(tmp_path: Path) -> None:
    path = wine_like(tmp_path / "wine.csv")
    options = SourceOptions(root=tmp_path, path=path, label_column="kind")
    plain = load_dataset("arrays", options=options, seed=3)
    scaled = load_dataset("arrays", options=options, seed=3, standardize=True)
    assert plain.event_shape == (13,) and not plain.is_images and plain.standardization is None
    stats = scaled.standardization
    assert stats is not None and scaled.value_range == "real"
    train = plain.train.x.double()
    torch.testing.assert_close(stats.mean, train.mean(0).float())
    torch.testing.assert_close(stats.std, train.std(0, correction=0).float())
    for split in ("train", "val", "test"):
        before, after = getattr(plain, split), getattr(scaled, split)
        torch.testing.assert_close(after.x, (before.x - stats.mean) / stats.std)
        torch.testing.assert_close(stats.invert(after.x), before.x, rtol=1e-5, atol=1e-3)
        assert torch.equal(after.y, before.y)
    assert abs(float(scaled.train.x.mean())) < 1e-5  # train is centred; held-out splits are not
    assert scaled.identity != plain.identity


def test_standardisation_keeps_val_as_the_test_split_without_validation(tmp_path: Path) -> None:
    path = wine_like(tmp_path / "wine.csv")
    options = SourceOptions(root=tmp_path, path=path, label_column="kind")
    data = load_dataset("arrays", options=options, val_size=0, standardize=True)
    assert data.val is data.test


def test_constant_features_are_centred_not_divided_by_zero() -> None:
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    stats = Standardization.fit(x)
    assert stats.std.tolist() == [1.0, 1.0]
    assert stats.apply(x).tolist() == [[-1.0, 0.0], [1.0, 0.0]]


def test_standardisation_round_trips_through_json() -> None:
    stats = Standardization.fit(torch.randn(50, 4, generator=torch.Generator().manual_seed(0)))
    again = Standardization.from_json(json.loads(json.dumps(stats.to_json())))
    assert torch.equal(again.mean, stats.mean) and torch.equal(again.std, stats.std)
    with pytest.raises(CheckpointError, match="malformed"):
        Standardization.from_json({"shape": [4], "mean": [0.0]})
    with pytest.raises(CheckpointError, match="non-positive"):
        Standardization.from_json({"shape": [1], "mean": [0.0], "std": [0.0]})


def test_standardised_data_cannot_be_binarised(tmp_path: Path) -> None:
    path = wine_like(tmp_path / "wine.csv")
    options = SourceOptions(root=tmp_path, path=path, label_column="kind")
    with pytest.raises(DataError, match="cannot be binarised"):
        load_dataset("arrays", options=options, standardize=True, binarize="dynamic")
