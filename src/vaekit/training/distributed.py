"""Data parallelism over processes started by torchrun: the process group, shards and reductions.

torchrun (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``) starts one process per device and every process runs the same Trainer. Each
step's global batch of ``batch_size × world size`` indices is cut into one contiguous slice per
rank; a rank backpropagates its objective times its share n_rank / n_global, and summing the
gradients over ranks gives exactly the gradient of the mean over the global batch, ragged last
batch included. The gradients are summed with one flat all-reduce per parameter group (not
DistributedDataParallel, which wraps ``forward`` and expects one backward per forward, while the
trainer runs one ``backward(inputs=group)`` per objective; see docs/how-to/distributed.md).

A World of size 1 is a plain run: every method returns at once and no process group exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from vaekit.errors import ConfigError

T = TypeVar("T")


class World:
    """The processes that train one model together; this process is ``rank`` of ``size``.

    ``local_rank`` is the index of this process on its machine (its GPU under CUDA).
    """

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0):
        if not 0 <= rank < size or local_rank < 0:
            raise ValueError(f"rank {rank} of a world of size {size} (local rank {local_rank})")
        self.rank, self.size, self.local_rank = rank, size, local_rank

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one process that writes files and logs."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This process's device: ``cuda:LOCAL_RANK`` when several processes share CUDA."""
        if self.size > 1 and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def seed(self, seed: int) -> int:
        """The seed of this rank's own noise: ``seed`` on rank 0, an independent stream elsewhere.

        Ranks draw different noise (reparameterised samples, dynamic binarisation) for their
        different data; equal seeds would correlate the ranks' Monte Carlo errors.
        """
        if self.rank == 0:
            return seed
        entropy = [seed & (2**64 - 1), self.rank]
        return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])

    # ------------------------------------------------------------- batches
    def shard(self, batch: Tensor) -> Tensor:
        """This rank's contiguous slice of a global batch; slice sizes differ by at most one."""
        return batch if self.size == 1 else batch.tensor_split(self.size)[self.rank]

    def all_reduce_gradients(self, params: Sequence[Tensor], objective: Tensor) -> Tensor:
        """Sum ``params``' gradients and the detached ``objective`` over ranks; returns the sum.

        Called after each rank backpropagated its share of the global-batch mean, so the sums are
        the global batch's gradient and objective (a NaN on any rank reaches every rank, which
        keeps the non-finite guard's decision the same everywhere). Parameters without a gradient
        are left out: every rank runs the same model, so the same ones are missing everywhere.
        """
        if self.size == 1:
            return objective
        total = objective.detach().reshape(1).clone()
        self.sum_([*(p.grad for p in params if p.grad is not None), total])
        return total.reshape(())

    # ---------------------------------------------------------- collectives
    def sum_(self, tensors: Sequence[Tensor]) -> None:
        """Replace each tensor by its sum over ranks: one flat all-reduce per dtype."""
        if self.size == 1 or not tensors:
            return
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for tensor in tensors:
            by_dtype.setdefault(tensor.dtype, []).append(tensor)
        for same in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in same])
            dist.all_reduce(flat)
            for tensor, part in zip(same, flat.split([t.numel() for t in same]), strict=True):
                tensor.copy_(part.view_as(tensor))

    def max(self, value: int) -> int:
        """The largest ``value`` over ranks, on every rank (a host synchronisation)."""
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self._collective_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def broadcast_(self, tensors: Sequence[Tensor]) -> None:
        """Overwrite each tensor with rank 0's (parameters at start, buffers before evaluation)."""
        if self.size == 1:
            return
        for tensor in tensors:
            dist.broadcast(tensor.data, src=0)

    def broadcast_object(self, value: T) -> T:
        """Rank 0's ``value`` (any picklable object), on every rank."""
        if self.size == 1:
            return value
        box: list[Any] = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if self.size == 1:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def run_on_main(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` on rank 0 only (writing files); its exception is raised on every rank.

        Doubles as a barrier: no rank goes on before rank 0 is done, and a failed write stops all
        ranks at the same point instead of leaving them waiting in the next collective.
        """
        if self.size == 1:
            return fn()
        result: T | None = None
        error: Exception | None = None
        if self.is_main:
            try:
                result = fn()
            except Exception as caught:
                error = caught
        error = self.broadcast_object(error)
        if error is not None:
            raise error
        return result

    def _collective_device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def env_world() -> World:
    """The World that torchrun's environment variables describe (size 1 when they are unset)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return World()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        return World(rank, size, local_rank)
    except (KeyError, ValueError) as error:
        raise ConfigError(
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} asks for distributed training but the "
            f"environment is incomplete or malformed ({type(error).__name__}: {error}); launch "
            "with torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT"
        ) from None


def current_world() -> World:
    """The World of an initialised default process group, else a single process.

    Its local rank is the current CUDA device, which launchers that initialise the group (Ray
    Train, Lightning Fabric) set for each worker; without CUDA, ``LOCAL_RANK`` or 0.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    rank, size = dist.get_rank(), dist.get_world_size()
    if torch.cuda.is_available():
        return World(rank, size, torch.cuda.current_device())
    return World(rank, size, int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Join the process group of torchrun's environment for the duration; yields this World.

    Backend nccl for CUDA, gloo otherwise. A group that a launcher already initialised (Ray Train,
    Lightning Fabric, a user's script) is used as it is and left to its owner; without
    ``WORLD_SIZE > 1`` nothing is initialised at all.
    """
    if dist.is_available() and dist.is_initialized():
        yield current_world()
        return
    world = env_world()
    if world.size == 1:
        yield world
        return
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; train in one process")
    local = world.device(device)
    if local.type == "cuda":
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=local)
    else:
        dist.init_process_group("gloo")
    try:
        yield world
        # Leave together: a rank tearing gloo down while a peer still closes its connections
        # can abort at exit ("terminate called without an active exception"). Not on errors,
        # where a peer may never arrive.
        dist.barrier()
    finally:
        dist.destroy_process_group()
