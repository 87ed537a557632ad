"""Mini-batches as index tensors: the data stay whole tensors and are gathered with ``x[idx]``."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


def iterate_batches(
    num_items: int,
    batch_size: int,
    *,
    generator: torch.Generator | None,
    shuffle: bool,
    drop_last: bool = False,
    device: torch.device | str | None = None,
) -> Iterator[Tensor]:
    """Yield int64 index tensors [B] that cover ``range(num_items)`` once (one epoch).

    With ``shuffle`` the order is a permutation drawn from ``generator`` (on the generator's
    device); otherwise it is 0, 1, 2, .... ``drop_last`` skips a final batch smaller than
    ``batch_size``. Indices are moved to ``device`` so ``x[idx]`` gathers where ``x`` lives.
    """
    if num_items < 0 or batch_size < 1:
        raise ValueError(f"need num_items >= 0 and batch_size >= 1, got {num_items}, {batch_size}")
    if shuffle:
        source_device = generator.device if generator is not None else None
        order = torch.randperm(num_items, generator=generator, device=source_device)
    else:
        order = torch.arange(num_items)
    order = order.to(device) if device is not None else order
    stop = num_items - num_items % batch_size if drop_last else num_items
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]
