"""The decoder's start at the data's marginal (``model.output_bias = "marginal"``): the bias
gives p(x|z) the data's per-value (or, for a convolution, per-channel) mean and spread in closed
form, decoders whose output is not a biased layer's are refused with the setting to change, and
vaekit train applies it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import vaekit
from vaekit.build import build_model
from vaekit.cli import main
from vaekit.config import load_config
from vaekit.errors import ConfigError

ROOT = Path(__file__).parents[2]
TINY = str(ROOT / "configs" / "tiny.toml")


def _model(likelihood: str, network: str = "mlp") -> vaekit.Autoencoder:
    cfg = load_config(TINY, [f"model.likelihood='{likelihood}'", f"model.network='{network}'"])
    return build_model(cfg.model, (1, 8, 8))


def _output_layer(model: vaekit.Autoencoder) -> nn.Module:
    """The built-in networks' output layer: their last Linear or convolution."""
    assert isinstance(model.decoder, vaekit.NetworkDecoder)
    kinds = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    return [m for m in model.decoder.network.modules() if isinstance(m, kinds)][-1]


def _silence_weights(model: vaekit.Autoencoder) -> None:
    """Zero the output layer's weights: p(x|z) is then the bias's alone, for every z."""
    layer = _output_layer(model)
    with torch.no_grad():
        layer.weight.zero_()


def _data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 1, 8, 8, generator=g) * torch.linspace(0.1, 1.0, 64).view(1, 1, 8, 8)
    x[:, :, 0, 0] = 0.0  # a value that is always 0: the clip keeps its log-odds finite
    return x


def test_moments_are_the_population_mean_and_std() -> None:
    x = _data()
    mean, std = vaekit.data_moments(x)
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(std, x.std(0, unbiased=False), atol=1e-6, rtol=1e-5)
    with pytest.raises(ConfigError, match="empty"):
        vaekit.data_moments(x[:0])


def test_bernoulli_starts_at_the_clipped_mean_pixel() -> None:
    model, x = _model("bernoulli"), _data()
    vaekit.init_output_bias(model, *vaekit.data_moments(x))
    _silence_weights(model)
    p = model.decoder(torch.randn(5, 2))
    expected = x.mean(0).clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(p.mean, expected.expand(5, -1, -1, -1))


def test_learned_gaussian_starts_at_the_mean_and_spread() -> None:
    model, x = _model("gaussian-learned"), _data()
    vaekit.init_output_bias(model, *vaekit.data_moments(x))
    _silence_weights(model)
    p = model.decoder(torch.randn(3, 2))
    mean, std = x.mean(0), x.std(0, unbiased=False)
    torch.testing.assert_close(p.mean[0], mean)
    floor = 2 * load_config(TINY).model.min_scale  # the spread is kept at least twice the floor
    torch.testing.assert_close(p.stddev[0], std.clamp_min(floor), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian-learned"])
def test_a_conv_decoder_starts_at_each_channels_pooled_marginal(likelihood: str) -> None:
    """One bias per channel: p(x|z) starts at the mean (and spread) of all the channel's values,
    not at an average of per-pixel log-odds or scales."""
    model, x = _model(likelihood, "conv"), _data()
    vaekit.init_output_bias(model, *vaekit.data_moments(x))
    assert isinstance(_output_layer(model), nn.Conv2d | nn.ConvTranspose2d)
    _silence_weights(model)
    p = model.decoder(torch.randn(3, 2))
    mean = x.mean().clamp(1e-3, 1 - 1e-3) if likelihood == "bernoulli" else x.mean()
    torch.testing.assert_close(p.mean, mean.expand_as(p.mean))
    if likelihood == "gaussian-learned":
        spread = x.std(unbiased=False)
        torch.testing.assert_close(p.stddev, spread.expand_as(p.stddev), atol=1e-5, rtol=1e-4)


class Squashed(nn.Module):
    """A decoder network whose output is not its last layer's: a sigmoid in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(2, 64)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(z)).view(-1, 1, 8, 8)


class OutOfOrder(nn.Module):
    """A decoder network that registers its output layer before its hidden one."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(16, 64)
        self.hidden = nn.Linear(2, 16)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(z))).view(-1, 1, 8, 8)


def test_the_output_layer_is_found_by_what_it_computes() -> None:
    """The layer whose output the network returns, whatever the registration order; a network
    that transforms that output afterwards is refused."""
    x = _data()
    model = _model("bernoulli")
    assert isinstance(model.decoder, vaekit.NetworkDecoder)
    model.decoder.network = OutOfOrder()
    vaekit.init_output_bias(model, *vaekit.data_moments(x))
    expected = torch.logit(x.mean(0).clamp(1e-3, 1 - 1e-3)).flatten()
    torch.testing.assert_close(model.decoder.network.out.bias, expected)
    model.decoder.network = Squashed()
    with pytest.raises(ConfigError, match="whose output is that of a Linear or convolution"):
        vaekit.init_output_bias(model, *vaekit.data_moments(x))


def test_heads_without_a_start_are_refused() -> None:
    with pytest.raises(ConfigError, match="no starting point for the ContinuousBernoulli"):
        vaekit.init_output_bias(_model("continuous-bernoulli"), *vaekit.data_moments(_data()))


def test_train_starts_a_new_run_there(tmp_path: Path) -> None:
    """The run's first epoch already sits near the marginal: its first-epoch reconstruction
    error beats the default start's on the same seed and data."""
    recon = {}
    for start in ("default", "marginal"):
        out = tmp_path / start
        argv = ["train", "--config", TINY, "--out", str(out), "--quiet"]
        assert (
            main([*argv, "--set", f"model.output_bias='{start}'", "--set", "train.epochs=1"]) == 0
        )
        record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        recon[start] = record["train/recon"]
    assert recon["marginal"] < recon["default"]


def test_train_refuses_a_head_without_a_start_before_making_the_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["train", "--config", TINY, "--out", str(out), "--quiet"]
    sets = [
        "--set",
        "model.likelihood='continuous-bernoulli'",
        "--set",
        "model.output_bias='marginal'",
    ]
    assert main([*argv, *sets]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaekit: error:") and "model.output_bias = 'default'" in err
    assert not out.exists()


@pytest.mark.parametrize("start", ["default", "marginal"])
def test_a_cold_vamp_prior_is_told_how_to_start(start: str, tmp_path: Path) -> None:
    sets = ["model.prior='vamp'", "model.prior_components=3", "train.epochs=1"]
    config = load_config(TINY, [*sets, f"model.output_bias='{start}'"])
    lines: list[str] = []
    vaekit.train(config, tmp_path / "run", progress=False, log=lines.append)
    noted = any("model.output_bias = 'marginal'" in line for line in lines)
    assert noted is (start == "default")
