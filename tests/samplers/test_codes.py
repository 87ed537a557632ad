"""The codes the ex-post samplers fit: a conditional model encodes each x with its own label."""

from __future__ import annotations

import pytest
import torch

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.errors import ConfigError
from vaekit.samplers import (
    FlowSampler,
    GaussianFitSampler,
    GaussianMixtureSampler,
    TwoStageSampler,
)
from vaekit.samplers.codes import training_codes

FITS = {
    "gaussian-fit": lambda model, x, y: GaussianFitSampler(model, x, labels=y, batch_size=7),
    "gaussian-mixture": lambda model, x, y: GaussianMixtureSampler(
        model, x, labels=y, num_components=2, batch_size=7
    ),
    "flow": lambda model, x, y: FlowSampler(model, x, labels=y, steps=20, batch_size=7),
    "two-stage": lambda model, x, y: TwoStageSampler(model, x, labels=y, steps=20, batch_size=7),
}


def conditional_model() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=2, hidden=(16,), conditional=True)
    return build_model(cfg, (6,), num_classes=3)


def test_each_datapoint_is_encoded_with_its_own_label() -> None:
    model = conditional_model()
    x, y = torch.rand(20, 6), torch.arange(20) % 3
    codes = training_codes(model, x, labels=y, batch_size=7)  # batches of 7, 7 and 6
    for i in range(20):
        with model.given(y[i : i + 1]):
            torch.testing.assert_close(codes[i], model.encode_mean(x[i : i + 1])[0])
    other = training_codes(model, x, labels=(y + 1) % 3, batch_size=7)
    assert not torch.allclose(codes, other)  # the labels matter


def test_vectors_condition_the_codes_as_labels_do() -> None:
    """y may be any vector per datapoint: one-hot vectors give the codes of their labels."""
    model = conditional_model()
    x, y = torch.rand(12, 6), torch.arange(12) % 3
    vectors = torch.nn.functional.one_hot(y, 3).float()
    torch.testing.assert_close(
        training_codes(model, x, labels=vectors, batch_size=5),
        training_codes(model, x, labels=y, batch_size=5),
    )


def test_labels_are_required_and_must_match_the_data() -> None:
    model = conditional_model()
    with pytest.raises(ConfigError, match="without labels: give the labels"):
        training_codes(model, torch.rand(4, 6))
    with pytest.raises(ValueError, match="labels has 3 rows but data has 4"):
        training_codes(model, torch.rand(4, 6), labels=torch.tensor([0, 1, 2]))


def test_an_unconditional_model_ignores_labels() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=2, hidden=(16,)), (6,))
    x = torch.rand(10, 6)
    torch.testing.assert_close(
        training_codes(model, x, labels=torch.zeros(10, dtype=torch.long)), model.encode_mean(x)
    )


@pytest.mark.parametrize("name", sorted(FITS))
def test_every_code_fit_samples_a_conditional_model_class_by_class(name: str) -> None:
    model = conditional_model()
    x, y = torch.rand(30, 6), torch.arange(30) % 3
    sampler = FITS[name](model, x, y)
    draws = {}
    for label in range(3):
        with model.given(torch.full((5,), label)):
            generator = torch.Generator().manual_seed(1)
            draws[label] = sampler.sample(5, generator=generator)
    assert all(d.shape == (5, 6) and torch.isfinite(d).all() for d in draws.values())
    # the same codes decoded under another class: other data
    assert not torch.allclose(draws[0], draws[1])
