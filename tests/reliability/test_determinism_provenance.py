"""Promises 8 and 9: --deterministic runs repeat bit for bit (and seeds matter); every run
records its resolved config, versions, seed, dataset identity and command line.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import pytest
import safetensors
import torch
from reliability_helpers import TINY, assert_trees_equal

import vaekit
from vaekit.build import build_dataset
from vaekit.cli import main
from vaekit.runs import provenance, read_run_config
from vaekit.training.checkpoint import load_training_state
from vaekit.training.run_files import config_sha256


def train(out: Path, *extra: str) -> list[str]:
    argv = ["train", "--config", str(TINY), "--out", str(out), "--quiet", "--deterministic"]
    argv += ["--set", "data.binarize=dynamic", *extra]
    assert main(argv) == 0
    return argv


def test_deterministic_runs_are_bitwise_identical_and_seeds_differ(
    tmp_path: Path, no_figures: None
) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    train(first)
    train(second)
    train(other, "--set", "train.seed=1")
    assert torch.are_deterministic_algorithms_enabled()
    assert read_run_config(first)[0].train.deterministic
    for name in ("model.safetensors", "metrics.jsonl"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
        assert (first / name).read_bytes() != (other / name).read_bytes()
    assert_trees_equal(
        load_training_state(first / "training_state.pt"),
        load_training_state(second / "training_state.pt"),
    )


def test_every_run_records_its_provenance(tmp_path: Path, no_figures: None) -> None:
    out = tmp_path / "run"
    argv = train(out, "--set", "train.seed=3")
    info = json.loads((out / "provenance.json").read_text())
    config, _ = read_run_config(out)
    assert info["argv"] == ["vaekit", *argv]
    assert info["seed"] == 3 and info["deterministic"] is True
    assert info["config_sha256"] == config_sha256(config)
    assert info["dataset"] == "digits"
    assert info["dataset_identity"] == build_dataset(config.data, 3).identity
    versions = {"vaekit": vaekit.__version__, "torch": torch.__version__}
    versions.update({"numpy": np.__version__, "safetensors": safetensors.__version__})
    versions["python"] = platform.python_version()
    assert {k: info[k] for k in versions} == versions
    # The resolved config itself (every default spelled out) sits next to it.
    saved = json.loads((out / "config.json").read_text())["config"]
    text = json.dumps(saved, sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(text.encode()).hexdigest() == info["config_sha256"]
    assert saved["train"]["seed"] == 3 and "max_bad_steps" in saved["train"]
    # A resume adds its own command line.
    state = load_training_state(out / "training_state.pt")
    assert state["config_sha256"] == info["config_sha256"]
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    resumes = json.loads((out / "provenance.json").read_text())["resumes"]
    assert [r["argv"] for r in resumes] == [["vaekit", "train", "--resume", str(out), "--quiet"]]


@pytest.mark.parametrize("flag", [[], ["--deterministic"]])
def test_deterministic_cannot_be_switched_on_by_a_resume(
    tmp_path: Path, no_figures: None, flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--config", str(TINY), "--out", str(out), "--quiet"]) == 0
    code = main(["train", "--resume", str(out), "--quiet", *flag])
    assert code == (2 if flag else 0)
    if flag:
        assert "--deterministic applies from the start" in capsys.readouterr().err


def test_provenance_names_a_script_inside_the_working_directory_relatively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m pkg.script`` records an absolute argv[0]: inside the working directory it is
    kept relative to it, so that the command reads the same on every machine."""
    monkeypatch.chdir(tmp_path)
    script = str(tmp_path / "benchmarks" / "script.py")
    assert provenance([script, "--out", "x"])["argv"] == ["benchmarks/script.py", "--out", "x"]
    elsewhere = str(tmp_path.parent / "other.py")
    assert provenance([elsewhere])["argv"] == [elsewhere]
    assert provenance(["vaekit", "train"])["argv"] == ["vaekit", "train"]
