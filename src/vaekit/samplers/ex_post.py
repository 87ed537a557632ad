"""Ex-post density samplers: a density model fitted to a trained model's codes of the training
data, sampled, then decoded. Any trained model can use them, whatever its prior.

``FlowSampler`` fits a masked autoregressive flow (Papamakarios et al. 2017) to the standardised
codes (per-dimension mean and standard deviation) and maps its samples back; ``TwoStageSampler``
fits the second-stage VAE of Dai & Wipf (2019) to the same standardised codes and decodes draws
of its prior. Both fits are seeded, so one seed gives one fit. A conditional model's codes are
encoded with the labels of ``data`` (``labels``), and its samples decoded with the class asked
for (``model.given``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from vaekit.data.standardize import Standardization
from vaekit.distributions.flow import MaskedAutoregressiveFlow, fit_flow
from vaekit.distributions.two_stage import SecondStageVAE, fit_second_stage
from vaekit.models.base import Autoencoder
from vaekit.samplers.base import Sampler
from vaekit.samplers.codes import training_codes


def standardised_codes(
    model: Autoencoder, data: Tensor, batch_size: int, labels: Tensor | None = None
) -> tuple[Standardization, Tensor]:
    """The codes E_q[z|x] of ``data`` (``training_codes``) standardised per dimension, with the
    statistics that map samples back."""
    codes = training_codes(model, data, labels=labels, batch_size=batch_size).float()
    scaling = Standardization.fit(codes)
    return scaling, scaling.apply(codes)


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
        labels: Tensor | None = None,
    ):
        super().__init__(model, decode=decode)
        self.scaling, codes = standardised_codes(model, data, batch_size, labels)
        self.flow: MaskedAutoregressiveFlow = fit_flow(
            codes, num_layers=num_layers, hidden=hidden, steps=steps, seed=seed
        )

    @torch.no_grad()
    def sample_latent(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        return self.scaling.invert(self.flow.sample(num_samples, generator=generator))


class TwoStageSampler(Sampler):
    """z from the second stage of a two-stage VAE (Dai & Wipf 2019): a small VAE with prior
    N(0, I), Gaussian decoder N(mean(v), γ² I) and learned γ, fitted to the standardised codes
    E_q[z|x] of ``data``; z is the decoder mean of v ~ N(0, I), mapped back to code units.

    ``latent_dim`` (default: the code dimension, as in the paper), ``hidden`` × ``num_layers``
    MLPs, γ starting at ``gamma``, ``steps`` Adam steps with the learning rate decaying from
    ``lr`` to ``final_lr``; see ``vaekit.distributions.two_stage.fit_second_stage``.
    """

    def __init__(
        self,
        model: Autoencoder,
        data: Tensor,
        *,
        decode: str = "mean",
        latent_dim: int | None = None,
        hidden: int = 128,
        num_layers: int = 3,
        gamma: float = 0.3,
        steps: int = 2000,
        lr: float = 1e-2,
        final_lr: float = 1e-4,
        seed: int = 0,
        batch_size: int = 1000,
        labels: Tensor | None = None,
    ):
        super().__init__(model, decode=decode)
        self.scaling, codes = standardised_codes(model, data, batch_size, labels)
        self.second_stage: SecondStageVAE = fit_second_stage(
            codes,
            latent_dim=latent_dim,
            hidden=hidden,
            num_layers=num_layers,
            gamma=gamma,
            steps=steps,
            lr=lr,
            final_lr=final_lr,
            seed=seed,
        )

    @torch.no_grad()
    def sample_latent(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        return self.scaling.invert(self.second_stage.sample(num_samples, generator=generator))
