"""Conv VAE training throughput on 28x28 MNIST: ``vaekit.fit`` against a plain PyTorch loop.

The model is the recipes' conv VAE (configs/mnist-vae.toml with ``model.network = "conv"``):
two stride-2 4x4 convolutions (32, 64 channels), Gaussian q(z|x) with 10 latents, a linear layer
to 64x7x7 and two transposed convolutions to Bernoulli logits; Adam 1e-3, betas (0.5, 0.999),
batch 64, constant learning rate, the first ``--limit`` training images, a validation pass over
the recipe's 5,000 validation images after every epoch. Both sides start from the same weights.

- "vaekit": ``vaekit.fit(model, train_x, val_x, out=<temporary run directory>, ...)`` on the
  uint8 images, timed per epoch from a callback (so each epoch includes the validation, the
  checkpoint and the log; the figures written after the last epoch are reported apart).
- "plain": the loop as users write it: an ``nn.Module`` with the same layers, a map-style
  Dataset returning one float tensor per uint8 image (as torchvision's ``ToTensor``), a
  shuffling ``DataLoader(batch_size=64)``, autograd, ``torch.optim.Adam``, ``loss.item()`` per
  batch and a validation pass (batch 64) per epoch.
- the floor: the compute no loop around these layers avoids: forward, loss and backward on one
  batch already in memory (no data loading, no optimiser, no host syncs), times the steps per
  epoch, plus the validation forward passes. Each side measures it after each of its epochs (in
  the same process, outside the timed epoch), so "over_floor" is immune to the machine's drift;
  a third process ("floor") adds the same FLOPs at the float32 sgemm rate (the matmul floor)
  and the operators that take the time (torch's profiler).

Each side runs in its own process (peak RSS is per process), one after the other. Seconds per
epoch are the median of the epochs after the first (compilation and warm-up). Prints one JSON
object; ``--out FILE`` also writes it there.

    python -m benchmarks.conv_throughput --epochs 5 --out benchmarks/results/conv-throughput.json
    python -m benchmarks.conv_throughput --compile   # vaekit's train.compile
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

import vaekit
from benchmarks.common import emit, machine, peak_rss_mib, sgemm_gflops, steady
from vaekit import accel
from vaekit.build import build_dataset
from vaekit.config import Config, load_config

ROOT = Path(__file__).parents[1]
RECIPE = ROOT / "configs" / "mnist-vae.toml"
BATCH_SIZE = 64
EVAL_BATCH_SIZE = 1000  # vaekit's train.eval_batch_size default
SIDES = ("vaekit", "plain", "floor")


def recipe() -> Config:
    """The MNIST VAE recipe with the conv networks."""
    return load_config(RECIPE, ["model.network='conv'"])


def save_images(limit: int | None, path: Path) -> None:
    """Write uint8 training images [N, 1, 28, 28] (the first ``limit``) and validation images
    to ``path`` (.npz), as a user holds MNIST before any conversion. The sides read this file, so
    their peak RSS is that of training, not of decoding the MNIST files."""
    config = recipe()
    dataset = build_dataset(config.data, config.train.seed)
    to_uint8 = lambda x: (x * 255).round().to(torch.uint8).numpy()  # noqa: E731
    np.savez(path, train=to_uint8(dataset.train.x[:limit]), val=to_uint8(dataset.val.x))


def images(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation images written by ``save_images``."""
    with np.load(path) as arrays:
        return arrays["train"], arrays["val"]


class ImageItems(Dataset):
    """Map-style dataset: one float tensor [1, 28, 28] in [0, 1] per uint8 image."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tensor:
        return torch.from_numpy(self.images[index]).float().div(255)


class PlainConvVAE(nn.Module):
    """The recipe's conv VAE written out as a plain module (same layers, same order)."""

    def __init__(self, latent_dim: int = 10):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        self.loc = nn.Linear(64 * 7 * 7, latent_dim)
        self.log_var = nn.Linear(64 * 7 * 7, latent_dim)
        self.project = nn.Linear(latent_dim, 64 * 7 * 7)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.encoder(x)  # [B, 3136]
        loc, log_var = self.loc(h), self.log_var(h)  # [B, D]
        z = loc + torch.randn_like(loc) * torch.exp(0.5 * log_var)
        logits = self.decoder(F.relu(self.project(z)).view(-1, 64, 7, 7))  # [B, 1, 28, 28]
        return logits, loc, log_var


def plain_loss(x: Tensor, logits: Tensor, loc: Tensor, log_var: Tensor) -> Tensor:
    """Negative ELBO per datapoint: Bernoulli cross-entropy summed over pixels + analytic KL."""
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + log_var - loc.pow(2) - log_var.exp())
    return (recon + kl) / len(x)


def start_weights(seed: int) -> tuple[nn.Module, PlainConvVAE]:
    """vaekit's conv VAE and the plain module holding the same initial weights."""
    config = recipe()
    torch.manual_seed(seed)
    model = vaekit.build_model(config.model, (1, 28, 28))
    plain = PlainConvVAE(config.model.latent_dim)
    pairs = list(zip(model.parameters(), plain.parameters(), strict=True))
    assert all(a.shape == b.shape for a, b in pairs), "the plain module's layers differ"
    with torch.no_grad():
        for a, b in pairs:
            b.copy_(a)
    return model, plain


class Floor:
    """The compute of one epoch without the loop: forward, loss and backward of the plain module
    on one batch already in memory, and the validation forward passes in batches of
    ``eval_batch_size`` (as the side being compared validates, so its memory peak is the same)."""

    def __init__(self, train_x: np.ndarray, val_x: np.ndarray, seed: int, eval_batch_size: int):
        _, self.model = start_weights(seed)
        self.x = torch.from_numpy(train_x[:BATCH_SIZE]).float().div(255)
        self.val_x, self.eval_batch_size = val_x, eval_batch_size
        self.steps = -(-len(train_x) // BATCH_SIZE)

    def forward_backward(self) -> None:
        self.model.zero_grad(set_to_none=True)
        plain_loss(self.x, *self.model(self.x)).backward()

    @torch.no_grad()
    def validate(self) -> None:
        for start in range(0, len(self.val_x), self.eval_batch_size):
            batch = self.val_x[start : start + self.eval_batch_size]
            x = torch.from_numpy(batch).float().div(255)
            plain_loss(x, *self.model(x))

    def seconds_per_epoch(self, reps: int = 10, blocks: int = 3) -> float:
        """Measured now: steps x forward-backward + validation."""
        step_ms = median_ms(self.forward_backward, reps=reps, blocks=blocks)
        return (self.steps * step_ms + median_ms(self.validate, reps=1, blocks=1)) / 1e3


def run_vaekit(args: argparse.Namespace) -> dict[str, object]:
    train_x, val_x = images(args.data)
    model, _ = start_weights(args.seed)
    floor = Floor(train_x, val_x, args.seed, EVAL_BATCH_SIZE)
    marks: list[tuple[float, float]] = []  # (epoch ended, next epoch started)
    records: list[dict[str, float]] = []
    floors: list[float] = []
    rss: list[float] = []

    def mark(record: dict[str, float]) -> None:
        end = time.perf_counter()
        records.append(record)
        rss.append(peak_rss_mib())
        floors.append(floor.seconds_per_epoch())  # timed apart from the epochs
        marks.append((end, time.perf_counter()))

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        vaekit.fit(
            model, torch.from_numpy(train_x), torch.from_numpy(val_x), out=Path(tmp) / "run",
            callbacks=[mark], progress=False, epochs=args.epochs, batch_size=BATCH_SIZE,
            lr=1e-3, adam_betas=(0.5, 0.999), schedule="constant", warmup_epochs=0,
            seed=args.seed, precision=args.precision, compile=args.compile,
            accelerate=args.accelerate, num_threads=args.threads,
        )  # fmt: skip
        end = time.perf_counter()
    starts = [start] + [resumed for _, resumed in marks[:-1]]
    return {
        "epoch_seconds": [ended - began for began, (ended, _) in zip(starts, marks, strict=True)],
        "floor_seconds": floors,
        "after_last_epoch_seconds": end - marks[-1][1],  # figures of the run directory
        "peak_rss_mib_before_figures": rss[-1],
        "train_loss": [r["train/loss"] for r in records],
        "val_loss": [r["val/loss"] for r in records],
    }


def run_plain(args: argparse.Namespace) -> dict[str, object]:
    train_x, val_x = images(args.data)
    _, model = start_weights(args.seed)
    floor = Floor(train_x, val_x, args.seed, BATCH_SIZE)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    train_loader = DataLoader(ImageItems(train_x), batch_size=BATCH_SIZE, shuffle=True)
    val_loader = DataLoader(ImageItems(val_x), batch_size=BATCH_SIZE)
    epoch_seconds, floors, train_losses, val_losses = [], [], [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        total = 0.0
        for x in train_loader:
            optimizer.zero_grad()
            loss = plain_loss(x, *model(x))
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
        model.eval()
        val_total = 0.0
        with torch.no_grad():
            for x in val_loader:
                val_total += plain_loss(x, *model(x)).item() * len(x)
        epoch_seconds.append(time.perf_counter() - start)
        floors.append(floor.seconds_per_epoch())
        train_losses.append(total / len(train_x))
        val_losses.append(val_total / len(val_x))
    return {
        "epoch_seconds": epoch_seconds,
        "floor_seconds": floors,
        "train_loss": train_losses,
        "val_loss": val_losses,
    }


def median_ms(step, reps: int, blocks: int = 5) -> float:
    """Median over ``blocks`` of the mean milliseconds of ``step()`` over ``reps`` calls."""
    step()
    timings = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(reps):
            step()
        timings.append(1e3 * (time.perf_counter() - start) / reps)
    return statistics.median(timings)


def macs_per_image(model: nn.Module, x: Tensor) -> dict[str, int]:
    """Multiply-accumulates per image of each convolution and linear layer, one forward pass."""
    macs: dict[str, int] = {}

    def counter(name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            weights = module.weight  # Conv2d [out, in, k, k], ConvTranspose2d [in, out, k, k]
            if isinstance(module, nn.Linear):
                macs[name] = weights.numel()
            else:  # a conv's every output value, a transposed conv's every input value
                values = output[0] if isinstance(module, nn.Conv2d) else inputs[0][0]
                macs[name] = values.numel() * weights[0].numel()

        return hook

    layers = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    named = [(name, m) for name, m in model.named_modules() if isinstance(m, layers)]
    handles = [module.register_forward_hook(counter(name)) for name, module in named]
    with torch.no_grad():
        model(x[:1])
    for handle in handles:
        handle.remove()
    return macs


def top_ops_ms(step, reps: int = 10, count: int = 10) -> dict[str, float]:
    """The ``count`` operators (forward and backward, keyed by name and input shapes, so by
    layer) with most self CPU time in ``step()``, in ms per call, from torch's profiler."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, record_shapes=True) as profile:
        for _ in range(reps):
            step()
    events = profile.key_averages(group_by_input_shape=True)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:count]
    return {f"{e.key} {e.input_shapes[:2]}": e.self_cpu_time_total / 1e3 / reps for e in top}


def run_floor(args: argparse.Namespace) -> dict[str, object]:
    train_x, val_x = images(args.data)
    floor = Floor(train_x, val_x, args.seed, EVAL_BATCH_SIZE)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    floor.forward_backward()
    optimizer = torch.optim.Adam(floor.model.parameters(), lr=1e-3, betas=(0.5, 0.999), fused=True)
    step_ms = median_ms(floor.forward_backward, reps=20)
    macs = macs_per_image(floor.model, floor.x)
    # forward 2 FLOPs per multiply-accumulate, backward 4 (input and weight gradients)
    gflop = 2e-9 * sum(macs.values()) * (3 * len(train_x) + len(val_x))
    rate = sgemm_gflops()
    return {
        "macs_per_image": macs,
        "gflop_per_epoch": gflop,
        "sgemm_gflops": rate,
        "matmul_floor_seconds_per_epoch": gflop / rate,  # these FLOPs at the 2048^3 sgemm rate
        "forward_backward_gflops": 6e-9 * sum(macs.values()) * BATCH_SIZE / (step_ms / 1e3),
        "top_ops_ms_per_forward_backward": top_ops_ms(floor.forward_backward),
        "forward_backward_ms_per_batch": step_ms,
        "fused_adam_ms_per_step": median_ms(optimizer.step, reps=50),
        "steps_per_epoch": floor.steps,
        "train_images": len(train_x),
        "val_images": len(val_x),
        "seconds_per_epoch": floor.seconds_per_epoch(reps=20, blocks=5),
    }


def run_side(side: str, args: argparse.Namespace) -> dict[str, object]:
    """Run ``side`` in this process; adds its peak RSS and thread count."""
    accel.retain_freed_memory()  # as the CLI does
    runner = {"vaekit": run_vaekit, "plain": run_plain, "floor": run_floor}[side]
    result = runner(args)
    result["torch_threads"] = torch.get_num_threads()
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def in_child(side: str, args: argparse.Namespace, data: Path) -> dict[str, object]:
    """Run ``side`` with ``args`` on ``data`` in a fresh Python process; returns its JSON."""
    argv = ["--epochs", str(args.epochs), "--seed", str(args.seed), "--data", str(data)]
    argv += ["--precision", args.precision, "--accelerate", args.accelerate]
    argv += ["--compile"] * args.compile + ["--threads", str(args.threads)] * bool(args.threads)
    command = [sys.executable, "-m", "benchmarks.conv_throughput", *argv, "--side", side]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=10_000, help="training images")
    parser.add_argument("--threads", type=int, default=None, help="torch threads, every side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="vaekit's train.compile")
    parser.add_argument(
        "--precision", default="float32", choices=["float32", "bfloat16"], help="vaekit's"
    )
    parser.add_argument(
        "--accelerate", choices=accel.ACCELERATE_MODES, default="auto", help="vaekit's"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one child's work
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)  # the child's images
    args = parser.parse_args()
    if args.side is not None:
        print(json.dumps(run_side(args.side, args)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mnist.npz"
        save_images(args.limit, data)
        sides = {side: in_child(side, args, data) for side in SIDES}
    vaekit_s = steady(sides["vaekit"]["epoch_seconds"])  # type: ignore[arg-type]
    plain_s = steady(sides["plain"]["epoch_seconds"])  # type: ignore[arg-type]
    floor = sides["floor"]
    # each epoch against the floor measured in the same process right after it (drift-proof)
    over_floor = {
        side: steady(
            [t / f for t, f in zip(run["epoch_seconds"], run["floor_seconds"], strict=True)]
        )  # type: ignore[call-overload]
        for side, run in sides.items()
        if side != "floor"
    }
    result: dict[str, object] = {
        "benchmark": "conv_throughput",
        "machine": machine(),
        "settings": {
            "recipe": "configs/mnist-vae.toml, model.network = 'conv'",
            "train_images": floor["train_images"],
            "val_images": floor["val_images"],
            "batch_size": BATCH_SIZE,
            "epochs": args.epochs,
            "threads": args.threads,
            "compile_vaekit": args.compile,
            "precision_vaekit": args.precision,
            "accelerate_vaekit": args.accelerate,
        },
        "seconds_per_epoch": {"vaekit": vaekit_s, "plain": plain_s},
        "speedup_vs_plain": plain_s / vaekit_s,
        # epoch / floor: plain's is the most a loop around these kernels can gain on it
        "over_floor": over_floor,
        "speedup_vs_plain_against_floor": over_floor["plain"] / over_floor["vaekit"],
        "plain_over_matmul_floor": plain_s / float(floor["matmul_floor_seconds_per_epoch"]),  # type: ignore[arg-type]
        "peak_rss_mib": {side: run["peak_rss_mib"] for side, run in sides.items()},
        "runs": sides,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
