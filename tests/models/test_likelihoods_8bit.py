"""The continuous Bernoulli and the discretised mixture of logistics: each is a normalised
distribution (checked by numerical integration and by summing the 256 bins), their samples and
means lie where they should, and models built with them train and round-trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tests.test_models import small_config
from torch.distributions import Independent

import vaekit
from vaekit.build import build_model
from vaekit.cli import main
from vaekit.distributions import (
    ContinuousBernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixture,
    draw,
)


@pytest.mark.parametrize("logit", [-6.0, -1.5, 0.0, 0.01, 2.0, 8.0])
def test_continuous_bernoulli_integrates_to_one(logit: float) -> None:
    p = ContinuousBernoulliLikelihood()(torch.full((1, 1), logit, dtype=torch.float64))
    x = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    density = p.base_dist.log_prob(x.view(-1, 1, 1)).exp().view(-1)  # type: ignore[attr-defined]
    assert torch.trapezoid(density, x).item() == pytest.approx(1.0, abs=1e-6)
    # the log-normaliser that turns the Bernoulli cross-entropy into a density
    bce = x * logit - torch.nn.functional.softplus(torch.tensor(logit, dtype=torch.float64))
    normaliser = torch.trapezoid(bce.exp(), x)
    expected = bce[1234] - normaliser.log()
    assert p.base_dist.log_prob(x[1234].view(1, 1)).item() == pytest.approx(expected.item())  # type: ignore[attr-defined]


def mixture(k: int = 3, shape: tuple[int, ...] = (4,), seed: int = 0) -> DiscretizedLogisticMixture:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, k, generator=g, dtype=torch.float64)
    loc = torch.rand(*shape, k, generator=g, dtype=torch.float64) * 2.4 - 1.2  # some beyond ±1
    log_scale = torch.rand(*shape, k, generator=g, dtype=torch.float64) * 6 - 6  # sharp to wide
    return DiscretizedLogisticMixture(logits, loc, log_scale)


def test_discretized_logistic_sums_to_one_over_the_256_bins() -> None:
    dist = mixture()
    values = torch.arange(256, dtype=torch.float64) / 255
    log_p = dist.log_prob(values.view(256, 1).expand(256, 4))  # [256 bins, 4 values]
    total = torch.logsumexp(log_p, dim=0).exp()
    torch.testing.assert_close(total, torch.ones(4, dtype=torch.float64), atol=2e-4, rtol=0)


def test_discretized_logistic_bin_mass_is_the_cdf_difference() -> None:
    dist = DiscretizedLogisticMixture(
        torch.zeros(1, 1, dtype=torch.float64),
        torch.tensor([[0.1]], dtype=torch.float64),
        torch.tensor([[math.log(0.2)]], dtype=torch.float64),
    )
    x = torch.tensor([100 / 255], dtype=torch.float64)
    y = 2 * x - 1
    cdf = lambda t: torch.sigmoid((t - 0.1) / 0.2)  # noqa: E731
    expected = (cdf(y + 1 / 255) - cdf(y - 1 / 255)).log()
    torch.testing.assert_close(dist.log_prob(x), expected)
    edge = dist.log_prob(torch.tensor([0.0], dtype=torch.float64))  # the first bin: to -inf
    torch.testing.assert_close(edge, cdf(torch.tensor([-1 + 1 / 255], dtype=torch.float64)).log())


def test_discretized_logistic_samples_and_mean() -> None:
    dist = mixture(shape=(6,))
    samples = draw(dist, (4000,), generator=torch.Generator().manual_seed(1))
    assert samples.shape == (4000, 6)
    assert torch.equal(samples, torch.round(samples * 255) / 255)  # 8-bit values
    assert bool(((samples >= 0) & (samples <= 1)).all())
    # the sample mean agrees with the mixture's mean to within a bin plus Monte Carlo noise
    torch.testing.assert_close(samples.mean(0), dist.mean, atol=0.03, rtol=0)
    again = draw(dist, (4000,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(samples, again)


def test_head_layout_images_and_vectors() -> None:
    head = DiscretizedLogisticLikelihood(components=2)
    assert head.params_per_pixel == 6
    images = head(torch.randn(5, 6 * 3, 4, 4))
    assert isinstance(images, Independent) and images.batch_shape == (5,)
    assert images.event_shape == (3, 4, 4) and images.mean.shape == (5, 3, 4, 4)
    vectors = head(torch.randn(5, 6 * 7))
    assert vectors.event_shape == (7,)
    with pytest.raises(ValueError, match="components"):
        DiscretizedLogisticLikelihood(components=0)


@pytest.mark.parametrize("likelihood", ["continuous-bernoulli", "discretized-logistic"])
@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_models_with_the_new_likelihoods_train(likelihood: str, network: str) -> None:
    shape = (1, 28, 28) if network == "conv" else (1, 8, 8)
    cfg = small_config("vae", network, likelihood=likelihood, mixture_components=2)
    model = build_model(cfg, shape)
    x = torch.randint(0, 256, (6, *shape), generator=torch.Generator().manual_seed(0)) / 255
    loss = model.loss(x, generator=torch.Generator().manual_seed(1))
    objective = sum(loss.objectives.values())
    assert torch.isfinite(objective)
    objective.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    mean = model.decode_mean(torch.zeros(2, 3))
    assert mean.shape == (2, *shape) and bool(((mean >= 0) & (mean <= 1)).all())


@pytest.mark.parametrize("likelihood", ["continuous-bernoulli", "discretized-logistic"])
def test_train_and_evaluate_through_the_cli(
    likelihood: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(Path(__file__).parents[2] / "configs" / "tiny.toml")
    run = str(tmp_path / "run")
    argv = ["train", "--config", config, "--quiet", "--set", f"model.likelihood={likelihood!r}"]
    assert main([*argv, "--out", run]) == 0
    report = tmp_path / "e.json"
    assert main(["evaluate", run, "--metrics", "elbo,log-likelihood", "--quiet",
                 "--num-importance-samples", "50", "--out", str(report)]) == 0  # fmt: skip
    metrics = json.loads(report.read_text())["metrics"]
    bits = metrics["log-likelihood"]["bits_per_dim"]
    # a probability mass has -log p >= 0; a density on [0, 1] may exceed 1 (negative bits)
    assert math.isfinite(bits) and (bits > 0 or likelihood == "continuous-bernoulli")
    assert metrics["log-likelihood"]["log_likelihood"] >= metrics["elbo"]["elbo"] - 1.0
    expected = {"continuous-bernoulli": ContinuousBernoulliLikelihood}
    expected["discretized-logistic"] = DiscretizedLogisticLikelihood
    assert type(vaekit.load(run).decoder.likelihood) is expected[likelihood]  # type: ignore[union-attr]
