"""The command line on runs that vaekit.fit wrote: what it can do, and one line where it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

import vaekit
from vaekit.cli import main

OPTIONS = {"epochs": 1, "batch_size": 32, "warmup_epochs": 0.0}


class TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))

    def forward(self, x: torch.Tensor) -> Distribution:
        loc, log_scale = self.net(x).chunk(2, dim=-1)
        return Independent(Normal(loc, log_scale.exp()), 1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(80, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_a_library_model_trained_from_python_samples_from_the_cli(
    images: torch.Tensor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = vaekit.load_config("configs/tiny.toml")
    model = vaekit.build_model(config.model, (1, 8, 8))
    vaekit.fit(model, images, out=tmp_path / "run", **OPTIONS)
    assert main(["sample", str(tmp_path / "run"), "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["evaluate", str(tmp_path / "run"), "--metrics", "elbo"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("vaekit: error:")
    assert "data passed from Python" in error[0]


def test_a_run_of_user_modules_says_it_needs_the_python_api(
    images: torch.Tensor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decoder = vaekit.NetworkDecoder(
        vaekit.MLPDecoderNet(2, (1, 8, 8), [16], "relu", 1), vaekit.BernoulliLikelihood()
    )
    model = vaekit.VAE(TinyEncoder(), decoder, vaekit.StandardNormalPrior(2))
    vaekit.fit(model, images, out=tmp_path / "run", **OPTIONS)
    for command in (["sample", str(tmp_path / "run")], ["plot", str(tmp_path / "run")]):
        assert main(command) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and "built in Python" in error[0] and "vaekit.load" in error[0]
