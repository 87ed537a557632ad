"""Weight averaging: an exponential moving average of the parameters (Polyak averaging).

Training follows the noisy Adam iterates; validation, checkpoints and the saved model use the
average, which sits nearer the centre of the region the iterates wander in. After ``n`` updates
the average moves towards the live weights with rate ``1 - min(decay, (1 + n) / (10 + n))``,
so early averages are not dominated by the random initial weights (the ``num_updates`` rule of
TensorFlow's ExponentialMovingAverage). Buffers (batch-norm statistics) are not averaged:
the live ones are used with either set of weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor


class WeightAverage:
    """An exponential moving average of ``params`` with the given ``decay`` in (0, 1)."""

    def __init__(self, params: Sequence[Tensor], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight-average decay must lie in (0, 1), got {decay}")
        # Detached views share the parameters' storage: they follow every in-place update.
        self.params = [p.detach() for p in params]
        self.decay = decay
        self.averages = [p.clone() for p in self.params]
        self.updates = 0

    def rate(self) -> float:
        """The weight of the live parameters in the next update."""
        return 1.0 - min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the averages towards the current parameters (one fused op on the device)."""
        torch._foreach_lerp_(self.averages, self.params, self.rate())
        self.updates += 1

    @contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """Within the block the parameters hold the averages; the live values return after."""
        live = [p.clone() for p in self.params]
        self.copy_to_params()
        try:
            yield
        finally:
            torch._foreach_copy_(self.params, live)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        """Overwrite the parameters with the averages (for good at the end of training)."""
        torch._foreach_copy_(self.params, self.averages)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "averages": list(self.averages)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        averages = state["averages"]
        if len(averages) != len(self.averages) or any(
            a.shape != b.shape for a, b in zip(averages, self.averages, strict=True)
        ):
            raise ValueError("the weight averages do not match this model's parameters")
        torch._foreach_copy_(
            self.averages, [a.to(b.device) for a, b in zip(averages, self.averages, strict=True)]
        )
        self.updates = int(state["updates"])
