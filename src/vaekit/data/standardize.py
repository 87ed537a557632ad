"""Per-feature standardisation: statistics from the training split, applied to every split and
inverted on the way out (samples, reconstructions), so numbers leave in the data's own units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vaekit.errors import CheckpointError

from .base import Split


@dataclass(frozen=True)
class Standardization:
    """x ↦ (x - mean) / std per feature; ``mean`` and ``std`` have the event shape of one
    datapoint. A feature that is constant in the training split keeps std 1 (it is centred)."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, x: Tensor) -> Standardization:
        """Statistics of the points x [N, *event_shape] (float64 sums, stored as float32)."""
        values = x.double()
        mean = values.mean(0)
        std = values.std(0, correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return cls(mean.float(), std.float())

    def apply(self, x: Tensor) -> Tensor:
        """Standardised x [B, *event_shape]."""
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def invert(self, x: Tensor) -> Tensor:
        """x [B, *event_shape] back in the data's original units."""
        return x * self.std.to(x.device) + self.mean.to(x.device)

    def split(self, split: Split) -> Split:
        """``split`` with standardised x (labels unchanged)."""
        return Split(x=self.apply(split.x), y=split.y)

    def to_json(self) -> dict[str, Any]:
        """Plain lists for config.json."""
        return {
            "shape": list(self.mean.shape),
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }

    @classmethod
    def from_json(cls, entry: object) -> Standardization:
        """Inverse of ``to_json``; a malformed entry is a CheckpointError."""
        try:
            assert isinstance(entry, dict)
            shape = [int(n) for n in entry["shape"]]
            mean = torch.tensor(entry["mean"], dtype=torch.float32).view(shape)
            std = torch.tensor(entry["std"], dtype=torch.float32).view(shape)
        except (AssertionError, KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"the run's standardisation entry is malformed ({error})"
            ) from None
        if not bool((std > 0).all()):
            raise CheckpointError("the run's standardisation has a non-positive std")
        return cls(mean, std)
