"""Priors p(z) as modules, so they follow the model's device and dtype: the standard normal,
a learned mixture of Gaussians, and the VampPrior (Tomczak & Welling 2018). The KL to a mixture
has no closed form; ``kl_to_prior`` then estimates it by Monte Carlo."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    kl_divergence,
)

from vaekit.distributions.gaussian_mixture import DiagonalGaussianMixture


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


class MixturePrior(nn.Module):
    """p(z) = Σ_k π_k N(z; μ_k, diag σ_k²), every parameter learned with the model.

    The K means start spread as draws of N(0, I) (so the mixture starts near the standard
    normal, but not with every component on top of the others), the scales at 1, the weights
    equal. The means draw from the global RNG at construction, like the networks' weights.
    """

    def __init__(self, latent_dim: int, components: int = 10):
        super().__init__()
        if components < 1:
            raise ValueError(f"a mixture prior needs at least 1 component, got {components}")
        self.latent_dim = latent_dim
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(components, latent_dim))

    def forward(self) -> Distribution:
        return DiagonalGaussianMixture(self.logits, self.loc, self.log_scale.exp())


class VampPrior(nn.Module):
    """The VampPrior (Tomczak & Welling 2018): p(z) = (1/K) Σ_k q(z | u_k), the model's own
    encoder at K learned pseudo-inputs u_k of the data's shape.

    The encoder is held by reference, not registered as a submodule, so its weights are saved
    once (under the model's ``encoder``); it must return a distribution whose batch dimension
    indexes the pseudo-inputs, as every encoder that fits the ``Encoder`` protocol does. The
    pseudo-inputs start at 0.5 plus small noise (mid-grey images, or centred features) from the
    global RNG.
    """

    def __init__(self, encoder: nn.Module, event_shape: Sequence[int], components: int = 10):
        super().__init__()
        if components < 1:
            raise ValueError(f"a VampPrior needs at least 1 pseudo-input, got {components}")
        self._encoder: tuple[nn.Module, ...] = (encoder,)  # a reference: not a submodule
        self.pseudo_inputs = nn.Parameter(0.5 + 0.01 * torch.randn(components, *event_shape))

    @property
    def encoder(self) -> nn.Module:
        """The encoder whose posteriors at the pseudo-inputs make up the prior."""
        return self._encoder[0]

    def forward(self) -> Distribution:
        q: Any = self.encoder(self.pseudo_inputs)  # batch [K], event [D]
        weights = torch.zeros(self.pseudo_inputs.shape[0], device=self.pseudo_inputs.device)
        base = q.base_dist if isinstance(q, Independent) else None
        # diagonal Gaussian posteriors [K, D]: the mixture whose density is a matrix product
        if isinstance(base, Normal) and q.reinterpreted_batch_ndims == 1 and base.loc.dim() == 2:
            return DiagonalGaussianMixture(weights, base.loc, base.scale)
        return MixtureSameFamily(
            Categorical(logits=weights, validate_args=False), q, validate_args=False
        )


def kl_to_prior(q: Distribution, p: Distribution, z: Tensor, *, analytic: bool = True) -> Tensor:
    """KL(q(z|x) || p(z)) [B]: closed form when torch knows the pair (and ``analytic``), else
    the one-sample estimate log q(z) - log p(z) at the given z [B, D]."""
    if analytic:
        try:
            return kl_divergence(q, p)
        except NotImplementedError:
            pass
    return q.log_prob(z) - p.log_prob(z)


PRIORS: dict[str, type[nn.Module]] = {
    "standard-normal": StandardNormalPrior,
    "mixture": MixturePrior,
    "vamp": VampPrior,
}
