"""Every CLI subcommand end to end on the tiny recipe, and clean errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import vaekit
from vaekit.cli import main
from vaekit.distributions import draw

ROOT = Path(__file__).parents[1]
TINY = str(ROOT / "configs" / "tiny.toml")


def test_train_writes_a_self_describing_run(run_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "training_state.pt", "metrics.jsonl",
                 "provenance.json", "samples.png", "reconstructions.png", "latent.png",
                 "curves.png", "manifold.png"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1.0, 2.0]
    for split in ("train", "val"):
        last = records[-1]
        assert last[f"{split}/elbo"] == pytest.approx(
            -(last[f"{split}/recon"] + last[f"{split}/kl"])
        )
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["model"]["latent_dim"] == 2
    assert config["event_shape"] == [1, 8, 8]


def test_set_overrides_reach_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--config", TINY, "--out", str(out), "--quiet"]
    assert main([*args, "--set", "model.latent_dim=3", "--set", "train.epochs=1"]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["model"]["latent_dim"] == 3 and config["train"]["epochs"] == 1
    assert not (out / "manifold.png").exists()  # only for 2-D latents


def test_sample_reconstruct_plot(run_dir: Path, tmp_path: Path) -> None:
    samples = tmp_path / "s.png"
    assert main(["sample", str(run_dir), "--num-samples", "16", "--out", str(samples)]) == 0
    assert Image.open(samples).size[0] >= 64
    recon = tmp_path / "r.png"
    assert main(["reconstruct", str(run_dir), "--out", str(recon)]) == 0
    assert recon.is_file()
    (run_dir / "samples.png").unlink()
    assert main(["plot", str(run_dir)]) == 0
    assert (run_dir / "samples.png").is_file()


def test_python_api_loads_the_run(run_dir: Path) -> None:
    model = vaekit.load(run_dir)
    x = torch.rand(3, 1, 8, 8)
    q = model.encoder(x)
    assert isinstance(q, torch.distributions.Distribution) and q.event_shape == (2,)
    p = model.decoder(q.mean)
    assert isinstance(p, torch.distributions.Distribution) and p.event_shape == (1, 8, 8)
    assert model.reconstruct(x).shape == x.shape
    assert isinstance(model, vaekit.VAE) and model.elbo(x).shape == (3,)
    sampler = vaekit.PriorSampler(model)
    a = sampler.sample(4, generator=torch.Generator().manual_seed(7))
    b = sampler.sample(4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (4, 1, 8, 8)
    z = draw(model.prior(), (5,), generator=torch.Generator().manual_seed(0))
    assert z.shape == (5, 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--set", "data.name=mnsit"], "unknown dataset 'mnsit'; choose one of"),
        (["train", "--set", "model.kind=vea"], "unknown model kind 'vea'"),
        (["train", "--set", "model.likelihood=poisson"], "unknown likelihood 'poisson'"),
        (["train", "--set", "model.latnt_dim=2"], "unknown key 'model.latnt_dim'"),
        (["train", "--config", "missing.toml"], "not found"),
        (["sample", "no/such/run"], "not found"),
        (["plot", "."], "run config"),
    ],
)
def test_bad_input_is_one_clear_error(argv: list[str], message: str, capsys, tmp_path) -> None:
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "r"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith("vaekit: error:")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "vaekit: error: the following arguments are required: COMMAND; see 'vaekit --help'"),
        (["sample"], "vaekit sample: the following arguments are required: run"),
        (["train", "--bogus", "1"], "vaekit train: unrecognized arguments: --bogus 1"),
        (
            ["--bogus", "train"],
            "vaekit: error: unrecognized arguments: --bogus; see 'vaekit --help'",
        ),
        (["train", "--config"], "vaekit train: argument --config: expected one argument"),
        (["data", "fetch"], "see 'vaekit data fetch --help'"),
        (["sample", "r", "--decode", "median"], "argument --decode: invalid choice: 'median'"),
    ],
)
def test_argument_errors_are_one_line_too(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaekit: error:") and message in err
    assert err.count("\n") == 1 and "usage:" not in err


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"vaekit {vaekit.__version__}"


def test_existing_run_is_not_clobbered(run_dir: Path, capsys) -> None:
    before = (run_dir / "model.safetensors").read_bytes()
    assert main(["train", "--config", TINY, "--out", str(run_dir), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (run_dir / "model.safetensors").read_bytes() == before


def test_corrupt_model_file_is_a_clean_error(run_dir: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((run_dir / "config.json").read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00garbage")
    assert main(["sample", str(broken), "--out", str(tmp_path / "s.png")]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_bernoulli_on_real_valued_data_is_refused(tmp_path: Path, capsys) -> None:
    import numpy as np

    arrays = tmp_path / "x.npy"
    np.save(arrays, np.random.default_rng(0).normal(size=(100, 1, 4, 4)).astype("float32"))
    argv = ["train", "--config", TINY, "--out", str(tmp_path / "r"), "--quiet"]
    argv += ["--set", "data.name=arrays", "--set", f"data.path={arrays}"]
    assert main(argv) == 2
    assert "[0, 1]" in capsys.readouterr().err


def test_module_entry_point_and_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vaekit", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for command in ("train", "sample", "reconstruct", "plot", "data"):
        assert command in result.stdout
