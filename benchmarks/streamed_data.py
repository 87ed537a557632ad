"""Streamed data against tensors: ``vaekit.fit`` on a map-style Dataset vs on the same tensors.

The pytorch/examples model (configs/pytorch-examples.toml: 784-400-20 ReLU VAE, Bernoulli
p(x|z) on grey MNIST, batch 128, Adam 1e-3, constant learning rate) trains on the same images,
held as float32 tensors in memory, in two ways:

- "tensors": ``vaekit.fit(model, train_x, val_x, out=...)`` (in memory, gathered by index);
- "streamed, W workers": ``vaekit.fit(model, Items(train_x), Items(val_x), in_memory=False,
  num_workers=W, out=...)``, a map-style Dataset returning one image per item, read through a
  DataLoader with W worker processes in the trainer's order (W = 0 reads in the main process).

Same seed, same data order, so the losses of every epoch agree. Each variant runs in its own
process, one after the other, in ``--repeats`` interleaved rounds (the machine's speed drifts
between processes); the validation pass over the 10k test images (held the same way) is part of
every epoch. Seconds per epoch are the median over the rounds of the epochs after each round's
first. Prints one JSON object; ``--out FILE`` also writes it there.

    python -m benchmarks.streamed_data --out benchmarks/results/streamed-data.json
    python -m benchmarks.streamed_data --accelerate off   # autograd through torch.distributions
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

import vaekit
from benchmarks.common import emit, machine, peak_rss_mib
from vaekit import accel
from vaekit.build import build_dataset
from vaekit.config import load_config

ROOT = Path(__file__).parents[1]
RECIPE = ROOT / "configs" / "pytorch-examples.toml"


class Items(Dataset):
    """Map-style dataset over a tensor held in memory: item i is x[i]."""

    def __init__(self, x: Tensor):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> Tensor:
        return self.x[index]


def save_images(limit: int | None, path: Path) -> None:
    """Write the recipe's training images (the first ``limit``) and test images, float32
    [N, 1, 28, 28], to ``path`` (.npz) for the variants' processes."""
    config = load_config(RECIPE)
    dataset = build_dataset(config.data, config.train.seed)
    np.savez(path, train=dataset.train.x[:limit].numpy(), val=dataset.val.x.numpy())


def run_variant(args: argparse.Namespace, workers: int | None) -> dict[str, object]:
    """Train once in this process: streamed through ``workers`` workers, or (None) on the
    tensors themselves."""
    accel.retain_freed_memory()  # as the CLI does
    with np.load(args.data) as arrays:
        train_x, val_x = torch.from_numpy(arrays["train"]), torch.from_numpy(arrays["val"])
    config = load_config(RECIPE)
    torch.manual_seed(args.seed)
    model = vaekit.build_model(config.model, tuple(train_x.shape[1:]))
    data = {"train": train_x, "val": val_x}
    options = {}
    if workers is not None:
        data = {"train": Items(train_x), "val": Items(val_x)}
        options = {"in_memory": False, "num_workers": workers}
    marks: list[float] = []
    records: list[dict[str, float]] = []
    rss: list[float] = []

    def mark(record: dict[str, float]) -> None:
        marks.append(time.perf_counter())
        records.append(record)
        rss.append(peak_rss_mib())

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        vaekit.fit(
            model, data["train"], data["val"], out=Path(tmp) / "run", callbacks=[mark],
            progress=False, epochs=args.epochs, batch_size=config.train.batch_size,
            lr=config.train.lr, schedule="constant", warmup_epochs=0, seed=args.seed,
            accelerate=args.accelerate, num_threads=args.threads, **options,
        )  # fmt: skip
        end = time.perf_counter()
    return {
        "epoch_seconds": [b - a for a, b in itertools.pairwise([start, *marks])],
        "after_last_epoch_seconds": end - marks[-1],
        "train_loss": [r["train/loss"] for r in records],
        "val_loss": [r["val/loss"] for r in records],
        "torch_threads": torch.get_num_threads(),
        # the main process (workers are apart), after training and after the run's figures
        "peak_rss_mib_before_figures": rss[-1],
        "peak_rss_mib": peak_rss_mib(),
    }


def in_child(args: argparse.Namespace, data: Path, workers: int | None) -> dict[str, object]:
    """One variant in a fresh Python process; returns its JSON."""
    argv = ["--epochs", str(args.epochs), "--seed", str(args.seed), "--data", str(data)]
    argv += ["--accelerate", args.accelerate]
    argv += ["--threads", str(args.threads)] * bool(args.threads)
    variant = "tensors" if workers is None else str(workers)
    command = [sys.executable, "-m", "benchmarks.streamed_data", *argv, "--variant", variant]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def steady_over(rounds: list[dict[str, object]]) -> float:
    """Median seconds per epoch over every round, each round's first epoch left out."""
    return statistics.median(
        t
        for run in rounds
        for t in run["epoch_seconds"][1:] or run["epoch_seconds"]  # type: ignore[index]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="training images (default all)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0, 2], help="num_workers values to stream with"
    )
    parser.add_argument("--threads", type=int, default=None, help="train.num_threads")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeats", type=int, default=2, help="rounds of all variants, interleaved (drift)"
    )
    parser.add_argument("--accelerate", choices=accel.ACCELERATE_MODES, default="auto")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    # a variant's process: "tensors", or the workers of a streamed run
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant is not None:
        workers = None if args.variant == "tensors" else int(args.variant)
        print(json.dumps(run_variant(args, workers)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mnist.npz"
        save_images(args.limit, data)
        with np.load(data) as arrays:
            sizes = {"train_images": len(arrays["train"]), "val_images": len(arrays["val"])}
        variants = {"tensors": None} | {f"streamed, {w} workers": w for w in args.workers}
        runs: dict[str, list[dict[str, object]]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, workers in variants.items():
                runs[name].append(in_child(args, data, workers))
    # the median of every round's epochs after the first
    per_epoch = {name: steady_over(rounds) for name, rounds in runs.items()}
    final = {name: [r["train_loss"][-1] for r in rounds] for name, rounds in runs.items()}  # type: ignore[index]
    result: dict[str, object] = {
        "benchmark": "streamed_data",
        "machine": machine(),
        "settings": {
            "recipe": "configs/pytorch-examples.toml",
            **sizes,
            "epochs": args.epochs,
            "repeats": args.repeats,
            "threads": args.threads,
            "accelerate": args.accelerate,
        },
        "seconds_per_epoch": per_epoch,
        "ratio_to_tensors": {
            name: seconds / per_epoch["tensors"]
            for name, seconds in per_epoch.items()
            if name != "tensors"
        },
        "final_train_loss": {name: losses[0] for name, losses in final.items()},
        "final_train_loss_equal": len({loss for losses in final.values() for loss in losses}) == 1,
        "peak_rss_mib": {
            name: max(r["peak_rss_mib"] for r in rounds) for name, rounds in runs.items()
        },  # type: ignore[type-var]
        "peak_rss_mib_before_figures": {
            name: max(r["peak_rss_mib_before_figures"] for r in rounds)  # type: ignore[type-var]
            for name, rounds in runs.items()
        },
        "runs": runs,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
