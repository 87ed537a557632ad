"""The plain (optionally denoising) autoencoder: a deterministic code, loss -log p(x|z)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from vaekit.models.base import Autoencoder, Loss


class AE(Autoencoder):
    """Deterministic autoencoder: z = f(x̃), minimise -log p(x|z) (no prior term, no ELBO)."""

    has_density: ClassVar[bool] = False
    prior_matched: ClassVar[bool] = False

    def loss(
        self, x: Tensor, *, kl_weight: float = 1.0, generator: torch.Generator | None = None
    ) -> Loss:
        z = self.encoder(self.corrupt(x, generator)).mean  # [B, D]
        recon = -self.decoder(z).log_prob(x)  # [B]
        loss = recon.mean()
        return Loss({"model": loss}, {"loss": loss.detach(), "recon": loss.detach()})
