"""MIWAE, CIWAE and PIWAE (Rainforth et al. 2018): each bound equals its formula on the
linear-Gaussian (pPCA) model, reduces to log p(x) with the exact posterior, and PIWAE sends the
MIWAE gradient to the encoder and the IWAE gradient to the decoder."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from vaekit.build import build_model
from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.distributions import draw
from vaekit.errors import ConfigError
from vaekit.models import VAE
from vaekit.models.vae import multi_sample_bounds

ROOT = Path(__file__).parents[2]


def configure(model: VAE, bound: str, groups: int, particles: int, beta: float = 0.5) -> VAE:
    model.bound, model.bound_groups, model.num_particles, model.ciwae_beta = (
        bound, groups, particles, beta,
    )  # fmt: skip
    return model


def log_weights(model: VAE, x: torch.Tensor, total: int, seed: int) -> torch.Tensor:
    """log w [M·K, B] with the draws ``loss`` makes from a generator seeded with ``seed``."""
    q = model.encoder(x)
    z = draw(q, (total,), generator=torch.Generator().manual_seed(seed))
    log_px, log_ratio = model.log_weights(x, q, z)
    return log_px + log_ratio


@pytest.mark.parametrize(("bound", "groups", "particles"), [
    ("miwae", 3, 4), ("ciwae", 1, 5), ("piwae", 2, 3), ("miwae", 1, 6),
])  # fmt: skip
def test_each_bound_equals_its_formula(ppca, bound: str, groups: int, particles: int) -> None:
    model = configure(ppca.model(encoder_error=0.7), bound, groups, particles, beta=0.3)
    x = ppca.sample(5, torch.Generator().manual_seed(1))
    lw = log_weights(model, x, groups * particles, seed=2)  # [M·K, B]
    loss = model.loss(x, generator=torch.Generator().manual_seed(2))
    grouped = lw.view(groups, particles, -1)
    miwae = (torch.logsumexp(grouped, 1) - math.log(particles)).mean(0)
    iwae_all = torch.logsumexp(lw, 0) - math.log(groups * particles)
    ciwae = 0.3 * lw.mean(0) + 0.7 * (torch.logsumexp(lw, 0) - math.log(particles))
    expected = {"miwae": miwae, "ciwae": ciwae, "piwae": miwae}[bound]
    torch.testing.assert_close(loss.metrics["loss"], -expected.mean())
    torch.testing.assert_close(loss.metrics["iwae"], iwae_all.mean())
    if bound == "piwae":
        torch.testing.assert_close(loss.objectives["model"].detach(), -iwae_all.mean())
    if groups == 1 and bound == "miwae":  # MIWAE with M = 1 is IWAE
        torch.testing.assert_close(loss.metrics["loss"], -iwae_all.mean())


@pytest.mark.parametrize("bound", ["miwae", "ciwae", "piwae"])
def test_with_the_exact_posterior_every_bound_is_log_px(ppca, bound: str) -> None:
    groups = 1 if bound == "ciwae" else 2
    model = configure(ppca.model(), bound, groups, 3)
    x = ppca.sample(4, torch.Generator().manual_seed(3))
    loss = model.loss(x, generator=torch.Generator().manual_seed(4))
    exact = ppca.marginal().log_prob(x.flatten(1)).mean()
    torch.testing.assert_close(-loss.metrics["loss"], exact)


def test_the_bounds_order_as_in_the_paper() -> None:
    """For any log weights: mean log w (ELBO) <= MIWAE(M, K) <= IWAE(M·K), CIWAE in between."""
    lw = torch.randn(12, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    bounds = multi_sample_bounds(lw, 3, 4, 0.4)
    iwae_k = multi_sample_bounds(lw, 1, 12, 0.4)["iwae"]
    assert bool((lw.mean(0) <= bounds["miwae"] + 1e-12).all())
    assert bool((bounds["miwae"] <= bounds["iwae"] + 1e-12).all())
    torch.testing.assert_close(bounds["iwae"], iwae_k)


def test_piwae_sends_miwae_to_the_encoder_and_iwae_to_the_decoder(ppca) -> None:
    model = configure(ppca.model(encoder_error=0.5), "piwae", 2, 3)
    x = ppca.sample(4, torch.Generator().manual_seed(5))
    groups = model.parameter_groups()
    assert set(groups) == {"encoder", "model"}
    assert {id(p) for p in groups["encoder"]} == {id(p) for p in model.encoder.parameters()}
    loss = model.loss(x, generator=torch.Generator().manual_seed(6))
    enc = torch.autograd.grad(loss.objectives["encoder"], groups["encoder"], retain_graph=True)
    dec = torch.autograd.grad(loss.objectives["model"], groups["model"])
    lw = log_weights(model, x, 6, seed=6)
    miwae = (torch.logsumexp(lw.view(2, 3, -1), 1) - math.log(3)).mean(0).mean()
    iwae = (torch.logsumexp(lw, 0) - math.log(6)).mean()
    for got, want in zip(
        enc, torch.autograd.grad(-miwae, groups["encoder"], retain_graph=True), strict=True
    ):
        torch.testing.assert_close(got, want)
    for got, want in zip(dec, torch.autograd.grad(-iwae, groups["model"]), strict=True):
        torch.testing.assert_close(got, want)


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="bound_groups"):
        build_model(ModelConfig(bound="ciwae", bound_groups=2), (1, 8, 8))
    with pytest.raises(ConfigError, match="reparam"):
        build_model(ModelConfig(bound="miwae", gradient_estimator="dreg"), (1, 8, 8))
    with pytest.raises(ConfigError, match="does not apply"):
        build_model(ModelConfig(kind="aae", bound="miwae"), (1, 8, 8))


@pytest.mark.parametrize("bound", ["miwae", "piwae"])
def test_cli_trains_each_bound(
    bound: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--config", str(ROOT / "configs" / "tiny.toml"), "--out", str(tmp_path / "r")]
    argv += ["--set", f"model.bound={bound!r}", "--set", "model.bound_groups=2"]
    assert main([*argv, "--set", "model.num_particles=3"]) == 0
    assert f"-{bound} bound" in capsys.readouterr().out
