"""An image folder streamed from its uint8 cache against the same folder held in memory.

Generates folders of 64x64 RGB PNGs (smooth colour gradients plus noise, so they compress like
photographs rather than like pure noise) and trains the same recipe on each with
``vaekit.train`` (what ``vaekit train --config`` runs): an MLP VAE (12288-128-16, Gaussian
p(x|z) with sigma 0.1), batch 64, Adam 1e-3, 10 % validation and 10 % test (scored in batches of
100, so that validation memory is the same for every folder size). Three ways, each in its own
Python process so that the peak resident memory (VmHWM) is that mode's alone:

- "in memory": ``data.in_memory = true``, every image decoded into one float32 tensor;
- "streamed, cache built": ``data.in_memory = false`` with an empty cache root, so the process
  decodes the folder into ``<root>/image-cache/<key>.npy`` first;
- "streamed, cache reused": the same again, reading the cache the previous process left.

Seconds per epoch are the median (and the minimum, the epoch least slowed by other processes on
a shared machine) of the epochs after the first, validation included; "seconds to first epoch"
is from the call to the end of the first epoch (listing, decoding or opening the cache, carving,
the dataset hash, model set-up and one epoch). Same seed, same data order: the
losses of every mode agree bit for bit. Prints one JSON object; ``--out FILE`` also writes it.

    python -m benchmarks.image_folder --out benchmarks/results/image-folder.json
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
from PIL import Image

import vaekit
from benchmarks.common import emit, machine, peak_rss_mib
from vaekit.config import load_config

ROOT = Path(__file__).parents[1]
SIDE = 64
RECIPE = """
name = "image-folder-benchmark"

[data]
name = "image-folder"
path = {path!r}
root = {root!r}
image_size = {side}
channels = 3
val_size = 0.1
in_memory = {in_memory}

[model]
kind = "vae"
latent_dim = 16
hidden = [128]
likelihood = "gaussian"
sigma = 0.1

[train]
epochs = {epochs}
batch_size = 64
lr = 1e-3
schedule = "constant"
warmup_epochs = 0
eval_batch_size = 100
seed = 0
device = "cpu"
"""
MODES = {
    "in memory": "true",
    "streamed, cache built": "false",
    "streamed, cache reused": "false",
}


def write_folder(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` 64x64 RGB PNGs: a random colour gradient per image plus pixel noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, SIDE)
    for i in range(count):
        corners = rng.uniform(0, 255, (2, 2, 3))
        rows = corners[0] * (1 - ramp)[:, None, None] + corners[1] * ramp[:, None, None]  # [S,2,3]
        image = (
            rows[:, None, 0] * (1 - ramp)[None, :, None] + rows[:, None, 1] * ramp[None, :, None]
        )
        image += rng.normal(0, 12, image.shape)
        pixels = np.clip(image, 0, 255).astype(np.uint8)  # [S, S, 3]
        path = folder / f"{i // 1000:03d}" / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)


def run_mode(args: argparse.Namespace) -> dict[str, object]:
    """Train once in this process as ``args.in_memory`` says; marks each epoch's end."""
    recipe = Path(args.work) / f"recipe-{args.in_memory}.toml"
    recipe.write_text(
        RECIPE.format(
            path=args.folder,
            root=args.root,
            side=SIDE,
            in_memory=args.in_memory,
            epochs=args.epochs,
        )
    )
    config = load_config(recipe)
    marks: list[float] = []
    losses: list[str] = []

    def log(line: str) -> None:
        if line.startswith("epoch"):
            marks.append(time.perf_counter())
            losses.append(line)

    out = Path(args.work) / f"run-{time.monotonic_ns()}"
    start = time.perf_counter()
    vaekit.train(config, out, progress=False, log=log)
    end = time.perf_counter()
    epochs = [b - a for a, b in itertools.pairwise(marks)]
    return {
        "seconds_to_first_epoch": marks[0] - start,
        "epoch_seconds_after_first": epochs,
        "seconds_per_epoch": statistics.median(epochs),
        "min_seconds_per_epoch": min(epochs),  # the least disturbed by other processes
        "after_last_epoch_seconds": end - marks[-1],  # the run's figures
        "epoch_lines": losses,
        "final_train_loss": json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])[
            "train/loss"
        ],
        "peak_rss_mib": peak_rss_mib(),
    }


def in_child(args: argparse.Namespace, work: Path, folder: Path, in_memory: str) -> dict:
    argv = ["--epochs", str(args.epochs), "--work", str(work), "--folder", str(folder)]
    argv += ["--root", str(work / "cache"), "--in-memory", in_memory]
    command = [sys.executable, "-m", "benchmarks.image_folder", *argv]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1500, 4500])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    # one mode's process
    for hidden in ("--work", "--folder", "--root", "--in-memory"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_memory is not None:
        print(json.dumps(run_mode(args)))
        return

    results: dict[str, dict[str, object]] = {}
    for count in args.images:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            started = time.perf_counter()
            write_folder(work / "images", count)
            written = time.perf_counter() - started
            runs = {
                name: in_child(args, work, work / "images", flag) for name, flag in MODES.items()
            }
            cache_mib = sum(p.stat().st_size for p in (work / "cache").rglob("*.npy")) / 2**20
        losses = {run["final_train_loss"] for run in runs.values()}
        results[f"{count} images"] = {
            "images": count,
            "float32_mib": count * 3 * SIDE * SIDE * 4 / 2**20,
            "cache_mib": cache_mib,
            "seconds_writing_pngs": written,
            "seconds_per_epoch": {name: run["seconds_per_epoch"] for name, run in runs.items()},
            "min_seconds_per_epoch": {
                name: run["min_seconds_per_epoch"] for name, run in runs.items()
            },
            "seconds_to_first_epoch": {
                name: run["seconds_to_first_epoch"] for name, run in runs.items()
            },
            "peak_rss_mib": {name: run["peak_rss_mib"] for name, run in runs.items()},
            "final_train_loss_equal": len(losses) == 1,
            "runs": runs,
        }
    emit(
        {
            "benchmark": "image_folder",
            "machine": machine(),
            "settings": {"side": SIDE, "epochs": args.epochs, "images": args.images},
            "results": results,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
