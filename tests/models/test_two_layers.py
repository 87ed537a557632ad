"""Two stochastic layers (Burda et al. 2016): exact log-densities on a linear-Gaussian chain
z2 -> z1 -> x, and the configured model's contract and refusals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.distributions import FixedGaussianLikelihood, GaussianHead
from vaekit.distributions.hierarchical import (
    ConditionalGaussian,
    LowerLayer,
    TwoLayerEncoder,
    TwoLayerPrior,
)
from vaekit.errors import ConfigError
from vaekit.evaluation import log_likelihood
from vaekit.models import VAE, NetworkDecoder, TrunkEncoder
from vaekit.nn import MLPDecoderNet

F64 = torch.float64


def _set_gaussian(
    head: GaussianHead, weight: torch.Tensor, bias: torch.Tensor, var: torch.Tensor
) -> None:
    with torch.no_grad():
        head.loc.weight.copy_(weight)
        head.loc.bias.copy_(bias)
        head.log_var.weight.zero_()
        head.log_var.bias.copy_(var.log())


class LinearChain:
    """z2 ~ N(0, I), z1 | z2 ~ N(a ⊙ z2 + c, diag s²), x | z1 ~ N(W z1 + mu, σ² I), with W's
    columns orthogonal: every conditional of the chain, and its exact posterior, is diagonal."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.a = torch.tensor([1.5, 0.7], dtype=F64)
        self.c = torch.tensor([0.3, -0.5], dtype=F64)
        self.s2 = torch.tensor([0.4, 0.9], dtype=F64)
        q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=F64))
        self.W = q[:, :2] * torch.tensor([2.0, 1.2], dtype=F64)
        self.mu = torch.randn(6, generator=g, dtype=F64)
        self.sigma = 0.5

    def marginal(self) -> MultivariateNormal:
        v1 = self.a**2 + self.s2  # Var z1
        cov = self.W @ torch.diag(v1) @ self.W.T + self.sigma**2 * torch.eye(6, dtype=F64)
        return MultivariateNormal(self.W @ self.c + self.mu, covariance_matrix=cov)

    def model(self, encoder_error: float = 0.0) -> VAE:
        """The chain as a VAE whose encoder is the exact posterior p(z1|x) p(z2|z1) (plus
        ``encoder_error`` on the mean of z1)."""
        v1 = self.a**2 + self.s2
        precision1 = 1 / v1 + (self.W**2).sum(0) / self.sigma**2  # of p(z1|x), diagonal
        lower_head = GaussianHead(6, 2).double()
        weight1 = (self.W.T / self.sigma**2) / precision1[:, None]
        bias1 = (self.c / v1 - self.W.T @ self.mu / self.sigma**2) / precision1
        _set_gaussian(lower_head, weight1, bias1 + encoder_error, 1 / precision1)
        precision2 = 1 + self.a**2 / self.s2  # of p(z2|z1)
        up = ConditionalGaussian(2, (), 2, "tanh").double()
        gain = self.a / self.s2 / precision2
        _set_gaussian(up.head, torch.diag(gain), -gain * self.c, 1 / precision2)
        down = ConditionalGaussian(2, (), 2, "tanh").double()
        _set_gaussian(down.head, torch.diag(self.a), self.c, self.s2)
        net = MLPDecoderNet(2, (6,), (), "tanh").double()
        with torch.no_grad():
            net.layers[-1].weight.copy_(self.W)
            net.layers[-1].bias.copy_(self.mu)
        encoder = TwoLayerEncoder(TrunkEncoder(nn.Identity(), lower_head), up, 2)
        decoder = NetworkDecoder(
            nn.Sequential(LowerLayer(2), net), FixedGaussianLikelihood(self.sigma)
        )
        return VAE(encoder, decoder, TwoLayerPrior(2, down, 2).double())


@pytest.fixture
def chain() -> LinearChain:
    return LinearChain()


def test_the_prior_is_the_chains_joint_and_the_code_is_z1_then_z2(chain: LinearChain) -> None:
    model = chain.model()
    z = torch.randn(5, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    z1, z2 = z[:, :2], z[:, 2:]
    expected = MultivariateNormal(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64)).log_prob(
        z2
    ) + MultivariateNormal(chain.a * z2 + chain.c, torch.diag(chain.s2)).log_prob(z1)
    torch.testing.assert_close(model.prior().log_prob(z), expected)
    draws = model.prior().rsample((40000,))
    # z1 = a z2 + c + noise: mean c, variance a² + s²; z2 standard normal
    torch.testing.assert_close(
        draws.mean(0), torch.cat([chain.c, torch.zeros(2, dtype=F64)]), atol=0.03, rtol=0
    )
    torch.testing.assert_close(
        draws.var(0),
        torch.cat([chain.a**2 + chain.s2, torch.ones(2, dtype=F64)]),
        atol=0.05,
        rtol=0,
    )
    assert model.latent_dim == 4


@pytest.mark.parametrize("k", [1, 7])
def test_importance_sampled_log_px_is_exact_with_the_exact_posterior(
    chain: LinearChain, k: int
) -> None:
    model = chain.model()
    x = chain.marginal().sample((50,))
    exact = chain.marginal().log_prob(x)
    estimate = log_likelihood(model, x, num_samples=k, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(estimate, exact, rtol=0, atol=1e-9)
    # the ELBO of the exact posterior is exact too (the KL is a Monte-Carlo estimate, of zero gap)
    elbo = model.elbo(x, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(elbo, exact, rtol=0, atol=1e-9)


def test_with_a_wrong_encoder_the_bound_is_below_and_tightens_with_k(chain: LinearChain) -> None:
    model = chain.model(encoder_error=0.2)
    x = chain.marginal().sample(
        (200,),
    )
    exact = float(chain.marginal().log_prob(x).mean())
    estimates = [
        float(
            log_likelihood(
                model, x, num_samples=k, generator=torch.Generator().manual_seed(4)
            ).mean()
        )
        for k in (1, 10, 1000)
    ]
    assert estimates[0] < estimates[1] < estimates[2] < exact
    assert exact - estimates[2] < 0.02 < exact - estimates[0]


def test_the_configured_model_is_burda_et_als_architecture() -> None:
    cfg = ModelConfig(
        latent_dim=50,
        hidden=(200, 200),
        activation="tanh",
        stochastic_layers=2,
        lower_latent_dim=100,
        lower_hidden=(100, 100),
    )
    torch.manual_seed(0)
    model = build_model(cfg, (1, 28, 28))
    assert model.latent_dim == 150
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    sizes = {(m.in_features, m.out_features) for m in linear}
    # x -> 200 -> 200 -> (100, 100) ; 100 -> 100 -> 100 -> (50, 50) ; and the way down
    assert {
        (784, 200),
        (200, 200),
        (200, 100),
        (100, 100),
        (100, 50),
        (50, 100),
        (100, 200),
        (200, 784),
    } <= sizes
    x = torch.rand(3, 1, 28, 28)
    q = model.encoder(x)
    z = q.rsample((4,))
    assert z.shape == (4, 3, 150)
    assert torch.isfinite(q.log_prob(z)).all() and torch.isfinite(model.prior().log_prob(z)).all()
    loss = model.loss(x, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(loss.objectives["model"].item())


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"stochastic_layers": 2, "kind": "aae"}, "model.kind = 'aae'"),
        ({"stochastic_layers": 2, "prior": "vamp"}, "model.prior = 'vamp'"),
        ({"stochastic_layers": 2, "posterior": "iaf"}, "model.posterior = 'iaf'"),
        ({"stochastic_layers": 2, "gradient_estimator": "dreg"}, "model.gradient_estimator"),
        ({"lower_latent_dim": 20}, "stochastic_layers = 2 only"),
    ],
)
def test_settings_that_do_not_combine_with_two_layers_are_refused(
    overrides: dict, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        build_model(ModelConfig(latent_dim=3, hidden=(16,), **overrides), (1, 8, 8))


def test_metropolis_within_gibbs_imputes_the_exact_conditional(chain: LinearChain) -> None:
    """With a perturbed, widened two-layer encoder the MwG chain still targets p(x_m | x_o)."""
    from vaekit.samplers import impute

    model = chain.model(encoder_error=0.3)
    marginal = chain.marginal()
    x = marginal.sample((1,))  # [1, 6]
    missing = torch.tensor([False, True, False, True, True, False])
    chains, kept = 3000, range(61, 101, 4)  # 60 steps of burn-in, then every 4th of 40
    trajectory = impute(
        model,
        x.expand(chains, 6),
        missing.expand(chains, 6),
        method="mwg",
        num_steps=100,
        record=kept,
        generator=torch.Generator().manual_seed(8),
    )
    values = torch.cat([trajectory.states[t].x[:, missing] for t in kept])
    mu, cov = marginal.mean, marginal.covariance_matrix
    gain = cov[missing][:, ~missing] @ torch.linalg.inv(cov[~missing][:, ~missing])
    loc = mu[missing] + gain @ (x[0, ~missing] - mu[~missing])
    conditional_cov = cov[missing][:, missing] - gain @ cov[~missing][:, missing]
    assert (values.mean(0) - loc).abs().max() < 0.05
    assert (torch.cov(values.T) - conditional_cov).abs().max() < 0.05
    assert 0.05 < trajectory.diagnostics["acceptance_rate"] < 1.0
