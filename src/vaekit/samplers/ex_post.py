"""Ex-post density samplers: a density model fitted to a trained model's codes of the training
data, sampled, then decoded. Any trained model can use them, whatever its prior.

``FlowSampler`` fits a masked autoregressive flow (Papamakarios et al. 2017) to the standardised
codes (per-dimension mean and standard deviation) and maps its samples back; the fit is seeded,
so one seed gives one fit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vaekit.data.standardize import Standardization
from vaekit.distributions.flow import MaskedAutoregressiveFlow, fit_flow
from vaekit.models.base import Autoencoder
from vaekit.samplers.base import Sampler


def _codes(model: Autoencoder, data: Tensor, batch_size: int) -> Tensor:
    device = next(model.parameters()).device
    return torch.cat([model.encode_mean(x.to(device)) for x in data.split(batch_size)]).float()


class FlowSampler(Sampler):
    """z from a masked autoregressive flow fitted by maximum likelihood to the codes E_q[z|x]
    of ``data`` (``num_layers`` MADE layers of ``hidden`` units, ``steps`` Adam steps)."""

    def __init__(
        self,
        model: Autoencoder,
        data: Tensor,
        *,
        decode: str = "mean",
        num_layers: int = 5,
        hidden: int = 64,
        steps: int = 2000,
        seed: int = 0,
        batch_size: int = 1000,
    ):
        super().__init__(model, decode=decode)
        codes = _codes(model, data, batch_size)
        self.scaling = Standardization.fit(codes)
        self.flow: MaskedAutoregressiveFlow = fit_flow(
            self.scaling.apply(codes), num_layers=num_layers, hidden=hidden, steps=steps, seed=seed
        )

    @torch.no_grad()
    def sample_latent(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        return self.scaling.invert(self.flow.sample(num_samples, generator=generator))
