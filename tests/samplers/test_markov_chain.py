"""The encode-decode chain against probabilistic PCA, where it is an exact Gibbs sampler."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.models import Autoencoder
from vaekit.models.corruption import GaussianNoise
from vaekit.samplers import (
    SAMPLERS,
    EncodeDecodeKernel,
    FlowSampler,
    MarkovChainSampler,
    PriorSampler,
    TwoStageSampler,
)

START_SCALE = 3.0
TOLERANCE = 1e-3  # burn-in: the start's excess variance shrinks below this


def contraction_rate(ppca) -> float:
    """The z-chain is AR(1) with coefficients w_k² / (w_k² + σ²) (W has orthogonal columns)."""
    w2 = (ppca.W**2).sum(0)
    return float((w2 / (w2 + ppca.sigma**2)).max())


def burn_in(ppca) -> int:
    """Steps until (variance - 1) = ρ^{2t} (START_SCALE² - 1) is below TOLERANCE."""
    rho = contraction_rate(ppca)
    return math.ceil(math.log(TOLERANCE / (START_SCALE**2 - 1)) / (2 * math.log(rho)))


def assert_gibbs_stationary_law(model: Autoencoder, ppca) -> None:
    """z-marginal N(0, I), x-marginal N(μ, W Wᵀ + σ² I), from 20,000 chains after burn-in."""
    sampler = MarkovChainSampler(model, start="wide", start_scale=START_SCALE, decode="sample")
    draws = sampler.collect(
        20_000,
        burn_in=burn_in(ppca),
        num_steps=10,
        thin=2,
        generator=torch.Generator().manual_seed(1),
    )
    z, x = draws.z, draws.x.flatten(1)  # [M, K], [M, D]
    target = ppca.marginal()
    eye = torch.eye(z.shape[1], dtype=z.dtype)
    # Standard errors at M = 20,000 chains: 0.007 for z means, 0.01 for z covariances, 0.04 for
    # the largest x covariance; the bounds are about 5 standard errors.
    assert z.mean(0).abs().max() < 0.05, z.mean(0)
    assert (torch.cov(z.T) - eye).abs().max() < 0.06, torch.cov(z.T)
    assert (x.mean(0) - target.mean).abs().max() < 0.1, x.mean(0) - target.mean
    assert (torch.cov(x.T) - target.covariance_matrix).abs().max() < 0.15


def test_burn_in_comes_from_the_contraction_rate(ppca) -> None:
    # w = (2, 1), σ = 0.5: ρ = 4 / 4.25, so about 75 steps for a 3x wider start.
    assert contraction_rate(ppca) == pytest.approx(4 / 4.25)
    assert 60 < burn_in(ppca) < 100


def test_exact_posterior_chain_is_a_gibbs_sampler_of_the_ppca_joint(ppca) -> None:
    assert_gibbs_stationary_law(ppca.model(), ppca)


@pytest.mark.parametrize("error", ["mean", "variance"])
def test_a_wrong_encoder_fails_the_stationarity_check(ppca, error: str) -> None:
    model = ppca.model(encoder_error=0.1 if error == "mean" else 0.0)
    if error == "variance":
        with torch.no_grad():
            model.encoder.head.log_var.bias += math.log(3.0)
    with pytest.raises(AssertionError):
        assert_gibbs_stationary_law(model, ppca)


def test_latent_power_moves_from_the_wide_start_towards_one(ppca) -> None:
    sampler = MarkovChainSampler(
        ppca.model(), start="wide", start_scale=START_SCALE, decode="sample"
    )
    trajectory = sampler.run(
        4000, 150, record=[0, 1, 150], generator=torch.Generator().manual_seed(0)
    )
    assert sorted(trajectory.states) == [0, 1, 150]
    power = trajectory.diagnostics["latent_power"]
    assert isinstance(power, list) and len(power) == 150
    assert power[0] > 4 and abs(power[-1] - 1) < 0.1
    assert "acceptance_rate" not in trajectory.diagnostics


def tiny_model(kind: str = "vae", **overrides: object) -> Autoencoder:
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, latent_dim=3, hidden=(16,), **overrides)  # type: ignore[arg-type]
    return build_model(cfg, (1, 8, 8)).eval()


def test_the_kernel_applies_the_models_corruption() -> None:
    model = tiny_model("ae")  # Delta encoder, decoder mean: deterministic without corruption
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    sampler = MarkovChainSampler(model, decode="mean")

    def final(seed: int) -> torch.Tensor:
        state = sampler.initial_state(5, generator=torch.Generator().manual_seed(0))
        state = type(state)(z=z, x=state.x)
        return sampler.run(state, 3, generator=torch.Generator().manual_seed(seed)).final.z

    assert torch.equal(final(1), final(2))
    model.corruption = GaussianNoise(0.5)
    assert not torch.allclose(final(1), final(2))
    sampler.kernel = EncodeDecodeKernel(model, decode="mean", corrupt=False)
    assert torch.equal(final(1), final(2))


def test_starts_and_step_zero() -> None:
    model = tiny_model()
    data = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for start in ("prior", "wide", "data"):
        sampler = MarkovChainSampler(model, data, start=start, steps=0)
        z = sampler.sample_latent(6, generator=torch.Generator().manual_seed(3))
        assert z.shape == (6, 3) and torch.isfinite(z).all()
    prior = PriorSampler(model).sample_latent(6, generator=torch.Generator().manual_seed(3))
    chain = MarkovChainSampler(model, steps=0).sample_latent(
        6, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(prior, chain)  # zero steps is ancestral sampling
    with pytest.raises(ValueError, match="needs data"):
        MarkovChainSampler(model, start="data")
    with pytest.raises(ValueError, match="start must be"):
        MarkovChainSampler(model, start="posterior")


def make_sampler(name: str, model: Autoencoder, data: torch.Tensor):
    cls = SAMPLERS[name]
    if cls is PriorSampler:
        return PriorSampler(model)
    if cls in (FlowSampler, TwoStageSampler):  # the contract needs a fit, not a good one
        return cls(model, data, steps=50)
    return cls(model, data)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_contract(name: str) -> None:
    model = tiny_model("aae")
    data = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sampler = make_sampler(name, model, data)
    a = sampler.sample(7, generator=torch.Generator().manual_seed(5))
    b = sampler.sample(7, generator=torch.Generator().manual_seed(5))
    assert a.shape == (7, 1, 8, 8) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not isinstance(sampler, nn.Module)


def test_gaussian_mixture_sampler_follows_clustered_codes() -> None:
    """Codes in two far-apart clusters: mixture draws land in the clusters, not between them."""
    model = tiny_model("ae")
    centres = torch.tensor([[-5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    data = torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(400) % 2
    codes = centres[labels] + 0.1 * torch.randn(400, 3, generator=torch.Generator().manual_seed(1))
    model.encode_mean = lambda x: codes[: len(x)]  # type: ignore[method-assign]
    sampler = SAMPLERS["gaussian-mixture"](model, data, num_components=2, batch_size=400)
    z = sampler.sample_latent(2000, generator=torch.Generator().manual_seed(2))
    assert (z[:, 0].abs() > 4).float().mean() > 0.99
    assert 0.4 < (z[:, 0] > 0).float().mean() < 0.6
