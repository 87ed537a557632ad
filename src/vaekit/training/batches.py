"""The batches of one training epoch, from the cursor on: a function of (seed, epoch).

An indexable source (tensors, a map-style Dataset) is read in ``epoch_permutation`` order,
split into global batches of ``batch size × world size``, and each rank takes its slice; a
DataLoader or IterableDataset (one process only) gives its own batches in its own order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from vaekit.data.sources import IndexedSource, LoaderStream, Source
from vaekit.training.distributed import World

# (x, share, count, y): the batch, this rank's part of the global-batch mean (1 in one
# process), the datapoints it scores, the labels of a conditional model's batch (else None)
Step = tuple[Tensor, float, int, Tensor | None]


def epoch_permutation(num_items: int, seed: int, epoch: int) -> Tensor:
    """The data order of one epoch, a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator)


def epoch_batches(
    source: Source,
    *,
    seed: int,
    epoch: int,
    start: int,
    global_batch_size: int,
    world: World,
    device: torch.device,
    labels: bool,
) -> tuple[int, Iterator[Step]]:
    """(batches in the epoch, an iterator of its steps from batch ``start`` on); ``labels``:
    the steps carry the labels of a conditional model."""
    if isinstance(source, LoaderStream):
        batches = source.batches(start, device)
        return source.num_batches(), ((x, 1.0, len(x), None) for x in batches)
    order = epoch_permutation(len(source), seed, epoch)
    global_batches = order.to(device).split(global_batch_size)
    remaining = global_batches[start:]
    slices = [world.shard(batch) for batch in remaining]
    # An empty slice (a last batch smaller than the world) computes one datapoint, weighted 0.
    index = [s if len(s) else g[:1] for s, g in zip(slices, remaining, strict=True)]
    shares = [len(s) / len(g) for s, g in zip(slices, remaining, strict=True)]
    x = source.gather(index, device)
    y = batch_labels(source, index, device, labels)
    steps = zip(x, shares, (len(s) for s in slices), y, strict=True)
    return len(global_batches), steps


def batch_labels(
    source: IndexedSource, index: Sequence[Tensor], device: torch.device, labels: bool
) -> Iterator[Tensor | None] | list[None]:
    """The labels of each batch at ``index`` where ``labels`` asks for them and the source
    holds them, else Nones."""
    if labels and source.y is not None:
        return source.gather_labels(index, device)
    return [None] * len(index)
