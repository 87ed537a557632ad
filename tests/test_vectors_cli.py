"""Feature vectors end to end through the command line: a wine-like CSV trains as [D] vectors,
unscaled features are refused with the fix, conv networks are refused, every command writes
readable output, and samples leave in the data's own units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.data.test_tables import wine_like

from vaekit.cli import main
from vaekit.plots import MAX_SIDE

ROOT = Path(__file__).parents[1]


def argv_for(csv: Path, *more: str) -> list[str]:
    argv = ["train", "--config", str(ROOT / "configs" / "tiny.toml"), "--quiet"]
    settings = [
        "data.name='arrays'",
        f"data.path={str(csv)!r}",
        "data.label_column='kind'",
        "model.likelihood='gaussian-learned'",
        "train.epochs=3",
        *more,
    ]
    for setting in settings:
        argv += ["--set", setting]
    return argv


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run directory, csv) of a standardised VAE on a wine-like table."""
    tmp = tmp_path_factory.mktemp("vectors")
    csv = wine_like(tmp / "wine.csv", n=200)
    assert main([*argv_for(csv, "data.standardize=true"), "--out", str(tmp / "run")]) == 0
    return tmp / "run", csv


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaekit: error:"), err
    return err[0]


def test_unscaled_features_are_refused_naming_standardize(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = wine_like(tmp_path / "wine.csv")
    assert main([*argv_for(csv), "--out", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys)
    assert "differ in scale by" in line and "data.standardize = true" in line
    assert not (tmp_path / "run").exists()


def test_conv_networks_are_refused_for_vectors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = wine_like(tmp_path / "wine.csv")
    argv = argv_for(csv, "data.standardize=true", "model.network='conv'")
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert 'vectors of [13] features; set model.network = "mlp"' in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_vector_run_stores_its_statistics_and_draws_readable_figures(
    vector_run: tuple[Path, Path],
) -> None:
    run, _ = vector_run
    meta = json.loads((run / "config.json").read_text())
    assert meta["event_shape"] == [13] and meta["feature_names"] == [f"f{i}" for i in range(13)]
    assert meta["standardization"]["shape"] == [13] and len(meta["standardization"]["std"]) == 13
    for name in ("samples", "pairs", "reconstructions", "latent", "curves"):
        width, height = Image.open(run / f"{name}.png").size
        assert max(width, height) <= MAX_SIDE, (name, width, height)


def test_samples_as_numbers_are_in_the_data_units(
    vector_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run, csv = vector_run
    table = np.genfromtxt(csv, delimiter=",", skip_header=1, usecols=range(13))
    for fmt in ("npy", "csv"):
        out = tmp_path / f"s.{fmt}"
        assert main(["sample", str(run), "--format", fmt, "--num-samples", "500",
                     "--decode", "sample", "--out", str(out)]) == 0  # fmt: skip
    samples = np.load(tmp_path / "s.npy")
    from_csv = np.genfromtxt(tmp_path / "s.csv", delimiter=",", names=True)
    assert samples.shape == (500, 13) and from_csv.dtype.names[:2] == ("f0", "f1")
    np.testing.assert_array_equal(from_csv.view(np.float64).reshape(500, 13), samples)
    # Feature scales span 0.1 to 1000: in the data's units the spreads of draws of p(x|z) follow
    # the table's (standardised samples would all have mean ~0 and spread ~1).
    ratio = samples.std(0) / table.std(0)
    assert np.all((ratio > 0.3) & (ratio < 3)), ratio
    assert np.all(np.abs(samples.mean(0) - table.mean(0)) < 1.5 * table.std(0))


def test_every_command_runs_on_a_vector_run(
    vector_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(vector_run[0])
    commands = [
        ["sample", run, "--out", str(tmp_path / "marginals.png")],
        ["sample", run, "--sampler", "gaussian-mixture", "--format", "csv",
         "--out", str(tmp_path / "mixture.csv")],
        ["sample", run, "--sampler", "markov-chain", "--steps", "0,2",
         "--out", str(tmp_path / "chain.png")],
        ["reconstruct", run, "--out", str(tmp_path / "rec.png")],
        ["interpolate", run, "--chain-steps", "2", "--out", str(tmp_path / "path.png")],
        ["impute", run, "--mask", "random", "--steps", "0,5", "--num", "20",
         "--out", str(tmp_path / "imputed.png")],
        ["evaluate", run, "--metrics", "elbo,log-likelihood", "--num-importance-samples", "20"],
    ]  # fmt: skip
    for argv in commands:
        assert main(argv) == 0, argv
    for name in ("marginals", "chain", "rec", "path", "imputed"):
        assert max(Image.open(tmp_path / f"{name}.png").size) <= MAX_SIDE
    assert (
        "mean squared error on the missing values (standardised units)" in capsys.readouterr().out
    )
