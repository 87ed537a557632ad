"""The ELBO and the importance-sampled log p(x) against the exact answers of probabilistic PCA."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.distributions import draw
from vaekit.evaluation import elbo_terms, log_likelihood


def _data(ppca, n: int = 200) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return ppca.sample(n, torch.Generator().manual_seed(1))


def test_exact_posterior_gives_exact_log_likelihood_for_any_k(ppca) -> None:  # type: ignore[no-untyped-def]
    # With q(z|x) = p(z|x) every weight p(x, z)/q(z|x) equals p(x): zero variance, any K.
    x = _data(ppca, 70)
    exact = ppca.marginal().log_prob(x.flatten(1))
    model = ppca.model()
    for k, chunk in ((1, None), (7, 3), (64, None)):  # partial last chunk and last batch
        estimate = log_likelihood(
            model, x, num_samples=k, batch_size=32, chunk_size=chunk,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        # The fixture's parameters pass through float32 once, hence rtol 1e-6 and not 1e-12.
        torch.testing.assert_close(estimate, exact, rtol=1e-6, atol=0)


def test_estimator_is_the_iwae_formula_on_the_same_draws(ppca) -> None:  # type: ignore[no-untyped-def]
    x = _data(ppca, 50)
    model = ppca.model(encoder_error=0.7)
    k = 40
    estimate = log_likelihood(
        model, x, num_samples=k, batch_size=len(x), chunk_size=k,
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    # Burda et al. 2016, eq. 14, written out directly with the same z ~ q(z|x).
    q = model.encoder(x)
    z = draw(q, (k,), generator=torch.Generator().manual_seed(3))  # [K, B, D]
    log_px = torch.stack([model.decoder(z_k).log_prob(x) for z_k in z])  # [K, B]
    log_w = log_px + model.prior().log_prob(z) - q.log_prob(z)
    reference = torch.logsumexp(log_w, 0) - math.log(k)
    torch.testing.assert_close(estimate, reference.detach(), rtol=0, atol=1e-9)


def test_estimate_converges_up_to_exact_log_likelihood_as_k_grows(ppca) -> None:  # type: ignore[no-untyped-def]
    x = _data(ppca, 100)
    exact = ppca.marginal().log_prob(x.flatten(1)).mean().item()
    model = ppca.model(encoder_error=0.5)
    gaps = []
    for k in (1, 10, 100, 1000, 10_000):
        estimate = log_likelihood(
            model, x, num_samples=k, batch_size=100, chunk_size=1000,
            generator=torch.Generator().manual_seed(k),
        )  # fmt: skip
        gaps.append(exact - estimate.mean().item())
    assert all(gap > -1e-3 for gap in gaps)  # a lower bound (up to Monte Carlo noise)
    assert gaps == sorted(gaps, reverse=True)  # tightens with K
    assert gaps[0] > 1.0 and gaps[-1] < 0.03, gaps


def test_chunking_and_batching_leave_the_estimate_unbiased(ppca) -> None:  # type: ignore[no-untyped-def]
    # Row alignment is checked exactly by the exact-posterior test; here the average over data
    # agrees between one chunk and many small ones (independent draws, Monte Carlo tolerance).
    x = _data(ppca, 200)
    model = ppca.model(encoder_error=0.2)
    whole = log_likelihood(
        model, x, num_samples=500, batch_size=200, generator=torch.Generator().manual_seed(5)
    )
    chunked = log_likelihood(
        model, x, num_samples=500, batch_size=7, chunk_size=33,
        generator=torch.Generator().manual_seed(6),
    )  # fmt: skip
    assert abs(whole.mean().item() - chunked.mean().item()) < 0.01


def test_elbo_is_log_likelihood_minus_posterior_kl(ppca) -> None:  # type: ignore[no-untyped-def]
    x = _data(ppca, 4000)
    exact = ppca.marginal().log_prob(x.flatten(1))
    recon, kl = elbo_terms(ppca.model(), x, generator=torch.Generator().manual_seed(0))
    elbo = -(recon + kl)
    # Exact posterior: E_q[ELBO] = log p(x); one z per point leaves only Monte Carlo noise.
    stderr = (elbo - exact).std().item() / math.sqrt(len(x))
    assert abs((elbo - exact).mean().item()) < 4 * stderr
    assert (kl > 0).all()


@pytest.mark.parametrize("num_samples", [0, -1])
def test_log_likelihood_refuses_no_samples(ppca, num_samples: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="at least 1"):
        log_likelihood(ppca.model(), _data(ppca, 4), num_samples=num_samples)


def test_compiled_log_likelihood_matches_eager() -> None:
    # torch.compile needs a C++ compiler; without one log_likelihood warns and runs eagerly,
    # and this comparison still holds.
    from vaekit.build import build_model
    from vaekit.config import ModelConfig

    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,)), (1, 4, 4)).eval()
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.4))
    values = [
        log_likelihood(
            model, x, num_samples=8, batch_size=6, generator=torch.Generator().manual_seed(1),
            compile=compile,
        )
        for compile in (False, True)
    ]  # fmt: skip
    torch.testing.assert_close(values[1], values[0], rtol=0, atol=1e-4)
