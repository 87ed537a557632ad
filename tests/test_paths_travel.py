"""Relative data paths travel with a run; --data-path / --data-root point it at moved data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vaekit.cli import main

ROOT = Path(__file__).parents[1]


@pytest.fixture
def run_from_a_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny run trained from tmp_path/work on data/x.npz, given as a relative path."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(work / "data" / "x.npz", x=rng.random((120, 1, 8, 8), dtype=np.float32))
    monkeypatch.chdir(work)
    argv = ["train", "--config", str(ROOT / "configs" / "tiny.toml"), "--quiet"]
    argv += ["--set", "data.name='arrays'", "--set", "data.path='data/x.npz'"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    return tmp_path / "run"


def test_a_run_finds_its_relative_data_from_another_directory(
    run_from_a_relative_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = json.loads((run_from_a_relative_path / "config.json").read_text())
    assert meta["config"]["data"]["path"] == "data/x.npz"  # as given
    assert meta["data_paths"]["path"] == str(tmp_path / "work" / "data" / "x.npz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = str(run_from_a_relative_path)
    assert main(["reconstruct", run, "--out", "r.png"]) == 0
    assert (elsewhere / "r.png").is_file()


def test_moved_data_are_found_with_data_path(
    run_from_a_relative_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    moved = tmp_path / "moved.npz"
    shutil.move(tmp_path / "work" / "data" / "x.npz", moved)
    monkeypatch.chdir(tmp_path)
    run = str(run_from_a_relative_path)
    assert main(["reconstruct", run, "--out", "r.png"]) == 2
    assert capsys.readouterr().err.startswith("vaekit: error:")
    assert main(["reconstruct", run, "--out", "r.png", "--data-path", str(moved)]) == 0
    assert main(["evaluate", run, "--metrics", "elbo", "--data-path", str(moved)]) == 0
    # a finished run extended on its moved data: the same data, by their identity
    assert main(["train", "--resume", run, "--set", "train.epochs=3", "--quiet"]) == 2
    argv = ["train", "--resume", run, "--set", "train.epochs=3", "--data-path", str(moved)]
    assert main([*argv, "--quiet"]) == 0
