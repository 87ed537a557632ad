"""The adversarial autoencoder: its two objectives, their isolation, and prior matching."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from vaekit.build import build_dataset, build_model
from vaekit.config import DataConfig, ModelConfig
from vaekit.data import Dataset
from vaekit.distributions import Delta
from vaekit.errors import ConfigError
from vaekit.models import AAE
from vaekit.training.trainer import Trainer


def aae(**overrides: object) -> AAE:
    cfg = ModelConfig(
        kind="aae", latent_dim=2, hidden=(64,), discriminator_hidden=(64, 64), **overrides
    )  # type: ignore[arg-type]
    model = build_model(cfg, (1, 8, 8))
    assert isinstance(model, AAE)
    return model


def gaussian_fit_kl(z: Tensor) -> float:
    """KL(N(m, S) || N(0, I)) for the mean m and covariance S of codes z [N, D]."""
    z = z.double()
    m, S = z.mean(0), torch.cov(z.T)
    return float(0.5 * (S.trace() + m @ m - len(m) - torch.logdet(S)))


def test_objectives_groups_and_metrics() -> None:
    torch.manual_seed(0)
    model = aae(adversarial_weight=3.0)
    assert not model.has_density and model.prior_matched
    groups = model.parameter_groups()
    assert set(groups) == {"autoencoder", "discriminator"}
    assert {id(p) for p in groups["discriminator"]} == {
        id(p) for p in model.discriminator.parameters()
    }
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))
    x = torch.rand(16, 1, 8, 8)
    loss = model.loss(x, kl_weight=0.5, generator=torch.Generator().manual_seed(0))
    metrics = loss.metrics
    assert set(metrics) == {"loss", "recon", "adversarial", "discriminator", "disc_accuracy"}
    expected = metrics["recon"] + 3.0 * 0.5 * metrics["adversarial"]
    assert torch.allclose(loss.objectives["autoencoder"], expected)
    assert 0 <= metrics["disc_accuracy"] <= 1
    assert metrics["recon"] > 20  # a per-datapoint sum over 64 pixels, not a per-pixel mean


def test_the_discriminator_objective_never_reaches_the_encoder() -> None:
    model = aae()
    loss = model.loss(torch.rand(8, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(
        loss.objectives["discriminator"],
        [*model.encoder.parameters(), *model.decoder.parameters()],
        allow_unused=True,
    )
    assert all(g is None for g in grads)


@pytest.mark.parametrize(("kind", "posterior"), [("aae", "delta"), ("aae-gaussian", "gaussian")])
def test_encoder_kinds(kind: str, posterior: str) -> None:
    cfg = ModelConfig(kind=kind, latent_dim=2, hidden=(16,), corruption="gaussian")
    model = build_model(cfg, (1, 8, 8))
    q = model.encoder(torch.rand(3, 1, 8, 8))
    assert isinstance(q, Delta) == (posterior == "delta")
    assert model.corruption is not None  # the denoising AAE is the same class


def test_adversarial_options_only_apply_to_the_aae() -> None:
    with pytest.raises(ConfigError, match="adversarial_weight does not apply"):
        build_model(ModelConfig(kind="vae", adversarial_weight=2.0), (1, 8, 8))
    with pytest.raises(ConfigError, match="discriminator_hidden does not apply"):
        build_model(ModelConfig(kind="ae", discriminator_hidden=(8,)), (1, 8, 8))
    with pytest.raises(ConfigError, match="non-negative"):
        build_model(ModelConfig(kind="aae", adversarial_weight=-1.0), (1, 8, 8))


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return build_dataset(DataConfig(name="digits"), 0)


def train_codes_kl(model: AAE, dataset: Dataset, epochs: int) -> float:
    trainer = Trainer(
        model, dataset, epochs=epochs, batch_size=64, lr=1e-3, adam_betas=(0.5, 0.999)
    )
    trainer.progress = False
    trainer.fit()
    model.eval()
    return gaussian_fit_kl(model.encode_mean(dataset.val.x))


def test_adversarial_training_matches_the_codes_to_the_prior(digits: Dataset) -> None:
    """Gaussian-fit KL of validation codes to N(0, I): 4.4 at initialisation, about 0.5 after
    10 epochs of the AAE, about 30 for the same autoencoder trained without the critic."""
    torch.manual_seed(0)
    model = aae(adversarial_weight=3.0).eval()
    initial = gaussian_fit_kl(model.encode_mean(digits.val.x))
    trained = train_codes_kl(model.train(), digits, epochs=10)
    torch.manual_seed(0)
    unregularised = train_codes_kl(aae(adversarial_weight=0.0), digits, epochs=10)
    assert trained < 0.3 * initial, (initial, trained)
    assert trained < 0.1 * unregularised, (trained, unregularised)
