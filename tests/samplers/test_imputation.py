"""Imputation: masks, and Metropolis-within-Gibbs against the exact pPCA conditional."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Laplace

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.distributions import StandardNormalPrior
from vaekit.models import VAE
from vaekit.samplers import MASKS, MarkovChainSampler, MetropolisWithinGibbsKernel, impute
from vaekit.samplers.imputation import initial_imputation

NUM_CHAINS = 4000
BURN_IN = 60
NUM_KEPT = 40


def exact_conditional(ppca, x_observed: torch.Tensor, missing: torch.Tensor):
    """p(x_m | x_o) = N(μ_m + Σ_mo Σ_oo⁻¹ (x_o - μ_o), Σ_mm - Σ_mo Σ_oo⁻¹ Σ_om)."""
    marginal = ppca.marginal()
    mu, cov = marginal.mean, marginal.covariance_matrix
    m, o = missing, ~missing
    gain = cov[m][:, o] @ torch.linalg.inv(cov[o][:, o])
    return mu[m] + gain @ (x_observed - mu[o]), cov[m][:, m] - gain @ cov[o][:, m]


def perturbed_model(ppca):
    """The exact posterior shifted by 0.5 and 4x too wide.

    Wider than p(z|x), so the importance weights p/q are bounded and the independence proposal
    mixes well (Mengersen & Tweedie 1996); a proposal narrower than the posterior in some
    direction leaves chains stuck in its tails (here: 9% acceptance and a visible bias after
    600 steps at shift 0.5 without widening).
    """
    model = ppca.model(encoder_error=0.5)
    with torch.no_grad():
        model.encoder.head.log_var.bias += math.log(4.0)
    return model


def imputed_moments(ppca, model, method: str):
    """Mean and covariance of the missing coordinates over chains and kept steps."""
    x = ppca.sample(1, torch.Generator().manual_seed(7))  # [1, 1, 1, 6]
    missing_flat = torch.tensor([False, True, False, True, True, False])
    missing = missing_flat.view(1, 1, 1, 6).expand(NUM_CHAINS, 1, 1, 6)
    kept = range(BURN_IN + 1, BURN_IN + NUM_KEPT + 1, 4)
    trajectory = impute(
        model,
        x.expand(NUM_CHAINS, 1, 1, 6),
        missing,
        method=method,
        num_steps=BURN_IN + NUM_KEPT,
        record=kept,
        generator=torch.Generator().manual_seed(8),
    )
    values = torch.cat([trajectory.states[t].x.flatten(1)[:, missing_flat] for t in kept])
    for t in kept:  # observed pixels never move
        assert torch.equal(
            trajectory.states[t].x.flatten(1)[:, ~missing_flat],
            x.flatten(1)[:, ~missing_flat].expand(NUM_CHAINS, 3),
        )
    loc, cov = exact_conditional(ppca, x.flatten()[~missing_flat], missing_flat)
    return values.mean(0) - loc, torch.cov(values.T) - cov, trajectory.diagnostics


def test_metropolis_within_gibbs_is_exact_with_a_perturbed_encoder(ppca) -> None:
    mean_error, cov_error, diagnostics = imputed_moments(ppca, perturbed_model(ppca), "mwg")
    # 4,000 chains, 10 kept steps each (autocorrelated): standard errors below 0.02.
    assert mean_error.abs().max() < 0.04, mean_error
    assert cov_error.abs().max() < 0.04, cov_error
    rate = diagnostics["acceptance_rate"]
    assert isinstance(rate, float) and 0.05 < rate < 1.0
    acceptance = diagnostics["acceptance"]
    assert isinstance(acceptance, list) and len(acceptance) == BURN_IN + NUM_KEPT


def test_pseudo_gibbs_is_biased_by_the_same_perturbed_encoder(ppca) -> None:
    mean_error, _, diagnostics = imputed_moments(
        ppca, ppca.model(encoder_error=0.5), "pseudo-gibbs"
    )
    assert mean_error.abs().max() > 0.3
    assert "acceptance_rate" not in diagnostics


def test_pseudo_gibbs_is_exact_with_the_exact_posterior(ppca) -> None:
    mean_error, cov_error, _ = imputed_moments(ppca, ppca.model(), "pseudo-gibbs")
    assert mean_error.abs().max() < 0.04 and cov_error.abs().max() < 0.04


@pytest.mark.parametrize("name", sorted(MASKS))
def test_masks_cover_every_channel_of_a_pixel(name: str) -> None:
    mask = MASKS[name](4, (3, 8, 8), torch.Generator().manual_seed(0))
    assert mask.shape == (4, 3, 8, 8) and mask.dtype == torch.bool
    assert torch.equal(mask[:, 0], mask[:, 1]) and torch.equal(mask[:, 0], mask[:, 2])
    assert 0 < mask.float().mean() < 1


def test_mask_shapes() -> None:
    center = MASKS["center"](1, (1, 8, 8), None)[0, 0]
    assert center.sum() == 16 and center[2:6, 2:6].all()
    left = MASKS["left-half"](1, (1, 8, 8), None)[0, 0]
    assert left[:, :4].all() and not left[:, 4:].any()


def test_metropolis_within_gibbs_refuses_a_deterministic_encoder() -> None:
    model = build_model(ModelConfig(kind="ae", latent_dim=2, hidden=(8,)), (1, 4, 4))
    x = torch.rand(3, 1, 4, 4)
    missing = MASKS["center"](3, (1, 4, 4), None)
    with pytest.raises(ValueError, match="density"):
        impute(model, x, missing, method="mwg", num_steps=1)
    with pytest.raises(ValueError, match="unknown imputation"):
        impute(model, x, missing, method="gibbs", num_steps=1)


class _LaplaceEncoder(nn.Module):
    """A user's encoder whose q(z|x) is a Laplace, optionally with its own ``widened``."""

    def __init__(self, widenable: bool):
        super().__init__()
        self.net, self.widenable = nn.Linear(16, 4), widenable

    def forward(self, x: torch.Tensor) -> Distribution:
        loc, log_scale = self.net(x.flatten(1)).chunk(2, dim=-1)
        return _Laplace(loc, log_scale.exp()) if self.widenable else _plain(loc, log_scale.exp())


class _PixelDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 16)

    def forward(self, z: torch.Tensor) -> Distribution:
        logits = self.net(z).view(-1, 1, 4, 4)
        return Independent(Bernoulli(logits=logits, validate_args=False), 3)


def _plain(loc: torch.Tensor, scale: torch.Tensor) -> Distribution:
    return Independent(Laplace(loc, scale), 1)


class _Laplace(Independent):
    """Independent Laplace that widens itself (the Widenable contract)."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        super().__init__(Laplace(loc, scale), 1)

    def widened(self, factor: float) -> Distribution:
        base = self.base_dist
        return _plain(base.loc.detach(), base.scale.detach() * factor)


def test_metropolis_within_gibbs_widens_a_users_encoder_or_says_how() -> None:
    """A non-Gaussian encoder: one error naming the two ways out; each way out then runs (a
    Widenable distribution, or the proposal unwidened) and accepts some proposals."""

    def model(widenable: bool) -> VAE:
        torch.manual_seed(0)
        return VAE(_LaplaceEncoder(widenable), _PixelDecoder(), StandardNormalPrior(2))

    x = torch.rand(50, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    missing = MASKS["center"](50, (1, 4, 4), None)
    plain = model(False)
    with pytest.raises(ValueError, match=r"not for a Laplace.*Widenable.*proposal_scale=1\.0"):
        impute(plain, x, missing, method="mwg", num_steps=1)
    unwidened = MetropolisWithinGibbsKernel(plain, missing, proposal_scale=1.0)
    runs = [
        impute(model(True), x, missing, method="mwg", num_steps=20),
        MarkovChainSampler(plain, kernel=unwidened).run(initial_imputation(plain, x, missing), 20),
    ]
    for trajectory in runs:
        assert 0 < trajectory.diagnostics["acceptance_rate"] < 1


@pytest.mark.parametrize("posterior", ["gaussian", "iaf"])
@pytest.mark.parametrize("decode", ["mean", "sample"])
def test_each_step_reuses_what_the_last_computed_without_changing_a_value(
    posterior: str, decode: str
) -> None:
    """The marginal Metropolis-within-Gibbs step takes the target, the decoder mean and the
    proposal at z from the step that moved there (a memo; for an IAF posterior the proposal is
    recomputed): the chain is bitwise the one that recomputes them every step, and the x it
    writes is the decoder mean at its z."""
    from dataclasses import replace

    from vaekit.samplers.kernels import ChainState, MetropolisWithinGibbsKernel

    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=3, hidden=(16,), posterior=posterior)
    model = build_model(cfg, (1, 6, 6)).eval()
    x = torch.rand(7, 1, 6, 6).bernoulli()
    missing = MASKS["random"](7, (1, 6, 6), torch.Generator().manual_seed(1))
    kernel = MetropolisWithinGibbsKernel(model, missing, decode=decode)
    start = ChainState(z=torch.randn(7, 3, generator=torch.Generator().manual_seed(2)), x=x)
    remembered, fresh = start, start
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    accepted = 0
    for _ in range(12):
        remembered = kernel.step(remembered, generator=g1)
        fresh = kernel.step(replace(fresh, memo=None), generator=g2)
        assert remembered.memo is not None
        assert torch.equal(remembered.z, fresh.z) and torch.equal(remembered.x, fresh.x)
        assert remembered.accepted is not None
        accepted += int(remembered.accepted.sum())
        if decode == "mean":
            with torch.no_grad():
                expected = torch.where(missing, model.decode_mean(remembered.z), x)
            assert torch.equal(remembered.x, expected)
    assert 0 < accepted < 12 * 7  # both branches of the accept/reject step ran
