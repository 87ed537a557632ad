"""Encoder output distributions q(z|x): diagonal Gaussian heads, a Delta for plain AEs, and the
inverse autoregressive flow posterior (Kingma et al. 2016).

The IAF is a diagonal Gaussian q_0(z|x) followed by ``T`` autoregressive steps conditioned on the
encoder's features h.

Step t maps z to σ ⊙ z + (1 - σ) ⊙ m, where (m, s) = MADE_t(z, h) has output d a function of
z_<d only and σ = sigmoid(s + 2) (the paper's numerically stable update, started near the
identity). Its Jacobian is triangular with diagonal σ, so

    log q(z_T|x) = log q_0(z_0|x) - Σ_t Σ_d log σ_t,d.

The order of the dimensions is reversed on every other step. Sampling is one pass per step;
``log_prob`` of the posterior's own latest sample is read from a cache, and of any other z it
inverts the steps one dimension at a time (exact, D passes per step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, constraints
from torch.distributions.kl import register_kl
from torch.nn import functional as F

from vaekit.distributions.flow import MADE

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


@runtime_checkable
class Widenable(Protocol):
    """A posterior built on Gaussians (an IAF, two stochastic layers, a user's own) that
    widens them itself: ``widened(factor)`` returns the same kind of distribution with every
    Gaussian's scale times ``factor``, cut from the graph."""

    def widened(self, factor: float) -> Distribution: ...


def widened(q: Distribution, factor: float) -> Distribution:
    """``q`` with its Gaussian's scale times ``factor``, cut from the graph: a proposal for
    Metropolis-Hastings steps. A diagonal Gaussian is widened here; a ``Widenable`` posterior
    widens itself."""
    if isinstance(q, Widenable):
        return q.widened(factor)
    try:
        base = detached_gaussian(q).base_dist
    except TypeError:
        kind = type(q.base_dist if isinstance(q, Independent) else q).__name__
        raise ValueError(
            f"a Metropolis-Hastings proposal widens q(z|x), which vaekit can do for a diagonal "
            f"Gaussian, not for a {kind}: give the encoder's distribution a method "
            "widened(factor) (vaekit.distributions.Widenable), or build the kernel with "
            "proposal_scale=1.0"
        ) from None
    assert isinstance(base, Normal)
    wider = Normal(base.loc, base.scale * factor, validate_args=False)
    return Independent(wider, 1, validate_args=False)


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


FORGET_BIAS = 2.0  # σ = sigmoid(s + 2) ≈ 0.88 at initialisation: each step starts near identity


class IAFPosterior(Distribution):
    """q(z|x) = the law of z_T when z_0 ~ ``base`` and each of ``steps`` is applied in turn.

    ``base`` is a diagonal Gaussian with batch shape [B] and event shape [D]; ``context`` holds
    the encoder's features [B, H] that every step sees. Samples may carry leading sample
    dimensions ([K, B, D]); the context broadcasts against them.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, base: Distribution, steps: Sequence[nn.Module], context: Tensor):
        self.base, self.steps, self.context = base, tuple(steps), context
        self._latest: tuple[Tensor, Tensor] | None = None  # (z, log q(z)) of the latest rsample
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def _step(self, t: int, z: Tensor) -> tuple[Tensor, Tensor]:
        """Step t on z [..., D]: (its output, log σ [..., D] in z's order)."""
        flip = t % 2 == 1
        u = z.flip(-1) if flip else z
        m, s = self.steps[t](u, self.context)
        log_sigma = F.logsigmoid(s + FORGET_BIAS)
        out = torch.exp(log_sigma) * u + (1 - torch.exp(log_sigma)) * m
        return (out.flip(-1), log_sigma.flip(-1)) if flip else (out, log_sigma)

    def transform(self, z0: Tensor) -> tuple[Tensor, Tensor]:
        """z_T and Σ_t Σ_d log σ_t,d [...] for base draws z_0 [..., D]."""
        z = z0
        log_det = torch.zeros(z0.shape[:-1], dtype=z0.dtype, device=z0.device)
        for t in range(len(self.steps)):
            z, log_sigma = self._step(t, z)
            log_det = log_det + log_sigma.sum(-1)
        return z, log_det

    def invert(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z_0 and Σ_t Σ_d log σ_t,d for flow outputs z_T [..., D]: every step inverted one
        dimension at a time (output d needs the step's inputs before d)."""
        # z broadcasts against the batch of the context (a mixture scores [..., 1, D] against
        # its K components), so the inversion runs on the broadcast shape
        shape = torch.broadcast_shapes(z.shape, (*self.context.shape[:-1], z.shape[-1]))
        z = z.expand(shape)
        log_det = torch.zeros(shape[:-1], dtype=z.dtype, device=z.device)
        for t in reversed(range(len(self.steps))):
            flip = t % 2 == 1
            y = z.flip(-1) if flip else z
            u = torch.zeros_like(y)
            for d in range(y.shape[-1]):
                m, s = self.steps[t](u, self.context)
                sigma = torch.sigmoid(s[..., d] + FORGET_BIAS)
                u = u.clone()
                u[..., d] = (y[..., d] - (1 - sigma) * m[..., d]) / sigma
            m, s = self.steps[t](u, self.context)
            log_det = log_det + F.logsigmoid(s + FORGET_BIAS).sum(-1)
            z = u.flip(-1) if flip else u
        return z, log_det

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> Tensor:
        z0 = self.base.rsample(torch.Size(sample_shape))
        z, log_det = self.transform(z0)
        self._latest = (z, self.base.log_prob(z0) - log_det)
        return z

    def log_prob(self, value: Tensor) -> Tensor:
        if self._latest is not None and value is self._latest[0]:
            return self._latest[1]
        z0, log_det = self.invert(value)
        return self.base.log_prob(z0) - log_det

    def widened(self, factor: float) -> IAFPosterior:
        """The flow on the base Gaussian widened ``factor`` times (see ``widened``)."""
        return IAFPosterior(widened(self.base, factor), self.steps, self.context.detach())

    @property
    def mean(self) -> Tensor:
        """The flow's image of the Gaussian mean (z_T at z_0 = μ): the code vaekit uses for x.
        E_q[z|x] has no closed form, nor has the variance: metrics that need the variance
        estimate it by sampling."""
        return self.transform(self.base.mean)[0]


class IAFHead(nn.Module):
    """Trunk features h -> q(z|x): a Gaussian N(loc(h), diag σ²(h)) followed by ``steps``
    inverse autoregressive steps, each a MADE of width ``in_features`` that also sees h."""

    def __init__(self, in_features: int, latent_dim: int, steps: int = 2):
        super().__init__()
        if steps < 1:
            raise ValueError(f"an IAF posterior needs at least 1 flow step, got {steps}")
        self.loc = nn.Linear(in_features, latent_dim)
        self.log_var = nn.Linear(in_features, latent_dim)
        self.steps = nn.ModuleList(
            MADE(latent_dim, in_features, context=in_features) for _ in range(steps)
        )

    def forward(self, h: Tensor) -> Distribution:
        base = diagonal_gaussian(self.loc(h), self.log_var(h))
        return IAFPosterior(base, list(self.steps), h)


POSTERIORS: dict[str, type[nn.Module]] = {
    "gaussian": GaussianHead,
    "delta": DeltaHead,
    "iaf": IAFHead,
}
