"""``torchrun --nproc_per_node 2 -m vaekit train``: one run directory, loadable in one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from distributed_helpers import LAUNCH_TIMEOUT, ROOT, TINY, child_env

from vaekit.cli import main
from vaekit.runs import load_run
from vaekit.training.checkpoint import load_training_state


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny recipe trained by 2 processes under torchrun, default output folder."""
    cwd = tmp_path_factory.mktemp("torchrun")
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        *("-m", "vaekit", "train", "--config", str(TINY), "--quiet"),
    ]
    done = subprocess.run(
        command,
        cwd=cwd,
        env=child_env(PYTHONPATH=str(ROOT / "src")),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return cwd, done.stdout


def test_one_run_directory_written_by_rank_0(torchrun_run: tuple[Path, str]) -> None:
    cwd, stdout = torchrun_run
    runs = list((cwd / "runs").iterdir())
    assert len(runs) == 1, runs  # the ranks agreed on rank 0's time-stamped name
    assert [p.name for p in cwd.iterdir()] == ["runs"]
    assert stdout.count("run directory:") == 1 and stdout.count("done:") == 1
    run = runs[0]
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "model.safetensors", "training_state.pt", "metrics.jsonl"} <= names
    assert "samples.png" in names and not [n for n in names if n.endswith(".tmp")]
    assert json.loads((run / "provenance.json").read_text())["world_size"] == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # epochs, once each


def test_checkpoint_loads_in_one_process(torchrun_run: tuple[Path, str]) -> None:
    run_dir = next((torchrun_run[0] / "runs").iterdir())
    run = load_run(run_dir)
    x = torch.rand(3, *run.event_shape)
    assert run.model.reconstruct(x).shape == x.shape
    state = load_training_state(run_dir / "training_state.pt")
    assert state["world_size"] == 2 and state["cursor"]["epoch"] == 2


def test_single_process_resume_is_refused(
    torchrun_run: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = next((torchrun_run[0] / "runs").iterdir())
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    assert "written by 2 process(es) and this run has 1" in capsys.readouterr().err
