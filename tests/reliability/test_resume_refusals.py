"""Promise 3: a resume that cannot be exact is refused with one clear error, files untouched."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_helpers import tiny_config

import vaekit.experiment
import vaekit.runs
from vaekit.build import build_dataset, build_model
from vaekit.cli import main
from vaekit.errors import CheckpointError
from vaekit.training.checkpoint import load_training_state
from vaekit.training.trainer import Trainer


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def refuse(run: Path, config_overrides: tuple[str, ...], match: str, tally: Callable) -> None:
    before = snapshot(run)
    with pytest.raises(CheckpointError, match=match):
        vaekit.experiment.train(
            tiny_config("train.epochs=1", *config_overrides), run, resume=True, progress=False
        )
    assert snapshot(run) == before  # nothing was written
    tally("bad_inputs_tried")


def test_a_different_config_is_refused(run: Path, tally: Callable) -> None:
    refuse(run, ("train.lr=0.1",), "config differs", tally)


def test_a_training_state_from_another_run_is_refused(
    run: Path, tmp_path: Path, no_figures: None, tally: Callable
) -> None:
    other = tmp_path / "other"
    vaekit.experiment.train(tiny_config("train.epochs=1", "model.latent_dim=3"), other)
    shutil.copy(other / "training_state.pt", run / "training_state.pt")
    refuse(run, (), "written by a different config", tally)


def test_an_architecture_mismatch_is_refused_by_the_trainer(tally: Callable) -> None:
    """Even a state that slips past the config hash cannot load into another architecture."""
    config = tiny_config()
    dataset = build_dataset(config.data, 0)

    def trainer(latent_dim: int) -> Trainer:
        cfg = tiny_config(f"model.latent_dim={latent_dim}")
        return Trainer(build_model(cfg.model, dataset.event_shape), dataset, epochs=1,
                       batch_size=50, lr=1e-3, progress=False)  # fmt: skip

    state = trainer(2).state_dict()
    with pytest.raises(CheckpointError, match="does not fit this model"):
        trainer(3).load_state_dict(state)
    two_groups: dict[str, Any] = {**state, "optimizers": {"a": {}, "b": {}}}
    with pytest.raises(CheckpointError, match="parameter groups"):
        trainer(2).load_state_dict(two_groups)
    tally("bad_inputs_tried", 2)


@pytest.mark.parametrize("version", [0, 99, "2", None])
def test_an_unknown_state_format_version_is_refused(
    run: Path, version: object, tally: Callable
) -> None:
    state = load_training_state(run / "training_state.pt")
    torch.save({**state, "format_version": version}, run / "training_state.pt")
    refuse(run, (), "format version", tally)


def test_an_unknown_run_format_version_is_refused(run: Path, tally: Callable) -> None:
    meta = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**meta, "version": 99}))
    before = snapshot(run)
    with pytest.raises(CheckpointError, match="run format version 99"):
        vaekit.experiment.train(tiny_config("train.epochs=1"), run, resume=True)
    assert snapshot(run) == before
    tally("bad_inputs_tried")


def test_changed_data_are_refused(run: Path, tally: Callable) -> None:
    info = json.loads((run / "provenance.json").read_text())
    (run / "provenance.json").write_text(json.dumps({**info, "dataset_identity": "0" * 16}))
    refuse(run, (), "data differ", tally)


def test_an_existing_run_needs_resume_or_overwrite(run: Path, capsys: Any, tally: Callable) -> None:
    before = snapshot(run)
    assert main(["train", "--config", "configs/tiny.toml", "--out", str(run), "--quiet"]) == 2
    assert "--resume to continue it, --overwrite to replace it" in capsys.readouterr().err
    assert snapshot(run) == before
    empty = run.parent / "empty"
    empty.mkdir()
    assert main(["train", "--resume", str(empty), "--quiet"]) == 2
    assert "is missing" in capsys.readouterr().err
    tally("bad_inputs_tried", 2)


def test_resume_with_a_state_saved_mid_write_is_refused(run: Path, tally: Callable) -> None:
    data = (run / "training_state.pt").read_bytes()
    (run / "training_state.pt").write_bytes(data[: len(data) // 2])
    refuse(run, (), "corrupt or not a vaekit state", tally)


def test_the_control_resumes(run: Path, no_figures: None) -> None:
    """The refusals above are specific: the untouched run with its own config resumes."""
    resumed = vaekit.experiment.train(tiny_config("train.epochs=1"), run, resume=True)
    assert resumed.config == tiny_config("train.epochs=1")
    assert len(json.loads((run / "provenance.json").read_text())["resumes"]) == 1


def test_resume_extends_a_finished_run_bitwise_with_a_constant_schedule(tmp_path: Path) -> None:
    """--resume --set train.epochs=N continues a finished run to N epochs, as if it had been
    started for N (the schedule is constant: it does not depend on the total)."""
    common = ["--config", str(Path(__file__).parents[2] / "configs" / "tiny.toml"), "--quiet"]
    constant = ["--set", "train.schedule='constant'", "--set", "train.warmup_epochs=0"]
    full, short = tmp_path / "full", tmp_path / "short"
    assert main(["train", *common, *constant, "--set", "train.epochs=3", "--out", str(full)]) == 0
    assert main(["train", *common, *constant, "--set", "train.epochs=2", "--out", str(short)]) == 0
    assert main(["train", "--resume", str(short), "--set", "train.epochs=3", "--quiet"]) == 0
    for name in ("model.safetensors", "metrics.jsonl"):
        assert (full / name).read_bytes() == (short / name).read_bytes(), name
    saved = json.loads((short / "config.json").read_text())["config"]["train"]
    assert saved["epochs"] == 3
    resumes = json.loads((short / "provenance.json").read_text())["resumes"]
    assert resumes[-1]["epochs"] == 3
    # shortening, and any other setting with --resume, are refused in one line
    assert main(["train", "--resume", str(short), "--set", "train.epochs=1", "--quiet"]) == 2
    assert main(["train", "--resume", str(short), "--set", "train.lr=0.5", "--quiet"]) == 2


def test_resume_repairs_a_finished_runs_corrupt_model_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = str(Path(__file__).parents[2] / "configs" / "tiny.toml")
    assert main(["train", "--config", config, "--out", str(run), "--quiet"]) == 0
    intact = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(intact[: len(intact) // 2])  # truncated
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        vaekit.runs.load(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert (run / "model.safetensors").read_bytes() == intact
