"""Probabilistic PCA data (Tipping & Bishop 1999) and its exact marginal and posterior.

x = W z + mu + sigma * eps with z ~ N(0, I_k), eps ~ N(0, I_D), so p(x) = N(mu, W Wᵀ + σ² I)
and p(z | x) = N(M⁻¹ Wᵀ (x − mu), σ² M⁻¹) with M = Wᵀ W + σ² I. A linear-Gaussian VAE can
match both exactly, which makes this the project's closed-form test bed.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from .base import RawData, SourceOptions, Split

PPCA_IMAGE_SHAPE = (1, 4, 4)  # D = 16 values shown as a 4x4 grey image
PPCA_SINGULAR_VALUES = (3.0, 1.5)  # distinct, so the principal subspace is identifiable
PPCA_SIGMA = 0.1
PPCA_NUM_TRAIN = 5000
PPCA_NUM_TEST = 1000


def load_ppca(options: SourceOptions) -> RawData:
    """pPCA data [N, 1, 4, 4] (D = 16, k = 2, σ = 0.1): 5000 train and 1000 test points.

    ``W = U diag(PPCA_SINGULAR_VALUES)`` with orthonormal U [D, k], and ``mu``, are drawn from
    ``options.seed``; the extras ``W`` [D, k], ``mu`` [D] and ``sigma`` (a scalar tensor) are
    the ground truth for ``ppca_log_prob`` and ``ppca_posterior``.
    """
    generator = torch.Generator().manual_seed(options.seed)
    data_dim = PPCA_IMAGE_SHAPE[0] * PPCA_IMAGE_SHAPE[1] * PPCA_IMAGE_SHAPE[2]
    latent_dim = len(PPCA_SINGULAR_VALUES)
    basis, _ = torch.linalg.qr(torch.randn(data_dim, latent_dim, generator=generator))
    W = basis * torch.tensor(PPCA_SINGULAR_VALUES)  # [D, k], singular values as listed
    mu = 0.5 * torch.randn(data_dim, generator=generator)  # [D]
    sigma = torch.tensor(PPCA_SIGMA)

    def sample(num_points: int) -> Tensor:
        z = torch.randn(num_points, latent_dim, generator=generator)  # [N, k]
        eps = torch.randn(num_points, data_dim, generator=generator)  # [N, D]
        x = z @ W.T + mu + sigma * eps  # [N, D]
        return x.reshape(num_points, *PPCA_IMAGE_SHAPE)

    return RawData(
        train=Split(x=sample(PPCA_NUM_TRAIN)),
        test=Split(x=sample(PPCA_NUM_TEST)),
        value_range="real",
        extras={"W": W, "mu": mu, "sigma": sigma},
    )


def ppca_marginal(W: Tensor, mu: Tensor, sigma: Tensor | float) -> MultivariateNormal:  # noqa: N803
    """The exact marginal p(x) = N(mu, W Wᵀ + σ² I) of the pPCA model."""
    data_dim = W.shape[0]
    sigma_sq = torch.as_tensor(sigma, dtype=W.dtype, device=W.device) ** 2
    covariance = W @ W.T + sigma_sq * torch.eye(data_dim, dtype=W.dtype, device=W.device)  # [D, D]
    return MultivariateNormal(loc=mu, covariance_matrix=covariance)


def ppca_log_prob(x_flat: Tensor, W: Tensor, mu: Tensor, sigma: Tensor | float) -> Tensor:  # noqa: N803
    """Exact log p(x) in nats for flattened data ``x_flat`` [N, D]; returns [N]."""
    return ppca_marginal(W, mu, sigma).log_prob(x_flat)


def ppca_posterior(
    x_flat: Tensor,
    W: Tensor,  # noqa: N803 - the loading matrix is W in Tipping & Bishop
    mu: Tensor,
    sigma: Tensor | float,
) -> tuple[Tensor, Tensor]:
    """Exact posterior p(z | x) = N(loc, cov): loc [N, k] = M⁻¹ Wᵀ (x − mu), cov [k, k] = σ² M⁻¹.

    M = Wᵀ W + σ² I (Tipping & Bishop 1999, eq. 6 onwards); the covariance does not depend on x.
    """
    latent_dim = W.shape[1]
    sigma_sq = torch.as_tensor(sigma, dtype=W.dtype, device=W.device) ** 2
    M = W.T @ W + sigma_sq * torch.eye(latent_dim, dtype=W.dtype, device=W.device)  # [k, k]
    loc = torch.linalg.solve(M, W.T @ (x_flat - mu).T).T  # [N, k]
    cov = sigma_sq * torch.linalg.inv(M)  # [k, k]
    return loc, cov
