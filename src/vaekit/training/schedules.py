"""Learning-rate and KL warm-up schedules as pure functions of the step (nothing to save)."""

from __future__ import annotations

import math

# Burda et al. 2016, sec. 5: 8 stages of 3^(i-1) passes with lr 1e-3 · 10^(-(i-1)/7), i = 1..8.
IWAE_STAGE_EPOCHS = tuple(3**i for i in range(8))  # 1, 3, ..., 2187: 3,280 epochs in all


def iwae_stage(progress: float) -> int:
    """The stage index (0..7) at a fraction ``progress`` of training, stages in 3^i proportions."""
    total = sum(IWAE_STAGE_EPOCHS)
    boundary = 0
    for i, length in enumerate(IWAE_STAGE_EPOCHS):
        boundary += length
        if progress * total < boundary:
            return i
    return len(IWAE_STAGE_EPOCHS) - 1


def learning_rate(
    step: int, total_steps: int, *, lr: float, schedule: str, min_lr: float = 0.0
) -> float:
    """The learning rate at ``step`` of ``total_steps``.

    ``constant``: lr. ``cosine``: lr -> min_lr along half a cosine. ``iwae-stages``: the IWAE
    paper's 8 stages (lengths in proportion 3^(i-1), lr · 10^(-(i-1)/7)); with 3,280 epochs the
    stages are exactly the paper's 1, 3, 9, ..., 2187 epochs.
    """
    progress = min(step / max(total_steps, 1), 1.0)
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
    if schedule == "iwae-stages":
        return lr * 10.0 ** (-iwae_stage(progress) / 7)
    raise ValueError(f"unknown schedule {schedule!r}; choose constant, cosine or iwae-stages")


def kl_weight(step: int, warmup_steps: int) -> float:
    """Linear KL warm-up from 0 to 1 over ``warmup_steps`` (1 when there is no warm-up)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, step / warmup_steps)
