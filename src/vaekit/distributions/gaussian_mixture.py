"""A mixture of diagonal Gaussians whose log-density costs one matrix product.

``MixtureSameFamily`` scores N points against K components of D dimensions by broadcasting an
[N, K, D] tensor, elementwise; with hundreds of components (a VampPrior's pseudo-inputs) that
costs many times the decoder's pass, and dominates an importance-sampled log p(x). Here the
quadratic form is expanded,

    Σ_d (z_d − μ_kd)² / σ_kd² = Σ_d z_d² / σ_kd² − 2 z_d μ_kd / σ_kd² + μ_kd² / σ_kd²,

so the [N, K] table is [z², z] [N, 2D] times one [2D, K] matrix. The expansion cancels terms of
size z² / σ², so it runs in float64 (on GPUs with slow float64 arithmetic this costs more than
on CPUs), and returns at least float32. Sampling, the mean and the variance are those of the
``MixtureSameFamily`` it holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    constraints,
)


class DiagonalGaussianMixture(Distribution):
    """Σ_k softmax(logits)_k N(z; loc_k, diag scale_k²) over z of D dimensions: ``logits`` [K],
    ``loc`` and ``scale`` [K, D]. ``log_prob`` takes z of any leading shape [..., D]."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, logits: Tensor, loc: Tensor, scale: Tensor):
        if loc.dim() != 2 or scale.shape != loc.shape or logits.shape != loc.shape[:1]:
            raise ValueError(
                f"expected logits [K] and loc, scale [K, D], got {list(logits.shape)}, "
                f"{list(loc.shape)} and {list(scale.shape)}"
            )
        self.logits, self.loc, self.scale = logits, loc, scale
        self.mixture = MixtureSameFamily(
            Categorical(logits=logits, validate_args=False),
            Independent(Normal(loc, scale, validate_args=False), 1),
            validate_args=False,
        )
        super().__init__(torch.Size(), loc.shape[1:], validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.mixture.mean

    @property
    def variance(self) -> Tensor:
        return self.mixture.variance

    def sample(self, sample_shape: torch.Size | Sequence[int] = ()) -> Tensor:
        """Draws [*sample_shape, D]: a component by its weight, then its Gaussian."""
        return self.mixture.sample(torch.Size(sample_shape))

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(z) [...] for z [..., D], in float64 then the wider of z's dtype and float32."""
        dims = self.loc.shape[1]
        if value.shape[-1] != dims:
            raise ValueError(f"expected points [..., {dims}], got {list(value.shape)}")
        loc, scale = self.loc.double(), self.scale.double()
        precision = scale.pow(-2)  # [K, D]
        weights = torch.cat([precision, -2 * loc * precision], 1).T  # [2D, K]
        constant = (loc.square() * precision).sum(1) + 2 * scale.log().sum(1)  # [K]
        constant = constant + dims * math.log(2 * math.pi)
        z = value.reshape(-1, dims).double()  # [N, D]
        quadratic = torch.cat([z.square(), z], 1) @ weights  # [N, K]
        log_mix = torch.log_softmax(self.logits.double(), 0)
        out = torch.logsumexp(log_mix - 0.5 * (quadratic + constant), 1)  # [N]
        dtype = torch.promote_types(value.dtype, torch.float32)
        return out.to(dtype).view(value.shape[:-1])
