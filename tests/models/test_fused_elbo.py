"""The fused ELBO (hand-derived gradients) against the distributions path, and when it applies."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.models import VAE

MLP = ModelConfig(latent_dim=3, hidden=(12, 7), likelihood="bernoulli")


def _both_paths(model: VAE, x: torch.Tensor, kl_weight: float) -> list[tuple[dict, list]]:
    """(metrics, gradients) from the fused path and from the distributions path, same noise."""
    fused, results = model.fused, []
    for plan in (fused, None):
        model.fused = plan
        loss = model.loss(x, kl_weight=kl_weight, generator=torch.Generator().manual_seed(4))
        grads = torch.autograd.grad(loss.objectives["model"], list(model.parameters()))
        results.append((loss.metrics, grads))
    model.fused = fused
    return results


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu"])
@pytest.mark.parametrize("corruption", ["none", "masking"])
def test_fused_loss_and_gradients_equal_the_distributions_path(
    activation: str, corruption: str
) -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(MLP, activation=activation, corruption=corruption, beta=2.0)
    model = build_model(cfg, (1, 5, 5)).double()
    assert isinstance(model, VAE) and model.fused is not None
    x = torch.rand(9, 1, 5, 5, dtype=torch.float64)
    (fused_metrics, fused_grads), (metrics, grads) = _both_paths(model, x, kl_weight=0.3)
    assert fused_metrics.keys() == metrics.keys()
    for key, value in metrics.items():
        torch.testing.assert_close(fused_metrics[key], value, rtol=1e-12, atol=1e-10)
    for a, b in zip(fused_grads, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("particles", "activation"), [(2, "relu"), (5, "tanh")])
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_fused_iwae_bound_and_gradients_equal_the_distributions_path(
    particles: int, activation: str, beta: float
) -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(
        MLP, activation=activation, num_particles=particles, beta=beta, corruption="masking"
    )
    model = build_model(cfg, (1, 5, 5)).double()
    assert isinstance(model, VAE) and model.fused is not None
    x = torch.bernoulli(torch.rand(6, 1, 5, 5, dtype=torch.float64))
    (fused_metrics, fused_grads), (metrics, grads) = _both_paths(model, x, kl_weight=0.7)
    assert list(fused_metrics) == list(metrics) == ["recon", "kl", "elbo", "iwae", "loss"]
    for key, value in metrics.items():
        torch.testing.assert_close(fused_metrics[key], value, rtol=1e-12, atol=1e-10)
    for a, b in zip(fused_grads, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fused_gradients_respect_the_log_variance_clamp() -> None:
    torch.manual_seed(0)
    model = build_model(MLP, (1, 5, 5)).double()
    assert isinstance(model, VAE)
    with torch.no_grad():  # push some log-variances below LOG_VAR_MIN: the clamp cuts their grad
        model.encoder.head.log_var.bias[:2] = -40.0
    x = torch.rand(5, 1, 5, 5, dtype=torch.float64)
    bias_index = [n for n, _ in model.named_parameters()].index("encoder.head.log_var.bias")
    for particles in (1, 3):
        model.num_particles = particles
        model.fused = dataclasses.replace(model.fused, particles=particles)
        (_, fused_grads), (_, grads) = _both_paths(model, x, kl_weight=1.0)
        assert fused_grads[bias_index][:2].abs().max() == 0
        for a, b in zip(fused_grads, grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "change",
    [
        {"likelihood": "gaussian"},
        {"analytic_kl": False},  # the one-sample KL estimate
        {"activation": "elu"},  # its derivative needs the input, not the output
        {"network": "conv", "conv_channels": 4},
    ],
)
def test_other_models_take_the_distributions_path(change: dict) -> None:
    model = build_model(dataclasses.replace(MLP, **change), (1, 8, 8))
    assert isinstance(model, VAE) and model.fused is None
    loss = model.loss(torch.rand(3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss.objectives["model"])


def test_metrics_agree_with_and_without_gradients() -> None:
    torch.manual_seed(0)
    model = build_model(MLP, (1, 5, 5))
    x = torch.rand(4, 1, 5, 5)
    with torch.no_grad():
        plain = model.loss(x, generator=torch.Generator().manual_seed(1)).metrics
    fused = model.loss(x, generator=torch.Generator().manual_seed(1)).metrics
    for key, value in plain.items():
        torch.testing.assert_close(fused[key], value, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("particles", [1, 4])
def test_direct_gradients_equal_autograd_and_reuse_the_grad_buffers(particles: int) -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(MLP, corruption="masking", beta=1.5, num_particles=particles)
    model = build_model(cfg, (1, 5, 5)).double()
    assert isinstance(model, VAE)
    params = list(model.parameters())
    x = torch.rand(7, 1, 5, 5, dtype=torch.float64)
    loss = model.loss(x, kl_weight=0.4, generator=torch.Generator().manual_seed(2))
    expected = torch.autograd.grad(loss.objectives["model"], params)
    # A non-contiguous stale gradient: all gradients become views of one new flat buffer ...
    params[0].grad = torch.zeros(params[0].shape[::-1], dtype=torch.float64).t()
    model.loss_and_grad_(x, generator=torch.Generator().manual_seed(5))
    flat = params[0].grad._base
    assert flat is not None and flat.numel() == sum(p.numel() for p in params)
    assert all(p.grad is not None and p.grad._base is flat for p in params)
    # ... which later calls overwrite in place.
    direct = model.loss_and_grad_(
        x, kl_weight=0.4, generator=torch.Generator().manual_seed(2), scale=0.25
    )
    assert direct is not None and all(p.grad._base is flat for p in params)  # type: ignore[union-attr]
    assert not direct.objectives["model"].requires_grad
    for key, value in loss.metrics.items():
        torch.testing.assert_close(direct.metrics[key], value, rtol=1e-12, atol=1e-12)
    for p, g in zip(params, expected, strict=True):
        assert p.grad is not None and p.grad.shape == p.shape
        torch.testing.assert_close(p.grad, 0.25 * g, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("particles", [1, 4])
def test_the_direct_path_reports_whether_its_gradients_are_finite(
    particles: int, compile: bool
) -> None:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(MLP, num_particles=particles), (1, 5, 5))
    x = torch.bernoulli(torch.full((6, 1, 5, 5), 0.4))

    def flag(**kwargs: float) -> bool:
        generator = torch.Generator().manual_seed(1)
        loss = model.loss_and_grad_(x, generator=generator, compile=compile, **kwargs)
        assert loss is not None and loss.grads_finite is not None
        assert loss.grads_finite.shape == () and loss.grads_finite.dtype == torch.bool
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])  # type: ignore[union-attr]
        assert bool(loss.grads_finite) == bool(
            grads.isfinite().all() & loss.objectives["model"].isfinite()
        )
        return bool(loss.grads_finite)

    assert flag()
    assert not flag(scale=float("inf"))  # finite objective, infinite gradients
    assert torch.isfinite(model.loss_and_grad_(x, scale=float("inf")).objectives["model"])  # type: ignore[union-attr]
    with torch.no_grad():
        model.decoder.network.layers[0].weight[0, 0] = float("nan")  # type: ignore[index]
    assert not flag()


def test_models_without_a_direct_path_draw_nothing() -> None:
    model = build_model(dataclasses.replace(MLP, likelihood="gaussian"), (1, 5, 5))
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert model.loss_and_grad_(torch.rand(2, 1, 5, 5), generator=generator) is None
    assert torch.equal(generator.get_state(), state)
    assert all(p.grad is None for p in model.parameters())
