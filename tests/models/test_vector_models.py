"""Models on feature vectors [D]: the likelihood heads score one vector as one event, the MLP
decoder returns [B, P·D], and imputation masks cover features."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.distributions.likelihoods import (
    BernoulliLikelihood,
    FixedGaussianLikelihood,
    LearnedGaussianLikelihood,
)
from vaekit.nn import MLPDecoderNet
from vaekit.samplers.imputation import MASKS


def test_heads_sum_over_the_features_of_one_vector() -> None:
    g = torch.Generator().manual_seed(0)
    raw, x = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    fixed = FixedGaussianLikelihood(sigma=0.5)(raw)
    assert fixed.batch_shape == (5,) and fixed.event_shape == (7,)
    expected = (-0.5 * ((x - raw) / 0.5) ** 2 - math.log(0.5 * math.sqrt(2 * math.pi))).sum(1)
    torch.testing.assert_close(fixed.log_prob(x), expected)
    learned = LearnedGaussianLikelihood(min_scale=0.01)(torch.cat([raw, raw], dim=1))
    scale = 0.01 + torch.nn.functional.softplus(raw)
    torch.testing.assert_close(learned.log_prob(x), Normal(raw, scale).log_prob(x).sum(1))
    probs = torch.rand(5, 7, generator=g)
    bern = BernoulliLikelihood()(raw)
    expected_bern = (probs * raw - torch.nn.functional.softplus(raw)).sum(1)
    torch.testing.assert_close(bern.log_prob(probs), expected_bern)


@pytest.mark.parametrize("likelihood", ["gaussian", "gaussian-learned", "bernoulli"])
def test_models_train_on_vectors(likelihood: str) -> None:
    model = build_model(ModelConfig(likelihood=likelihood, hidden=(16,), latent_dim=3), (7,))
    x = torch.rand(10, 7, generator=torch.Generator().manual_seed(1))
    loss = model.loss(x, generator=torch.Generator().manual_seed(2))
    objective = sum(loss.objectives.values())
    assert torch.isfinite(objective)
    objective.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.decode_mean(torch.zeros(4, 3)).shape == (4, 7)
    assert model.reconstruct(x).shape == (10, 7)


def test_mlp_decoder_output_shape() -> None:
    net = MLPDecoderNet(3, (7,), (8,), "relu", params_per_pixel=2)
    assert net(torch.zeros(4, 3)).shape == (4, 14)
    assert MLPDecoderNet(3, (1, 4, 4), (8,), "relu")(torch.zeros(2, 3)).shape == (2, 1, 4, 4)


def test_masks_cover_features() -> None:
    g = torch.Generator().manual_seed(0)
    centre = MASKS["center"](3, (8,), g)
    assert centre.shape == (3, 8) and centre[0].tolist() == [False] * 2 + [True] * 4 + [False] * 2
    assert MASKS["left-half"](2, (5,), g)[1].tolist() == [True, True, False, False, False]
    random = MASKS["random"](200, (10,), g)
    assert random.shape == (200, 10) and 0.4 < float(random.float().mean()) < 0.6
