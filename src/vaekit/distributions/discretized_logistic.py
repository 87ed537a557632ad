"""The discretised mixture of logistics of PixelCNN++ (Salimans, Karpathy, Chen & Kingma 2017)
for 8-bit values, as a ``torch.distributions.Distribution``.

Each value x ∈ {0, 1/255, ..., 1} is scored by the probability mass that a mixture of K
logistics on [-1, 1] puts on its bin: y = 2x - 1, bins of width 2/255 centred on y, with the
first bin reaching down to -∞ and the last up to +∞, so the 256 masses sum to 1 exactly. Values
between the grid points are scored by the bin centred on them (use 8-bit data). Unlike
PixelCNN++, the channels of a pixel are independent given z (no autoregressive channel terms).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.nn import functional as F

BINS = 255  # 256 values, 255 bin widths across [-1, 1]
MIN_LOG_SCALE = -7.0  # log-scales below this make the bins' masses underflow
TINY_MASS = 1e-5  # below this bin mass, the density × bin width replaces the CDF difference


class DiscretizedLogisticMixture(Distribution):
    """Per value: a K-component mixture of logistics with weights ``softmax(logits)``, locations
    ``loc`` and log-scales ``log_scale`` (each [..., K], on the [-1, 1] scale), discretised into
    the 256 bins of 8-bit data on [0, 1]. Batch shape: all but the last dimension."""

    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, logits: Tensor, loc: Tensor, log_scale: Tensor):
        if not logits.shape == loc.shape == log_scale.shape:
            raise ValueError(
                f"logits, loc and log_scale need one shape, got {tuple(logits.shape)}, "
                f"{tuple(loc.shape)}, {tuple(log_scale.shape)}"
            )
        self.logits = logits
        self.loc = loc
        self.log_scale = log_scale.clamp(min=MIN_LOG_SCALE)
        super().__init__(batch_shape=logits.shape[:-1], validate_args=False)

    @property
    def arg_constraints(self) -> dict[str, constraints.Constraint]:
        return {"loc": constraints.real, "log_scale": constraints.real}

    def log_prob(self, value: Tensor) -> Tensor:
        """log P(bin of ``value``) for values in [0, 1], shape: the batch shape."""
        y = (2 * value - 1).unsqueeze(-1)  # [..., 1] against the K components
        centred = y - self.loc
        inv_scale = torch.exp(-self.log_scale)
        upper = inv_scale * (centred + 1 / BINS)
        lower = inv_scale * (centred - 1 / BINS)
        log_cdf_upper = upper - F.softplus(upper)  # log σ(upper): the first bin, down to -∞
        log_survival_lower = -F.softplus(lower)  # log(1 - σ(lower)): the last bin, up to +∞
        mass = torch.sigmoid(upper) - torch.sigmoid(lower)
        # Where the mass underflows, density at the centre times the bin width (PixelCNN++).
        middle = inv_scale * centred
        log_density = middle - self.log_scale - 2 * F.softplus(middle)
        log_mass = torch.where(
            mass > TINY_MASS,
            torch.log(mass.clamp(min=1e-12)),
            log_density + math.log(2 / BINS),
        )
        log_bin = torch.where(
            y < -1 + 1 / BINS,
            log_cdf_upper,
            torch.where(y > 1 - 1 / BINS, log_survival_lower, log_mass),
        )
        return torch.logsumexp(log_bin + F.log_softmax(self.logits, dim=-1), dim=-1)

    @property
    def mean(self) -> Tensor:
        """The mean on [0, 1] of each component's logistic clamped to [-1, 1], mixed: for a
        logistic with location μ and scale s, E[clamp(Y, -1, 1)] = 1 - s (softplus((1 - μ)/s)
        - softplus((-1 - μ)/s)), exact before rounding to the 256 bins (which shifts it by
        less than half a bin)."""
        scale = torch.exp(self.log_scale)
        upper = F.softplus((1 - self.loc) / scale)
        lower = F.softplus((-1 - self.loc) / scale)
        clamped = 1 - scale * (upper - lower)
        weights = F.softmax(self.logits, dim=-1)
        return ((weights * clamped).sum(-1) + 1) / 2

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        """8-bit values k/255: a component, a logistic draw, clamped and rounded to its bin."""
        shape = torch.Size(sample_shape) + self.logits.shape
        with torch.no_grad():
            device, dtype = self.loc.device, self.loc.dtype
            noise = torch.rand(shape, device=device, dtype=dtype).clamp(1e-10, 1 - 1e-10)
            gumbel = -torch.log(-torch.log(noise))
            choice = F.one_hot((self.logits.expand(shape) + gumbel).argmax(-1), shape[-1])
            loc = (self.loc.expand(shape) * choice).sum(-1)
            log_scale = (self.log_scale.expand(shape) * choice).sum(-1)
            u = torch.rand(loc.shape, device=device, dtype=dtype).clamp(1e-5, 1 - 1e-5)
            y = loc + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
            return torch.round((y.clamp(-1, 1) + 1) / 2 * BINS) / BINS
