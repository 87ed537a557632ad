"""Learned priors: the Gaussian mixture and the VampPrior are normalised densities (numerical
integration in 2-D), the Monte-Carlo KL to them matches numerical integration, and models with
them train (gradients reach the prior's parameters), save, load and sample from their own prior."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

import vaekit
from vaekit.build import build_model
from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.distributions import MixturePrior, VampPrior, draw, kl_to_prior
from vaekit.distributions.gaussian_mixture import DiagonalGaussianMixture
from vaekit.errors import ConfigError

GRID = torch.linspace(-9, 9, 601, dtype=torch.float64)
ROOT = Path(__file__).parents[2]


def on_grid(dist: torch.distributions.Distribution) -> torch.Tensor:
    """The density on GRID x GRID [601, 601]."""
    z1, z2 = torch.meshgrid(GRID, GRID, indexing="ij")
    return dist.log_prob(torch.stack([z1, z2], -1).view(-1, 2)).exp().view(601, 601)


def integral(values: torch.Tensor) -> float:
    return float(torch.trapezoid(torch.trapezoid(values, GRID, dim=1), GRID))


class TinyEncoder(nn.Module):
    """x [B, 3] -> N(loc, scale) over 2 latent dimensions."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.distributions.Distribution:
        loc, log_scale = self.net(x).chunk(2, -1)
        return Independent(Normal(loc, log_scale.exp()), 1)


def priors() -> list[nn.Module]:
    torch.manual_seed(0)
    mixture = MixturePrior(2, components=4)
    with torch.no_grad():
        mixture.log_scale.uniform_(-0.7, 0.3)
        mixture.logits.normal_()
    vamp = VampPrior(TinyEncoder().double(), (3,), components=5)
    return [mixture.double(), vamp.double()]


@pytest.mark.parametrize("index", [0, 1], ids=["mixture", "vamp"])
def test_prior_density_integrates_to_one(index: int) -> None:
    with torch.no_grad():
        assert integral(on_grid(priors()[index]())) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("index", [0, 1], ids=["mixture", "vamp"])
def test_monte_carlo_kl_matches_numerical_integration(index: int) -> None:
    with torch.no_grad():
        p = priors()[index]()
        q = Independent(
            Normal(torch.tensor([0.3, -0.4]).double(), torch.tensor([0.8, 0.5]).double()), 1
        )
        log_q, log_p = on_grid(q).log(), on_grid(p).log()
        exact = integral(on_grid(q) * (log_q - log_p).nan_to_num(0.0))
        z = draw(q, (400_000,), generator=torch.Generator().manual_seed(0))
        estimate = kl_to_prior(q.expand((400_000,)), p, z).mean().item()  # no closed form: MC
    assert estimate == pytest.approx(exact, abs=0.01)


def test_vamp_prior_does_not_save_the_encoder_twice() -> None:
    cfg = ModelConfig(latent_dim=2, hidden=(8,), prior="vamp", prior_components=3)
    model = build_model(cfg, (1, 4, 4))
    keys = list(model.state_dict())
    assert "prior.pseudo_inputs" in keys and not any(k.startswith("prior.encoder") for k in keys)
    assert model.prior.encoder is model.encoder  # type: ignore[union-attr]


@pytest.mark.parametrize("prior", ["mixture", "vamp"])
def test_models_with_learned_priors_train_and_sample(prior: str) -> None:
    cfg = ModelConfig(latent_dim=2, hidden=(8,), prior=prior, prior_components=3)
    model = build_model(cfg, (1, 4, 4))
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    loss = model.loss(x, generator=torch.Generator().manual_seed(1))
    sum(loss.objectives.values()).backward()
    for name, parameter in model.named_parameters():
        if name.startswith(("prior.", "encoder.", "decoder.")):
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    z = draw(model.prior(), (5,), generator=torch.Generator().manual_seed(2))
    assert z.shape == (5, 2) and bool(torch.isfinite(z).all())


def test_learned_priors_are_refused_for_adversarial_autoencoders() -> None:
    cfg = ModelConfig(kind="aae", latent_dim=2, hidden=(8,), prior="mixture")
    with pytest.raises(ConfigError, match="draws of the prior, which carry no gradient"):
        build_model(cfg, (1, 4, 4))


@pytest.mark.parametrize("prior", ["mixture", "vamp"])
def test_cli_run_with_a_learned_prior_round_trips(prior: str, tmp_path: Path) -> None:
    run = str(tmp_path / "run")
    argv = ["train", "--config", str(ROOT / "configs" / "tiny.toml"), "--quiet"]
    argv += ["--set", f"model.prior={prior!r}", "--set", "model.prior_components=4"]
    assert main([*argv, "--out", run]) == 0
    model = vaekit.load(run)
    again = vaekit.load(run)
    z = torch.zeros(3, 2)
    torch.testing.assert_close(model.prior().log_prob(z), again.prior().log_prob(z))
    assert math.isfinite(float(model.prior().log_prob(z).sum().detach()))
    out = str(tmp_path / "s.png")
    assert main(["sample", run, "--out", out]) == 0
    assert main(["sample", run, "--sampler", "markov-chain", "--out", out]) == 0
    metrics = ["--metrics", "elbo,log-likelihood", "--num-importance-samples", "20", "--quiet"]
    assert main(["evaluate", run, *metrics, "--out", str(tmp_path / "e.json")]) == 0


@pytest.mark.parametrize("scale_floor", [1.0, 0.01])
def test_the_matrix_product_mixture_density_is_the_broadcast_one(scale_floor: float) -> None:
    """DiagonalGaussianMixture.log_prob (expanded quadratic form, float64) equals
    MixtureSameFamily's broadcast one in float64, values and gradients, for any leading shape
    of z, wide or very narrow components (where the expansion cancels most)."""
    g = torch.Generator().manual_seed(0)
    k, d = 7, 5
    logits = torch.randn(k, generator=g, dtype=torch.float64).requires_grad_()
    loc = (3 * torch.randn(k, d, generator=g, dtype=torch.float64)).requires_grad_()
    scale = (scale_floor + torch.rand(k, d, generator=g, dtype=torch.float64)).requires_grad_()
    z = loc.detach()[torch.randint(k, (4, 6), generator=g)] + 0.1 * torch.randn(
        4, 6, d, generator=g, dtype=torch.float64
    )
    fast = DiagonalGaussianMixture(logits, loc, scale).log_prob(z)
    components = Independent(Normal(loc, scale), 1)
    slow = MixtureSameFamily(Categorical(logits=logits), components).log_prob(z)
    assert fast.shape == (4, 6)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9)
    fast_grads = torch.autograd.grad(fast.sum(), (logits, loc, scale))
    slow_grads = torch.autograd.grad(slow.sum(), (logits, loc, scale))
    for a, b in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)
    in_float32 = DiagonalGaussianMixture(logits.float(), loc.float(), scale.float())
    assert in_float32.log_prob(z.float()).dtype == torch.float32
    assert in_float32.log_prob(z.bfloat16()).dtype == torch.float32  # not rounded to bfloat16
    with pytest.raises(ValueError, match=r"points \[\.\.\., 5\]"):
        in_float32.log_prob(torch.zeros(3, 4))


def test_learned_priors_score_with_the_matrix_product_mixture() -> None:
    assert isinstance(MixturePrior(3, 4)(), DiagonalGaussianMixture)
    assert isinstance(VampPrior(TinyEncoder(), (3,), 4)(), DiagonalGaussianMixture)


def test_the_matrix_product_mixture_samples_like_its_components() -> None:
    """Seeded draws, the mean and the variance are those of the MixtureSameFamily it holds."""
    g = torch.Generator().manual_seed(1)
    logits, loc, scale = (
        torch.randn(3, generator=g),
        torch.randn(3, 2, generator=g),
        torch.rand(3, 2, generator=g) + 0.5,
    )
    p = DiagonalGaussianMixture(logits, loc, scale)
    reference = MixtureSameFamily(Categorical(logits=logits), Independent(Normal(loc, scale), 1))
    a = draw(p, (5,), generator=torch.Generator().manual_seed(3))
    b = draw(reference, (5,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(p.mean, reference.mean)
    torch.testing.assert_close(p.variance, reference.variance)
    assert p.event_shape == (2,) and p.batch_shape == ()
