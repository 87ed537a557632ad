"""The Parzen-window estimator against Gaussian densities, and its bandwidth choice."""

from __future__ import annotations

import math

import torch
from torch.distributions import Independent, Normal

from vaekit.evaluation import parzen, parzen_log_likelihood
from vaekit.evaluation.parzen import BANDWIDTHS


def test_bandwidth_grid_is_the_published_logspace() -> None:
    torch.testing.assert_close(
        torch.tensor(BANDWIDTHS, dtype=torch.float64),
        torch.logspace(-1, 0, 10, dtype=torch.float64),
    )


def test_parzen_is_a_mixture_of_gaussians_at_the_samples() -> None:
    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(7, 1, 2, 3, generator=generator)
    x = torch.randn(5, 1, 2, 3, generator=generator)
    values = parzen_log_likelihood(x, samples, (0.3, 1.0), batch_size=2)  # [5, 2]
    for column, sigma in enumerate((0.3, 1.0)):
        kernel = Independent(Normal(samples.flatten(1).double(), sigma), 1)
        expected = torch.logsumexp(kernel.log_prob(x.flatten(1).double()[:, None]), 1)
        torch.testing.assert_close(values[:, column], expected - math.log(7), rtol=1e-5, atol=1e-4)


def test_bandwidth_is_chosen_on_validation_data() -> None:
    generator = torch.Generator().manual_seed(0)

    def draw(n: int) -> torch.Tensor:
        return 0.4 * torch.randn(n, 1, 1, 2, generator=generator)

    result = parzen(draw(2000), draw(500), draw(500))
    scores = result["validation_by_bandwidth"]
    assert result["bandwidth"] in BANDWIDTHS
    assert scores[f"{result['bandwidth']:.4f}"] == max(scores.values())
    # 2-D N(0, 0.4² I): the best kernel is narrower than the data, and the test score is close
    # to the true expected log-density -log(2π·0.16) - 1.
    assert result["bandwidth"] < 0.4
    assert abs(result["parzen_log_density"] - (-math.log(2 * math.pi * 0.16) - 1)) < 0.15
