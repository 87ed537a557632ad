"""The way back after divergence: the last good model and optimiser state, and its use count.

At every checkpoint the trainer keeps a finite copy of the weights and optimiser state here.
When the guard sees ``max_bad_steps`` consecutive non-finite steps, or a checkpoint finds
non-finite parameters or moments, training returns to that copy with half the learning rate;
after ``max_rollbacks`` returns it stops with TrainingDiverged, and the last good checkpoint on
disk is what the run keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from vaekit.training.averaging import WeightAverage
from vaekit.training.guard import all_finite, clone_tree


class TrainingDiverged(Exception):
    """Training produced non-finite values too often; the last good checkpoint is kept."""


class Rollback:
    """The rollback target of ``model``, ``optimizers`` and the weight ``average`` (if any), the
    rollbacks taken and the lr scale."""

    def __init__(
        self,
        model: nn.Module,
        optimizers: Mapping[str, torch.optim.Optimizer],
        max_rollbacks: int,
        average: WeightAverage | None = None,
    ):
        self.model, self.optimizers, self.max_rollbacks = model, optimizers, max_rollbacks
        self.average = average
        self.count = 0
        self.lr_scale = 1.0  # halved by every rollback
        self._target: dict[str, Any] | None = None

    @property
    def has_target(self) -> bool:
        return self._target is not None

    def keep(self) -> None:
        """Take the current model and optimiser state (checked finite by the caller) as target."""
        optimizers = {k: opt.state_dict() for k, opt in self.optimizers.items()}
        target = {"model": self.model.state_dict(), "optimizers": optimizers}
        if self.average is not None:
            target["average"] = self.average.state_dict()
        self._target = clone_tree(target)

    def forget(self) -> None:
        """Drop the target (a loaded state replaces it at the next ``keep``)."""
        self._target = None

    def state_is_finite(self) -> bool:
        """Whether every parameter, buffer and optimiser tensor is free of NaN and infinity."""
        tensors = list(self.model.state_dict().values())
        for opt in self.optimizers.values():
            for param_state in opt.state.values():
                tensors += [v for v in param_state.values() if isinstance(v, Tensor)]
        if self.average is not None:
            tensors += self.average.averages
        return all_finite(tensors)

    def go_back(self, reason: str) -> None:
        """Restore the target with half the learning rate, or raise TrainingDiverged when the
        rollbacks are used up (or there is nothing to go back to)."""
        if self.count >= self.max_rollbacks or self._target is None:
            raise TrainingDiverged(
                f"training diverged: {reason}, after {self.count} rollback(s) to the last "
                "good state with a halved learning rate; lower train.lr, set train.grad_clip, "
                "or check the data. The last good checkpoint is kept."
            )
        self.model.load_state_dict(self._target["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(clone_tree(self._target["optimizers"][name]))
        if self.average is not None:
            self.average.load_state_dict(self._target["average"])
        self.count += 1
        self.lr_scale *= 0.5
