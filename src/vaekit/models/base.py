"""The autoencoder contract: Encoder -> q(z|x), Decoder -> p(x|z), Prior -> p(z), and ``loss``.

Every log-density in vaekit goes through these objects' ``log_prob`` / ``rsample`` /
``kl_divergence``, so training, importance-sampled likelihoods and Markov-chain kernels share
one definition.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.distributions.likelihoods import Likelihood
from vaekit.distributions.priors import StandardNormalPrior
from vaekit.models.corruption import Corruption


@dataclass
class Loss:
    """What one training step needs and logs.

    ``objectives`` maps a parameter-group name (see ``Autoencoder.parameter_groups``) to the
    scalar that group's optimiser minimises; ``metrics`` holds detached per-datapoint batch means
    in nats (``recon`` = -E_q log p(x|z), ``kl``, ``elbo``, ...). ``grads_finite``, which only
    ``loss_and_grad_`` may set, is a [] bool on the device: whether the objectives and every
    gradient it wrote are free of NaN and infinity, tested as they were computed, so that the
    trainer need not read the gradients again; None leaves the test to the trainer.
    """

    objectives: dict[str, Tensor]
    metrics: dict[str, Tensor]
    grads_finite: Tensor | None = None


class Encoder(nn.Module):
    """x [B, C, H, W] -> q(z|x), a Distribution with event shape [latent_dim]: trunk then head."""

    def __init__(self, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, x: Tensor) -> Distribution:
        return self.head(self.trunk(x))


class Decoder(nn.Module):
    """z [B, D] -> p(x|z), a Distribution with event shape [C, H, W]: network then likelihood."""

    def __init__(self, network: nn.Module, likelihood: Likelihood):
        super().__init__()
        self.network = network
        self.likelihood = likelihood

    def forward(self, z: Tensor) -> Distribution:
        return self.likelihood(self.network(z))


class Autoencoder(nn.Module, ABC):
    """A generative autoencoder: ``encoder``, ``decoder``, ``prior`` and an optional corruption.

    ``has_density`` says whether the model defines a likelihood bound (an ELBO) at all; the plain
    and adversarial autoencoders with deterministic encoders do not. ``prior_matched`` says
    whether training pushes the codes towards the prior, so that prior samples are meaningful.
    """

    has_density: ClassVar[bool] = True
    prior_matched: ClassVar[bool] = True

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        prior: StandardNormalPrior,
        corruption: Corruption | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.corruption = corruption

    @property
    def latent_dim(self) -> int:
        """Dimension of z."""
        return self.prior.latent_dim

    @abstractmethod
    def loss(
        self, x: Tensor, *, kl_weight: float = 1.0, generator: torch.Generator | None = None
    ) -> Loss:
        """Objectives and metrics for a batch x [B, C, H, W].

        ``kl_weight`` in [0, 1] scales the regulariser during warm-up (the KL for a VAE, the
        adversarial term for an AAE); metrics always report the unweighted quantities.
        """

    def loss_and_grad_(
        self,
        x: Tensor,
        *,
        kl_weight: float = 1.0,
        generator: torch.Generator | None = None,
        scale: float = 1.0,
        compile: bool = False,
    ) -> Loss | None:
        """``loss`` with the gradient of ``scale`` × each objective already written into the
        ``.grad`` of that objective's parameters (replacing what was there), for models that
        compute their gradients without autograd; the objectives come back detached.

        None for every other model, having done nothing and drawn no random numbers: the caller
        then calls ``loss`` and backpropagates. Both give the same numbers for the same generator
        state. Under ``torch.autocast`` the products run in autocast's dtype, as in ``loss``.
        ``compile=True`` asks for the same computation through ``torch.compile``.
        """
        return None

    @property
    def has_direct_gradients(self) -> bool:
        """Whether ``loss_and_grad_`` computes the gradients itself (else it returns None)."""
        return False

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per objective: one optimiser is made for each group."""
        return {"model": list(self.parameters())}

    def corrupt(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x̃ ~ C(x̃|x) for a denoising model, else x itself."""
        return x if self.corruption is None else self.corruption(x, generator=generator)

    @torch.no_grad()
    def encode_mean(self, x: Tensor) -> Tensor:
        """E_q[z|x] [B, D] (no corruption: codes of the clean input)."""
        return self.encoder(x).mean

    @torch.no_grad()
    def decode_mean(self, z: Tensor) -> Tensor:
        """E_p[x|z] [B, C, H, W]: pixel probabilities for Bernoulli, means for Gaussians."""
        return self.decoder(z).mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoder mean at the encoder mean: the model's reconstruction of x [B, C, H, W]."""
        return self.decode_mean(self.encode_mean(x))
