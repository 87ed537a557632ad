"""The validator reports every malformed input as a DataError and accepts well-formed images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vaekit.data import check_range_for_likelihood, validate_images
from vaekit.data.validate import validate_labels
from vaekit.errors import DataError


def test_accepts_float_images() -> None:
    validate_images(torch.rand(5, 1, 4, 4), source="t")
    validate_images(np.zeros((3, 8), dtype=np.uint8), source="t")


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (np.arange(10), "labels"),
        (np.zeros((10, 1), dtype=np.int64), "labels"),
        (torch.zeros(10, 1, 1, 1), "single value"),
        (np.zeros((0, 4)), "empty"),
        (np.zeros((1, 4)), "at least 2"),
        (np.array(["a", "b"]), "dtype"),
        (np.zeros((2, 2), dtype=complex), "dtype"),
        (np.zeros((2, 2, 2, 2, 2)), "expected"),
        ([[0.0, 1.0]], "tensor or numpy"),
    ],
)
def test_rejects_malformed(x: object, fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        validate_images(x, source="t")


def test_counts_nonfinite_values() -> None:
    x = torch.rand(4, 1, 3, 3)
    x[0, 0, 0, 0] = float("nan")
    x[1, 0, 0, 0] = float("inf")
    x[2, 0, 0, 0] = float("-inf")
    with pytest.raises(DataError, match="1 NaN and 2 infinite"):
        validate_images(x, source="t")


def test_labels_must_match_and_be_integers() -> None:
    validate_labels(np.array([0, 1, 2]), 3, source="t")
    with pytest.raises(DataError, match="3 labels for 4"):
        validate_labels(np.array([0, 1, 2]), 4, source="t")
    with pytest.raises(DataError, match="1-D integers"):
        validate_labels(np.array([0.5, 1.0]), 2, source="t")


def test_bernoulli_needs_unit_range() -> None:
    check_range_for_likelihood(torch.rand(3, 4), "bernoulli")
    check_range_for_likelihood(torch.randn(3, 4) * 10, "gaussian")
    with pytest.raises(DataError, match="rescale the data to \\[0, 1\\] or choose a gaussian"):
        check_range_for_likelihood(torch.tensor([[0.0, 2.0]]), "bernoulli")


_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.datetime64_dtypes(),
    hnp.unicode_string_dtypes(),
    hnp.byte_string_dtypes(),
)
_ARRAYS = hnp.arrays(dtype=_DTYPES, shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0))


@settings(max_examples=300, deadline=None)
@given(x=_ARRAYS, as_tensor=st.booleans())
def test_validator_raises_only_data_error(x: np.ndarray, as_tensor: bool) -> None:
    candidate: object = x
    if as_tensor:
        try:
            candidate = torch.from_numpy(x.copy())
        except (TypeError, ValueError):  # dtypes torch cannot hold stay numpy arrays
            candidate = x
    try:
        validate_images(candidate, source="fuzz")
        check_range_for_likelihood(candidate, "bernoulli")  # type: ignore[arg-type]
    except DataError:
        return
    # Accepted inputs really are finite numeric [N, ...] arrays with N >= 2.
    assert x.dtype.kind in "biuf" and 2 <= x.ndim <= 4 and x.shape[0] >= 2
    if x.dtype.kind == "f":
        assert np.isfinite(x).all()
    if x.dtype.kind in "biuf" and x.size:
        assert x.min() >= 0 and x.max() <= 1


@settings(max_examples=50, deadline=None)
@given(
    dtype=st.sampled_from([torch.uint16, torch.uint32, torch.bfloat16, torch.float16, torch.int8]),
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=5),
)
def test_validator_handles_torch_only_dtypes(dtype: torch.dtype, shape: list[int]) -> None:
    x = torch.zeros(shape, dtype=dtype)
    try:
        validate_images(x, source="fuzz")
        check_range_for_likelihood(x, "bernoulli")
    except DataError:
        pass
