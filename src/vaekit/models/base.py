"""The autoencoder contract: Encoder -> q(z|x), Decoder -> p(x|z), Prior -> p(z), and ``loss``.

Encoder, Decoder and Prior are protocols: any ``nn.Module`` whose forward returns a
``torch.distributions.Distribution`` fits, so users bring their own networks and heads. Every
log-density in vaekit goes through these objects' ``log_prob`` / ``rsample`` /
``kl_divergence``, so training, importance-sampled likelihoods and Markov-chain kernels share
one definition.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.models.conditional import Condition


@runtime_checkable
class Encoder(Protocol):
    """x [B, *event_shape] -> q(z|x), a Distribution with batch shape [B], event shape [D]."""

    def __call__(self, x: Tensor) -> Distribution: ...


@runtime_checkable
class Decoder(Protocol):
    """z [B, D] -> p(x|z), a Distribution with batch shape [B] and the data's event shape."""

    def __call__(self, z: Tensor) -> Distribution: ...


@runtime_checkable
class Prior(Protocol):
    """() -> p(z), a Distribution with event shape [D] and no batch shape."""

    def __call__(self) -> Distribution: ...


@dataclass
class Loss:
    """What one training step needs and logs.

    ``objectives`` maps a parameter-group name (see ``Autoencoder.parameter_groups``) to the
    scalar that group's optimiser minimises; ``metrics`` holds detached per-datapoint batch means
    in nats (``recon`` = -E_q log p(x|z), ``kl``, ``elbo``, ...).
    """

    objectives: dict[str, Tensor]
    metrics: dict[str, Tensor]


class Autoencoder(nn.Module, ABC):
    """A generative autoencoder: ``encoder``, ``decoder``, ``prior`` and an optional corruption.

    The three parts are modules that fit the ``Encoder``, ``Decoder`` and ``Prior`` protocols:
    the library's building blocks (``TrunkEncoder``, ``NetworkDecoder``, ``StandardNormalPrior``)
    or a user's own. ``has_density`` says whether the model defines a likelihood bound (an ELBO)
    at all; the plain and adversarial autoencoders with deterministic encoders do not.
    ``prior_matched`` says whether training pushes the codes towards the prior, so that prior
    samples are meaningful.
    """

    has_density: ClassVar[bool] = True
    prior_matched: ClassVar[bool] = True

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        corruption: nn.Module | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.corruption = corruption

    @property
    def latent_dim(self) -> int:
        """Dimension of z: the last dimension of the prior's event shape."""
        event_shape = self.prior().event_shape
        if len(event_shape) != 1:
            raise ValueError(f"the prior's event shape must be [D], got {list(event_shape)}")
        return int(event_shape[0])

    @abstractmethod
    def loss(
        self, x: Tensor, *, kl_weight: float = 1.0, generator: torch.Generator | None = None
    ) -> Loss:
        """Objectives and metrics for a batch x [B, *event_shape].

        ``kl_weight`` in [0, 1] scales the regulariser during warm-up (the KL for a VAE, the
        adversarial term for an AAE); metrics always report the unweighted quantities.
        """

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per objective: one optimiser is made for each group."""
        return {"model": list(self.parameters())}

    @property
    def condition(self) -> Condition | None:
        """The ``Condition`` a conditional model's encoder and decoder share, else None."""
        found = [module for module in self.modules() if isinstance(module, Condition)]
        if len(found) > 1:
            raise ValueError("a model's encoder and decoder must share one Condition")
        return found[0] if found else None

    def given(self, y: Tensor | None) -> AbstractContextManager[None]:
        """A block in which a conditional model is conditioned on y: class labels [B] or
        vectors [B, dim], for the B datapoints (or chains) the block processes. ``None`` is a
        no-op block, for unconditional models."""
        condition = self.condition
        if y is None:
            return nullcontext()
        if condition is None:
            raise ValueError("this model is not conditional; it takes no y")
        return condition.given(y)

    def corrupt(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x̃ ~ C(x̃|x) for a denoising model, else x itself."""
        return x if self.corruption is None else self.corruption(x, generator=generator)

    @torch.no_grad()
    def encode_mean(self, x: Tensor) -> Tensor:
        """The posterior mean E_q[z|x], shape [B, D] (no corruption: codes of the clean input)."""
        return self.encoder(x).mean

    @torch.no_grad()
    def decode_mean(self, z: Tensor) -> Tensor:
        """The decoder mean E_p[x|z], shape [B, *event_shape]: probabilities for Bernoulli,
        means for Gaussians."""
        return self.decoder(z).mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoder mean at the encoder mean: the model's reconstruction of x."""
        return self.decode_mean(self.encode_mean(x))
