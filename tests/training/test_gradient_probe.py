"""grads_finite: the total norm finds every NaN and infinity, however the gradients are stored."""

from __future__ import annotations

import pytest
import torch

from vaekit.training.guard import grads_finite

SHAPES = [(4, 3), (3,), (2, 5)]


def _views(flat: torch.Tensor) -> list[torch.Tensor]:
    sizes = [torch.Size(s).numel() for s in SHAPES]
    return [v.view(s) for v, s in zip(flat.split(sizes), SHAPES, strict=True)]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_every_element_of_a_flat_buffer_is_checked(bad: float) -> None:
    flat = torch.randn(25)
    grads = _views(flat)
    assert bool(grads_finite(grads))
    for i in range(25):
        flat.normal_()
        flat[i] = bad
        assert not bool(grads_finite(grads)), i


def test_gradients_that_do_not_tile_a_buffer_are_checked() -> None:
    flat = torch.randn(25)
    grads = _views(flat)
    cases = {
        "missing": grads[:2],  # the buffer holds more than these gradients
        "separate": [g.clone() for g in grads],
        "overlapping": [flat[0:12].view(4, 3), flat[10:13], flat[15:25].view(2, 5)],
        "strided": [flat[:24].view(4, 6).t()],
    }
    for name, case in cases.items():
        assert bool(grads_finite(case)), name
        case[-1][-1] = float("nan")  # a whole row (or element) of the last gradient
        assert not bool(grads_finite(case)), name
        flat.normal_()
