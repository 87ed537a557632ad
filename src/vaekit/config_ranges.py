"""What each numeric setting of a config allows, checked before anything is created."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any


def _positive(v: float) -> bool:
    return v > 0 and math.isfinite(v)


def _non_negative(v: float) -> bool:
    return v >= 0 and math.isfinite(v)


def _at_least(low: int) -> Callable[[int], bool]:
    return lambda v: v >= low


def _unit_open(v: float) -> bool:
    return 0 < v < 1


# Each setting's (test, description).
# A None value (where the type allows it) is always allowed; a tuple's items are each checked.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.image_size": (_at_least(1), "a positive number of pixels"),
    "data.channels": (lambda v: v in (1, 3), "1 (grey) or 3 (RGB)"),
    "data.val_size": (
        lambda v: v == 0 or 0 < v < 1 or (v >= 1 and float(v).is_integer()),
        "0, a fraction in (0, 1) or a whole number of points",
    ),
    "data.limit": (_at_least(2), "at least 2 points"),
    "model.latent_dim": (_at_least(1), "at least 1"),
    "model.hidden": (_at_least(1), "layer widths of at least 1"),
    "model.conv_channels": (_at_least(1), "at least 1"),
    "model.sigma": (_positive, "positive"),
    "model.min_scale": (_positive, "positive"),
    "model.mixture_components": (_at_least(1), "at least 1"),
    "model.prior_components": (_at_least(1), "at least 1"),
    "model.bound_groups": (_at_least(1), "at least 1"),
    "model.flow_steps": (_at_least(1), "at least 1"),
    "model.stochastic_layers": (lambda v: v in (1, 2), "1 or 2"),
    "model.lower_latent_dim": (_at_least(1), "at least 1"),
    "model.lower_hidden": (_at_least(1), "layer widths of at least 1"),
    "model.ciwae_beta": (lambda v: 0 <= v <= 1, "a weight in [0, 1]"),
    "model.beta": (_non_negative, "non-negative"),
    "model.num_particles": (_at_least(1), "at least 1"),
    "model.corruption_level": (_non_negative, "non-negative"),
    "model.adversarial_weight": (_non_negative, "non-negative"),
    "model.discriminator_hidden": (_at_least(1), "layer widths of at least 1"),
    "train.epochs": (_at_least(1), "at least 1"),
    "train.batch_size": (_at_least(1), "at least 1"),
    "train.lr": (_positive, "positive"),
    "train.adam_betas": (lambda v: 0 <= v < 1, "two numbers in [0, 1)"),
    "train.weight_decay": (_non_negative, "non-negative"),
    "train.adam_eps": (_positive, "positive"),
    "train.min_lr": (_non_negative, "non-negative"),
    "train.warmup_epochs": (_non_negative, "non-negative"),
    "train.grad_clip": (_positive, "positive, or none"),
    "train.ema_decay": (_unit_open, "strictly between 0 and 1 (e.g. 0.999), or none"),
    "train.eval_batch_size": (_at_least(1), "at least 1"),
    "train.seed": (lambda v: 0 <= v < 2**63, "an integer in [0, 2**63)"),
    "train.num_threads": (_at_least(1), "at least 1, or none"),
    "train.checkpoint_every_steps": (_at_least(1), "at least 1, or none"),
    "train.max_bad_steps": (_at_least(1), "at least 1"),
    "train.max_rollbacks": (_at_least(0), "non-negative"),
}
# Settings that must not be empty lists
NON_EMPTY = ("model.hidden",)
PROBABILITY_CORRUPTIONS = ("salt-and-pepper", "masking")


def show(value: Any) -> str:
    """A setting's value as a recipe writes it (JSON, with nan and inf)."""
    return json.dumps(value).replace("NaN", "nan").replace("Infinity", "inf")
