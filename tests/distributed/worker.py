"""One rank of the distributed tests' launch (see ``distributed_helpers.launch`` and ``main``).

The worker initialises the process group itself, as Ray Train or Lightning Fabric would, so the
trainer and ``vaekit.experiment.train`` adopt an existing group here; the CLI test covers the
group that ``train`` joins from torchrun's environment.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from distributed_helpers import (
    RESUME_KINDS,
    RESUME_OVERRIDES,
    RESUME_RECIPE,
    SGD_KINDS,
    TINY,
    parameters_by_group,
    sgd_trainer,
)

import vaekit.experiment
import vaekit.training.launch
from vaekit.config import load_config
from vaekit.training.trainer import TrainingInterrupted


class Crash(Exception):
    """Stands in for a crash on rank 0 straight after a checkpoint was written."""


def sgd(out: Path) -> None:
    """Train the SGD-equivalence setups at batch 10 per rank; save parameters and history."""
    for kind in SGD_KINDS:
        trainer = sgd_trainer(kind, batch_size=10)  # adopts the initialised group
        assert trainer.world.size == 2 and trainer.global_batch_size == 20
        trainer.fit()
        result = {"params": parameters_by_group(trainer), "history": trainer.history}
        torch.save(result, out / f"{kind}-rank{dist.get_rank()}.pt")


def resume(out: Path) -> None:
    """Uninterrupted, crashed-then-resumed and signalled-then-resumed runs of each model kind."""
    for kind in RESUME_KINDS:
        (out / kind).mkdir(exist_ok=True)
        resume_kind(out / kind, kind)


def resume_kind(out: Path, kind: str) -> None:
    """The three runs of one kind (see test_distributed_resume.py)."""
    config = load_config(TINY, [*RESUME_RECIPE, *RESUME_OVERRIDES[kind]])
    rank = dist.get_rank()
    vaekit.experiment.render_run_figures = lambda *a, **k: []  # no matplotlib in the workers
    real_write = vaekit.training.launch.write_checkpoint
    vaekit.experiment.train(config, out / "reference", progress=False)

    def crash_after(run, model, state, history):  # type: ignore[no-untyped-def]
        real_write(run, model, state, history)
        if (state["cursor"]["epoch"], state["cursor"]["batch"]) == (1, 2):
            raise Crash  # on rank 0 only: the other rank must stop too, not hang

    vaekit.training.launch.write_checkpoint = crash_after
    try:
        vaekit.experiment.train(config, out / "crashed", progress=False)
        raise AssertionError("the crash did not stop training")
    except Crash:
        pass
    vaekit.training.launch.write_checkpoint = real_write
    vaekit.experiment.train(config, out / "crashed", resume=True, progress=False)

    def signal_after(run, model, state, history):  # type: ignore[no-untyped-def]
        real_write(run, model, state, history)
        if (state["cursor"]["epoch"], state["cursor"]["batch"]) == (0, 4):
            os.kill(os.getpid(), signal.SIGINT)  # rank 0 alone is signalled, at step 4

    vaekit.training.launch.write_checkpoint = signal_after
    try:
        vaekit.experiment.train(config, out / "signalled", progress=False)
        raise AssertionError("the signal did not stop training")
    except TrainingInterrupted:
        pass
    vaekit.training.launch.write_checkpoint = real_write
    state = torch.load(out / "signalled" / "training_state.pt", weights_only=True)
    (out / f"interrupted-rank{rank}.json").write_text(json.dumps(state["cursor"]))
    vaekit.experiment.train(config, out / "signalled", resume=True, progress=False)


SCENARIOS = {"sgd": sgd, "resume": resume}


def main() -> None:
    """``worker.py SCENARIO[,SCENARIO...] OUT``: each scenario writes into OUT/SCENARIO."""
    scenarios, out = sys.argv[1].split(","), Path(sys.argv[2])
    dist.init_process_group("gloo")
    try:
        for name in scenarios:
            (out / name).mkdir(exist_ok=True)
            SCENARIOS[name](out / name)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # Skip the interpreter's teardown of torch: seconds per process on a loaded machine.
    sys.stdout.flush()
    os._exit(0)
