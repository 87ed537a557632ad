"""Ancestral samplers: z from the prior, or from a Gaussian fitted to the training codes."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from vaekit.distributions.sampling import draw
from vaekit.models.base import Autoencoder
from vaekit.samplers.base import Sampler


class PriorSampler(Sampler):
    """z ~ p(z), then x from p(x|z): the standard way to sample a VAE."""

    @torch.no_grad()
    def sample_latent(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        return draw(self.model.prior(), (num_samples,), generator=generator)


class GaussianFitSampler(Sampler):
    """z ~ N(m, S) with m, S the mean and covariance of the codes E_q[z|x] of ``data``.

    The usual way to sample a plain autoencoder, whose codes need not follow any prior.
    """

    def __init__(
        self, model: Autoencoder, data: Tensor, *, decode: str = "mean", batch_size: int = 1000
    ):
        super().__init__(model, decode=decode)
        codes = torch.cat(
            [model.encode_mean(x.to(self.device)) for x in data.split(batch_size)]
        ).double()  # [N, D]
        loc = codes.mean(0)
        centred = codes - loc
        cov = centred.T @ centred / max(len(codes) - 1, 1)
        cov = cov + 1e-6 * torch.eye(len(loc), dtype=cov.dtype, device=cov.device)
        self.fit = MultivariateNormal(loc, covariance_matrix=cov)

    @torch.no_grad()
    def sample_latent(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        eps = torch.randn(
            num_samples,
            len(self.fit.loc),
            generator=generator,
            device=self.device,
            dtype=torch.float64,
        )
        z = self.fit.loc + eps @ self.fit.scale_tril.T
        return z.to(next(self.model.parameters()).dtype)
