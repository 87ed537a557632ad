"""The sampling subcommands on the tiny recipe: markov-chain sample, interpolate, impute."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from vaekit.cli import main

TINY = str(Path(__file__).parents[2] / "configs" / "tiny.toml")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny VAE and a tiny deterministic AAE with a denoising corruption (2 epochs each)."""
    root = tmp_path_factory.mktemp("runs")
    overrides = {
        "vae": [],
        "daae": ["--set", "model.kind=aae", "--set", "model.corruption=gaussian"],
    }
    for name, extra in overrides.items():
        assert main(["train", "--config", TINY, "--out", str(root / name), "--quiet", *extra]) == 0
    return {name: root / name for name in overrides}


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_sample_markov_chain_writes_one_row_per_step(runs, tmp_path, capsys) -> None:
    out = tmp_path / "chain.png"
    argv = ["sample", str(runs["vae"]), "--sampler", "markov-chain", "--steps", "0,1,5"]
    assert main([*argv, "--num-samples", "6", "--out", str(out)]) == 0
    assert out.is_file()
    printed = capsys.readouterr().out
    assert "step 1:" in printed and "step 5:" in printed
    wide = tmp_path / "wide.png"
    more = ["--steps", "0,1,5,2", "--num-samples", "6", "--out", str(wide)]
    assert main([*argv[:4], *more, "--start", "data", "--decode", "sample"]) == 0
    assert png_size(wide)[1] > png_size(out)[1]  # four rows instead of three


def test_sample_markov_chain_on_a_denoising_aae_and_mixture(runs, tmp_path) -> None:
    out = tmp_path / "chain.png"
    assert main(["sample", str(runs["daae"]), "--sampler", "markov-chain", "--out", str(out)]) == 0
    mixture = tmp_path / "mixture.png"
    assert (
        main(["sample", str(runs["daae"]), "--sampler", "gaussian-mixture", "--out", str(mixture)])
        == 0
    )
    assert out.is_file() and mixture.is_file()


def test_chain_options_are_refused_elsewhere(runs, tmp_path, capsys) -> None:
    argv = ["sample", str(runs["vae"]), "--out", str(tmp_path / "x.png")]
    assert main([*argv, "--steps", "0,1"]) == 2
    assert "markov-chain only" in capsys.readouterr().err
    assert main([*argv, "--sampler", "markov-chain", "--steps", "1,x"]) == 2
    assert "comma-separated" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["lerp", "slerp"])
def test_interpolate(runs, tmp_path, method: str) -> None:
    out = tmp_path / "path.png"
    argv = ["interpolate", str(runs["vae"]), "--method", method, "--chain-steps", "2"]
    assert main([*argv, "--pairs", "2", "--num-points", "5", "--out", str(out)]) == 0
    assert out.is_file()


@pytest.mark.parametrize(
    ("mask", "method"), [("center", "mwg"), ("random", "pseudo-gibbs"), ("left-half", "mwg")]
)
def test_impute(runs, tmp_path, capsys, mask: str, method: str) -> None:
    out = tmp_path / "impute.png"
    argv = ["impute", str(runs["vae"]), "--mask", mask, "--method", method, "--steps", "0,3"]
    assert main([*argv, "--num", "4", "--out", str(out)]) == 0
    assert out.is_file()
    assert ("acceptance rate" in capsys.readouterr().out) == (method == "mwg")


def test_impute_mwg_needs_a_density_encoder(runs, tmp_path, capsys) -> None:
    argv = ["impute", str(runs["daae"]), "--method", "mwg", "--out", str(tmp_path / "x.png")]
    assert main(argv) == 2
    assert "density" in capsys.readouterr().err
