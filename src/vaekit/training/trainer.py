"""The one training loop: any Autoencoder, one optimiser per parameter group, exact resume.

The loop never asks which model it trains: it calls ``model.loss`` and steps one Adam per entry
of ``Loss.objectives``. Data stay tensors on the device and are batched by index permutation;
each epoch's permutation is a function of (seed, epoch), and every random draw in the step comes
from one explicit generator, so a saved (epoch, batch) cursor plus the generator states resume a
run bitwise.
"""

from __future__ import annotations

import copy
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
from vaekit.models.base import Autoencoder
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
    epoch, on interruption); ``on_epoch_end(record)`` receives each epoch's metrics row.
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
        self.max_bad_steps, self.max_rollbacks = max_bad_steps, max_rollbacks
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.on_epoch_end, self.on_checkpoint = on_epoch_end, on_checkpoint
        self.train_x = dataset.train.x.to(self.device)
        self.steps_per_epoch = math.ceil(len(dataset.train) / batch_size)
        self.total_steps = self.steps_per_epoch * epochs
        self.warmup_steps = round(warmup_epochs * self.steps_per_epoch)
        self.groups = model.parameter_groups()
        self.optimizers = {
            name: torch.optim.Adam(
                params, lr=lr, betas=adam_betas, eps=adam_eps, weight_decay=weight_decay
            )
            for name, params in self.groups.items()
        }
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.numpy_rng = np.random.default_rng(seed)
        self.cursor = Cursor()
        self.history: list[dict[str, float]] = []
        self.lr_scale = 1.0
        self.bad_steps = self.skipped_steps = self.rollbacks = 0
        self._sums: dict[str, Tensor] = {}
        self._count = 0
        self._good: dict[str, Any] | None = None
        self._stop_signal: int | None = None

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bitwise: weights, optimisers, cursor, RNGs, history."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "cursor": vars(self.cursor).copy(),
            "history": list(self.history),
            "sums": {k: v.detach().clone() for k, v in self._sums.items()},
            "count": self._count,
            "lr_scale": self.lr_scale,
            "counters": [self.bad_steps, self.skipped_steps, self.rollbacks],
            "rng": {
                "generator": self.generator.get_state(),
                "torch": torch.get_rng_state(),
                "numpy": self.numpy_rng.bit_generator.state,
                "python": random.getstate(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by ``state_dict`` (exact resume)."""
        self.model.load_state_dict(state["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.cursor = Cursor(**state["cursor"])
        self.history = list(state["history"])
        self._sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self._count = int(state["count"])
        self.lr_scale = float(state["lr_scale"])
        self.bad_steps, self.skipped_steps, self.rollbacks = state["counters"]
        rng = state["rng"]
        self.generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        self.numpy_rng.bit_generator.state = rng["numpy"]
        random.setstate(rng["python"])

    # ------------------------------------------------------------------ loop
    def fit(self) -> list[dict[str, float]]:
        """Train until ``epochs`` are done; returns the per-epoch metric rows."""
        with self._signals():
            while self.cursor.epoch < self.epochs:
                self._train_epoch()
                record = self._end_epoch()
                if self.on_epoch_end is not None:
                    self.on_epoch_end(record)
        return self.history

    def _train_epoch(self) -> None:
        order = epoch_permutation(len(self.dataset.train), self.seed, self.cursor.epoch)
        batches = order.to(self.device).split(self.batch_size)
        if self.cursor.batch == 0:
            self._good = self.state_dict()  # the rollback target for non-finite steps
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

    def _step(self, index: Tensor) -> None:
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
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip or math.inf)
            finite &= torch.isfinite(norm) & torch.isfinite(objective)
        if not bool(finite):
            self._bad_step()
            return
        self.bad_steps = 0
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
        batch = x.shape[0]
        for key, value in loss.metrics.items():
            self._sums[key] = self._sums.get(key, 0) + value * batch
        self._count += batch

    def _bad_step(self) -> None:
        """Skip a non-finite step; after too many in a row roll back with half the lr."""
        self.bad_steps += 1
        self.skipped_steps += 1
        if self.bad_steps < self.max_bad_steps:
            return
        if self.rollbacks >= self.max_rollbacks or self._good is None:
            raise TrainingDiverged(
                f"{self.bad_steps} consecutive non-finite steps after {self.rollbacks} rollbacks "
                "with a halved learning rate; lower train.lr, set train.grad_clip, or check the "
                "data. The last good checkpoint is kept."
            )
        cursor, rollbacks = copy.copy(self.cursor), self.rollbacks + 1
        self.model.load_state_dict(self._good["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(self._good["optimizers"][name])
        self.cursor, self.rollbacks, self.bad_steps = cursor, rollbacks, 0
        self.lr_scale *= 0.5

    def _end_epoch(self) -> dict[str, float]:
        count = max(self._count, 1)
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
        record["skipped_steps"] = float(self.skipped_steps)
        self.history.append(record)
        self.cursor = Cursor(epoch=self.cursor.epoch + 1, batch=0, step=self.cursor.step)
        self._sums, self._count = {}, 0
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
