"""The codes E_q[z|x] of training data, which the ex-post samplers fit a density to."""

from __future__ import annotations

import torch
from torch import Tensor

from vaekit.models.base import Autoencoder
from vaekit.models.conditional import labelled_batches, labels_for


@torch.no_grad()
def training_codes(
    model: Autoencoder, data: Tensor, *, labels: Tensor | None = None, batch_size: int = 1000
) -> Tensor:
    """The codes E_q[z|x] [N, D] of ``data`` [N, ...], encoded ``batch_size`` at a time on the
    model's device.

    A conditional model encodes each x with its own label (``labels``: class labels [N] or
    vectors [N, dim], required for it), so
    the fitted density is that of the codes the model learned across classes; its samples are
    then decoded with whichever class is asked for (``model.given``). An unconditional model
    ignores ``labels``.
    """
    device = next(model.parameters()).device
    y = labels_for(model, labels)
    if y is not None and len(y) != len(data):
        raise ValueError(
            f"labels has {len(y)} rows but data has {len(data)}: give one label per datapoint"
        )
    batches = labelled_batches(model, data, y, batch_size)
    return torch.cat([model.encode_mean(x.to(device)) for x in batches])
