"""Per-step cost of the 784-400-20 VAE along the trainer's two gradient paths, subnormals on/off.

"direct": ``vaekit.accel.DirectELBO`` writes its hand-derived gradients in place (the trainer's
path for this model with ``train.accelerate = "auto"``); "distributions": autograd through
``torch.distributions`` (the path of every other model, and of every model with
``accelerate = "off"``), here with the trainer's other speed-ups kept (subnormals flushed) so
that only the gradient path differs. ``--with-dreg`` adds
"direct, dreg": the direct path with ``model.gradient_estimator = "dreg"``; ``--with-bfloat16``
adds "direct, bfloat16": the direct path with ``train.precision = "bfloat16"``;
``--with-compile`` adds a ", compiled" twin of every direct variant (``train.compile``, compiled
during the warm-up steps).

One process, interleaved blocks of 40 trainer steps so that the machine's drift hits every
variant alike; prints the minimum and median ms/step of each variant as JSON (``--out FILE``
also writes it there).

    python -m benchmarks.train_step --blocks 10
    python -m benchmarks.train_step --config configs/iwae-paper-vae.toml --particles 5 \
        --batch-size 100 --threads 1 --warmup-steps 20 --block-steps 20 --blocks 4 --with-dreg
    python -m benchmarks.train_step --config configs/iwae-paper-vae.toml --particles 8 \
        --set "model.bound='miwae'" --set model.bound_groups=8 --batch-size 20 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import emit, machine, peak_rss_mib, trainer_step
from vaekit import accel
from vaekit.accel.cpu import on_every_thread
from vaekit.build import build_dataset, build_model
from vaekit.config import load_config
from vaekit.training.trainer import Trainer

ROOT = Path(__file__).parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--block-steps", type=int, default=40)
    parser.add_argument("--warmup-steps", type=int, default=600, help="lets subnormals appear")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "pytorch-examples.toml")
    parser.add_argument("--particles", type=int, default=None, help="k (default: the recipe's)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--with-dreg", action="store_true", help='add "direct, dreg"')
    parser.add_argument(
        "--with-bfloat16", action="store_true", help='add "direct, bfloat16" (train.precision)'
    )
    parser.add_argument(
        "--with-compile", action="store_true", help='add "..., compiled" (train.compile)'
    )
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    retained = accel.retain_freed_memory()  # as the CLI does
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = load_config(args.config, args.set)
    if args.particles is not None:
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, num_particles=args.particles)
        )
    dataset = build_dataset(config.data, config.train.seed)
    order = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(0))
    batches = order.split(args.batch_size)
    trainers = {}
    names = ["direct", "distributions"] + ["direct, dreg"] * args.with_dreg
    names += ["direct, bfloat16"] * args.with_bfloat16
    names += [
        f"{name}, compiled" for name in names if name.startswith("direct")
    ] * args.with_compile
    for name in names:
        torch.manual_seed(0)
        model_config = config.model
        if name.startswith("direct, dreg"):
            model_config = dataclasses.replace(model_config, gradient_estimator="dreg")
        model = build_model(model_config, dataset.event_shape)
        precision = "bfloat16" if name.startswith("direct, bfloat16") else "float32"
        trainer = Trainer(
            model, dataset, epochs=1, batch_size=args.batch_size, lr=1e-3, seed=1,
            progress=False, precision=precision, compile=name.endswith("compiled"),
        )  # fmt: skip
        assert trainer.gradient_path == "direct", "the recipe's model has no direct path"
        if name == "distributions":
            trainer.direct = None  # autograd; the rest of accelerate="auto" stays
        trainers[name] = trainer
        for i in range(args.warmup_steps):
            trainer_step(trainer, batches[i % len(batches)])
    variants = (
        [
            ("direct", True),
            ("direct", False),
            ("distributions", True),
        ]
        + [("direct, dreg", True)] * args.with_dreg
        + [("direct, bfloat16", True)] * args.with_bfloat16
        + [(name, True) for name in names if name.endswith("compiled")]
    )
    timings: dict[str, list[float]] = {}
    for block in range(args.blocks):
        for name, flush in variants:
            on_every_thread(lambda: torch.set_flush_denormal(flush))  # noqa: B023 (runs now)
            start = time.perf_counter()
            for i in range(args.block_steps):
                index = batches[(block * args.block_steps + i) % len(batches)]
                trainer_step(trainers[name], index)
            key = f"{name}, subnormals {'flushed' if flush else 'kept'}"
            timings.setdefault(key, []).append(
                1e3 * (time.perf_counter() - start) / args.block_steps
            )
    on_every_thread(lambda: torch.set_flush_denormal(False))
    result = {
        "benchmark": "train_step",
        "machine": machine(),
        "recipe": str(args.config),
        "overrides": args.set,
        "num_particles": config.model.num_particles,
        "batch_size": args.batch_size,
        "retain_freed_memory": retained,
        "ms_per_step": {
            k: {"min": min(v), "median": statistics.median(v)} for k, v in timings.items()
        },
        "peak_rss_mib": peak_rss_mib(),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
