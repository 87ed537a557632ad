"""The one training loop: any Autoencoder, one optimiser per parameter group, exact resume.

The loop never asks which model it trains: it calls ``model.loss_and_grad_`` (models that write
their own gradients) or else ``model.loss`` and backpropagates, then steps one Adam per entry of
``Loss.objectives``. Data stay tensors on the device and are batched by index permutation;
each epoch's permutation is a function of (seed, epoch), and every random draw in the step comes
from one explicit generator, so a saved (epoch, batch) cursor plus the generator states resume a
run bitwise.

A step with a non-finite loss or gradient is skipped on the device (see ``guard.py``); after
``max_bad_steps`` consecutive bad steps the model and optimisers roll back to the last
checkpointed state with a halved learning rate, and after ``max_rollbacks`` rollbacks training
stops. No checkpoint is ever taken of non-finite parameters or optimiser state.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from vaekit.data.base import Dataset, Split
from vaekit.models.base import Autoencoder
from vaekit.runtime import flush_denormals
from vaekit.training.adam_step import fused_adam_step
from vaekit.training.averaging import WeightAverage
from vaekit.training.distributed import World, current_world
from vaekit.training.epoch_sums import EpochSums
from vaekit.training.guard import MASKABLE_DEVICES, NonFiniteGuard, grads_finite
from vaekit.training.rollback import Rollback
from vaekit.training.schedules import kl_weight, learning_rate
from vaekit.training.state import Cursor, capture_state, restore_state
from vaekit.training.stop import StopRequests, TrainingInterrupted


def epoch_permutation(num_items: int, seed: int, epoch: int) -> Tensor:
    """The data order of one epoch, a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator)


class Trainer:
    """Trains ``model`` on ``dataset.train``, validating on ``dataset.val`` each epoch.

    ``on_checkpoint(trainer)`` is called whenever a resumable state should be saved (end of each
    epoch, every ``checkpoint_every`` steps if set, on interruption), always with finite
    parameters; ``on_epoch_end(record)`` receives each epoch's metrics row.

    In a distributed run (``world`` of several processes, by default the initialised process
    group, see ``distributed.py``) every rank constructs the same Trainer: ``batch_size`` is per
    process, each step's global batch of ``batch_size × world.size`` is split over the ranks,
    gradients and metrics are summed over ranks, and a stop request takes effect on every rank
    at the same step. ``fit``, ``evaluate`` and ``state_dict`` are then collective calls.

    ``precision="bfloat16"`` computes the training loss under ``torch.autocast`` (bfloat16
    matmuls and convolutions; weights, gradients, Adam and validation stay float32), through
    hand-derived gradients where the model has them (their products in bfloat16 too).

    ``compile=True`` runs hand-derived gradients (``model.loss_and_grad_``) through
    ``torch.compile``: seconds to compile once per batch shape, then faster steps on long runs
    (docs/performance.md); models trained through autograd are not compiled.

    ``ema_decay`` keeps an exponential moving average of the weights (``averaging.py``):
    validation and ``averaged_weights()`` use it, training steps the live weights.
    """

    def __init__(
        self,
        model: Autoencoder,
        dataset: Dataset,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        weight_decay: float = 0.0,
        schedule: str = "constant",
        min_lr: float = 0.0,
        warmup_epochs: float = 0.0,
        grad_clip: float | None = None,
        ema_decay: float | None = None,
        precision: str = "float32",
        compile: bool = False,
        eval_batch_size: int = 1000,
        seed: int = 0,
        device: torch.device | str = "cpu",
        max_bad_steps: int = 20,
        max_rollbacks: int = 3,
        checkpoint_every: int | None = None,
        progress: bool | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
        on_checkpoint: Callable[[Trainer], None] | None = None,
        world: World | None = None,
    ):
        self.world = current_world() if world is None else world
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.dataset = dataset
        self.epochs, self.batch_size, self.eval_batch_size = epochs, batch_size, eval_batch_size
        self.lr, self.schedule, self.min_lr = lr, schedule, min_lr
        self.grad_clip, self.seed = grad_clip, seed
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")
        # bfloat16: the loss runs under autocast (float32 weights, gradients and Adam)
        self.autocast = precision == "bfloat16"
        self.compile = compile
        if max_bad_steps < 1 or max_rollbacks < 0 or (checkpoint_every or 1) < 1:
            raise ValueError("max_bad_steps and checkpoint_every must be >= 1, max_rollbacks >= 0")
        self.max_bad_steps = max_bad_steps
        self.checkpoint_every = checkpoint_every
        progress = sys.stderr.isatty() if progress is None else progress
        self.progress = progress and self.world.is_main
        self.on_epoch_end, self.on_checkpoint = on_epoch_end, on_checkpoint
        self.train_x = dataset.train.x.to(self.device)
        if len(dataset.val) < self.world.size:  # evaluate() gives every rank a slice
            raise ValueError(
                f"cannot split {len(dataset.val)} validation points over {self.world.size} ranks"
            )
        self.global_batch_size = batch_size * self.world.size
        self.steps_per_epoch = math.ceil(len(dataset.train) / self.global_batch_size)
        self.total_steps = self.steps_per_epoch * epochs
        self.warmup_steps = round(warmup_epochs * self.steps_per_epoch)
        self.groups = model.parameter_groups()
        self.world.broadcast_([*self.model.parameters(), *self.model.buffers()])  # same start
        self.masked_step = all(
            p.is_floating_point() and p.device.type in MASKABLE_DEVICES
            for params in self.groups.values()
            for p in params
        )
        self.optimizers = {
            name: torch.optim.Adam(
                params,
                lr=lr,
                betas=adam_betas,
                eps=adam_eps,
                weight_decay=weight_decay,
                fused=self.masked_step,
            )
            for name, params in self.groups.items()
        }
        self.generator = torch.Generator(self.device).manual_seed(self.world.seed(seed))
        self.numpy_rng = np.random.default_rng(seed)
        self.cursor = Cursor()
        self.history: list[dict[str, float]] = []
        self.average = (
            None if ema_decay is None else WeightAverage(list(self.model.parameters()), ema_decay)
        )
        self.rollback = Rollback(self.model, self.optimizers, max_rollbacks, self.average)
        self.guard = NonFiniteGuard(self.device)
        self.epoch_sums = EpochSums(self.device)
        self.stops = StopRequests()

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bitwise (see ``state.py``); collective when distributed."""
        return capture_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by ``state_dict`` (exact resume); a state that does not fit
        this trainer raises CheckpointError (see ``state.py``)."""
        restore_state(self, state)

    # ------------------------------------------------------------------ loop
    def fit(self) -> list[dict[str, float]]:
        """Train until ``epochs`` are done; returns the per-epoch metric rows."""
        if not self.rollback.has_target:
            self.rollback.keep()  # the rollback target until the next checkpoint
        with self.stops.installed(), flush_denormals():
            while self.cursor.epoch < self.epochs:
                self._train_epoch()
                record = self._end_epoch()
                if self.on_epoch_end is not None:
                    self.on_epoch_end(record)
                if (signum := self.stops.agreed(self.world, look=True)) is not None:
                    raise TrainingInterrupted(signum)  # _end_epoch has just checkpointed
        return self.history

    def _train_epoch(self) -> None:
        order = epoch_permutation(len(self.dataset.train), self.seed, self.cursor.epoch)
        batches = order.to(self.device).split(self.global_batch_size)
        bar = tqdm(
            total=len(batches),
            initial=self.cursor.batch,
            desc=f"epoch {self.cursor.epoch + 1}/{self.epochs}",
            disable=not self.progress,
            leave=False,
        )
        with bar:
            while self.cursor.batch < len(batches):
                self._step(batches[self.cursor.batch])
                self.cursor.batch += 1
                self.cursor.step += 1
                bar.update()
                # Distributed, the ranks compare flags when the guard looks (every max_bad_steps).
                look = self.cursor.step % self.max_bad_steps == 0
                if (signum := self.stops.agreed(self.world, look=look)) is not None:
                    self._checkpoint()
                    raise TrainingInterrupted(signum)
                if self.cursor.batch == len(batches):
                    continue  # _end_epoch checks and checkpoints
                if self.cursor.step % self.max_bad_steps == 0:
                    self._check_guard()
                if self.checkpoint_every and self.cursor.step % self.checkpoint_every == 0:
                    self._checkpoint()

    def _step(self, global_index: Tensor) -> None:
        """One update of every parameter group; a non-finite step changes nothing but counters."""
        if not self.model.training:  # train() walks every module: only after an evaluation
            self.model.train()
        index = self.world.shard(global_index)
        share = len(index) / len(global_index)  # of the global-batch mean; 1 in one process
        # An empty slice (a last batch smaller than the world) computes one datapoint, weighted 0.
        # index_select: a third of the time of x[index] for MNIST rows on this CPU.
        x = torch.index_select(self.train_x, 0, index if len(index) else global_index[:1])
        if self.dataset.binarize == "dynamic":
            x = torch.bernoulli(x, generator=self.generator)  # fresh pixels every epoch
        lr = self.rollback.lr_scale * learning_rate(
            self.cursor.step,
            self.total_steps,
            lr=self.lr,
            schedule=self.schedule,
            min_lr=self.min_lr,
        )
        weight = kl_weight(self.cursor.step, self.warmup_steps)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            # Models with hand-derived gradients write them into .grad themselves (no autograd).
            loss = self.model.loss_and_grad_(
                x, kl_weight=weight, generator=self.generator, scale=share, compile=self.compile
            )
            direct = loss is not None
            if loss is None:
                loss = self.model.loss(x, kl_weight=weight, generator=self.generator)
        if not direct:
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
        names = list(loss.objectives)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        # The model's own test of what it wrote holds while nothing is added to it (one process)
        tested = loss.grads_finite if direct and self.world.size == 1 else None
        for i, name in enumerate(names):
            objective, params = loss.objectives[name], self.groups[name]
            if share != 1:
                objective = objective * share
            if not direct:
                objective.backward(inputs=params, retain_graph=i < len(names) - 1)
            objective = self.world.all_reduce_gradients(params, objective)  # summed over ranks
            if self.grad_clip is not None:
                finite &= torch.isfinite(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
            elif tested is not None:
                finite &= tested
            else:
                finite &= grads_finite([p.grad for p in params if p.grad is not None])
            finite &= torch.isfinite(objective)
        found_inf = self.guard.record(finite)
        if not self.masked_step and not bool(finite):
            return  # no fused kernel: decide on the host (one sync per step)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
            # fused Adam skips the update where found_inf is 1
            if not (self.masked_step and fused_adam_step(opt, found_inf)):
                opt.found_inf = found_inf if self.masked_step else None  # type: ignore[attr-defined]
                opt.step()
        if self.average is not None:
            self.average.update()
        self.epoch_sums.add(loss.metrics, finite, len(index))

    # ----------------------------------------------------------------- guard
    def _check_guard(self) -> None:
        """Read the device-side counters (the guard's one host sync) and roll back if needed."""
        worst = self.guard.worst_run()
        if worst >= self.max_bad_steps:
            self._go_back(f"{worst} consecutive steps with a non-finite loss or gradient")

    def _verify(self) -> None:
        """Act on the counters, then make sure no parameter or moment is NaN or infinite."""
        # BatchNorm statistics differ by rank; use rank 0's, as DDP's broadcast_buffers does.
        self.world.broadcast_(list(self.model.buffers()))
        self._check_guard()
        if not self.rollback.state_is_finite():
            self._go_back("the parameters or optimiser state became non-finite")

    def _go_back(self, reason: str) -> None:
        """Restore the last checkpointed model and optimisers with half the learning rate."""
        self.rollback.go_back(reason)  # or raise TrainingDiverged
        self.guard.reset_run()

    def _end_epoch(self) -> dict[str, float]:
        self._verify()  # no metrics or checkpoint of non-finite parameters
        record: dict[str, float] = {"epoch": float(self.cursor.epoch + 1)}
        record.update({f"train/{k}": v for k, v in self.epoch_sums.means(self.world).items()})
        record.update({f"val/{k}": v for k, v in self.evaluate(self.dataset.val).items()})
        record["lr"] = self.rollback.lr_scale * learning_rate(
            self.cursor.step,
            self.total_steps,
            lr=self.lr,
            schedule=self.schedule,
            min_lr=self.min_lr,
        )
        record["skipped_steps"] = float(self.guard.skipped)
        self.history.append(record)
        self.cursor = Cursor(epoch=self.cursor.epoch + 1, batch=0, step=self.cursor.step)
        self.epoch_sums.reset()
        self._checkpoint()
        return record

    def averaged_weights(self) -> AbstractContextManager[None]:
        """A block in which the model holds the weight average (a no-op without ``ema_decay``)."""
        return nullcontext() if self.average is None else self.average.applied()

    @torch.no_grad()
    def evaluate(self, split: Split) -> dict[str, float]:
        """Mean per-datapoint metrics (nats) over a split, with a fixed noise seed.

        With ``ema_decay`` set, the weight average is scored. Distributed, each rank scores a
        slice of the split and the sums are all-reduced.
        """
        with self.averaged_weights():
            return self._evaluate(split)

    def _evaluate(self, split: Split) -> dict[str, float]:
        self.model.eval()
        generator = torch.Generator(self.device).manual_seed(self.world.seed(self.seed + 1))
        sums: dict[str, Tensor] = {}
        for x in self.world.shard(split.x).split(self.eval_batch_size):
            metrics = self.model.loss(x.to(self.device), generator=generator).metrics
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0) + value * x.shape[0]
        self.world.sum_(list(sums.values()))
        out = {k: float(v) / len(split) for k, v in sums.items()}
        num_dims = math.prod(self.dataset.event_shape)
        nll = -out["elbo"] if "elbo" in out else out["recon"]
        out["bits_per_dim"] = nll / (num_dims * math.log(2.0))
        return out

    def _checkpoint(self) -> None:
        """Verify the state, keep it as the rollback target and hand it to ``on_checkpoint``."""
        self._verify()
        self.rollback.keep()
        if self.on_checkpoint is not None:
            self.on_checkpoint(self)
