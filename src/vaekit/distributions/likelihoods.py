"""Decoder output distributions p(x|z): Bernoulli, Gaussian with fixed σ, Gaussian with learned σ.

Every head turns the decoder network's raw output [B, P·C, H, W] for images, or [B, P·D] for
vectors (P parameters per value), into a ``torch.distributions`` object whose event is the whole
datapoint, so ``log_prob`` is the per-datapoint sum over pixels (or features) in nats.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, ContinuousBernoulli, Distribution, Independent, Normal
from torch.nn import functional as F

from vaekit.distributions.discretized_logistic import DiscretizedLogisticMixture

# The Bernoulli start clips the mean pixel to [MARGINAL_CLIP, 1 - MARGINAL_CLIP]: values that are
# always 0 (or 1) in the data get a finite log-odds.
MARGINAL_CLIP = 1e-3


class Likelihood(nn.Module, ABC):
    """Base of the likelihood heads: ``params_per_pixel`` raw outputs per pixel -> p(x|z)."""

    params_per_pixel: int = 1

    @abstractmethod
    def forward(self, raw: Tensor) -> Distribution:
        """The distribution p(x|z) whose parameters are ``raw`` [B, P·C, H, W] or [B, P·D]."""

    def marginal_raw(self, mean: Tensor, std: Tensor) -> Tensor | None:
        """Raw parameters [P·C, H, W] or [P·D] of the factorised p(x) closest to data with
        per-value ``mean`` and ``std`` [C, H, W] or [D], the decoder's starting point
        (``vaekit.models.init_output_bias``); None where this head has none."""
        return None


def _datapoint(base: Distribution, raw: Tensor) -> Distribution:
    """``base`` with every dimension after the batch one in its event (one datapoint)."""
    return Independent(base, raw.dim() - 1, validate_args=False)


class BernoulliLikelihood(Likelihood):
    """p(x|z) = Π Bernoulli(x_i; sigmoid(logit_i)); grey targets in [0, 1] get cross-entropy."""

    def forward(self, raw: Tensor) -> Distribution:
        # validate_args=False so non-binary targets in [0, 1] are scored as cross-entropy, the
        # pytorch/examples convention (not a normalised density for grey data).
        return _datapoint(Bernoulli(logits=raw, validate_args=False), raw)

    def marginal_raw(self, mean: Tensor, std: Tensor) -> Tensor:
        """The log-odds of the mean, clipped to [0.001, 0.999] (the IWAE code's start)."""
        return torch.logit(mean.clamp(MARGINAL_CLIP, 1 - MARGINAL_CLIP))


class FixedGaussianLikelihood(Likelihood):
    """p(x|z) = N(x; μ(z), σ² I) with a fixed σ (``sigma``)."""

    def __init__(self, sigma: float = 0.1):
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = float(sigma)

    def forward(self, raw: Tensor) -> Distribution:
        scale = torch.full_like(raw, self.sigma)
        return _datapoint(Normal(raw, scale, validate_args=False), raw)

    def marginal_raw(self, mean: Tensor, std: Tensor) -> Tensor:
        """The mean (σ is fixed)."""
        return mean.clone()


class LearnedGaussianLikelihood(Likelihood):
    """p(x|z) = N(x; μ(z), diag σ(z)²) with a per-pixel σ floored at ``min_scale``.

    σ = min_scale + softplus(raw); the floor stops the variance from collapsing onto training
    pixels (which sends log p(x|z) to +inf).
    """

    params_per_pixel = 2

    def __init__(self, min_scale: float = 1e-3):
        super().__init__()
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive, got {min_scale}")
        self.min_scale = float(min_scale)

    def forward(self, raw: Tensor) -> Distribution:
        loc, raw_scale = raw.chunk(2, dim=1)  # [B, C, H, W] or [B, D] each
        scale = self.min_scale + F.softplus(raw_scale)
        return _datapoint(Normal(loc, scale, validate_args=False), loc)

    def marginal_raw(self, mean: Tensor, std: Tensor) -> Tensor:
        """The mean, and the raw scale whose σ is the data's spread (at least twice the floor)."""
        excess = (std - self.min_scale).clamp_min(self.min_scale)
        raw_scale = excess + torch.log(-torch.expm1(-excess))  # softplus⁻¹
        return torch.cat([mean, raw_scale], 0)


class ContinuousBernoulliLikelihood(Likelihood):
    """p(x|z) = Π CB(x_i; sigmoid(logit_i)), the continuous Bernoulli of Loaiza-Ganem &
    Cunningham (2019): the Bernoulli cross-entropy plus the log-normaliser that makes it a
    density on [0, 1], so grey pixels get a proper likelihood. Its mean is not sigmoid(logit)."""

    def forward(self, raw: Tensor) -> Distribution:
        return _datapoint(ContinuousBernoulli(logits=raw, validate_args=False), raw)


class DiscretizedLogisticLikelihood(Likelihood):
    """p(x|z) = Π over values of a mixture of ``components`` logistics discretised into the 256
    bins of 8-bit data (Salimans et al. 2017; ``DiscretizedLogisticMixture``): a probability
    mass, so -log p(x|z) / (D ln 2) is an honest bits/dim. Raw outputs per value: ``components``
    logits, locations and log-scales (``params_per_pixel = 3 × components``)."""

    def __init__(self, components: int = 5):
        super().__init__()
        if components < 1:
            raise ValueError(f"components must be at least 1, got {components}")
        self.components = int(components)
        self.params_per_pixel = 3 * self.components

    def forward(self, raw: Tensor) -> Distribution:
        # [B, 3·K·C, H, W] (or [B, 3·K·D]) -> three [B, C, H, W, K] (or [B, D, K]) tensors
        logits, loc, log_scale = raw.unflatten(1, (3, self.components, -1)).movedim(2, -1).unbind(1)
        return _datapoint(DiscretizedLogisticMixture(logits, loc, log_scale), logits[..., 0])


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": BernoulliLikelihood,
    "continuous-bernoulli": ContinuousBernoulliLikelihood,
    "discretized-logistic": DiscretizedLogisticLikelihood,
    "gaussian": FixedGaussianLikelihood,
    "gaussian-learned": LearnedGaussianLikelihood,
}
# Likelihoods of values in [0, 1]: data outside that range are refused.
UNIT_INTERVAL = ("bernoulli", "continuous-bernoulli", "discretized-logistic")


def bits_per_dim(nats: Tensor | float, num_dims: int) -> Tensor | float:
    """Convert a per-datapoint negative log-likelihood in nats to bits per dimension."""
    return nats / (num_dims * math.log(2.0))
