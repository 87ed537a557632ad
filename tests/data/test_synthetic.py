"""pPCA data and its exact log p(x) and p(z | x), checked against independent numpy formulas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vaekit.data import SourceOptions, ppca_log_prob, ppca_posterior
from vaekit.data.synthetic import PPCA_SINGULAR_VALUES, load_ppca


def loaded() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    raw = load_ppca(SourceOptions(root=Path("."), seed=3))
    extras = {key: value.double() for key, value in raw.extras.items()}
    return raw.train.x.flatten(1).double(), extras["W"], extras["mu"], extras["sigma"]


def test_shapes_seed_and_singular_values() -> None:
    raw = load_ppca(SourceOptions(root=Path("."), seed=3))
    assert raw.train.x.shape == (5000, 1, 4, 4) and raw.test is not None
    assert raw.test.x.shape == (1000, 1, 4, 4) and raw.value_range == "real"
    assert raw.extras["W"].shape == (16, 2) and raw.extras["mu"].shape == (16,)
    assert raw.extras["sigma"].ndim == 0
    singular = torch.linalg.svdvals(raw.extras["W"])
    assert torch.allclose(singular, torch.tensor(PPCA_SINGULAR_VALUES), atol=1e-5)
    again = load_ppca(SourceOptions(root=Path("."), seed=3))
    other = load_ppca(SourceOptions(root=Path("."), seed=4))
    assert torch.equal(raw.train.x, again.train.x) and not torch.equal(raw.train.x, other.train.x)


def test_sample_covariance_matches_model() -> None:
    x, W, mu, sigma = loaded()
    model_cov = W @ W.T + sigma**2 * torch.eye(16, dtype=torch.float64)
    assert torch.allclose(torch.cov(x.T), model_cov, atol=0.3)
    assert torch.allclose(x.mean(0), mu, atol=0.1)


def test_log_prob_matches_numpy() -> None:
    x, W, mu, sigma = loaded()
    x_np, W_np, mu_np, s = x[:50].numpy(), W.numpy(), mu.numpy(), float(sigma)
    cov = W_np @ W_np.T + s**2 * np.eye(16)
    _, logdet = np.linalg.slogdet(cov)
    diff = x_np - mu_np
    mahalanobis = np.einsum("nd,de,ne->n", diff, np.linalg.inv(cov), diff)
    expected = -0.5 * (16 * np.log(2 * np.pi) + logdet + mahalanobis)
    np.testing.assert_allclose(ppca_log_prob(x[:50], W, mu, sigma).numpy(), expected, rtol=1e-10)


def test_posterior_matches_gaussian_conditioning() -> None:
    """p(z | x) from the joint Gaussian: mean Wᵀ C⁻¹ (x − mu), covariance I − Wᵀ C⁻¹ W."""
    x, W, mu, sigma = loaded()
    W_np, C = W.numpy(), (W @ W.T).numpy() + float(sigma) ** 2 * np.eye(16)
    gain = W_np.T @ np.linalg.inv(C)  # [k, D]
    loc, cov = ppca_posterior(x[:20], W, mu, sigma)
    np.testing.assert_allclose(loc.numpy(), (x[:20] - mu).numpy() @ gain.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(cov.numpy(), np.eye(2) - gain @ W_np, rtol=1e-8, atol=1e-12)
