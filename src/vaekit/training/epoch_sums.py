"""One epoch's training metrics, summed on the device step by step.

Each step adds its batch-mean metrics times the batch size, and the number of datapoints, where
the step was finite; nothing is read on the host until the epoch ends. A skipped (non-finite)
step adds nothing: ``where``, not a product with the flag, since NaN · 0 is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from vaekit.training.distributed import World


class EpochSums:
    """Per-datapoint metric sums and the datapoint count of the current epoch."""

    def __init__(self, device: torch.device):
        self.sums: dict[str, Tensor] = {}
        self.count = torch.zeros((), dtype=torch.int64, device=device)

    def add(self, metrics: Mapping[str, Tensor], finite: Tensor, batch: int) -> None:
        """Add one step's batch means (weighted by ``batch``) if ``finite`` holds."""
        for key, value in metrics.items():
            if value.dtype in (torch.bfloat16, torch.float16):
                value = value.float()  # a low-precision metric (autocast) is summed in float32
            self.sums[key] = self.sums.get(key, 0) + torch.where(finite, value, 0.0) * batch
        self.count += finite * batch

    def means(self, world: World) -> dict[str, float]:
        """The epoch's per-datapoint means, summed over ranks (collective; one host read)."""
        world.sum_([*self.sums.values(), self.count])
        count = max(int(self.count), 1)
        return {key: float(value) / count for key, value in self.sums.items()}

    def reset(self) -> None:
        self.sums = {}
        self.count.zero_()

    def state_dict(self) -> dict[str, Any]:
        return {
            "sums": {k: v.detach().clone() for k, v in self.sums.items()},
            "count": int(self.count),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sums = {k: v.to(self.count.device) for k, v in state["sums"].items()}
        self.count.fill_(int(state["count"]))


def derived_metrics(means: dict[str, float], event_shape: Sequence[int]) -> dict[str, float]:
    """Per-datapoint means with what follows from them: ``bits_per_dim`` (of the negative ELBO,
    else of the reconstruction term) and, where the objective is recon + weight · KL, the KL
    weight that makes the means add up: ``kl_weight`` = mean(weight · KL) / mean(KL). That is
    beta × the warm-up factor when the weight is constant over the epoch, and a KL-weighted mean
    of the steps' weights while it ramps."""
    out = dict(means)
    nll = -out["elbo"] if "elbo" in out else out.get("recon")
    if nll is not None and "bits_per_dim" not in out:
        out["bits_per_dim"] = nll / (math.prod(event_shape) * math.log(2.0))
    if "weighted_kl" in out and out.get("kl", 0.0) != 0.0:
        out["kl_weight"] = out["weighted_kl"] / out["kl"]
    return out
