"""Ancestral samplers: z from the prior, or from a Gaussian (mixture) fitted to training codes."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from vaekit.distributions.sampling import draw
from vaekit.models.base import Autoencoder
from vaekit.samplers.base import Sampler
from vaekit.samplers.codes import training_codes


class PriorSampler(Sampler):
    """z ~ p(z), then x from p(x|z): the standard way to sample a VAE."""

    @torch.no_grad()
    def sample_latent(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        return draw(self.model.prior(), (num_samples,), generator=generator)


class GaussianFitSampler(Sampler):
    """z ~ N(m, S) with m, S the mean and covariance of the codes E_q[z|x] of ``data``.

    The usual way to sample a plain autoencoder, whose codes need not follow any prior. A
    conditional model encodes ``data`` with its ``labels`` (see ``training_codes``).
    """

    def __init__(
        self,
        model: Autoencoder,
        data: Tensor,
        *,
        decode: str = "mean",
        batch_size: int = 1000,
        labels: Tensor | None = None,
    ):
        super().__init__(model, decode=decode)
        codes = training_codes(model, data, labels=labels, batch_size=batch_size).double()
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


class GaussianMixtureSampler(Sampler):
    """z ~ a K-component full-covariance Gaussian mixture fitted (EM) to the codes of ``data``.

    For models whose codes are not N(0, I), the plain autoencoder and the AAE: a mixture follows
    the clusters of the aggregate posterior, which a single Gaussian smears across. The fit is
    scikit-learn's ``GaussianMixture`` with ``seed`` as its random state. A conditional model
    encodes ``data`` with its ``labels`` (see ``training_codes``).
    """

    def __init__(
        self,
        model: Autoencoder,
        data: Tensor,
        *,
        decode: str = "mean",
        num_components: int = 10,
        seed: int = 0,
        batch_size: int = 1000,
        labels: Tensor | None = None,
    ):
        from sklearn.mixture import GaussianMixture  # deferred: slow import

        super().__init__(model, decode=decode)
        codes = training_codes(model, data, labels=labels, batch_size=batch_size)  # [N, D]
        mixture = GaussianMixture(
            num_components, covariance_type="full", reg_covar=1e-6, random_state=seed
        ).fit(codes.double().cpu().numpy())
        self.weights = torch.from_numpy(mixture.weights_).to(self.device)  # [K]
        self.means = torch.from_numpy(mixture.means_).to(self.device)  # [K, D]
        cov = torch.from_numpy(mixture.covariances_).to(self.device)  # [K, D, D]
        self.scale_tril = torch.linalg.cholesky(cov)  # [K, D, D]

    @torch.no_grad()
    def sample_latent(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        component = torch.multinomial(self.weights, num_samples, True, generator=generator)
        eps = torch.randn(
            num_samples,
            self.means.shape[1],
            1,
            generator=generator,
            device=self.device,
            dtype=torch.float64,
        )
        z = self.means[component] + (self.scale_tril[component] @ eps).squeeze(-1)  # [N, D]
        return z.to(next(self.model.parameters()).dtype)
