"""What the non-finite guard costs per training step, against an unguarded loop.

Four ways to take the same Adam step on the same model and batches:

- ``unguarded``: loss, backward, ``Adam.step()`` (torch's default kernel); no check at all.
- ``unguarded-fused``: the same with ``Adam(fused=True)``, to separate kernel from guard.
- ``host-checked``: vaekit's trainer where no fused kernel exists: ``bool(finite)`` every step,
  a host synchronisation (the guard before this benchmark was written).
- ``device-masked``: vaekit's trainer on CPU/CUDA: the flag goes to fused Adam as
  ``found_inf`` and to device-side counters; no synchronisation.

The two trainer variants also do the trainer's other per-step work (schedules, gradient norm,
metric sums), so ``guard_ops_only`` times the guard's own tensor operations in isolation. They
train with ``accelerate="off"`` by default (``--accelerate``): autograd gradients and
``Adam.step()``, as the unguarded loops; with ``"auto"`` the MLP VAEs take vaekit.accel's
hand-derived gradients, which changes more than the guard.
Prints one JSON object: median milliseconds per step over ``--repeats`` timed blocks, and the
overheads against ``unguarded``. Rerun with

    python -m benchmarks.nonfinite_guard [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

import vaekit.training.trainer as trainer_module
from benchmarks.common import machine, trainer_step
from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.data.base import Dataset, Split
from vaekit.training.guard import NonFiniteGuard
from vaekit.training.trainer import Trainer

MODELS = {
    # 8x8 digits, the default recipe's network: a step is dominated by fixed overheads.
    "digits-mlp-256-128": (ModelConfig(), (1, 8, 8), 64),
    # The pytorch/examples MNIST VAE: 784-400-20, batch 128.
    "mnist-mlp-400": (
        ModelConfig(hidden=(400,), latent_dim=20, activation="relu"),
        (1, 28, 28),
        128,
    ),
}


def synthetic(event_shape: tuple[int, int, int], num_points: int, device: str) -> Dataset:
    x = torch.rand(num_points, *event_shape, generator=torch.Generator().manual_seed(0))
    split = Split(x=x)
    return Dataset("synthetic", split, split, split, "unit", "none", "benchmark")


def time_steps(
    steps: dict[str, Callable[[torch.Tensor], None]],
    batches: list[torch.Tensor],
    device: str,
    repeats: int,
) -> dict[str, float]:
    """Median milliseconds per step of each variant over ``repeats`` passes through ``batches``.

    The variants take turns, block by block, so a change in machine load hits them alike.
    """

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for step in steps.values():
        for index in batches[:5]:  # warm-up: optimiser state, allocator, kernels
            step(index)
    sync()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for index in batches:
                step(index)
            sync()
            times[name].append((time.perf_counter() - start) / len(batches) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def make_trainer(
    config: ModelConfig, dataset: Dataset, batch: int, device: str, accelerate: str = "off"
) -> Trainer:
    torch.manual_seed(0)
    model = build_model(config, dataset.event_shape)
    return Trainer(model, dataset, epochs=1, batch_size=batch, lr=1e-3, device=device,
                   progress=False, accelerate=accelerate)  # fmt: skip


def unguarded_step(trainer: Trainer, fused: bool) -> Callable[[torch.Tensor], None]:
    params = list(trainer.model.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3, fused=fused)
    train_x = trainer.dataset.train.x.to(trainer.device)

    def step(index: torch.Tensor) -> None:
        loss = trainer.model.loss(train_x[index], generator=trainer.generator)
        optimizer.zero_grad(set_to_none=True)
        loss.objectives["model"].backward()
        optimizer.step()

    return step


def guard_ops_step(device: str, num_metrics: int) -> Callable[[torch.Tensor], None]:
    """The guard's work in one step: finiteness flags, counters, masked metric sums."""
    guard = NonFiniteGuard(torch.device(device))
    norm, objective = torch.tensor(1.0, device=device), torch.tensor(2.0, device=device)
    metrics = [torch.tensor(float(i), device=device) for i in range(num_metrics)]
    count = torch.zeros((), dtype=torch.int64, device=device)
    sums: dict[int, torch.Tensor] = {}

    def step(index: torch.Tensor) -> None:
        nonlocal count
        finite = torch.ones((), dtype=torch.bool, device=device)
        finite &= torch.isfinite(norm) & torch.isfinite(objective)
        guard.record(finite)
        for i, value in enumerate(metrics):
            sums[i] = sums.get(i, 0) + torch.where(finite, value, 0.0) * 64
        count += finite * 64

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--accelerate", choices=("off", "auto"), default="off", help="the trainer variants' switch"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, object] = {"benchmark": "nonfinite_guard", "machine": machine()}
    result.update({"device": args.device, "steps_per_block": args.steps})
    result["accelerate"] = args.accelerate
    for name, (config, shape, batch) in MODELS.items():
        dataset = synthetic(shape, batch * args.steps, args.device)
        batches = list(torch.arange(batch * args.steps, device=args.device).split(batch))
        steps: dict[str, Callable[[torch.Tensor], None]] = {}
        for variant in ("unguarded", "unguarded-fused"):
            trainer = make_trainer(config, dataset, batch, args.device)
            steps[variant] = unguarded_step(trainer, fused=variant.endswith("fused"))
        masked = trainer_module.MASKABLE_DEVICES
        for variant, devices in (("host-checked", ()), ("device-masked", masked)):
            trainer_module.MASKABLE_DEVICES = devices
            trainer = make_trainer(config, dataset, batch, args.device, args.accelerate)
            assert trainer.masked_step == (variant == "device-masked")
            steps[variant] = lambda index, trainer=trainer: trainer_step(trainer, index)
        trainer_module.MASKABLE_DEVICES = masked
        num_metrics = len(trainer.model.loss(dataset.train.x[:2].to(args.device)).metrics)
        steps["guard_ops_only"] = guard_ops_step(args.device, num_metrics)
        ms = time_steps(steps, batches, args.device, args.repeats)
        base = ms["unguarded"]
        result[name] = {
            "batch_size": batch,
            "ms_per_step": {k: round(v, 4) for k, v in ms.items()},
            "overhead_vs_unguarded": {
                k: round(ms[k] / base - 1, 4)
                for k in ("unguarded-fused", "host-checked", "device-masked")
            },
            "guard_ops_share_of_device_masked_step": round(
                ms["guard_ops_only"] / ms["device-masked"], 4
            ),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
