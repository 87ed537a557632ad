"""The one training loop: any Autoencoder, one optimiser per parameter group, exact resume.

The loop never asks which model it trains: it calls ``model.loss`` and steps one Adam per entry
of ``Loss.objectives``. Data stay tensors on the device and are batched by index permutation;
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
import random
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from vaekit.data.base import Dataset, Split
from vaekit.errors import CheckpointError
from vaekit.models.base import Autoencoder
from vaekit.training.guard import MASKABLE_DEVICES, NonFiniteGuard, all_finite, clone_tree
from vaekit.training.schedules import kl_weight, learning_rate


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a resumable checkpoint."""

    def __init__(self, signum: int):
        super().__init__(f"training interrupted by signal {signum}; resume with --resume")
        self.signum = signum


class TrainingDiverged(Exception):
    """Training produced non-finite values too often; the last good checkpoint is kept."""


@dataclass
class Cursor:
    """Where training is: completed epochs, next batch within the epoch, global step."""

    epoch: int = 0
    batch: int = 0
    step: int = 0


def epoch_permutation(num_items: int, seed: int, epoch: int) -> Tensor:
    """The data order of one epoch, a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator)


class Trainer:
    """Trains ``model`` on ``dataset.train``, validating on ``dataset.val`` each epoch.

    ``on_checkpoint(trainer)`` is called whenever a resumable state should be saved (end of each
    epoch, every ``checkpoint_every`` steps if set, on interruption), always with finite
    parameters; ``on_epoch_end(record)`` receives each epoch's metrics row.
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
        eval_batch_size: int = 1000,
        seed: int = 0,
        device: torch.device | str = "cpu",
        max_bad_steps: int = 20,
        max_rollbacks: int = 3,
        checkpoint_every: int | None = None,
        progress: bool | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
        on_checkpoint: Callable[[Trainer], None] | None = None,
    ):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.dataset = dataset
        self.epochs, self.batch_size, self.eval_batch_size = epochs, batch_size, eval_batch_size
        self.lr, self.schedule, self.min_lr = lr, schedule, min_lr
        self.grad_clip, self.seed = grad_clip, seed
        if max_bad_steps < 1 or max_rollbacks < 0 or (checkpoint_every or 1) < 1:
            raise ValueError("max_bad_steps and checkpoint_every must be >= 1, max_rollbacks >= 0")
        self.max_bad_steps, self.max_rollbacks = max_bad_steps, max_rollbacks
        self.checkpoint_every = checkpoint_every
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.on_epoch_end, self.on_checkpoint = on_epoch_end, on_checkpoint
        self.train_x = dataset.train.x.to(self.device)
        self.steps_per_epoch = math.ceil(len(dataset.train) / batch_size)
        self.total_steps = self.steps_per_epoch * epochs
        self.warmup_steps = round(warmup_epochs * self.steps_per_epoch)
        self.groups = model.parameter_groups()
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
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.numpy_rng = np.random.default_rng(seed)
        self.cursor = Cursor()
        self.history: list[dict[str, float]] = []
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.guard = NonFiniteGuard(self.device)
        self._sums: dict[str, Tensor] = {}
        self._count = torch.zeros((), dtype=torch.int64, device=self.device)  # datapoints summed
        self._good: dict[str, Any] | None = None
        self._stop_signal: int | None = None

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bitwise: weights, optimisers, cursor, RNGs, history.

        Tensors and plain values only (it loads with ``torch.load(weights_only=True)``). The
        optimiser entries share storage with the live optimisers: save them or ``clone_tree``.
        """
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "cursor": vars(self.cursor).copy(),
            "history": list(self.history),
            "sums": {k: v.detach().clone() for k, v in self._sums.items()},
            "count": int(self._count),
            "lr_scale": self.lr_scale,
            "guard": self.guard.state_dict(),
            "rollbacks": self.rollbacks,
            "rng": {
                "generator": self.generator.get_state(),
                "torch": torch.get_rng_state(),
                "numpy": self.numpy_rng.bit_generator.state,
                "python": random.getstate(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by ``state_dict`` (exact resume).

        A state written for another architecture or parameter grouping raises CheckpointError.
        """
        try:
            if set(state["optimizers"]) != set(self.optimizers):
                raise ValueError(
                    f"parameter groups {sorted(state['optimizers'])}, this model has "
                    f"{sorted(self.optimizers)}"
                )
            self.model.load_state_dict(state["model"])
            for name, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
            self.cursor = Cursor(**state["cursor"])
            self.history = list(state["history"])
            self._sums = {k: v.to(self.device) for k, v in state["sums"].items()}
            self._count.fill_(int(state["count"]))
            self.guard.load_state_dict(state["guard"])
            self.lr_scale, self.rollbacks = float(state["lr_scale"]), int(state["rollbacks"])
            rng = state["rng"]
            self.generator.set_state(rng["generator"])
            torch.set_rng_state(rng["torch"])
            self.numpy_rng.bit_generator.state = rng["numpy"]
            random.setstate(rng["python"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            detail = (str(error).strip().splitlines() or [""])[0]
            raise CheckpointError(
                f"the training state does not fit this model and trainer "
                f"({type(error).__name__}: {detail}); it was written for another architecture "
                "or config. Resume with the run's own config.json or start a new run."
            ) from None
        self._good = None  # fit() snapshots the loaded state as the rollback target

    # ------------------------------------------------------------------ loop
    def fit(self) -> list[dict[str, float]]:
        """Train until ``epochs`` are done; returns the per-epoch metric rows."""
        if self._good is None:
            self._good = self._snapshot()  # the rollback target until the next checkpoint
        with self._signals():
            while self.cursor.epoch < self.epochs:
                self._train_epoch()
                record = self._end_epoch()
                if self.on_epoch_end is not None:
                    self.on_epoch_end(record)
                if self._stop_signal is not None:  # _end_epoch has just checkpointed
                    raise TrainingInterrupted(self._stop_signal)
        return self.history

    def _train_epoch(self) -> None:
        order = epoch_permutation(len(self.dataset.train), self.seed, self.cursor.epoch)
        batches = order.to(self.device).split(self.batch_size)
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
                if self._stop_signal is not None:
                    self._checkpoint()
                    raise TrainingInterrupted(self._stop_signal)
                if self.cursor.batch == len(batches):
                    continue  # _end_epoch checks and checkpoints
                if self.cursor.step % self.max_bad_steps == 0:
                    self._check_guard()
                if self.checkpoint_every and self.cursor.step % self.checkpoint_every == 0:
                    self._checkpoint()

    def _step(self, index: Tensor) -> None:
        """One update of every parameter group; a non-finite step changes nothing but counters."""
        if not self.model.training:  # train() walks every module: only after an evaluation
            self.model.train()
        x = self.train_x[index]
        if self.dataset.binarize == "dynamic":
            x = torch.bernoulli(x, generator=self.generator)  # fresh pixels every epoch
        lr = self.lr_scale * learning_rate(
            self.cursor.step,
            self.total_steps,
            lr=self.lr,
            schedule=self.schedule,
            min_lr=self.min_lr,
        )
        loss = self.model.loss(
            x, kl_weight=kl_weight(self.cursor.step, self.warmup_steps), generator=self.generator
        )
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        names = list(loss.objectives)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        for i, name in enumerate(names):
            objective, params = loss.objectives[name], self.groups[name]
            objective.backward(inputs=params, retain_graph=i < len(names) - 1)
            if self.grad_clip is None:  # the norm is only the finiteness probe: no rescaling
                grads = [p.grad for p in params if p.grad is not None]
                norm = torch.nn.utils.get_total_norm(grads)
            else:
                norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            finite &= torch.isfinite(norm) & torch.isfinite(objective)
        found_inf = self.guard.record(finite)
        if self.masked_step:
            for opt in self.optimizers.values():  # fused Adam skips the update when it is 1
                opt.found_inf = found_inf  # type: ignore[attr-defined]
        elif not bool(finite):  # no fused kernel: decide on the host (one sync per step)
            return
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
        batch = x.shape[0]
        for key, value in loss.metrics.items():
            # where, not a product with the flag: NaN * 0 is NaN; a skipped step adds nothing.
            self._sums[key] = self._sums.get(key, 0) + torch.where(finite, value, 0.0) * batch
        self._count += finite * batch

    # ----------------------------------------------------------------- guard
    def _check_guard(self) -> None:
        """Read the device-side counters (the guard's one host sync) and roll back if needed."""
        worst = self.guard.worst_run()
        if worst >= self.max_bad_steps:
            self._rollback(f"{worst} consecutive steps with a non-finite loss or gradient")

    def _verify(self) -> None:
        """Act on the counters, then make sure no parameter or moment is NaN or infinite."""
        self._check_guard()
        tensors = list(self.model.state_dict().values())
        for opt in self.optimizers.values():
            for param_state in opt.state.values():
                tensors += [v for v in param_state.values() if isinstance(v, Tensor)]
        if not all_finite(tensors):
            self._rollback("the parameters or optimiser state became non-finite")

    def _rollback(self, reason: str) -> None:
        """Restore the last checkpointed model and optimisers with half the learning rate."""
        if self.rollbacks >= self.max_rollbacks or self._good is None:
            raise TrainingDiverged(
                f"training diverged: {reason}, after {self.rollbacks} rollback(s) to the last "
                "good state with a halved learning rate; lower train.lr, set train.grad_clip, "
                "or check the data. The last good checkpoint is kept."
            )
        self.model.load_state_dict(self._good["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(clone_tree(self._good["optimizers"][name]))
        self.rollbacks += 1
        self.lr_scale *= 0.5
        self.guard.reset_run()

    def _snapshot(self) -> dict[str, Any]:
        optimizers = {k: opt.state_dict() for k, opt in self.optimizers.items()}
        return clone_tree({"model": self.model.state_dict(), "optimizers": optimizers})

    def _end_epoch(self) -> dict[str, float]:
        self._verify()  # no metrics or checkpoint of non-finite parameters
        count = max(int(self._count), 1)
        record: dict[str, float] = {"epoch": float(self.cursor.epoch + 1)}
        record.update({f"train/{k}": float(v) / count for k, v in self._sums.items()})
        record.update({f"val/{k}": v for k, v in self.evaluate(self.dataset.val).items()})
        record["lr"] = self.lr_scale * learning_rate(
            self.cursor.step,
            self.total_steps,
            lr=self.lr,
            schedule=self.schedule,
            min_lr=self.min_lr,
        )
        record["skipped_steps"] = float(self.guard.skipped)
        self.history.append(record)
        self.cursor = Cursor(epoch=self.cursor.epoch + 1, batch=0, step=self.cursor.step)
        self._sums = {}
        self._count.zero_()
        self._checkpoint()
        return record

    @torch.no_grad()
    def evaluate(self, split: Split) -> dict[str, float]:
        """Mean per-datapoint metrics (nats) over a split, with a fixed noise seed."""
        self.model.eval()
        generator = torch.Generator(self.device).manual_seed(self.seed + 1)
        sums: dict[str, Tensor] = {}
        for x in split.x.split(self.eval_batch_size):
            metrics = self.model.loss(x.to(self.device), generator=generator).metrics
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0) + value * x.shape[0]
        out = {k: float(v) / len(split) for k, v in sums.items()}
        num_dims = math.prod(self.dataset.event_shape)
        nll = -out["elbo"] if "elbo" in out else out["recon"]
        out["bits_per_dim"] = nll / (num_dims * math.log(2.0))
        return out

    def _checkpoint(self) -> None:
        """Verify the state, keep it as the rollback target and hand it to ``on_checkpoint``."""
        self._verify()
        self._good = self._snapshot()
        if self.on_checkpoint is not None:
            self.on_checkpoint(self)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM: first sets a flag (checkpoint at the next batch), second exits now."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: object) -> None:
            if self._stop_signal is not None:
                raise SystemExit(128 + signum)  # second signal: out now; files are atomic
            self._stop_signal = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
