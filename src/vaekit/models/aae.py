"""The adversarial autoencoder (Makhzani et al. 2015): codes matched to the prior by a critic.

A latent discriminator D(z) learns to tell prior draws z ~ p(z) from codes z ~ q(z|x̃); the
encoder is trained to reconstruct x and to fool D. With a corruption C(x̃|x) on the encoder
input this is the denoising AAE (Creswell & Bharath 2017).

Both objectives come from one forward pass and the two optimisers step together (simultaneous
gradient updates), rather than the paper's alternating reconstruction and regularisation
phases: the discriminator sees detached codes, and the trainer backpropagates each objective
into its own parameter group only, so neither update leaks into the other's parameters.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vaekit.distributions.sampling import draw
from vaekit.models.base import Autoencoder, Loss
from vaekit.nn.activations import make_activation


class LatentDiscriminator(nn.Module):
    """z [B, D] -> logit [B] that z was drawn from the prior rather than the encoder."""

    def __init__(self, latent_dim: int, hidden: Sequence[int], activation: str = "leaky_relu"):
        super().__init__()
        sizes = [latent_dim, *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), make_activation(activation)]
        self.layers = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(z).squeeze(-1)


class AAE(Autoencoder):
    """Adversarial autoencoder with a deterministic (Delta) or Gaussian encoder.

    Objectives (per-datapoint means over the batch, nats):
      autoencoder:   -log p(x|z) + w·kl_weight·(-log D(z)),  z ~ q(z|x̃)  (non-saturating loss)
      discriminator: BCE of D on prior draws (label 1) and detached codes (label 0), averaged
                     over the 2B points.

    The reconstruction term is a sum over pixels, so ``adversarial_weight`` (w) is in nats per
    datapoint: a reference implementation with per-pixel mean BCE and weight 1 corresponds to
    w = number of pixels here.

    Args:
        discriminator: z [B, D] -> logits [B], e.g. ``LatentDiscriminator``.
        adversarial_weight: w above; 0 trains a plain autoencoder with an idle critic.
        corruption: C(x̃|x) on the encoder input (denoising AAE); the clean x is scored.
    """

    has_density: ClassVar[bool] = False
    prior_matched: ClassVar[bool] = True

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        discriminator: nn.Module,
        *,
        adversarial_weight: float = 1.0,
        corruption: nn.Module | None = None,
    ):
        super().__init__(encoder, decoder, prior, corruption)
        if not adversarial_weight >= 0:
            raise ValueError(f"adversarial_weight must be non-negative, got {adversarial_weight}")
        self.discriminator = discriminator
        self.adversarial_weight = float(adversarial_weight)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Encoder and decoder against the discriminator: one optimiser each."""
        autoencoder = [*self.encoder.parameters(), *self.decoder.parameters()]
        return {"autoencoder": autoencoder, "discriminator": list(self.discriminator.parameters())}

    def loss(
        self, x: Tensor, *, kl_weight: float = 1.0, generator: torch.Generator | None = None
    ) -> Loss:
        z = draw(self.encoder(self.corrupt(x, generator)), generator=generator)  # [B, D]
        recon = -self.decoder(z).log_prob(x).mean()
        # Non-saturating generator loss -log D(z) = softplus(-logit) (Goodfellow et al. 2014).
        adversarial = F.softplus(-self.discriminator(z)).mean()
        autoencoder = recon + self.adversarial_weight * kl_weight * adversarial

        z_prior = draw(self.prior(), (z.shape[0],), generator=generator)  # [B, D]
        logits = torch.cat([self.discriminator(z_prior), self.discriminator(z.detach())])  # [2B]
        labels = torch.cat([torch.ones_like(logits[: len(z)]), torch.zeros_like(logits[len(z) :])])
        discriminator = F.binary_cross_entropy_with_logits(logits, labels)
        accuracy = ((logits > 0).to(labels.dtype) == labels).to(logits.dtype).mean()
        metrics = {
            "loss": autoencoder,
            "recon": recon,
            "adversarial": adversarial,
            "discriminator": discriminator,
            "disc_accuracy": accuracy,
        }
        return Loss(
            {"autoencoder": autoencoder, "discriminator": discriminator},
            {k: v.detach() for k, v in metrics.items()},
        )
