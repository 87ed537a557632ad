"""Model contracts over the registry, and the ELBO/IWAE maths against probabilistic PCA."""

from __future__ import annotations

import dataclasses
import itertools
import math
from functools import partial

import pytest
import torch
from torch import nn
from torch.distributions import Cauchy, Distribution, Independent, Laplace, Normal, kl_divergence

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.distributions import BernoulliLikelihood, draw
from vaekit.errors import ConfigError
from vaekit.models import MODELS, VAE, NetworkDecoder
from vaekit.nn import MLPDecoderNet
from vaekit.weights import load_weights, save_weights

SHAPES = {"mlp": (1, 8, 8), "conv": (3, 32, 32)}


def small_config(kind: str, network: str, **overrides: object) -> ModelConfig:
    cfg = ModelConfig(kind=kind, latent_dim=3, hidden=(16,), network=network, conv_channels=4)
    return dataclasses.replace(cfg, **overrides)  # type: ignore[arg-type]


class LaplaceEncoder(nn.Module):
    """A user's encoder with a non-Gaussian posterior: q(z|x) = Laplace(loc(x), scale(x))."""

    def __init__(self, shape: tuple[int, ...], latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 2 * latent_dim))

    def forward(self, x: torch.Tensor) -> Distribution:
        loc, log_scale = self.net(x).chunk(2, dim=-1)
        return Independent(Laplace(loc, log_scale.exp()), 1)


class CauchyPrior(nn.Module):
    """A user's prior that torch has no closed-form KL for from a Laplace: the KL is Monte Carlo."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))

    def forward(self) -> Distribution:
        return Independent(Cauchy(self.loc, torch.ones_like(self.loc)), 1)


def user_model(shape: tuple[int, ...]) -> VAE:
    decoder = NetworkDecoder(MLPDecoderNet(3, shape, [16], "tanh"), BernoulliLikelihood())
    return VAE(LaplaceEncoder(shape, 3), decoder, CauchyPrior(3))


CASES = {
    **{
        f"{kind}-{network}": (partial(build_model, small_config(kind, network)), SHAPES[network])
        for kind, network in itertools.product(sorted(MODELS), ("mlp", "conv"))
    },
    "user-laplace-cauchy": (user_model, SHAPES["mlp"]),
}
# The compositions on top of the VAE: each piece joins the same contract.
VARIANTS = {
    "iaf-posterior": {"posterior": "iaf", "flow_steps": 2},
    "vamp-prior": {"prior": "vamp", "prior_components": 3},
    "mixture-prior": {"prior": "mixture", "prior_components": 3},
    "piwae-bound": {"bound": "piwae", "num_particles": 2, "bound_groups": 2},
    "miwae-bound": {"bound": "miwae", "num_particles": 2, "bound_groups": 2},
    "ciwae-bound": {"bound": "ciwae", "num_particles": 3},
    "continuous-bernoulli": {"likelihood": "continuous-bernoulli"},
    "discretized-logistic": {"likelihood": "discretized-logistic", "mixture_components": 2},
    "two-layers": {"stochastic_layers": 2, "lower_latent_dim": 4, "lower_hidden": (8,)},
}
for name, overrides in VARIANTS.items():
    for network in ("mlp", "conv"):
        cfg = small_config("vae", network, **overrides)
        CASES[f"vae-{name}-{network}"] = (partial(build_model, cfg), SHAPES[network])
for kind in ("vae", "aae"):  # conditional on 4 classes
    for network in ("mlp", "conv"):
        cfg = small_config(kind, network, conditional=True)
        make = partial(build_model, cfg, num_classes=4)
        CASES[f"{kind}-conditional-{network}"] = (make, SHAPES[network])


@pytest.mark.parametrize("case", list(CASES))
def test_contract_finite_loss_gradients_and_roundtrip(case: str, tmp_path) -> None:
    make, shape = CASES[case]
    torch.manual_seed(0)
    model = make(shape)
    x = torch.rand(5, *shape)
    labels = None if model.condition is None else torch.tensor([0, 1, 2, 3, 0])
    with model.given(labels):
        loss = model.loss(x, generator=torch.Generator().manual_seed(1))
    assert set(loss.objectives) == set(model.parameter_groups())
    for name, objective in loss.objectives.items():
        assert objective.dim() == 0 and torch.isfinite(objective)
        objective.backward(inputs=model.parameter_groups()[name], retain_graph=True)
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(torch.isfinite(v) for v in loss.metrics.values())
    with model.given(labels):
        assert model.latent_dim == model.prior().event_shape[0] == model.encoder(x).event_shape[0]
    assert model.latent_dim in (3, 3 + 4)  # a two-layer code is [z1, z2]

    save_weights(tmp_path / "m.safetensors", model)
    clone = make(shape)
    load_weights(tmp_path / "m.safetensors", clone)
    model.eval(), clone.eval()
    with model.given(labels), clone.given(labels):
        assert torch.equal(model.reconstruct(x), clone.reconstruct(x))
        z = torch.randn(5, model.latent_dim)
        assert torch.equal(model.decode_mean(z), clone.decode_mean(z))


def test_a_pair_torch_has_no_kl_for_takes_the_monte_carlo_estimate() -> None:
    torch.manual_seed(0)
    model = user_model(SHAPES["mlp"])
    q = model.encoder(torch.rand(4, *SHAPES["mlp"]))
    with pytest.raises(NotImplementedError):
        kl_divergence(q, model.prior())
    z = draw(q, generator=torch.Generator().manual_seed(0))  # a Laplace: seeded global RNG
    again = draw(q, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    torch.testing.assert_close(model.kl(q, z), q.log_prob(z) - model.prior().log_prob(z))
    many = draw(q, (100_000,), generator=torch.Generator().manual_seed(1))
    exact_entropy = q.entropy()  # the MC KL averages to -H(q) - E_q log p(z)
    estimate = (q.log_prob(many) - model.prior().log_prob(many)).mean(0)
    cross = -model.prior().log_prob(many).mean(0)
    torch.testing.assert_close(estimate, cross - exact_entropy, atol=0.05, rtol=0)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian-learned"])
@pytest.mark.parametrize("side", [28, 32, 64])
def test_conv_networks_round_trip_shapes(likelihood: str, side: int) -> None:
    shape = (3, side, side)
    model = build_model(small_config("vae", "conv", likelihood=likelihood), shape)
    assert model.decoder(torch.randn(2, 3)).mean.shape == (2, *shape)
    assert model.encoder(torch.rand(2, *shape)).mean.shape == (2, 3)


def test_analytic_kl_matches_torch_and_monte_carlo() -> None:
    model = build_model(small_config("vae", "mlp"), (1, 8, 8))
    q = model.encoder(torch.rand(4, 1, 8, 8))
    p = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    z = draw(q, (200_000,), generator=torch.Generator().manual_seed(0))
    closed = model.kl(q, z[0])
    assert torch.allclose(closed, kl_divergence(q, p))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).mean(0)
    assert torch.allclose(closed, monte_carlo, atol=0.02)


def test_loss_scaling_is_per_datapoint_sum(ppca) -> None:
    """recon + kl = -ELBO in nats per datapoint, never a per-pixel mean."""
    model = build_model(small_config("vae", "mlp"), (1, 8, 8))
    x = torch.rand(7, 1, 8, 8)
    metrics = model.loss(x, generator=torch.Generator().manual_seed(0)).metrics
    assert torch.allclose(metrics["elbo"], -(metrics["recon"] + metrics["kl"]))
    # A per-datapoint sum over 64 Bernoulli pixels at chance is about 64·log 2 nats.
    assert metrics["recon"] > 20


def test_elbo_equals_exact_log_likelihood_with_exact_posterior(ppca) -> None:
    model = ppca.model()
    x = ppca.sample(50, torch.Generator().manual_seed(1))
    exact = ppca.marginal().log_prob(x.flatten(1))
    elbo = model.elbo(x, generator=torch.Generator().manual_seed(2))
    # With q = p(z|x) the weight p(x, z) / q(z|x) equals p(x) for every z.
    assert torch.allclose(elbo, exact, rtol=1e-7, atol=0)


def test_elbo_is_a_strict_bound_with_a_wrong_encoder(ppca) -> None:
    model = ppca.model(encoder_error=0.5)
    x = ppca.sample(50, torch.Generator().manual_seed(1))
    exact = ppca.marginal().log_prob(x.flatten(1))
    elbos = torch.stack(
        [model.elbo(x, generator=torch.Generator().manual_seed(s)) for s in range(200)]
    ).mean(0)
    assert (elbos < exact).all()


def test_iwae_bound_is_non_decreasing_in_k_and_below_log_px(ppca) -> None:
    model = ppca.model(encoder_error=0.8)
    x = ppca.sample(40, torch.Generator().manual_seed(3))
    exact = ppca.marginal().log_prob(x.flatten(1)).mean()
    bounds = []
    for k in (1, 2, 5, 20, 100):
        model.num_particles = k
        draws = [
            model.loss(x, generator=torch.Generator().manual_seed(s)).metrics for s in range(100)
        ]
        key = "iwae" if k > 1 else "elbo"
        bounds.append(torch.stack([d[key] for d in draws]).mean())
    assert all(a < b for a, b in itertools.pairwise(bounds)), bounds
    assert bounds[-1] < exact
    assert exact - bounds[-1] < 0.25 * (exact - bounds[0])


def test_iwae_with_exact_posterior_is_exact_for_any_k(ppca) -> None:
    model = ppca.model()
    model.num_particles = 7
    x = ppca.sample(10, torch.Generator().manual_seed(4))
    metrics = model.loss(x, generator=torch.Generator().manual_seed(5)).metrics
    exact = ppca.marginal().log_prob(x.flatten(1)).mean()
    assert math.isclose(float(metrics["iwae"]), float(exact), rel_tol=1e-7)


def test_beta_and_warmup_weight_only_the_kl() -> None:
    torch.manual_seed(0)
    model = build_model(small_config("vae", "mlp", beta=4.0), (1, 8, 8))
    x = torch.rand(6, 1, 8, 8)
    full = model.loss(x, generator=torch.Generator().manual_seed(0))
    half = model.loss(x, kl_weight=0.5, generator=torch.Generator().manual_seed(0))
    recon, kl = full.metrics["recon"], full.metrics["kl"]
    assert torch.allclose(full.objectives["model"], recon + 4.0 * kl)
    assert torch.allclose(half.objectives["model"], recon + 2.0 * kl)
    assert torch.equal(half.metrics["kl"], kl)


def test_learned_variance_has_a_floor() -> None:
    model = build_model(
        small_config("vae", "mlp", likelihood="gaussian-learned", min_scale=0.05), (1, 8, 8)
    )
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.fill_(-100.0)
    p_x = model.decoder(torch.zeros(2, 3))
    assert torch.all(p_x.base_dist.scale >= 0.05)


def test_options_that_do_not_apply_are_refused() -> None:
    with pytest.raises(ConfigError, match="does not apply"):
        build_model(small_config("ae", "mlp", beta=2.0), (1, 8, 8))
    with pytest.raises(ConfigError, match="choose one of"):
        build_model(small_config("vea", "mlp"), (1, 8, 8))
    with pytest.raises(ConfigError, match="likelihood"):
        build_model(small_config("vae", "mlp", likelihood="poisson"), (1, 8, 8))


def test_beta_and_num_particles_are_checked_when_set() -> None:
    model = build_model(small_config("vae", "mlp"), (1, 8, 8))
    for value in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_particles must be an integer of at least 1"):
            model.num_particles = value
    for value in (-1, -0.5, math.nan):
        with pytest.raises(ValueError, match="beta must be non-negative"):
            model.beta = value
    assert model.num_particles == 1 and model.beta == 1.0  # a refused value changes nothing
    with pytest.raises(ConfigError, match="num_particles must be an integer of at least 1"):
        build_model(small_config("vae", "mlp", num_particles=0), (1, 8, 8))
    model.num_particles, model.beta = 3, 0.0
    assert model.num_particles == 3 and model.beta == 0.0
