"""FID, KID and precision/recall: closed forms, limits, and a tiny extractor trained on digits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaekit.build import build_dataset
from vaekit.config import DataConfig
from vaekit.data.base import Dataset
from vaekit.errors import CheckpointError
from vaekit.evaluation import extractor as extractor_module
from vaekit.evaluation import fid, frechet_distance, kid, precision_recall, sample_quality
from vaekit.evaluation.extractor import ExtractorCache, FeatureExtractor, extractor_spec


def _spd(dim: int, generator: torch.Generator) -> torch.Tensor:
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(dim, dtype=torch.float64)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(a)
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T


def test_frechet_distance_of_two_gaussians_is_the_closed_form() -> None:
    generator = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(5, generator=generator), torch.randn(5, generator=generator)
    cov1, cov2 = _spd(5, generator), _spd(5, generator)
    # W2² = |Δμ|² + tr Σ1 + tr Σ2 - 2 tr (Σ1^½ Σ2 Σ1^½)^½ (the symmetric form).
    root = _sqrtm_psd(cov1)
    expected = (mu1 - mu2).double().square().sum() + cov1.trace() + cov2.trace()
    expected -= 2 * _sqrtm_psd(root @ cov2 @ root).trace()
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(float(expected), rel=1e-8)
    # 1-D: (m1 - m2)² + (s1 - s2)².
    one = frechet_distance(
        torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]), torch.tensor([[9.0]])
    )
    assert one == pytest.approx(4.0 + 1.0)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return build_dataset(DataConfig(name="digits"), 0)


@pytest.fixture(scope="module")
def extractor(digits: Dataset) -> FeatureExtractor:
    spec = extractor_spec(digits.event_shape, 10, min_steps=150)
    return extractor_module.train_extractor(spec, digits)


def test_tiny_extractor_learns_digits(extractor: FeatureExtractor) -> None:
    assert extractor.spec["architecture"] == "small-conv"
    assert extractor.info["test_accuracy"] > 0.85


def test_fid_is_zero_on_identical_sets_and_grows_with_noise(
    extractor: FeatureExtractor, digits: Dataset
) -> None:
    x = digits.test.x
    features = extractor.embed(x)
    assert abs(fid(features, features)) < 1e-6
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    scores = [fid(features, extractor.embed(x + level * noise)) for level in (0.1, 0.2, 0.4, 0.8)]
    assert scores == sorted(scores) and scores[0] > 0, scores


def test_kid_and_precision_recall_limits(extractor: FeatureExtractor, digits: Dataset) -> None:
    generator = torch.Generator().manual_seed(0)
    x = digits.test.x
    same = sample_quality(extractor, x, x.clone(), generator=generator)
    noise = sample_quality(extractor, x, torch.rand(x.shape, generator=generator))
    key = f"kid-{extractor.hash}"
    # The unbiased MMD² of a set against itself is slightly negative, not exactly 0.
    assert abs(same[key]) < 0.1 * noise[key]
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    assert same[f"fid-{extractor.hash}"] == pytest.approx(0.0, abs=1e-6)
    features = extractor.embed(x)
    far = features + 100 * features.std() + 100
    assert precision_recall(features, far) == (0.0, 0.0)
    kid_mean, kid_std = kid(features, far, num_subsets=5, subset_size=50, generator=generator)
    assert kid_mean > 10 * kid_std > 0


def test_extractor_cache_trains_once_and_checks_the_hash(
    digits: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ExtractorCache(tmp_path)
    spec = extractor_spec(digits.event_shape, 10, min_steps=10)
    first = cache.get(digits, spec)
    folder = cache.directory(digits, spec)
    assert (folder / "extractor.safetensors").is_file() and (folder / "extractor.json").is_file()
    assert digits.identity in folder.name

    def refuse(*args: object) -> None:
        raise AssertionError("a cached extractor must not be retrained")

    monkeypatch.setattr(extractor_module, "train_extractor", refuse)
    again = cache.get(digits, spec)
    assert again.hash == first.hash and again.info == first.info
    (folder / "extractor.json").write_text(
        (folder / "extractor.json").read_text().replace(first.hash, "0" * 12)
    )
    with pytest.raises(CheckpointError, match="does not match its recorded hash"):
        cache.get(digits, spec)


def test_extractor_shapes_for_mnist_and_other_sizes() -> None:
    for shape, architecture in (((1, 28, 28), "lenet"), ((3, 32, 32), "small-conv")):
        spec = extractor_spec(shape, 10)
        model = FeatureExtractor(spec).eval()
        x = torch.rand(2, *shape)
        assert spec["architecture"] == architecture
        assert model(x).shape == (2, 10)
        assert model.embed(x).shape == (2, extractor_module.FEATURE_DIM)
