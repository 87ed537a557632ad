"""The Markov-chain study's recipes build the models their comments describe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaekit.build import build_model
from vaekit.config import load_config
from vaekit.models import AAE, VAE

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.mark.parametrize(
    ("recipe", "cls", "denoising"),
    [("vae", VAE, False), ("dvae", VAE, True), ("aae", AAE, False), ("daae", AAE, True)],
)
def test_mnist_recipes(recipe: str, cls: type, denoising: bool) -> None:
    config = load_config(CONFIGS / f"mnist-{recipe}.toml")
    model = build_model(config.model, (1, 28, 28))
    assert type(model) is cls and model.latent_dim == 10
    assert (model.corruption is not None) == denoising
    assert config.model.hidden == (1000, 1000) and config.data.name == "mnist"


def test_dcgan_recipe_is_the_papers_setup() -> None:
    config = load_config(CONFIGS / "dcgan-64.toml")
    assert (config.train.lr, config.train.adam_betas) == (2e-4, (0.5, 0.999))
    torch.manual_seed(0)
    model = build_model(config.model, (3, 64, 64))
    assert model.latent_dim == 200 and model.corruption is not None
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    loss = model.loss(torch.rand(2, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss.objectives["model"])
    assert model.decoder(torch.zeros(2, 200)).mean.shape == (2, 3, 64, 64)
