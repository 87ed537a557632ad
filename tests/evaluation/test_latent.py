"""Active units, per-unit KL, aggregate-posterior mismatch and probes, against known answers."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.data.base import Dataset, Split
from vaekit.evaluation import (
    EvaluationContext,
    gaussian_fit_kl,
    mmd_permutation_test,
    probe_accuracies,
)
from vaekit.evaluation.latent import (
    active_units_metric,
    aggregate_posterior_metric,
    encode,
    per_unit_kl,
)


def _ppca_with_dead_directions(ppca):  # type: ignore[no-untyped-def]
    """pPCA with a 4-d latent whose last two columns of W are zero (eigenvalue = noise)."""
    W = torch.cat([ppca.W, torch.zeros(ppca.W.shape[0], 2, dtype=ppca.W.dtype)], 1)  # [D, 4]
    return type(ppca)(W, ppca.mu, ppca.sigma)


def _context(model, x: torch.Tensor) -> EvaluationContext:  # type: ignore[no-untyped-def]
    split = Split(x=x)
    dataset = Dataset("ppca", split, split, split, "real", "none", "test")
    return EvaluationContext(model=model, dataset=dataset)


def test_active_units_count_directions_above_the_noise_variance(ppca) -> None:  # type: ignore[no-untyped-def]
    model_ppca = _ppca_with_dead_directions(ppca)
    x = model_ppca.sample(2000, torch.Generator().manual_seed(0))
    eigenvalues = torch.linalg.eigvalsh(model_ppca.marginal().covariance_matrix)
    expected = int((eigenvalues > model_ppca.sigma**2 * (1 + 1e-6)).sum())
    assert expected == 2
    result = active_units_metric(_context(model_ppca.model(), x))
    assert result["active_units"] == expected
    assert "2 of 4 latent units are inactive" in result["warning"]


def test_per_unit_kl_matches_the_closed_form(ppca) -> None:  # type: ignore[no-untyped-def]
    model_ppca = _ppca_with_dead_directions(ppca)
    x = model_ppca.sample(500, torch.Generator().manual_seed(1))
    ctx = _context(model_ppca.model(), x)
    kl = per_unit_kl(ctx, x)
    loc, var = encode(ctx, x)
    # KL(N(m, v) || N(0, 1)) = ½(m² + v - 1 - log v), averaged over the data.
    expected = (0.5 * (loc.square() + var - 1 - var.log())).mean(0)
    torch.testing.assert_close(kl, expected, rtol=1e-6, atol=1e-9)
    assert kl[2:].abs().max() < 1e-6 and (kl[:2] > 0.1).all()  # dead units: q(z_u|x) = p(z_u)


def test_exact_posterior_aggregates_to_the_prior(ppca) -> None:  # type: ignore[no-untyped-def]
    # For the true model, E_x p(z|x) = p(z): the Gaussian-fit KL vanishes, the MMD finds nothing.
    x = ppca.sample(1500, torch.Generator().manual_seed(2))
    result = aggregate_posterior_metric(_context(ppca.model(), x))
    assert result["gaussian_fit_kl"] < 0.01
    assert result["mmd"]["p_value"] > 0.01
    shifted = aggregate_posterior_metric(_context(ppca.model(encoder_error=0.5), x))
    assert shifted["gaussian_fit_kl"] > 0.2
    assert shifted["mmd"]["p_value"] < 0.01 and shifted["mmd"]["scaled"] > 5


def test_gaussian_fit_kl_closed_form() -> None:
    m = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    loc = m.expand(10, 3).clone()  # every code at m, unit variance: the fit is N(m, I)
    assert gaussian_fit_kl(loc, torch.ones(10, 3, dtype=torch.float64)) == pytest.approx(
        0.5 * float(m @ m)
    )
    scale = torch.full((10, 3), 4.0, dtype=torch.float64)  # N(0, 4I): ½(3·4 - 3 - 3 log 4)
    assert gaussian_fit_kl(torch.zeros(10, 3, dtype=torch.float64), scale) == pytest.approx(
        0.5 * (12 - 3 - 3 * math.log(4))
    )


def test_mmd_permutation_scale() -> None:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 2, generator=generator), torch.randn(300, 2, generator=generator)
    same = mmd_permutation_test(x, y, generator=generator)
    assert same["p_value"] > 0.01 and abs(same["scaled"]) < 4
    far = mmd_permutation_test(x, y + 1.0, generator=generator)
    assert far["p_value"] == pytest.approx(1 / 201) and far["scaled"] > 10


def _blobs(
    n: int, centres: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.randint(len(centres), (n,), generator=generator)
    return centres[labels] + torch.randn(n, centres.shape[1], generator=generator), labels


def test_probes_separate_blobs_and_fall_to_chance_on_shuffled_labels() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = 6.0 * torch.randn(4, 5, generator=generator)  # four well-separated classes
    train_x, train_y = _blobs(1000, centres, generator)
    test_x, test_y = _blobs(1000, centres, generator)
    separable = probe_accuracies(train_x, train_y, test_x, test_y)
    assert separable["logistic_accuracy"] > 0.95 and separable["knn_accuracy"] > 0.95
    # Shuffled labels carry no information about the codes (both splits, so no blob can keep a
    # majority label by chance): every probe falls to chance, 1/4.
    shuffled = probe_accuracies(
        train_x,
        train_y[torch.randperm(1000, generator=generator)],
        test_x,
        test_y[torch.randperm(1000, generator=generator)],
    )
    for key in ("logistic_accuracy", "knn_accuracy"):
        assert abs(shuffled[key] - 0.25) < 0.06, shuffled


class _NoClosedFormVariance(torch.distributions.Independent):
    """A diagonal Gaussian that hides its variance, as a flow posterior has none in closed form."""

    @property
    def variance(self) -> torch.Tensor:
        raise NotImplementedError


class _HidingEncoder(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.inner = encoder

    def forward(self, x: torch.Tensor) -> torch.distributions.Distribution:
        q = self.inner(x)
        return _NoClosedFormVariance(q.base_dist, 1, validate_args=False)


def test_a_posterior_without_a_closed_form_variance_gets_the_sample_variance(ppca) -> None:  # type: ignore[no-untyped-def]
    model = ppca.model()
    x = ppca.sample(300, torch.Generator().manual_seed(2))
    loc, var = encode(_context(model, x), x)
    model.encoder = _HidingEncoder(model.encoder)
    mc_loc, mc_var = encode(_context(model, x), x)
    assert torch.equal(loc, mc_loc)
    # 64 draws: the sample variance has relative standard error sqrt(2 / 63) ≈ 0.18 per entry
    assert (mc_var / var).mean().item() == pytest.approx(1.0, abs=0.03)
    assert not torch.equal(mc_var, var)


def test_a_learned_prior_or_flow_posterior_reports_activity_without_a_per_unit_kl() -> None:
    from vaekit.build import build_model
    from vaekit.config import ModelConfig

    x = torch.rand(50, 1, 8, 8)
    for overrides in ({"prior": "vamp", "prior_components": 3}, {"posterior": "iaf"}):
        torch.manual_seed(0)
        model = build_model(ModelConfig(latent_dim=3, hidden=(16,), **overrides), (1, 8, 8))
        result = active_units_metric(_context(model, x))
        assert len(result["activity"]) == 3 and "kl_per_unit" not in result
        assert "do not factorise" in result["note"]
