"""train.accelerate: "auto" takes the hand-derived gradients where they apply, "off" never does;
both train the same model, and the run records which path trained it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import vaekit
from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.data.base import Dataset, Split
from vaekit.errors import ConfigError
from vaekit.models import VAE
from vaekit.training.run_files import read_metrics
from vaekit.training.trainer import Trainer

TINY = Path(__file__).parents[2] / "configs" / "tiny.toml"


def test_the_run_records_the_switch_and_the_gradient_path(tmp_path: Path) -> None:
    assert TINY.is_file()
    histories = {}
    for accelerate, gradients in (("auto", "direct"), ("off", "autograd")):
        config = vaekit.load_config(TINY, [f"train.accelerate={accelerate}"])
        run = vaekit.train(config, out=tmp_path / accelerate, progress=False)
        provenance = json.loads((tmp_path / accelerate / "provenance.json").read_text())
        assert provenance["accelerate"] == accelerate
        assert provenance["gradients"] == gradients
        recorded = json.loads((tmp_path / accelerate / "config.json").read_text())["config"]
        assert recorded["train"]["accelerate"] == accelerate
        histories[accelerate] = read_metrics(run.dir)
    # the same steps either way, up to float32 rounding
    for a, b in zip(histories["auto"], histories["off"], strict=True):
        assert a["val/loss"] == pytest.approx(b["val/loss"], rel=1e-4)


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="accelerate"):
        vaekit.load_config(TINY, ["train.accelerate=on"])
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,)), (1, 4, 4))
    split = Split(torch.rand(8, 1, 4, 4))
    dataset = Dataset("grey", split, split, split, "unit", "none", "test")
    with pytest.raises(ValueError, match="accelerate must be one of 'auto', 'off'"):
        Trainer(model, dataset, epochs=1, batch_size=4, lr=1e-3, accelerate="on")


def test_the_gradient_path_follows_the_models_current_k() -> None:
    """k = 1 with the one-sample KL estimate trains through autograd; set k = 4 (the IWAE
    bound) and the same trainer takes the hand-derived gradients, and steps with them."""
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,), analytic_kl=False), (1, 4, 4))
    assert isinstance(model, VAE)
    split = Split(torch.bernoulli(torch.full((16, 1, 4, 4), 0.4)))
    dataset = Dataset("grey", split, split, split, "unit", "none", "test")
    trainer = Trainer(model, dataset, epochs=1, batch_size=8, lr=1e-3, progress=False)
    off = Trainer(model, dataset, epochs=1, batch_size=8, lr=1e-3, accelerate="off")
    assert trainer.direct is not None and trainer.gradient_path == "autograd"
    model.num_particles = 4
    assert trainer.gradient_path == "direct" and off.gradient_path == "autograd"
    calls = []
    direct = trainer.direct

    def counting(x: torch.Tensor, **kwargs):  # type: ignore[no-untyped-def]
        out = direct(x, **kwargs)
        calls.append(out is not None)
        return out

    trainer.direct = counting  # type: ignore[assignment]
    trainer.fit()
    assert calls == [True, True] and "val/iwae" in trainer.history[-1]
