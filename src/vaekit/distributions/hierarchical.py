"""Two stochastic layers (Burda, Grosse & Salakhutdinov 2016, section 5): the code z = [z1, z2]
of a model whose decoder reads z1 and whose prior is p(z2) p(z1|z2).

``HierarchicalLatent`` is the law of a pair drawn in order, one part from a distribution and the
other from a conditional given the first: the posterior q(z1|x) q(z2|z1) draws z1 first, the
prior p(z2) p(z1|z2) draws z2 first. Both lay the code out as [z1, z2], so the encoder, the
prior and the decoder of a ``VAE`` fit the usual contracts: log q(z|x) and log p(z) are exact
sums of the two layers' terms, and the KL is a Monte-Carlo estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, constraints

from vaekit.distributions.posteriors import GaussianHead, widened
from vaekit.nn.activations import make_activation


class HierarchicalLatent(Distribution):
    """The pair (a, b) with a ~ ``first`` and b ~ ``conditional(a)``, as one vector.

    ``first`` has event shape [A]; ``conditional`` maps values a [..., A] to a distribution over
    b with event shape [B']. The vector is [a, b], or [b, a] when ``first_last``. ``mean`` is
    the mean along the chain, [E a, E(b | a = E a)] in the vector's order: the code vaekit uses
    for x (E b itself has no closed form).
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self, first: Distribution, conditional: nn.Module, second_dim: int, *, first_last: bool
    ):
        self.first, self.conditional, self.first_last = first, conditional, first_last
        self.first_dim, self.second_dim = int(first.event_shape[0]), int(second_dim)
        event = torch.Size([self.first_dim + self.second_dim])
        super().__init__(first.batch_shape, event, validate_args=False)

    def _join(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat((b, a) if self.first_last else (a, b), -1)

    def split(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """(a, b) from vectors [..., A + B']."""
        if self.first_last:
            b, a = value.split((self.second_dim, self.first_dim), -1)
        else:
            a, b = value.split((self.first_dim, self.second_dim), -1)
        return a, b

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> Tensor:
        a = self.first.rsample(torch.Size(sample_shape))
        return self._join(a, self.conditional(a).rsample())

    def log_prob(self, value: Tensor) -> Tensor:
        a, b = self.split(value)
        log_b: Tensor = self.conditional(a).log_prob(b)
        return self.first.log_prob(a) + log_b

    def widened(self, factor: float) -> HierarchicalLatent:
        """Both layers' Gaussians widened ``factor`` times (a Metropolis-Hastings proposal)."""
        conditional = _Widened(self.conditional, factor)
        first = widened(self.first, factor)
        return HierarchicalLatent(first, conditional, self.second_dim, first_last=self.first_last)

    @property
    def mean(self) -> Tensor:
        a = self.first.mean
        return self._join(a, self.conditional(a).mean)


class _Widened(nn.Module):
    """``conditional`` with every distribution it returns widened ``factor`` times."""

    def __init__(self, conditional: nn.Module, factor: float):
        super().__init__()
        self.conditional, self.factor = conditional, factor

    def forward(self, a: Tensor) -> Distribution:
        return widened(self.conditional(a), self.factor)


class ConditionalGaussian(nn.Module):
    """a [..., in_dim] -> N(loc, diag σ²) over out_dim through an MLP of ``hidden`` widths (none:
    a linear map): one direction of a link between two stochastic layers."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, activation: str):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers += [nn.Linear(width, size), make_activation(activation)]
            width = size
        self.net = nn.Sequential(*layers)
        self.head = GaussianHead(width, out_dim)

    def forward(self, a: Tensor) -> Distribution:
        out: Distribution = self.head(self.net(a))
        return out


class TwoLayerEncoder(nn.Module):
    """x -> q(z|x) = q(z1|x) q(z2|z1): ``lower`` is an encoder x -> q(z1|x) (a ``TrunkEncoder``),
    ``upper`` maps z1 to q(z2|z1) with ``upper_dim`` = dim z2. The code is [z1, z2]."""

    def __init__(self, lower: nn.Module, upper: nn.Module, upper_dim: int):
        super().__init__()
        self.lower, self.upper, self.upper_dim = lower, upper, upper_dim

    def forward(self, x: Tensor) -> Distribution:
        return HierarchicalLatent(self.lower(x), self.upper, self.upper_dim, first_last=False)


class TwoLayerPrior(nn.Module):
    """p(z) = p(z2) p(z1|z2): z2 ~ N(0, I) over ``top_dim``, then ``down``: z2 -> p(z1|z2)
    with ``lower_dim`` = dim z1 (learned with the model). The code is [z1, z2]."""

    def __init__(self, top_dim: int, down: nn.Module, lower_dim: int):
        super().__init__()
        self.down, self.lower_dim = down, lower_dim
        self.loc: Tensor
        self.register_buffer("loc", torch.zeros(top_dim), persistent=False)

    def forward(self) -> Distribution:
        top = Independent(Normal(self.loc, torch.ones_like(self.loc), validate_args=False), 1)
        return HierarchicalLatent(top, self.down, self.lower_dim, first_last=True)


class LowerLayer(nn.Module):
    """The code ``[z1, z2]`` of shape ``[..., D]`` -> ``z1`` of shape ``[..., dim]``: what the
    decoder of a two-layer model reads."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, z: Tensor) -> Tensor:
        return z[..., : self.dim]
