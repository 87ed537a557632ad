"""The conditional model (Sohn et al. 2015): labels feed the encoder and the decoder."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader, Dataset, TensorDataset

import vaekit
from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.errors import ConfigError, DataError
from vaekit.models import Condition
from vaekit.models.conditional import labelled_batches
from vaekit.samplers import MarkovChainSampler, PriorSampler


def test_labels_are_one_hot_and_repeat_over_the_rows_of_k_samples() -> None:
    condition = Condition(3)
    like = torch.zeros(1)
    with condition.given(torch.tensor([2, 0])):
        rows = condition.rows(6, like)  # K = 3 samples of 2 datapoints, laid out [K, B]
    expected = torch.tensor([[0, 0, 1], [1, 0, 0]], dtype=torch.float32).repeat(3, 1)
    assert torch.equal(rows, expected)
    vectors = torch.rand(2, 3)
    with condition.given(vectors):
        assert torch.equal(condition.rows(2, like), vectors)
    with pytest.raises(ConfigError, match="this model is conditional"):
        condition.rows(2, like)
    with condition.given(torch.tensor([1, 2])), pytest.raises(ValueError, match="do not repeat"):
        condition.rows(3, like)
    with pytest.raises(ValueError, match=r"in \[0, 2\]"):
        condition.encode(torch.tensor([3]))


def test_the_label_changes_what_the_encoder_and_decoder_compute() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=2, hidden=(16,), conditional=True)
    for network, shape in (("mlp", (1, 8, 8)), ("conv", (1, 28, 28))):
        model = build_model(dataclasses.replace(cfg, network=network), shape, num_classes=4)
        x, z = torch.rand(2, *shape), torch.randn(2, 2)
        with model.given(torch.tensor([0, 0])):
            a = model.encoder(x).mean, model.decode_mean(z)
        with model.given(torch.tensor([3, 3])):
            b = model.encoder(x).mean, model.decode_mean(z)
        assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])


def test_labelled_batches_condition_each_batch_on_its_own_labels() -> None:
    model = build_model(
        ModelConfig(latent_dim=2, hidden=(8,), conditional=True), (4,), num_classes=5
    )
    x, y = torch.rand(7, 4), torch.tensor([0, 1, 2, 3, 4, 0, 1])
    seen = []
    for batch in labelled_batches(model, x, y, 3):
        condition = model.condition
        assert condition is not None
        seen.append(condition.rows(len(batch), batch).argmax(1))
    assert torch.equal(torch.cat(seen), y)
    assert model.condition is not None and model.condition._value is None  # nothing left set


@pytest.mark.parametrize(
    ("overrides", "error", "fragment"),
    [
        ({"prior": "vamp"}, ConfigError, "model.prior = 'vamp'"),
        ({"stochastic_layers": 2}, ConfigError, "model.stochastic_layers = 2"),
        ({}, DataError, "needs class labels"),
    ],
)
def test_settings_that_cannot_condition_are_refused(
    overrides: dict, error: type, fragment: str
) -> None:
    cfg = ModelConfig(latent_dim=2, hidden=(8,), conditional=True, **overrides)
    with pytest.raises(error, match=fragment):
        build_model(cfg, (1, 8, 8), num_classes=None if not overrides else 3)


def test_class_conditional_digits_are_recognised_as_their_class() -> None:
    """Trained through vaekit.fit on the 8x8 digits, samples drawn for class c are classified
    as c by a classifier of real digits far above chance (0.1), from the prior and after a
    Markov chain that keeps the class."""
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=4, hidden=(128, 64), conditional=True)
    model = build_model(cfg, (1, 8, 8), num_classes=10)
    vaekit.fit(model, (x[:1500], y[:1500]), epochs=40, batch_size=64, lr=3e-3, progress=False)
    classifier = LogisticRegression(max_iter=2000).fit(
        x[:1500].flatten(1).numpy(), y[:1500].numpy()
    )
    assert classifier.score(x[1500:].flatten(1).numpy(), y[1500:].numpy()) > 0.9
    classes = torch.arange(10).repeat_interleave(50)
    generator = torch.Generator().manual_seed(1)
    with model.given(classes):
        prior = PriorSampler(model).sample(len(classes), generator=generator)
        chain = MarkovChainSampler(model, start="prior", steps=5).sample(
            len(classes), generator=generator
        )
    for samples in (prior, chain):
        accuracy = classifier.score(samples.flatten(1).numpy(), classes.numpy())
        assert accuracy > 0.8, accuracy


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_fit_draws_a_conditional_models_figures_with_the_labels(tmp_path, kind: str) -> None:
    """vaekit.fit(..., out=...) without validation data: the figures (samples for each class,
    from the prior or from the fit of the codes, and reconstructions) use the labels."""
    x, y = torch.rand(60, 1, 8, 8), torch.arange(60) % 3
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, latent_dim=2, hidden=(16,), conditional=True)
    if kind == "ae":
        cfg = dataclasses.replace(cfg, beta=1.0)
    model = build_model(cfg, (1, 8, 8), num_classes=3)
    vaekit.fit(model, (x, y), out=tmp_path / "run", epochs=1, batch_size=20, progress=False)
    for name in ("samples.png", "reconstructions.png"):
        assert (tmp_path / "run" / name).is_file()


def test_labels_outside_the_models_classes_are_refused_before_training() -> None:
    model = build_model(
        ModelConfig(latent_dim=2, hidden=(8,), conditional=True), (4,), num_classes=3
    )
    x, y = torch.rand(20, 4), torch.arange(20) % 5
    with pytest.raises(DataError, match=r"labels run from 0 to 4.*num_classes = 5"):
        vaekit.fit(model, (x, y), epochs=1, progress=False)
    with pytest.raises(DataError, match=r"needs labels: pass \(x, y\) tensors"):
        vaekit.fit(model, x, epochs=1, progress=False)
    with pytest.raises(DataError, match="needs labels"):
        vaekit.fit(model, TensorDataset(x), in_memory=False, epochs=1, progress=False)
    loader = DataLoader(TensorDataset(x, y % 3), batch_size=10)
    with pytest.raises(DataError, match="pass its map-style Dataset of"):
        vaekit.fit(model, loader, in_memory=False, epochs=1, progress=False)


class _Items(Dataset[tuple[torch.Tensor, int]]):
    """A user's map-style Dataset of (x, label) items, read item by item."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


@pytest.mark.parametrize("workers", [0, 1])
def test_a_streamed_dataset_of_pairs_trains_a_conditional_model_as_tensors_do(
    workers: int,
) -> None:
    """vaekit.fit(in_memory=False) reads the items' labels once and gathers them with each
    batch: the losses equal those of the same data as tensors, bitwise, and differ when the
    labels differ (so the streamed labels are the ones used)."""
    x = torch.rand(90, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(90) % 3

    def losses(train: object, val: object, **extra: object) -> list[float]:
        torch.manual_seed(0)
        cfg = ModelConfig(latent_dim=2, hidden=(16,), conditional=True)
        model = build_model(cfg, (1, 8, 8), num_classes=3)
        rows: list[dict[str, float]] = []
        options = {"epochs": 2, "batch_size": 16, "progress": False, "callbacks": [rows.append]}
        vaekit.fit(model, train, val, **options, **extra)  # type: ignore[arg-type]
        return [value for row in rows for key, value in row.items() if "/" in key]

    tensors = losses((x[:70], y[:70]), (x[70:], y[70:]))
    streamed = losses(
        _Items(x[:70], y[:70]), _Items(x[70:], y[70:]), in_memory=False, num_workers=workers
    )
    assert streamed == tensors
    shifted = losses(
        _Items(x[:70], (y[:70] + 1) % 3), _Items(x[70:], y[70:]), in_memory=False, num_workers=0
    )
    assert shifted != tensors
