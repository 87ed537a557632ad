"""The one training loop: any Autoencoder, one optimiser per parameter group, exact resume.

The loop never asks which model it trains: it calls ``model.loss`` and backpropagates (or, with
acceleration on, the model's hand-derived gradients where ``vaekit.accel`` has them), then
steps one Adam per entry of ``Loss.objectives``. Batches come from a source (``data/sources.py``):
tensors on the device gathered by index, or a Dataset streamed through DataLoader workers in the
same index order. Each epoch's order is a function of (seed, epoch) (``batches.py``), and every
random draw in the step comes from one explicit generator, so a saved (epoch, batch) cursor plus
the generator states resume a run bitwise.

A step with a non-finite loss or gradient is skipped on the device (see ``guard.py``); after
``max_bad_steps`` consecutive bad steps the model and optimisers roll back to the last
checkpointed state with a halved learning rate, and after ``max_rollbacks`` rollbacks training
stops. No checkpoint is ever taken of non-finite parameters or optimiser state.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from vaekit import accel
from vaekit.data.base import Dataset, Split
from vaekit.data.sources import (
    IndexedSource,
    LoaderStream,
    TrainingData,
    check_labels,
    from_dataset,
    in_memory,
)
from vaekit.models.base import Autoencoder
from vaekit.training.averaging import WeightAverage
from vaekit.training.batches import Step, batch_labels, epoch_batches
from vaekit.training.distributed import World, current_world
from vaekit.training.epoch_sums import EpochSums, derived_metrics
from vaekit.training.guard import MASKABLE_DEVICES, NonFiniteGuard, grads_finite
from vaekit.training.rollback import Rollback
from vaekit.training.schedules import kl_weight, learning_rate
from vaekit.training.state import Cursor, capture_state, restore_state
from vaekit.training.stop import StopRequests, StopTraining, TrainingInterrupted


class Trainer:
    """Trains ``model`` on the training split, validating on the validation split each epoch.

    ``dataset`` is a library ``Dataset`` (its splits held in memory) or a ``TrainingData`` of
    sources (``data/sources.py``); ``vaekit.fit`` builds one from tensors, arrays, torch
    Datasets and DataLoaders.

    ``on_checkpoint(trainer)`` is called whenever a resumable state should be saved (end of each
    epoch, every ``checkpoint_every`` steps if set, on interruption), always with finite
    parameters; ``on_epoch_end(record)`` and each of ``callbacks`` receive each epoch's metrics
    row (a dict of floats: ``epoch``, ``train/...``, ``val/...``, ``lr``), the callbacks on the
    main process only: log it to any tracker there. A callback that raises ``StopTraining``
    ends training after that epoch (early stopping; every rank stops, the other callbacks still
    see the row): ``stopped`` then holds ``{"epoch": n, "reason": ...}``, saved in the training
    state, so a resumed run stays stopped.

    In a distributed run (``world`` of several processes, by default the initialised process
    group, see ``distributed.py``) every rank constructs the same Trainer: ``batch_size`` is per
    process, each step's global batch of ``batch_size × world.size`` is split over the ranks,
    gradients and metrics are summed over ranks, and a stop request takes effect on every rank
    at the same step. ``fit``, ``evaluate`` and ``state_dict`` are then collective calls.

    ``precision="bfloat16"`` computes the training loss under ``torch.autocast`` (bfloat16
    matmuls and convolutions; weights, gradients, Adam and validation stay float32), for every
    model.

    ``accelerate="auto"`` takes the faster paths of ``vaekit.accel`` where the model allows
    them (hand-derived gradients for MLP VAEs with a Gaussian q and a Bernoulli p, subnormals
    flushed on the CPU); ``"off"`` trains through ``model.loss`` and autograd only.
    ``gradient_path`` says which ran. ``compile=True`` runs the hand-derived gradients, or else
    the model's encoder and decoder, through ``torch.compile`` while ``fit`` runs: seconds to
    compile once per batch shape, then faster steps on long runs.

    ``ema_decay`` keeps an exponential moving average of the weights (``averaging.py``):
    validation and ``averaged_weights()`` use it, training steps the live weights.
    """

    def __init__(
        self,
        model: Autoencoder,
        dataset: Dataset | TrainingData,
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
        accelerate: str = "auto",
        eval_batch_size: int = 1000,
        seed: int = 0,
        device: torch.device | str = "cpu",
        max_bad_steps: int = 20,
        max_rollbacks: int = 3,
        checkpoint_every: int | None = None,
        progress: bool | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
        on_checkpoint: Callable[[Trainer], None] | None = None,
        callbacks: Sequence[Callable[[dict[str, float]], object]] = (),
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
        accel.check_mode(accelerate)
        self.accelerate, self.compile = accelerate, compile
        self.direct = accel.direct_gradients(model, accelerate=accelerate, compile=compile)
        if max_bad_steps < 1 or max_rollbacks < 0 or (checkpoint_every or 1) < 1:
            raise ValueError("max_bad_steps and checkpoint_every must be >= 1, max_rollbacks >= 0")
        self.max_bad_steps = max_bad_steps
        self.checkpoint_every = checkpoint_every
        progress = sys.stderr.isatty() if progress is None else progress
        self.progress = progress and self.world.is_main
        self.on_epoch_end, self.on_checkpoint = on_epoch_end, on_checkpoint
        self.callbacks = list(callbacks)
        self.data = dataset if isinstance(dataset, TrainingData) else from_dataset(dataset)
        self.conditional = model.condition is not None
        if model.condition is not None:
            for source in (self.data.train, self.data.val):
                if source is not None:
                    check_labels(source, model.condition.dim)
        val = self.data.val
        if val is not None and len(val) < self.world.size:  # evaluate() gives every rank a slice
            raise ValueError(
                f"cannot split {len(val)} validation points over {self.world.size} ranks"
            )
        self.global_batch_size = batch_size * self.world.size
        if isinstance(self.data.train, LoaderStream):
            if self.world.size > 1:
                raise ValueError(
                    "several processes need data vaekit can shard: pass a map-style Dataset or "
                    "tensors instead of a DataLoader or IterableDataset"
                )
            self.steps_per_epoch = self.data.train.num_batches()
        else:
            self.steps_per_epoch = math.ceil(len(self.data.train) / self.global_batch_size)
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
        self.stopped: dict[str, Any] | None = None  # set when a callback raised StopTraining
        self.average = (
            None if ema_decay is None else WeightAverage(list(self.model.parameters()), ema_decay)
        )
        self.rollback = Rollback(self.model, self.optimizers, max_rollbacks, self.average)
        self.guard = NonFiniteGuard(self.device)
        self.epoch_sums = EpochSums(self.device)
        self.stops = StopRequests()

    @property
    def gradient_path(self) -> str:
        """``"direct"`` where ``vaekit.accel``'s hand-derived gradients train the model (for its
        current k), else ``"autograd"``."""
        return "autograd" if self.direct is None or self.direct.plan() is None else "direct"

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
        """Train until ``epochs`` are done or a callback stops it; returns the per-epoch rows."""
        if not self.rollback.has_target:
            self.rollback.keep()  # the rollback target until the next checkpoint
        compile_parts = self.compile and self.direct is None  # direct gradients compile their own
        with (
            self.stops.installed(),
            accel.training_context(self.accelerate),
            accel.compiled_parts(self.model, compile_parts),
        ):
            while self.cursor.epoch < self.epochs and self.stopped is None:
                self._train_epoch()
                record = self._end_epoch()
                if self.on_epoch_end is not None:
                    self.on_epoch_end(record)
                self._run_callbacks(record)
                if (signum := self.stops.agreed(self.world, look=True)) is not None:
                    raise TrainingInterrupted(signum)  # _end_epoch has just checkpointed
        return self.history

    def _run_callbacks(self, record: dict[str, float]) -> None:
        """Hand ``record`` to every callback (main process); the first ``StopTraining`` ends the
        run after this epoch, on every rank, and is checkpointed so that a resume sees it."""
        reason: str | None = None
        if self.world.is_main:
            for callback in self.callbacks:
                try:
                    callback(dict(record))
                except StopTraining as stop:
                    reason = reason if reason is not None else str(stop) or "StopTraining"
        reason = self.world.broadcast_object(reason)
        if reason is not None:
            self.stopped = {"epoch": int(record["epoch"]), "reason": reason}
            self._checkpoint()  # _end_epoch's checkpoint did not know yet

    def _epoch_batches(self) -> tuple[int, Iterator[Step]]:
        """(batches in this epoch, its steps from the cursor on): see ``batches.py``."""
        return epoch_batches(
            self.data.train,
            seed=self.seed,
            epoch=self.cursor.epoch,
            start=self.cursor.batch,
            global_batch_size=self.global_batch_size,
            world=self.world,
            device=self.device,
            labels=self.conditional,
        )

    def _train_epoch(self) -> None:
        num_batches, steps = self._epoch_batches()
        bar = tqdm(
            total=num_batches,
            initial=self.cursor.batch,
            desc=f"epoch {self.cursor.epoch + 1}/{self.epochs}",
            disable=not self.progress,
            leave=False,
        )
        with bar:
            for x, share, count, y in steps:
                self._step(x, share, count, y)
                self.cursor.batch += 1
                self.cursor.step += 1
                bar.update()
                # Distributed, the ranks compare flags when the guard looks (every max_bad_steps).
                look = self.cursor.step % self.max_bad_steps == 0
                if (signum := self.stops.agreed(self.world, look=look)) is not None:
                    self._checkpoint()
                    raise TrainingInterrupted(signum)
                if self.cursor.batch == num_batches:
                    continue  # _end_epoch checks and checkpoints
                if self.cursor.step % self.max_bad_steps == 0:
                    self._check_guard()
                if self.checkpoint_every and self.cursor.step % self.checkpoint_every == 0:
                    self._checkpoint()

    def _step(self, x: Tensor, share: float, count: int, y: Tensor | None = None) -> None:
        """One update of every parameter group (a conditional model given the labels ``y``); a
        non-finite step changes nothing but counters."""
        with self.model.given(y):
            self._update(x, share, count)

    def _update(self, x: Tensor, share: float, count: int) -> None:
        if not self.model.training:  # train() walks every module: only after an evaluation
            self.model.train()
        if self.data.binarize == "dynamic":
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
            # Hand-derived gradients are written into .grad directly, without autograd
            direct = None
            if self.direct is not None:
                direct = self.direct(x, kl_weight=weight, generator=self.generator, scale=share)
            if direct is None:
                loss = self.model.loss(x, kl_weight=weight, generator=self.generator)
            else:
                loss, written_finite = direct
        if direct is None:
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
        names = list(loss.objectives)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        # The direct path's own test of what it wrote holds while nothing is added (one process)
        tested = written_finite if direct is not None and self.world.size == 1 else None
        for i, name in enumerate(names):
            objective, params = loss.objectives[name], self.groups[name]
            if share != 1:
                objective = objective * share
            if direct is None:
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
            # fused Adam skips the update where found_inf is 1 (torch.amp.GradScaler's protocol)
            opt.found_inf = found_inf if self.masked_step else None  # type: ignore[attr-defined]
            opt.step()
        if self.average is not None:
            self.average.update()
        self.epoch_sums.add(loss.metrics, finite, count)

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
        train = derived_metrics(self.epoch_sums.means(self.world), self.data.event_shape)
        record.update({f"train/{k}": v for k, v in train.items()})
        if self.data.val is not None:
            record.update({f"val/{k}": v for k, v in self.evaluate(self.data.val).items()})
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
    def evaluate(self, split: Split | IndexedSource) -> dict[str, float]:
        """Mean per-datapoint metrics (nats) over a split, with a fixed noise seed.

        With ``ema_decay`` set, the weight average is scored. Distributed, each rank scores a
        slice of the split and the sums are all-reduced.
        """
        with self.averaged_weights():
            return self._evaluate(split)

    def _evaluate(self, split: Split | IndexedSource) -> dict[str, float]:
        self.model.eval()
        generator = torch.Generator(self.device).manual_seed(self.world.seed(self.seed + 1))
        source = in_memory(split) if isinstance(split, Split) else split
        index = self.world.shard(torch.arange(len(source))).split(self.eval_batch_size)
        sums: dict[str, Tensor] = {}
        labels = batch_labels(source, index, self.device, self.conditional)
        for x, y in zip(source.gather(index, self.device), labels, strict=True):
            with self.model.given(y):
                metrics = self.model.loss(x, generator=generator).metrics
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0) + value * x.shape[0]
        self.world.sum_(list(sums.values()))
        out = {k: float(v) / len(source) for k, v in sums.items()}
        return derived_metrics(out, self.data.event_shape)

    def _checkpoint(self) -> None:
        """Verify the state, keep it as the rollback target and hand it to ``on_checkpoint``."""
        self._verify()
        self.rollback.keep()
        if self.on_checkpoint is not None:
            self.on_checkpoint(self)
