"""Model contracts over the registry, and the ELBO/IWAE maths against probabilistic PCA."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.distributions import draw
from vaekit.errors import ConfigError
from vaekit.models import MODELS
from vaekit.weights import load_weights, save_weights

SHAPES = {"mlp": (1, 8, 8), "conv": (3, 32, 32)}


def small_config(kind: str, network: str, **overrides: object) -> ModelConfig:
    cfg = ModelConfig(kind=kind, latent_dim=3, hidden=(16,), network=network, conv_channels=4)
    return dataclasses.replace(cfg, **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize("network", ["mlp", "conv"])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_contract_finite_loss_gradients_and_roundtrip(kind: str, network: str, tmp_path) -> None:
    torch.manual_seed(0)
    shape = SHAPES[network]
    model = build_model(small_config(kind, network), shape)
    x = torch.rand(5, *shape)
    loss = model.loss(x, generator=torch.Generator().manual_seed(1))
    assert set(loss.objectives) == set(model.parameter_groups())
    for name, objective in loss.objectives.items():
        assert objective.dim() == 0 and torch.isfinite(objective)
        objective.backward(inputs=model.parameter_groups()[name], retain_graph=True)
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(torch.isfinite(v) for v in loss.metrics.values())

    save_weights(tmp_path / "m.safetensors", model)
    clone = build_model(small_config(kind, network), shape)
    load_weights(tmp_path / "m.safetensors", clone)
    model.eval(), clone.eval()
    assert torch.equal(model.reconstruct(x), clone.reconstruct(x))
    z = torch.randn(4, 3)
    assert torch.equal(model.decode_mean(z), clone.decode_mean(z))


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
