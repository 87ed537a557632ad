"""Learning-rate and KL warm-up schedules as pure functions of the step (nothing to save)."""

from __future__ import annotations

import math


def learning_rate(
    step: int, total_steps: int, *, lr: float, schedule: str, min_lr: float = 0.0
) -> float:
    """``constant``: lr; ``cosine``: lr -> min_lr along half a cosine over ``total_steps``."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        progress = min(step / max(total_steps, 1), 1.0)
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}; choose constant or cosine")


def kl_weight(step: int, warmup_steps: int) -> float:
    """Linear KL warm-up from 0 to 1 over ``warmup_steps`` (1 when there is no warm-up)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, step / warmup_steps)
