"""Encoder output distributions q(z|x): diagonal Gaussian heads and a Delta for plain AEs."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, constraints
from torch.distributions.kl import register_kl

# Log-variances are clamped to this range so exp() can neither overflow nor underflow to a
# zero scale: scale in [exp(-10), exp(5)] ~ [4.5e-5, 148].
LOG_VAR_MIN = -20.0
LOG_VAR_MAX = 10.0


class Delta(Distribution):
    """A point mass at ``loc`` with ``event_dim`` event dimensions (the plain autoencoder's q).

    ``rsample`` returns ``loc`` (differentiably), ``log_prob`` is 0 at ``loc`` and -inf elsewhere.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {"loc": constraints.real}
    has_rsample = True

    def __init__(self, loc: Tensor, event_dim: int = 1, validate_args: bool | None = False):
        self.loc = loc
        batch_shape = loc.shape[: loc.dim() - event_dim]
        event_shape = loc.shape[loc.dim() - event_dim :]
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        return self.loc.expand(torch.Size(sample_shape) + self.loc.shape)

    def log_prob(self, value: Tensor) -> Tensor:
        equal = (value == self.loc).flatten(start_dim=value.dim() - len(self.event_shape))
        zero = torch.zeros((), dtype=self.loc.dtype, device=self.loc.device)
        return torch.where(equal.all(-1), zero, zero - math.inf)


@register_kl(Delta, Distribution)
def _kl_delta_any(p: Delta, q: Distribution) -> Tensor:
    # KL(δ_a || q) is infinite for continuous q; an autoencoder has no KL term, so refuse loudly.
    raise NotImplementedError("KL from a Delta posterior is undefined; a plain AE has no KL term")


def diagonal_gaussian(loc: Tensor, log_var: Tensor) -> Independent:
    """N(loc, diag(exp(log_var))) with the last dimension as the event (log-variance clamped)."""
    scale = torch.exp(0.5 * log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX))
    return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)


def detached_gaussian(q: Distribution) -> Independent:
    """The diagonal Gaussian ``q`` with its parameters cut from the graph: log_prob(z) then
    passes gradients to z only (the doubly reparameterised gradient needs that)."""
    base = q.base_dist if isinstance(q, Independent) else None
    if not isinstance(base, Normal) or q.event_shape != base.batch_shape[-1:]:
        raise TypeError(f"expected a diagonal Gaussian posterior, got {q}")
    loc, scale = base.loc.detach(), base.scale.detach()
    return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)


class GaussianHead(nn.Module):
    """Trunk features -> q(z|x) = N(loc(h), diag σ²(h)), separate loc and log-variance heads."""

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__()
        self.loc = nn.Linear(in_features, latent_dim)
        self.log_var = nn.Linear(in_features, latent_dim)

    def forward(self, h: Tensor) -> Distribution:
        return diagonal_gaussian(self.loc(h), self.log_var(h))


class DeltaHead(nn.Module):
    """Maps trunk features to a point mass: the deterministic encoder of a plain autoencoder."""

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__()
        self.loc = nn.Linear(in_features, latent_dim)

    def forward(self, h: Tensor) -> Distribution:
        return Delta(self.loc(h), event_dim=1)


POSTERIORS: dict[str, type[nn.Module]] = {"gaussian": GaussianHead, "delta": DeltaHead}
