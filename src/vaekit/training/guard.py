"""The non-finite guard: skip bad steps on the device, count them, let the host look rarely.

A step is bad when any objective or gradient norm is NaN or infinite. ``record`` turns that
device-side flag into the ``found_inf`` tensor that fused Adam honours (the torch.amp.GradScaler
protocol: the kernel leaves parameters, both moments and the step count untouched when it is 1)
and into counters that stay on the device. The host reads them (``worst_run``, one
synchronisation) only every ``max_bad_steps`` steps, at epoch ends and before checkpoints: a
skipped step changed nothing, so acting late on a run of bad steps is exact, and the fast path
never waits for the device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# Devices whose fused Adam kernel honours ``found_inf``. Elsewhere the trainer reads each step's
# flag on the host (correct, but one synchronisation per step).
MASKABLE_DEVICES = ("cpu", "cuda")


class NonFiniteGuard:
    """Device-side counters of bad steps: current run, longest run since the last look, total."""

    def __init__(self, device: torch.device):
        zero = torch.zeros((), dtype=torch.int64, device=device)
        self._run, self._worst, self._skipped = zero.clone(), zero.clone(), zero.clone()

    def record(self, finite: Tensor) -> Tensor:
        """Count one step from its [] bool flag; returns ``found_inf`` ([] float32, 1 if bad)."""
        bad = ~finite
        self._run = (self._run + 1) * bad  # back to 0 after a good step
        self._worst = torch.maximum(self._worst, self._run)
        self._skipped += bad
        return bad.to(torch.float32)

    def worst_run(self) -> int:
        """The longest run of consecutive bad steps since the last call (host sync)."""
        worst = int(self._worst)
        self._worst.zero_()
        return worst

    def reset_run(self) -> None:
        """Forget the current run of bad steps (after a rollback)."""
        self._run.zero_()
        self._worst.zero_()

    @property
    def skipped(self) -> int:
        """All steps skipped so far (host sync)."""
        return int(self._skipped)

    def state_dict(self) -> dict[str, int]:
        """The counters as plain ints."""
        return {"run": int(self._run), "worst": int(self._worst), "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore counters written by ``state_dict``."""
        self._run.fill_(int(state["run"]))
        self._worst.fill_(int(state["worst"]))
        self._skipped.fill_(int(state["skipped"]))


def grads_finite(grads: list[Tensor]) -> Tensor:
    """[] bool, on the device: every gradient is free of NaN and infinity (no host sync).

    The total norm is the test: NaN and infinities survive it. It can raise a false alarm only
    for finite gradients whose norm overflows, and then the step is merely skipped.
    """
    return torch.isfinite(torch.nn.utils.get_total_norm(grads))


def all_finite(tensors: list[Tensor]) -> bool:
    """Whether every floating-point tensor is free of NaN and infinity (one host sync)."""
    checks = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return not checks or bool(torch.stack(checks).all())


def clone_tree(tree: Any) -> Any:
    """A copy of nested dicts, lists and tuples with every tensor cloned.

    Snapshots must not alias live tensors: ``Optimizer.state_dict`` and ``load_state_dict``
    share the moment tensors that each step updates in place.
    """
    if isinstance(tree, Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {key: clone_tree(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(clone_tree(value) for value in tree)
    return tree
