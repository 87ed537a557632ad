"""The lean Bernoulli log p(x|z) of importance sampling (accel/log_px.py) against the
distributions path: ``accelerate="auto"`` and ``"off"`` give the same estimate in float64."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from vaekit import accel
from vaekit.accel.log_px import LeanBernoulliLogPx, softplus_sum
from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.evaluation import log_likelihood


@pytest.mark.parametrize(
    ("hidden", "activation"),
    [((16,), "relu"), ((16, 9), "tanh"), ((16,), "elu")],  # elu: hidden layers run as modules
)
def test_the_lean_path_equals_the_decoder_log_prob(
    hidden: tuple[int, ...], activation: str
) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=3, hidden=hidden, activation=activation, likelihood="bernoulli")
    model = build_model(cfg, (1, 6, 6)).double().eval()
    x = torch.bernoulli(torch.full((23, 1, 6, 6), 0.3, dtype=torch.float64))
    assert accel.has_lean_path(model.decoder)
    assert isinstance(accel.lean_log_px(model.decoder), LeanBernoulliLogPx)
    assert accel.lean_log_px(model.decoder, accelerate="off") is None

    def estimate(accelerate: str) -> torch.Tensor:
        return log_likelihood(
            model, x, num_samples=9, batch_size=10, chunk_size=4, accelerate=accelerate,
            generator=torch.Generator().manual_seed(2),
        )  # fmt: skip

    torch.testing.assert_close(estimate("auto"), estimate("off"), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize(
    "change", [{"likelihood": "gaussian"}, {"network": "conv", "conv_channels": 4}]
)
def test_other_decoders_have_no_lean_path(change: dict) -> None:
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,), **change), (1, 8, 8))
    assert not accel.has_lean_path(model.decoder)
    assert accel.lean_log_px(model.decoder) is None


def test_an_unknown_mode_is_refused() -> None:
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,)), (1, 4, 4))
    with pytest.raises(ValueError, match="accelerate must be one of 'auto', 'off'"):
        log_likelihood(model, torch.rand(3, 1, 4, 4), num_samples=2, accelerate="on")


@pytest.mark.parametrize("width", [784, 36, 31])  # 31: no group size divides it, plain softplus
def test_softplus_sum_is_the_sum_of_softplus(width: int) -> None:
    logits = 30 * torch.randn(257, width, generator=torch.Generator().manual_seed(0))
    # F.softplus returns l itself above l = 20 (dropping log1p(e^-l) < 2.1e-9 per pixel).
    exact = F.softplus(logits.double()).sum(-1)
    torch.testing.assert_close(softplus_sum(logits).double(), exact, rtol=0, atol=2e-3)
    torch.testing.assert_close(softplus_sum(logits.double()), exact, rtol=0, atol=2.1e-9 * width)
    bias = torch.randn(width, generator=torch.Generator().manual_seed(1))
    with_bias = F.softplus(logits.double() + bias.double()).sum(-1)
    torch.testing.assert_close(softplus_sum(logits.double(), bias.double()), with_bias)
