"""What ``Trainer.state_dict`` saves and ``Trainer.load_state_dict`` restores: exact resume.

Weights, optimiser moments, the weight average, the cursor (epoch, batch, step), the metric
history, an early stop (``Trainer.stopped``) and the current epoch's partial sums, the guard's
counters, the rollback count and lr scale, and every RNG state: with these a run stopped
anywhere continues bitwise. Tensors and plain values only, so the state loads with
``torch.load(weights_only=True)``. The optimiser entries share storage with the live
optimisers: save them or ``clone_tree`` them.

A distributed run records its ``world_size`` and, under ``ranks``, every rank's own metric sums
and RNG states (so capturing is a collective call there); the rest is the same on all ranks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from vaekit.errors import CheckpointError
from vaekit.training.guard import clone_tree

if TYPE_CHECKING:
    from vaekit.training.trainer import Trainer


@dataclass
class Cursor:
    """Where training is: completed epochs, next batch within the epoch, global step."""

    epoch: int = 0
    batch: int = 0
    step: int = 0


def capture_state(trainer: Trainer) -> dict[str, Any]:
    """Everything needed to continue ``trainer`` bitwise."""
    state: dict[str, Any] = {
        "model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
        "optimizers": {k: opt.state_dict() for k, opt in trainer.optimizers.items()},
        "cursor": vars(trainer.cursor).copy(),
        "history": list(trainer.history),
        "stopped": trainer.stopped,  # an early stop by a callback: a resume does not train on
        **trainer.epoch_sums.state_dict(),  # "sums" and "count"
        "lr_scale": trainer.rollback.lr_scale,
        "guard": trainer.guard.state_dict(),
        "rollbacks": trainer.rollback.count,
        "rng": {
            "generator": trainer.generator.get_state(),
            "torch": torch.get_rng_state(),
            "numpy": trainer.numpy_rng.bit_generator.state,
            "python": random.getstate(),
        },
        "world_size": trainer.world.size,
    }
    if trainer.average is not None:
        state["average"] = clone_tree(trainer.average.state_dict())
    if trainer.world.size > 1:
        own = {"sums": {k: v.cpu() for k, v in state["sums"].items()}}
        own.update({k: state[k] for k in ("count", "rng")})
        state["ranks"] = trainer.world.all_gather_object(own)
    return state


def restore_state(trainer: Trainer, state: dict[str, Any]) -> None:
    """Restore a state written by ``capture_state`` (exact resume).

    A state written for another architecture or parameter grouping, or by a different number of
    processes (which would change the global batch and the data order), raises CheckpointError.
    """
    world_size = state.get("world_size", 1) if isinstance(state, dict) else 1
    if world_size != trainer.world.size:
        raise CheckpointError(
            f"the training state was written by {world_size} process(es) and this run has "
            f"{trainer.world.size}: resuming with another number of processes would change the "
            f"global batch (batch_size × processes) and the data order. Resume with "
            f"{world_size} process(es) in all (torchrun --nnodes × --nproc_per_node)."
        )
    own = state["ranks"][trainer.world.rank] if trainer.world.size > 1 else state
    try:
        if set(state["optimizers"]) != set(trainer.optimizers):
            raise ValueError(
                f"parameter groups {sorted(state['optimizers'])}, this model has "
                f"{sorted(trainer.optimizers)}"
            )
        trainer.model.load_state_dict(state["model"])
        for name, opt in trainer.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        if trainer.average is not None:
            trainer.average.load_state_dict(state["average"])
        trainer.cursor = Cursor(**state["cursor"])
        trainer.history = list(state["history"])
        trainer.stopped = state.get("stopped")  # absent from states written before early stops
        trainer.epoch_sums.load_state_dict(own)
        trainer.guard.load_state_dict(state["guard"])
        trainer.rollback.lr_scale = float(state["lr_scale"])
        trainer.rollback.count = int(state["rollbacks"])
        rng = own["rng"]
        trainer.generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        trainer.numpy_rng.bit_generator.state = rng["numpy"]
        random.setstate(rng["python"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        detail = (str(error).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"the training state does not fit this model and trainer "
            f"({type(error).__name__}: {detail}); it was written for another architecture "
            "or config. Resume with the run's own config.json or start a new run."
        ) from None
    trainer.rollback.forget()  # fit() keeps the loaded state as the rollback target
