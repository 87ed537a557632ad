"""The library's encoder and decoder building blocks: a network followed by a distribution head.

Both fit the ``Encoder`` / ``Decoder`` protocols of ``models/base.py``; a user's own modules that
return a ``torch.distributions.Distribution`` fit them just as well.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.distributions import Distribution


class TrunkEncoder(nn.Module):
    """x -> q(z|x): a ``trunk`` network (x -> features) then a posterior ``head`` (features ->
    Distribution over z, e.g. ``GaussianHead``)."""

    def __init__(self, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, x: Tensor) -> Distribution:
        out: Distribution = self.head(self.trunk(x))
        return out


class NetworkDecoder(nn.Module):
    """z -> p(x|z): a ``network`` (z -> raw parameters) then a ``likelihood`` head (raw
    parameters -> Distribution over x, e.g. ``BernoulliLikelihood``)."""

    def __init__(self, network: nn.Module, likelihood: nn.Module):
        super().__init__()
        self.network = network
        self.likelihood = likelihood

    def forward(self, z: Tensor) -> Distribution:
        out: Distribution = self.likelihood(self.network(z))
        return out
