"""Promise 1: checkpoints are complete-or-absent, through full disks and SIGKILL mid-write."""

from __future__ import annotations

import errno
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from reliability_helpers import Child, assert_trees_equal, temporaries, tiny_config
from safetensors.torch import load_file

import vaekit.experiment
import vaekit.training.run_files
from vaekit.errors import CheckpointError
from vaekit.files import atomic_write, remove_stale_temporaries, write_json
from vaekit.runs import load_run
from vaekit.training.checkpoint import load_training_state, save_training_state, state_writer
from vaekit.weights import save_weights, weights_writer

Writer = Callable[[Path], object]


def fails_halfway(write: Writer) -> Writer:
    """A writer that writes the first half of what ``write`` would, then finds the disk full."""

    def half(tmp: Path) -> None:
        write(tmp)
        data = tmp.read_bytes()
        tmp.write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    return half


def test_failed_write_keeps_the_previous_file(tmp_path: Path, tally: Callable) -> None:
    weights, state, meta = tmp_path / "model.safetensors", tmp_path / "state.pt", tmp_path / "m"
    model = torch.nn.Linear(300, 200)
    save_weights(weights, model)
    save_training_state(state, {"step": 1, "x": torch.arange(10_000.0)})
    write_json(meta, {"step": 1})
    before = {path: path.read_bytes() for path in (weights, state, meta)}
    with torch.no_grad():
        model.weight.add_(1.0)
    attempts = [
        (weights, weights_writer(model)),
        (state, state_writer({"step": 2, "x": torch.zeros(10_000)})),
        (meta, lambda tmp: tmp.write_text('{"step": 2}')),
    ]
    for path, write in attempts:
        with pytest.raises(OSError, match="No space left"):
            atomic_write(path, fails_halfway(write))
        tally("faults_injected")
        assert path.read_bytes() == before[path]  # the previous version, whole
        assert temporaries(tmp_path) == []
        tally("faults_survived")
    assert load_training_state(state)["step"] == 1
    torch.testing.assert_close(load_file(str(weights))["weight"], model.weight.detach() - 1.0)


@pytest.mark.parametrize("failing", ["weights", "state"])
def test_full_disk_mid_checkpoint_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_figures: None, failing: str, tally: Callable
) -> None:
    """The second epoch's checkpoint fails halfway through one of its files."""
    name = "weights_writer" if failing == "weights" else "state_writer"
    real = getattr(vaekit.training.run_files, name)
    calls = []

    def writer(*args: object) -> Writer:
        calls.append(1)
        write = real(*args)
        return fails_halfway(write) if len(calls) == 2 else write

    monkeypatch.setattr(vaekit.training.run_files, name, writer)
    out = tmp_path / "run"
    with pytest.raises(CheckpointError, match="previous checkpoint is intact"):
        vaekit.experiment.train(tiny_config(), out, progress=False)
    tally("faults_injected")
    state = load_training_state(out / "training_state.pt")
    assert state["cursor"] == {"epoch": 1, "batch": 0, "step": 5}
    # All three files are the first epoch's: none was renamed before every file was staged.
    assert_trees_equal(load_file(str(out / "model.safetensors")), state["model"])
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    load_run(out)
    assert temporaries(out) == []
    tally("faults_survived")


# For each line on stdin, forks a writer that saves checkpoints as fast as it can (4 MB of
# weights, then a 4 MB state, the commit point, whose every value is the iteration number) and
# reaps it once the test has SIGKILLed it. Forking skips re-importing torch for every kill.
WRITER_CHILD = """
import itertools, os, sys
from pathlib import Path
import torch
from vaekit.training.checkpoint import state_writer
from vaekit.weights import weights_writer
from vaekit.files import atomic_write_many
folder = Path(sys.argv[1])
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        model = torch.nn.Linear(1000, 1000, bias=False)
        for i in itertools.count(int(line)):
            with torch.no_grad():
                model.weight.fill_(i)
            state = {"i": i, "x": torch.full((1_000_000,), float(i))}
            atomic_write_many([
                (folder / "model.safetensors", weights_writer(model)),
                (folder / "training_state.pt", state_writer(state)),
            ])
            print("wrote", i, flush=True)
    print("writer", pid, flush=True)
    os.waitpid(pid, 0)
    print("reaped", pid, flush=True)
"""
NUM_KILLS = 12


def test_sigkill_mid_write_never_leaves_a_partial_checkpoint(
    tmp_path: Path, tally: Callable
) -> None:
    rng = random.Random(0)
    child = Child(WRITER_CHILD, str(tmp_path))
    start, mid_write_kills = 0, 0
    try:
        for _ in range(NUM_KILLS):
            child.send(str(start))
            pid = int(child.wait_for("writer").split()[1])
            child.wait_for("wrote")
            time.sleep(rng.uniform(0.0, 0.2))
            os.kill(pid, signal.SIGKILL)
            child.wait_for(f"reaped {pid}")
            tally("faults_injected")
            mid_write_kills += bool(temporaries(tmp_path))
            state = load_training_state(tmp_path / "training_state.pt")
            weights = load_file(str(tmp_path / "model.safetensors"))["weight"]
            i = state["i"]
            assert torch.equal(state["x"], torch.full((1_000_000,), float(i)))  # whole, not torn
            assert torch.equal(weights, torch.full((1000, 1000), float(weights[0, 0])))
            # Weights are renamed just before the state: at most one write ahead, never behind.
            assert float(weights[0, 0]) in (i, i + 1)
            remove_stale_temporaries(tmp_path)  # what a resume does first
            assert temporaries(tmp_path) == []
            tally("faults_survived")
            start = i + 2
    finally:
        child.kill()
    tally("sigkills_landing_mid_write", mid_write_kills)
    assert mid_write_kills > 0  # the kills did land inside writes, not only between them
