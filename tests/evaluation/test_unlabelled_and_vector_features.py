"""Features for FID/KID without labels: a denoising-autoencoder extractor for unlabelled images
and standardised raw features for vectors; each separates real data from noise."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest
import torch
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.data import SourceOptions, Split, dataset_identity, load_dataset
from vaekit.data.base import Dataset
from vaekit.evaluation import EvaluationContext, fid
from vaekit.evaluation import extractor as extractor_module
from vaekit.evaluation.extractor import ExtractorCache, FeatureExtractor, extractor_spec, spec_hash
from vaekit.evaluation.features import STANDARDISED_FEATURES, StandardisedFeatures, features_for
from vaekit.evaluation.sample_quality import sample_quality_metric, sanity_references

NUM_FEATURES = 13
CONSTANT_COLUMN = 12


def _with_splits(
    base: Dataset, name: str, train: Split, test: Split, value_range: Literal["unit", "real"]
) -> Dataset:
    """``base`` holding other splits (test doubles as validation), with a matching identity."""
    splits = {"train": train, "val": test, "test": test}
    identity = dataset_identity(name, "none", splits, {})
    return replace(
        base, name=name, train=train, val=test, test=test, value_range=value_range,
        identity=identity,
    )  # fmt: skip


class ImageStream(TorchDataset[Tensor]):
    """Images read one at a time, as ``Dataset.train_stream`` reads a folder from disk."""

    def __init__(self, x: Tensor):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> Tensor:
        return self.x[index].clone()


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return load_dataset("digits", options=SourceOptions(root=tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def unlabelled(digits: Dataset) -> Dataset:
    """The digits without their labels, as an image folder would be."""
    train, test = Split(digits.train.x), Split(digits.test.x)
    return _with_splits(digits, "digits-unlabelled", train, test, "unit")


@pytest.fixture(scope="module")
def clusters(digits: Dataset) -> Dataset:
    """Four Gaussian clusters in 13 dimensions, scales from 10⁻² to 10³, one column constant."""
    generator = torch.Generator().manual_seed(0)
    scales = torch.logspace(-2, 3, NUM_FEATURES)  # [D]
    centres = 3 * torch.randn(4, NUM_FEATURES, generator=generator)  # [K, D]

    def draw(n: int) -> Split:
        labels = torch.randint(4, (n,), generator=generator)
        x = (centres[labels] + torch.randn(n, NUM_FEATURES, generator=generator)) * scales
        x[:, CONSTANT_COLUMN] = 7.0
        return Split(x.float())

    return _with_splits(digits, "clusters", draw(1500), draw(600), "real")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> ExtractorCache:
    return ExtractorCache(tmp_path_factory.mktemp("extractors"))


@pytest.fixture(scope="module")
def autoencoder(unlabelled: Dataset, cache: ExtractorCache) -> FeatureExtractor:
    features = features_for(unlabelled, cache, min_steps=150)
    assert isinstance(features, FeatureExtractor)
    return features


def test_unlabelled_images_get_a_denoising_autoencoder(autoencoder: FeatureExtractor) -> None:
    assert autoencoder.spec["objective"] == "autoencoder" and "num_classes" not in autoencoder.spec
    assert autoencoder.classifier is None and autoencoder.decoder is not None
    described = autoencoder.describe()
    assert described["objective"] == "autoencoder" and "without labels" in described["features"]
    # Reconstructing clean test digits from a 128-unit bottleneck beats predicting pixel means.
    assert described["test_explained_variance"] > 0.5


def test_halves_of_the_test_set_are_far_closer_than_noise(
    autoencoder: FeatureExtractor, unlabelled: Dataset, digits: Dataset
) -> None:
    x = unlabelled.test.x
    features = autoencoder.embed(x)
    reference = sanity_references(
        autoencoder, x, features, generator=torch.Generator().manual_seed(0)
    )
    assert 0 < reference["fid_half_vs_half"] < 0.2 * reference["fid_noise_vs_real"]
    assert reference["kid_half_vs_half"] < 0.2 * reference["kid_noise_vs_real"]
    # Trained without labels, the features still tell digits 0-4 from digits 5-9.
    assert digits.test.y is not None
    low = digits.test.y < 5
    assert fid(features[low], features[~low]) > 5 * reference["fid_half_vs_half"]


def test_the_cache_returns_the_identical_autoencoder(
    autoencoder: FeatureExtractor,
    unlabelled: Dataset,
    cache: ExtractorCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("a cached extractor must not be retrained")

    monkeypatch.setattr(extractor_module, "train_extractor", refuse)
    again = features_for(unlabelled, cache, min_steps=150)
    assert isinstance(again, FeatureExtractor)
    assert again.hash == autoencoder.hash and again.info == autoencoder.info
    x = unlabelled.test.x[:50]
    torch.testing.assert_close(again.embed(x), autoencoder.embed(x), rtol=0, atol=0)


def test_a_streamed_training_split_trains_the_same_weights(unlabelled: Dataset) -> None:
    spec = extractor_spec(unlabelled.event_shape, None, min_steps=20)
    in_memory = extractor_module.train_extractor(spec, unlabelled)
    sample = Split(unlabelled.train.x[:100])  # as a streamed dataset holds only a sample
    streamed = replace(unlabelled, train=sample, train_stream=ImageStream(unlabelled.train.x))
    assert extractor_module.train_extractor(spec, streamed).hash == in_memory.hash


def test_a_streamed_labelled_split_trains_the_same_classifier(digits: Dataset) -> None:
    spec = extractor_spec(digits.event_shape, digits.num_classes, min_steps=20)
    in_memory = extractor_module.train_extractor(spec, digits)
    sample = Split(digits.train.x[:100], digits.train.y[:100])  # a streamed dataset's sample
    streamed = replace(
        digits,
        train=sample,
        train_stream=ImageStream(digits.train.x),
        train_stream_labels=digits.train.y,
    )
    assert extractor_module.train_extractor(spec, streamed).hash == in_memory.hash
    unlabelled_stream = replace(streamed, train_stream_labels=None)
    with pytest.raises(ValueError, match="no labels"):
        extractor_module.train_extractor(spec, unlabelled_stream)


def test_labelled_images_keep_the_classifier(digits: Dataset, cache: ExtractorCache) -> None:
    classifier = features_for(digits, cache, min_steps=10)
    assert isinstance(classifier, FeatureExtractor)
    assert classifier.spec["objective"] == "classifier" and classifier.spec["num_classes"] == 10
    assert "test_accuracy" in classifier.describe()
    # Same images, other objective: another spec, so never the same cache entry.
    labelled, unlabelled = (extractor_spec(digits.event_shape, n) for n in (10, None))
    assert spec_hash(labelled) != spec_hash(unlabelled)
    assert cache.directory(digits, labelled) != cache.directory(digits, unlabelled)


def test_vectors_are_standardised_training_columns(clusters: Dataset, tmp_path: Path) -> None:
    features = features_for(clusters, ExtractorCache(tmp_path / "unused"))
    assert isinstance(features, StandardisedFeatures)
    assert not (tmp_path / "unused").exists()  # no network, nothing trained or cached
    z = features.embed(clusters.train.x)  # [N, D]
    varying = torch.arange(NUM_FEATURES) != CONSTANT_COLUMN
    torch.testing.assert_close(z.mean(0), torch.zeros(NUM_FEATURES, dtype=torch.float64))
    torch.testing.assert_close(
        z[:, varying].std(0, correction=0), torch.ones(NUM_FEATURES - 1, dtype=torch.float64)
    )
    # A constant column has std 0: it is centred (all zeros), not divided by 0.
    assert features.std[CONSTANT_COLUMN] == 1 and bool((z[:, CONSTANT_COLUMN] == 0).all())
    assert features.describe()["features"] == STANDARDISED_FEATURES
    with pytest.raises(ValueError, match="13-dimensional"):
        features.embed(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="standardised raw features"):
        extractor_spec(clusters.event_shape, None)


def test_standardised_fid_is_a_shift_in_standard_deviations(clusters: Dataset) -> None:
    features = StandardisedFeatures.fit(clusters.train.x)
    real = clusters.test.x
    # Moving feature j by c_j training stds leaves the covariance alone: FID = Σ c_j² exactly.
    shift = torch.linspace(-1, 1, NUM_FEATURES, dtype=torch.float64)
    moved = (real.double() + shift * features.std).float()
    expected = float(shift.square().sum())
    assert fid(features.embed(real), features.embed(moved)) == pytest.approx(expected, rel=1e-4)
    # Units do not matter: a column in units 1000 times smaller gives the same FID ...
    rescale = torch.ones(NUM_FEATURES).index_fill(0, torch.tensor([0]), 1000.0)
    rescaled = StandardisedFeatures.fit(clusters.train.x * rescale)
    same = fid(rescaled.embed(real * rescale), rescaled.embed(moved * rescale))
    assert same == pytest.approx(expected, rel=1e-4)
    # ... whereas on raw columns the largest scale swamps the rest.
    assert fid(real.double(), moved.double()) > 1e4 * expected


def test_vector_halves_are_far_closer_than_noise(clusters: Dataset) -> None:
    features = StandardisedFeatures.fit(clusters.train.x)
    x = clusters.test.x
    reference = sanity_references(
        features, x, features.embed(x), generator=torch.Generator().manual_seed(0)
    )
    assert 0 < reference["fid_half_vs_half"] < 0.2 * reference["fid_noise_vs_real"]
    assert reference["kid_half_vs_half"] < 0.2 * reference["kid_noise_vs_real"]


@pytest.mark.parametrize("name", ["unlabelled", "clusters"])
def test_sample_quality_metric_runs_without_labels(
    name: str, request: pytest.FixtureRequest, autoencoder: FeatureExtractor, cache: ExtractorCache
) -> None:
    dataset: Dataset = request.getfixturevalue(name)
    model = build_model(ModelConfig(network="mlp", hidden=(16,), latent_dim=2), dataset.event_shape)
    ctx = EvaluationContext(
        model=model,
        dataset=dataset,
        num_samples=200,
        load_extractor=lambda: features_for(dataset, cache, min_steps=150),
    )
    result = sample_quality_metric(ctx)
    features = ctx.extractor
    assert f"fid-{features.hash}" in result and f"kid-{features.hash}" in result
    assert result["extractor"] == features.describe()
    assert result["num_samples"] == 200 and 0 <= result["precision"] <= 1
    if name == "unlabelled":
        assert features.hash == autoencoder.hash  # the cached extractor, not a new one
        assert result["reference"]["noise"] == "uniform in [0, 1]"
    else:
        assert result["extractor"]["features"] == STANDARDISED_FEATURES
        assert result["reference"]["noise"] == "uniform in each feature's range"
