"""The inverse autoregressive flow posterior: its log-determinant, its density and the model."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.distributions import IAFHead, IAFPosterior
from vaekit.errors import ConfigError


def posterior(latent_dim: int = 3, steps: int = 3, batch: int = 4, seed: int = 0) -> IAFPosterior:
    torch.manual_seed(seed)
    head = IAFHead(5, latent_dim, steps=steps).double()
    with torch.no_grad():  # move the steps away from their near-identity start
        for param in head.steps.parameters():
            param.add_(0.3 * torch.randn_like(param))
    q = head(torch.randn(batch, 5, dtype=torch.float64))
    assert isinstance(q, IAFPosterior)
    return q


@pytest.mark.parametrize("latent_dim", [1, 2, 4])
def test_log_determinant_equals_autograds_jacobian(latent_dim: int) -> None:
    q = posterior(latent_dim, steps=3, batch=1)
    for seed in range(3):
        z0 = torch.randn(
            latent_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
        )
        jacobian = torch.autograd.functional.jacobian(lambda v: q.transform(v[None])[0][0], z0)
        sign, log_abs_det = torch.linalg.slogdet(jacobian)
        assert sign > 0
        assert torch.allclose(q.transform(z0[None])[1][0], log_abs_det, atol=1e-10)


def test_log_prob_of_any_point_inverts_the_flow_and_matches_the_cached_sample() -> None:
    q = posterior()
    z = q.rsample((6,))  # [6, 4, 3]
    cached = q.log_prob(z)
    recomputed = q.log_prob(z.clone())  # not the latest sample: inverted one dimension at a time
    assert torch.allclose(cached, recomputed, atol=1e-9)
    z0, _ = q.invert(z.detach())
    assert torch.allclose(q.transform(z0)[0], z.detach(), atol=1e-9)


def test_the_density_integrates_to_one_in_two_dimensions() -> None:
    q = posterior(latent_dim=2, steps=2, batch=1)
    base = q.base.base_dist
    lo = (base.loc - 8 * base.scale).min().item() - 3
    hi = (base.loc + 8 * base.scale).max().item() + 3
    grid = torch.linspace(lo, hi, 301, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid).view(-1, 1, 2)  # [N, 1 (batch), 2]
    with torch.no_grad():
        density = q.log_prob(points).exp().view(301, 301)
    cell = (grid[1] - grid[0]) ** 2
    assert float(density.sum() * cell) == pytest.approx(1.0, abs=2e-3)


def test_a_vaes_monte_carlo_kl_includes_the_log_determinant() -> None:
    cfg = ModelConfig(latent_dim=3, hidden=(16,), posterior="iaf", flow_steps=2)
    torch.manual_seed(0)
    model = build_model(cfg, (1, 8, 8))
    x = torch.rand(64, 1, 8, 8)
    loss = model.loss(x, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(float(loss.metrics["kl"]))
    # the one-sample KL is log q(z|x) - log p(z) at the sampled z, with the log-determinant
    q = model.encoder(x)
    z = q.rsample()
    expected = q.base.log_prob(q.invert(z.detach())[0]) - q.invert(z.detach())[1]
    assert torch.allclose(q.log_prob(z), expected, atol=1e-4)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"kind": "aae", "posterior": "iaf"}, "is a VAE's posterior"),
        ({"posterior": "iaf", "gradient_estimator": "dreg"}, "diagonal Gaussian posterior"),
        ({"flow_steps": 4}, 'model.posterior = "iaf" only'),
    ],
)
def test_settings_that_do_not_fit_an_iaf_are_refused(overrides: dict, fragment: str) -> None:
    cfg = ModelConfig(latent_dim=3, hidden=(16,), **overrides)
    with pytest.raises(ConfigError, match=fragment):
        build_model(cfg, (1, 8, 8))


def test_a_vampprior_over_an_iaf_encoder_is_a_normalised_density() -> None:
    """The VampPrior's components are the IAF posteriors at the pseudo-inputs: scoring a point
    against all K components inverts the flows on the broadcast shape."""
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=2, hidden=(8,), posterior="iaf", prior="vamp", prior_components=3)
    model = build_model(cfg, (1, 4, 4)).double()
    grid = torch.linspace(-10, 10, 401, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid)  # [N, 2]
    with torch.no_grad():
        density = model.prior().log_prob(points).exp()
    assert float(density.sum() * (grid[1] - grid[0]) ** 2) == pytest.approx(1.0, abs=5e-3)
