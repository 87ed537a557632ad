"""Priors p(z) as modules, so they follow the model's device and dtype."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) over ``latent_dim`` dimensions."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.loc: Tensor
        self.scale: Tensor
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)


def kl_to_prior(q: Distribution, p: Distribution, z: Tensor, *, analytic: bool = True) -> Tensor:
    """KL(q(z|x) || p(z)) [B]: closed form when torch knows the pair (and ``analytic``), else
    the one-sample estimate log q(z) - log p(z) at the given z [B, D]."""
    if analytic:
        try:
            return kl_divergence(q, p)
        except NotImplementedError:
            pass
    return q.log_prob(z) - p.log_prob(z)


PRIORS: dict[str, type[StandardNormalPrior]] = {"standard-normal": StandardNormalPrior}
