"""The sampler contract: draw latents, decode them to images, with an explicit generator."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from vaekit.distributions.sampling import draw
from vaekit.models.base import Autoencoder


class Sampler(ABC):
    """Draws from a trained model. ``decode="mean"`` returns E[x|z], ``"sample"`` x ~ p(x|z)."""

    def __init__(self, model: Autoencoder, *, decode: str = "mean"):
        if decode not in ("mean", "sample"):
            raise ValueError(f"decode must be 'mean' or 'sample', got {decode!r}")
        self.model = model
        self.decode = decode

    @property
    def device(self) -> torch.device:
        """The model's device; samples are drawn there."""
        return next(self.model.parameters()).device

    @abstractmethod
    def sample_latent(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Latent points z [N, D]."""

    @torch.no_grad()
    def decode_latent(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Images [N, C, H, W] for latents z: the decoder mean or a draw from p(x|z)."""
        p = self.model.decoder(z)
        return p.mean if self.decode == "mean" else draw(p, generator=generator)

    @torch.no_grad()
    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Images [N, C, H, W]."""
        return self.decode_latent(
            self.sample_latent(num_samples, generator=generator), generator=generator
        )
