"""The user's paths through the public API: own modules, own data in every accepted form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Laplace
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, TensorDataset

import vaekit
from vaekit.training.batches import epoch_permutation

EVENT = (1, 6, 6)
LATENT = 2


class LaplaceEncoder(nn.Module):
    """A user's encoder: a non-Gaussian posterior (KL to N(0, I) by Monte Carlo or closed form)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.Tanh(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> Distribution:
        loc, log_scale = self.net(x).chunk(2, dim=-1)
        return Independent(Laplace(loc, log_scale.exp()), 1)


class PixelDecoder(nn.Module):
    """A user's decoder: Bernoulli pixels from a small MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(LATENT, 16), nn.Tanh(), nn.Linear(16, 36))

    def forward(self, z: torch.Tensor) -> Distribution:
        logits = self.net(z).view(-1, *EVENT)
        return Independent(Bernoulli(logits=logits, validate_args=False), 3)


def user_model(seed: int = 0) -> vaekit.VAE:
    torch.manual_seed(seed)
    return vaekit.VAE(LaplaceEncoder(), PixelDecoder(), vaekit.StandardNormalPrior(LATENT))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(120, *EVENT, generator=torch.Generator().manual_seed(0))


OPTIONS = {"epochs": 2, "batch_size": 32, "lr": 1e-2, "warmup_epochs": 0.0}


def history_of(train: object, val: object = None, **extra: object) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    vaekit.fit(user_model(), train, val, callbacks=[rows.append], **{**OPTIONS, **extra})
    return rows


def test_own_modules_train_on_tensors_and_the_callbacks_see_every_epoch(
    images: torch.Tensor,
) -> None:
    rows = history_of(images[:100], images[100:])
    assert [row["epoch"] for row in rows] == [1.0, 2.0]
    assert {"train/loss", "train/kl", "val/elbo", "lr"} <= set(rows[0])
    assert all(np.isfinite(row["train/loss"]) for row in rows)


@pytest.mark.parametrize(
    "form", ["numpy", "pair", "tensor-dataset", "dataset", "numpy-pairs", "loader"]
)
def test_every_in_memory_form_gives_the_tensors_result(images: torch.Tensor, form: str) -> None:
    x = images[:100]
    forms = {
        "numpy": x.numpy(),
        "pair": (x, torch.zeros(100, dtype=torch.long)),
        "tensor-dataset": TensorDataset(x, torch.zeros(100)),
        "dataset": _ItemDataset(x),
        "numpy-pairs": _NumpyPairs(x),
        "loader": DataLoader(TensorDataset(x), batch_size=7),
    }
    assert history_of(forms[form]) == history_of(x)


def test_a_streamed_dataset_gives_the_in_memory_losses_bitwise(images: torch.Tensor) -> None:
    streamed = history_of(_ItemDataset(images[:100]), in_memory=False, num_workers=0)
    assert streamed == history_of(images[:100])


def test_a_streaming_loader_in_the_same_order_gives_the_in_memory_losses(
    images: torch.Tensor,
) -> None:
    x = images[:100]
    loader = DataLoader(
        TensorDataset(x), batch_sampler=_EpochOrder(len(x), OPTIONS["batch_size"], seed=0)
    )
    streamed = history_of(loader, in_memory=False)
    expected = history_of(x)
    for a, b in zip(streamed, expected, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-6), key


def test_an_iterable_dataset_is_streamed(images: torch.Tensor) -> None:
    rows = history_of(_Stream(images[:100]), batch_size=25)
    assert len(rows) == 2 and np.isfinite(rows[-1]["train/loss"])


def test_save_then_load_into_a_fresh_user_model_gives_identical_outputs(
    images: torch.Tensor, tmp_path: Path
) -> None:
    model = vaekit.fit(user_model(), images[:100], out=tmp_path / "run", **OPTIONS)
    loaded = vaekit.load(tmp_path / "run", model=user_model(seed=5))
    x = images[100:]
    torch.testing.assert_close(loaded.reconstruct(x), model.eval().reconstruct(x), rtol=0, atol=0)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["model"]["built"] == "python"
    saved = vaekit.save(model, tmp_path / "saved")
    again = vaekit.load(saved, model=user_model(seed=6))
    torch.testing.assert_close(again.reconstruct(x), model.reconstruct(x), rtol=0, atol=0)


def test_loading_into_a_mismatched_architecture_is_one_clear_error(
    images: torch.Tensor, tmp_path: Path
) -> None:
    vaekit.save(user_model(), tmp_path / "run")
    wrong = vaekit.VAE(LaplaceEncoder(), PixelDecoder(), vaekit.StandardNormalPrior(LATENT))
    wrong.decoder.net[2] = nn.Linear(16, 40)
    with pytest.raises(vaekit.VaekitError, match=r"does not match the model passed.*size"):
        vaekit.load(tmp_path / "run", model=wrong)
    with pytest.raises(vaekit.VaekitError, match="built in Python"):
        vaekit.load(tmp_path / "run")


def test_a_library_model_saves_with_its_config(tmp_path: Path) -> None:
    config = vaekit.load_config("configs/tiny.toml")
    model = vaekit.build_model(config.model, (1, 8, 8))
    model.num_particles = 3  # live settings are saved as they are now
    vaekit.save(model, tmp_path / "run")
    loaded = vaekit.load(tmp_path / "run")
    assert isinstance(loaded, vaekit.VAE) and loaded.num_particles == 3
    for a, b in zip(loaded.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)


class _Stop(Exception):
    pass


def _stop_after_first_epoch(row: dict[str, float]) -> None:
    if row["epoch"] == 1:
        raise _Stop


def test_fit_resumes_an_interrupted_run_exactly(images: torch.Tensor, tmp_path: Path) -> None:
    full = vaekit.fit(user_model(), images[:100], images[100:], out=tmp_path / "full", **OPTIONS)
    with pytest.raises(_Stop):
        vaekit.fit(
            user_model(),
            images[:100],
            images[100:],
            out=tmp_path / "part",
            callbacks=[_stop_after_first_epoch],
            **OPTIONS,
        )
    resumed = vaekit.fit(
        user_model(seed=3), images[:100], images[100:], out=tmp_path / "part", resume=True,
        **OPTIONS,
    )  # fmt: skip
    for a, b in zip(resumed.parameters(), full.parameters(), strict=True):
        assert torch.equal(a, b)
    metrics = [(tmp_path / run / "metrics.jsonl").read_text() for run in ("full", "part")]
    assert metrics[0] == metrics[1]
    with pytest.raises(vaekit.VaekitError, match="data differ"):
        vaekit.fit(user_model(), images[:90], out=tmp_path / "part", resume=True, **OPTIONS)
    with pytest.raises(vaekit.VaekitError, match=r"train.lr is 0.5 here .* started with 0.01"):
        options = {**OPTIONS, "lr": 0.5}
        vaekit.fit(user_model(), images[:100], out=tmp_path / "part", resume=True, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epoch": 2}, "unknown key 'train.epoch'"),
        ({"lr": "fast"}, "train.lr: expected a number"),
        ({"precision": "half"}, "train.precision"),
        ({"ema_decay": 2.0}, "ema_decay"),
    ],
)
def test_options_are_validated_like_the_config(
    images: torch.Tensor, options: dict, message: str
) -> None:
    with pytest.raises(vaekit.VaekitError, match=message):
        vaekit.fit(user_model(), images, **options)


def test_data_of_the_wrong_kind_is_refused_with_what_to_pass() -> None:
    with pytest.raises(vaekit.VaekitError, match="must be a Tensor or numpy array"):
        vaekit.fit(user_model(), [[0.0, 1.0]])
    with pytest.raises(vaekit.VaekitError, match="NaN"):
        vaekit.fit(user_model(), torch.full((4, *EVENT), float("nan")))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array(["cat", "dog"] * 16), "np.unique\\(y, return_inverse=True\\)"),
        (torch.rand(32), "whole numbers"),
        (torch.tensor([float("inf")] * 32), "whole numbers"),
        (torch.zeros(31, dtype=torch.int64), "shape \\[32\\]"),
    ],
)
def test_labels_that_are_not_class_indices_are_refused_saying_how_to_make_them(
    images: torch.Tensor, labels: object, message: str
) -> None:
    with pytest.raises(vaekit.VaekitError, match=message):
        vaekit.fit(user_model(), (images[:32], labels), **OPTIONS)


def test_class_names_are_kept_in_the_run(images: torch.Tensor, tmp_path: Path) -> None:
    names, y = np.unique(
        np.array(["square", "bar", "dot"] * 40)[: len(images)], return_inverse=True
    )
    assert list(names) == ["bar", "dot", "square"]
    model = user_model()
    vaekit.fit(model, (images, y.astype(float)), out=tmp_path / "r", class_names=names, **OPTIONS)
    meta = json.loads((tmp_path / "r" / "config.json").read_text())
    assert meta["class_names"] == ["bar", "dot", "square"]
    with pytest.raises(vaekit.VaekitError, match="one name per label"):
        vaekit.fit(user_model(), (images, y), class_names=["bar", "dot"], **OPTIONS)
    with pytest.raises(vaekit.VaekitError, match="distinct strings"):
        vaekit.fit(user_model(), (images, y), class_names=["a", "a", "b"], **OPTIONS)
    with pytest.raises(vaekit.VaekitError, match="a list of names"):
        vaekit.fit(user_model(), (images, y), class_names="abc", **OPTIONS)
    config = vaekit.config.ModelConfig(hidden=(8,), latent_dim=LATENT, conditional=True)
    conditional = vaekit.build_model(config, EVENT, num_classes=3)
    with pytest.raises(vaekit.VaekitError, match="conditioned on 3 classes but class_names"):
        vaekit.fit(conditional, (images, y), class_names=[*names, "star"], **OPTIONS)


class _ItemDataset(Dataset):
    """A map-style dataset yielding bare tensors."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


class _NumpyPairs(Dataset):
    """A map-style dataset yielding (numpy array, int label) pairs."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x.numpy()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.x[i], i % 3


class _Stream(IterableDataset):
    """An iterable dataset with a length (items per epoch)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.x)


class _EpochOrder(Sampler[list[int]]):
    """Batches in the trainer's own epoch order (epoch_permutation), epoch after epoch."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):  # type: ignore[no-untyped-def]
        order = epoch_permutation(self.n, self.seed, self.epoch).tolist()
        self.epoch += 1
        for start in range(0, self.n, self.batch_size):
            yield order[start : start + self.batch_size]


def test_train_given_a_model_points_to_fit(tmp_path: Path) -> None:
    with pytest.raises(vaekit.VaekitError, match=r"vaekit.fit\(model, data"):
        vaekit.train(user_model(), out=tmp_path / "run")  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()
