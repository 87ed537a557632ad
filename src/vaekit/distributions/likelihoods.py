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
from torch.distributions import Bernoulli, Distribution, Independent, Normal
from torch.nn import functional as F


class Likelihood(nn.Module, ABC):
    """Base of the likelihood heads: ``params_per_pixel`` raw outputs per pixel -> p(x|z)."""

    params_per_pixel: int = 1

    @abstractmethod
    def forward(self, raw: Tensor) -> Distribution:
        """The distribution p(x|z) whose parameters are ``raw`` [B, P·C, H, W] or [B, P·D]."""


def _datapoint(base: Distribution, raw: Tensor) -> Distribution:
    """``base`` with every dimension after the batch one in its event (one datapoint)."""
    return Independent(base, raw.dim() - 1, validate_args=False)


class BernoulliLikelihood(Likelihood):
    """p(x|z) = Π Bernoulli(x_i; sigmoid(logit_i)); grey targets in [0, 1] get cross-entropy."""

    def forward(self, raw: Tensor) -> Distribution:
        # validate_args=False so non-binary targets in [0, 1] are scored as cross-entropy, the
        # pytorch/examples convention (not a normalised density for grey data).
        return _datapoint(Bernoulli(logits=raw, validate_args=False), raw)


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


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": FixedGaussianLikelihood,
    "gaussian-learned": LearnedGaussianLikelihood,
}


def bits_per_dim(nats: Tensor | float, num_dims: int) -> Tensor | float:
    """Convert a per-datapoint negative log-likelihood in nats to bits per dimension."""
    return nats / (num_dims * math.log(2.0))
