"""bfloat16x3 products: float32 accuracy from bfloat16 GEMMs (accel/bfloat16x3.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from vaekit.accel import compiled_or_eager
from vaekit.accel.bfloat16x3 import BFloat16x3Weight, split_rows
from vaekit.accel.log_px import LeanBernoulliLogPx
from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.evaluation import log_likelihood


def _operands() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A decoder's last product at MNIST size: ReLU features [257, 400] times [400, 784]."""
    generator = torch.Generator().manual_seed(0)
    h = torch.randn(257, 400, generator=generator).relu()
    weight = 0.2 * torch.randn(400, 784, generator=generator)
    return h, weight, h.double() @ weight.double()


def _relative_error(value: torch.Tensor, exact: torch.Tensor) -> float:
    return float((value.double() - exact).abs().max() / exact.abs().max())


def test_split_rows_keeps_sixteen_bits() -> None:
    h, _, _ = _operands()
    rows = split_rows(h)
    hi, lo, hi_again = rows.float().split(400, dim=1)
    assert rows.dtype == torch.bfloat16 and torch.equal(hi, hi_again)
    assert lo.abs().max() > 0
    assert float(((hi + lo - h).abs() / h.abs().clamp_min(1e-30)).max()) < 2.0**-16


def test_product_is_float32_accurate_where_one_bfloat16_product_is_not() -> None:
    h, weight, exact = _operands()
    float32 = _relative_error(h @ weight, exact)
    bfloat16 = _relative_error((h.bfloat16() @ weight.bfloat16()).float(), exact)
    split = _relative_error(BFloat16x3Weight(weight)(h), exact)
    assert float32 < 1e-6 and bfloat16 > 1e-3
    assert split < 3e-5, (float32, split, bfloat16)  # measured 1.1e-5, 4e-7, 4.5e-3


def test_compiled_split_keeps_the_low_part() -> None:
    # Inductor drops a float -> bfloat16 -> float round trip unless told to emulate it, and
    # h_lo would come out zero; without a C++ compiler this runs eagerly and holds trivially.
    h, _, _ = _operands()
    compiled = compiled_or_eager(split_rows, fallback="eagerly", emulate_precision_casts=True)
    assert torch.equal(compiled(h), split_rows(h))


def _mnist_sized_model(scale: float) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=4, hidden=(400,), activation="relu", likelihood="bernoulli")
    model = build_model(cfg, (1, 28, 28)).eval()
    with torch.no_grad():  # logits of a trained decoder's size (tens), not an init's (~1)
        model.decoder.network.layers[-1].weight.mul_(scale)
    return model


@pytest.mark.parametrize("scale", [3.0, 30.0])
def test_log_px_error_is_a_few_times_float32s(scale: float) -> None:
    model = _mnist_sized_model(scale)
    x = torch.bernoulli(torch.full((20, 1, 28, 28), 0.2))
    z = torch.randn(50, 20, 4)

    def log_px(model: torch.nn.Module, matmul: str, dtype: torch.dtype) -> torch.Tensor:
        lean = LeanBernoulliLogPx.of(model.decoder, compile=False, matmul=matmul)
        assert lean is not None
        with torch.inference_mode():
            return lean(z.to(dtype), *lean.bind(x.to(dtype))).double()

    exact = log_px(copy.deepcopy(model).double(), "float32", torch.float64)
    float32 = (log_px(model, "float32", torch.float32) - exact).abs().max()
    split = (log_px(model, "bfloat16x3", torch.float32) - exact).abs().max()
    # measured: 3-6 times float32's rounding, ~2e-6 of |log p(x|z)| (hundreds to 2,400 nats)
    assert split < 10 * float32 and split < 1e-5 * exact.abs().min(), (split, float32)


@pytest.mark.parametrize("compile", [False, True])
def test_log_likelihood_with_bfloat16x3_matches_float32(compile: bool) -> None:
    model = _mnist_sized_model(30.0)
    x = torch.bernoulli(torch.full((20, 1, 28, 28), 0.2))

    def estimate(matmul: str) -> torch.Tensor:
        return log_likelihood(
            model, x, num_samples=30, batch_size=10, compile=compile, matmul=matmul,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip

    float32, split = estimate("float32"), estimate("bfloat16x3")  # the same z
    assert float(float32.abs().min()) > 500  # hundreds of nats per image
    torch.testing.assert_close(split, float32, rtol=1e-5, atol=0)


def test_bfloat16x3_is_refused_where_it_does_not_apply() -> None:
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian"), (1, 4, 4))
    with pytest.raises(ValueError, match="Bernoulli likelihood only"):
        log_likelihood(model, torch.rand(3, 1, 4, 4), num_samples=2, matmul="bfloat16x3")
    with pytest.raises(ValueError, match="matmul must be one of"):
        log_likelihood(model, torch.rand(3, 1, 4, 4), num_samples=2, matmul="float16")
    # bfloat16x3 is a speed-up: with acceleration off not even a Bernoulli MLP takes it
    bernoulli = build_model(ModelConfig(latent_dim=2, hidden=(8,)), (1, 4, 4))
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.5))
    log_likelihood(bernoulli, x, num_samples=2, matmul="bfloat16x3")
    with pytest.raises(ValueError, match="needs accelerate='auto'"):
        log_likelihood(bernoulli, x, num_samples=2, matmul="bfloat16x3", accelerate="off")
