"""Promise 4: SIGINT/SIGTERM checkpoint at the next batch, exit 130/143; a second exits at once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_helpers import PPCA, TINY, Child, assert_trees_equal, temporaries
from safetensors.torch import load_file

import vaekit.experiment
from vaekit.accel import DirectELBO
from vaekit.build import build_model
from vaekit.cli import main
from vaekit.models import Autoencoder, Loss
from vaekit.training.checkpoint import load_training_state

# 240 pPCA points in batches of 10: 24 steps per epoch, far more epochs than a test waits for.
STEPS_PER_EPOCH = 24
TRAIN = [
    "train",
    "--config",
    str(TINY),
    "--set",
    "train.epochs=1000",
    "--set",
    "train.batch_size=10",
]
TRAIN += [arg for override in PPCA for arg in ("--set", override)]

# The CLI, except that once the file argv[1] exists every training-state write stalls for 60 s
# after writing its temporary: a slow disk, so that a second signal lands mid-checkpoint.
SLOW_DISK_CHILD = """
import sys, time
from pathlib import Path
import vaekit.training.run_files as run_files
slow, real = Path(sys.argv[1]), run_files.state_writer
def state_writer(state):
    write = real(state)
    def stalling(tmp):
        write(tmp)
        if slow.exists():
            print("stalled in a checkpoint", flush=True)
            time.sleep(60)
    return stalling
run_files.state_writer = state_writer
from vaekit.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def assert_consistent_checkpoint(out: Path) -> dict:
    """The run directory holds one whole checkpoint: weights equal the training state's."""
    state = load_training_state(out / "training_state.pt")
    assert_trees_equal(load_file(str(out / "model.safetensors")), state["model"])
    assert temporaries(out) == []
    return state


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_checkpoints_at_the_very_next_batch_and_exits(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_figures: None,
    capsys: pytest.CaptureFixture[str],
    signum: int,
    code: int,
    tally: Callable,
) -> None:
    """The CLI in this process, signalled during its 8th step (5 steps per epoch)."""

    def build_signalling(*args: Any, **kwargs: Any) -> Autoencoder:
        model = build_model(*args, **kwargs)
        real_loss, real_direct, num_steps = model.loss, DirectELBO.__call__, []

        def count() -> None:
            num_steps.append(1)
            if len(num_steps) == 8:
                os.kill(os.getpid(), signum)

        def direct(self: DirectELBO, x: torch.Tensor, **kwargs: Any) -> tuple[Loss, Any] | None:
            out = real_direct(self, x, **kwargs)  # None: the trainer calls loss next
            if out is not None and self.model is model:
                count()
            return out

        def loss(x: torch.Tensor, **kwargs: Any) -> Loss:
            if model.training:
                count()
            return real_loss(x, **kwargs)

        monkeypatch.setattr(model, "loss", loss)
        monkeypatch.setattr(DirectELBO, "__call__", direct)
        return model

    monkeypatch.setattr(vaekit.experiment, "build_model", build_signalling)
    out = tmp_path / "run"
    previous = signal.getsignal(signum)
    argv = ["train", "--config", str(TINY), "--out", str(out), "--set", "train.epochs=100"]
    assert main([*argv, "--quiet"]) == code
    tally("faults_injected")
    assert f"vaekit train --resume {out}" in capsys.readouterr().err
    state = assert_consistent_checkpoint(out)
    assert state["cursor"] == {"epoch": 1, "batch": 3, "step": 8}
    assert signal.getsignal(signum) is previous  # the handlers are put back
    tally("faults_survived")


def test_sigterm_from_outside_stops_a_training_process(tmp_path: Path, tally: Callable) -> None:
    out = tmp_path / "run"
    child = Child(SLOW_DISK_CHILD, str(tmp_path / "never"), *TRAIN, "--out", str(out))
    try:
        child.wait_for("epoch   1/")
        child.process.send_signal(signal.SIGTERM)
        tally("faults_injected")
        returncode, stderr = child.finish(30)
    finally:
        child.kill()
    assert returncode == 143, stderr
    assert f"vaekit train --resume {out}" in stderr
    cursor = assert_consistent_checkpoint(out)["cursor"]
    assert cursor["step"] == STEPS_PER_EPOCH * cursor["epoch"] + cursor["batch"]
    assert cursor["step"] >= STEPS_PER_EPOCH
    tally("faults_survived")


def test_second_signal_exits_at_once_with_the_last_checkpoint_intact(
    tmp_path: Path, tally: Callable
) -> None:
    out, slow = tmp_path / "run", tmp_path / "slow"
    child = Child(SLOW_DISK_CHILD, str(slow), *TRAIN, "--out", str(out))
    try:
        child.wait_for("epoch   1/")
        slow.touch()  # the next checkpoint stalls
        child.wait_for("stalled in a checkpoint")
        child.process.send_signal(signal.SIGINT)  # sets the flag; the write carries on
        time.sleep(0.5)
        assert child.process.poll() is None
        start = time.monotonic()
        child.process.send_signal(signal.SIGINT)
        tally("faults_injected", 2)
        returncode, stderr = child.finish(30)
        elapsed = time.monotonic() - start
    finally:
        child.kill()
    assert returncode == 130, stderr
    assert elapsed < 15  # not the 60 s the stalled write would have taken
    # The interrupted checkpoint left nothing; the previous one (an epoch end) is whole.
    state = assert_consistent_checkpoint(out)
    assert state["cursor"]["batch"] == 0 and state["cursor"]["epoch"] >= 1
    tally("faults_survived", 2)
