"""The doubly reparameterised gradient (``model.gradient_estimator = "dreg"``).

Its definition (Tucker et al. 2019, eq. 7) is written out here with two separate surrogates, one
for the decoder and one for the encoder; the model's single-pass versions (autograd through
``model.loss``, and the hand-derived gradients of ``vaekit.accel``) must equal it, and it must
be unbiased: its mean over many draws equals the reparameterisation gradient's, which a biased
estimator (sticking the landing at k > 1) fails.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

from vaekit import accel
from vaekit.build import build_model
from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.distributions.posteriors import detached_gaussian
from vaekit.distributions.sampling import draw
from vaekit.errors import ConfigError
from vaekit.models import VAE

MLP = ModelConfig(latent_dim=3, hidden=(12, 7), likelihood="bernoulli", activation="tanh")


def _model(particles: int, beta: float = 1.0, estimator: str = "dreg", **change: object) -> VAE:
    torch.manual_seed(0)
    cfg = dataclasses.replace(
        MLP, num_particles=particles, beta=beta, gradient_estimator=estimator, **change
    )
    model = build_model(cfg, (1, 5, 5)).double()
    assert isinstance(model, VAE)
    return model


def _model_grads(model: VAE, x: Tensor, kl_weight: float, seed: int) -> list[Tensor]:
    loss = model.loss(x, kl_weight=kl_weight, generator=torch.Generator().manual_seed(seed))
    return list(torch.autograd.grad(loss.objectives["model"], list(model.parameters())))


def _direct_grads(model: VAE, x: Tensor, kl_weight: float, seed: int) -> list[Tensor]:
    """The trainer's path with ``accelerate="auto"``: gradients written into ``.grad``."""
    direct = accel.direct_gradients(model)
    assert direct is not None
    model.zero_grad(set_to_none=True)
    out = direct(x, kl_weight=kl_weight, generator=torch.Generator().manual_seed(seed))
    assert out is not None
    return [p.grad for p in model.parameters()]  # type: ignore[misc]


def _reference_grads(
    model: VAE, x: Tensor, kl_weight: float, seed: int, coefficient: str = "dreg"
) -> list[Tensor]:
    """Decoder: the IWAE gradient Σ w_i ∇θ a_i. Encoder: Σ c_i ∇φ a_i through z_i only, with
    q's parameters detached in log q, c_i = (1 - β) w_i + β w_i² ("dreg") or w_i ("stl")."""
    beta = model.beta * kl_weight
    q = model.encoder(x)
    z = draw(q, (model.num_particles,), generator=torch.Generator().manual_seed(seed))
    k = z.shape[0]
    log_px, log_ratio = model.log_weights(x, q, z.detach())
    decoder_objective = -(torch.logsumexp(log_px + beta * log_ratio, 0) - math.log(k)).mean()
    log_px, log_ratio = model.log_weights(x, detached_gaussian(q), z)
    a = log_px + beta * log_ratio
    w = torch.softmax(a.detach(), 0)
    c = (1 - beta) * w + beta * w * w if coefficient == "dreg" else w
    encoder_objective = -(c * a).sum(0).mean()
    encoder = list(model.encoder.parameters())
    decoder = list(model.decoder.parameters())
    grads = dict(zip(encoder, torch.autograd.grad(encoder_objective, encoder), strict=True))
    grads |= zip(decoder, torch.autograd.grad(decoder_objective, decoder), strict=True)
    return [grads[p] for p in model.parameters()]


@pytest.mark.parametrize(("particles", "beta"), [(1, 1.0), (1, 0.4), (4, 1.0), (4, 0.4), (4, 2.5)])
@pytest.mark.parametrize("path", ["direct", "autograd"])
def test_dreg_gradients_equal_the_definition(particles: int, beta: float, path: str) -> None:
    model = _model(particles, beta)
    x = torch.bernoulli(torch.rand(6, 1, 5, 5, dtype=torch.float64))
    grad_fn = _direct_grads if path == "direct" else _model_grads
    got = grad_fn(model, x, kl_weight=0.8, seed=3)
    expected = _reference_grads(model, x, kl_weight=0.8, seed=3)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("particles", [1, 4])
def test_the_trainers_direct_path_takes_the_same_gradients(particles: int) -> None:
    """``DirectELBO`` (no autograd, the trainer's path) against the definition."""
    model = _model(particles, beta=0.7)
    x = torch.bernoulli(torch.rand(6, 1, 5, 5, dtype=torch.float64))
    expected = _reference_grads(model, x, kl_weight=0.5, seed=8)
    for got, g in zip(_direct_grads(model, x, 0.5, seed=8), expected, strict=True):
        assert got is not None
        torch.testing.assert_close(got, g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", ["direct", "autograd"])
@pytest.mark.parametrize("particles", [1, 4])
def test_dreg_keeps_the_loss_values_and_the_decoder_gradient(particles: int, path: str) -> None:
    dreg, reparam = _model(particles), _model(particles, estimator="reparam")
    x = torch.bernoulli(torch.rand(6, 1, 5, 5, dtype=torch.float64))
    losses = []
    for model in (dreg, reparam):
        generator = torch.Generator().manual_seed(1)
        if path == "autograd":
            losses.append(model.loss(x, generator=generator))
            continue
        direct = accel.direct_gradients(model)
        assert direct is not None
        out = direct(x, generator=generator)
        assert out is not None
        losses.append(out[0])
    assert losses[0].metrics.keys() == losses[1].metrics.keys()
    for key, value in losses[1].metrics.items():
        torch.testing.assert_close(losses[0].metrics[key], value, rtol=0, atol=0)
    torch.testing.assert_close(losses[0].objectives["model"], losses[1].objectives["model"])
    grad_fn = _direct_grads if path == "direct" else _model_grads
    grads = [grad_fn(m, x, 1.0, 1) for m in (dreg, reparam)]
    n_encoder = len(list(dreg.encoder.parameters()))
    for a, b in zip(grads[0][n_encoder:], grads[1][n_encoder:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    pairs = zip(grads[0][:n_encoder], grads[1][:n_encoder], strict=True)
    encoder_gap = max((a - b).abs().max() for a, b in pairs)
    assert encoder_gap > 1e-3  # a different estimator of the encoder's gradient


GradFn = Callable[[VAE, Tensor, float, int], list[Tensor]]


def _mean_gradients(grad_fn: GradFn, model: VAE, x: Tensor, repeats: int) -> tuple[Tensor, Tensor]:
    """Mean and standard error over ``repeats`` independent batch gradients, flattened."""
    draws = torch.stack(
        [torch.cat([g.flatten() for g in grad_fn(model, x, 0.6, seed)]) for seed in range(repeats)]
    )
    return draws.mean(0), draws.std(0) / math.sqrt(repeats)


def _largest_z(first: tuple[Tensor, Tensor], second: tuple[Tensor, Tensor]) -> float:
    (m1, s1), (m2, s2) = first, second
    return float(((m1 - m2).abs() / (s1 * s1 + s2 * s2).sqrt().clamp_min(1e-12)).max())


@pytest.mark.parametrize(("particles", "beta"), [(1, 1.0), (3, 1.0), (3, 0.5)])
def test_dreg_is_unbiased(particles: int, beta: float) -> None:
    """Means over 40 batches of 400 copies of two images: every gradient entry of DReG agrees
    with the reparameterisation gradient's within 5 standard errors; sticking the landing at
    k > 1, which Tucker et al. show to be biased, does not."""
    x = torch.bernoulli(torch.rand(2, 1, 5, 5, dtype=torch.float64)).repeat(400, 1, 1, 1)
    dreg, reparam = _model(particles, beta), _model(particles, beta, estimator="reparam")
    reference = _mean_gradients(_model_grads, reparam, x, repeats=40)
    assert _largest_z(_mean_gradients(_model_grads, dreg, x, repeats=40), reference) < 5
    if particles > 1:
        stl = _mean_gradients(
            lambda m, x, w, s: _reference_grads(m, x, w, s, coefficient="stl"), dreg, x, 40
        )
        assert _largest_z(stl, reference) > 8


def test_dreg_lowers_the_encoder_gradient_noise_at_many_particles() -> None:
    """Rainforth et al. (2018): the reparameterised encoder gradient of the IWAE bound gets
    noisier relative to its mean as k grows; DReG's does not. At k = 50 its variance is lower."""
    x = torch.bernoulli(torch.rand(1, 1, 5, 5, dtype=torch.float64))
    dreg, reparam = _model(50), _model(50, estimator="reparam")
    n_encoder = sum(p.numel() for p in dreg.encoder.parameters())
    variances = []
    for model in (dreg, reparam):
        draws = torch.stack(
            [torch.cat([g.flatten() for g in _model_grads(model, x, 1.0, s)]) for s in range(200)]
        )
        variances.append(draws[:, :n_encoder].var(0).sum())
    assert variances[0] < 0.5 * variances[1]


def test_estimator_is_checked() -> None:
    parts = _model(1)
    with pytest.raises(ValueError, match="gradient_estimator must be one of 'reparam', 'dreg'"):
        VAE(parts.encoder, parts.decoder, parts.prior, gradient_estimator="score")
    with pytest.raises(ConfigError, match=r"model\.gradient_estimator does not apply"):
        build_model(dataclasses.replace(MLP, kind="ae", gradient_estimator="dreg"), (1, 5, 5))


def test_dreg_with_a_gaussian_likelihood_and_the_sampled_kl() -> None:
    """The autograd path for models the hand-derived gradients do not cover."""
    model = _model(2, likelihood="gaussian-learned", analytic_kl=False)
    assert accel.direct_gradients(model) is None
    x = torch.rand(5, 1, 5, 5, dtype=torch.float64)
    got = _model_grads(model, x, kl_weight=1.0, seed=2)
    for a, b in zip(got, _reference_grads(model, x, 1.0, seed=2), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_vaekit_train_takes_the_estimator(tmp_path: Path) -> None:
    out = tmp_path / "run"
    tiny = str(Path(__file__).parents[2] / "configs" / "tiny.toml")
    overrides = ["model.gradient_estimator=dreg", "model.num_particles=3", "train.epochs=4"]
    argv = ["train", "--config", tiny, "--out", str(out), "--quiet"]
    assert main([*argv, *(a for o in overrides for a in ("--set", o))]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["model"]["gradient_estimator"] == "dreg"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val/iwae"] > records[0]["val/iwae"] + 1  # nats
