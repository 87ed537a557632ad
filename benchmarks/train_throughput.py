"""Training throughput: the canonical pytorch/examples VAE loop vs ``vaekit train``, one run.

Same model (784-400-20 ReLU, sigmoid/BCE, analytic KL), same data (MNIST 60k grey), batch 128,
Adam 1e-3, same number of epochs; both evaluate the 10k test images after every epoch. vaekit
runs as ``vaekit train --config configs/pytorch-examples.toml`` does (``vaekit.train``: the run
directory, a checkpoint and the log line every epoch). Prints
one JSON object with seconds per epoch, the speed-up, effective GFLOP/s against a matmul rate
measured in the same run, and peak memory.

    python -m benchmarks.train_throughput --epochs 3
    python -m benchmarks.train_throughput --epochs 3 --device cuda   # benchmark 3, on a GPU
    python -m benchmarks.train_throughput --epochs 3 --device cuda --precision bfloat16
    python -m benchmarks.train_throughput --epochs 3 --accelerate off   # vaekit's reference path

On a GPU both loops run there (the canonical one moves each batch, as the script does) and the
JSON adds each loop's CUDA peak allocation.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

import vaekit
from benchmarks.common import machine, peak_rss_mib, sgemm_gflops
from vaekit import accel
from vaekit.build import build_dataset
from vaekit.config import load_config

ROOT = Path(__file__).parents[1]


class PerItemMNIST(Dataset):
    """Map-style dataset converting one PIL image per item, as torchvision's MNIST + ToTensor."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index], mode="L")
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return pixels.view(1, 28, 28).float().div(255), int(self.labels[index])


class ExamplesVAE(nn.Module):
    """pytorch/examples vae/main.py, verbatim in structure."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def examples_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def run_canonical(train: Dataset, test: Dataset, epochs: int, device: str) -> dict[str, object]:
    torch.manual_seed(1)
    model = ExamplesVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader = DataLoader(train, batch_size=128, shuffle=True)
    test_loader = DataLoader(test, batch_size=128, shuffle=False)
    epoch_seconds, test_losses = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for x, _ in train_loader:
            x = x.to(device)  # as the script does: data.to(device) per batch
            optimizer.zero_grad()
            recon, mu, logvar = model(x)
            loss = examples_loss(recon, x, mu, logvar)
            loss.backward()
            loss.item()  # the script accumulates train_loss += loss.item() every batch
            optimizer.step()
        model.eval()
        total = 0.0
        with torch.no_grad():
            for x, _ in test_loader:
                x = x.to(device)
                recon, mu, logvar = model(x)
                total += examples_loss(recon, x, mu, logvar).item()
        epoch_seconds.append(time.perf_counter() - start)
        test_losses.append(total / len(test))
    return {"epoch_seconds": epoch_seconds, "test_loss": test_losses}


def run_vaekit(
    epochs: int,
    device: str,
    precision: str = "float32",
    compile: bool = False,
    accelerate: str = "auto",
) -> dict[str, object]:
    """``vaekit train`` as a user runs it: the recipe, a run directory with a checkpoint every
    epoch, the per-epoch log line; timed from the start of training to each epoch's line."""
    overrides = [
        f"train.epochs={epochs}",
        f"train.device={device!r}",
        f"train.precision={precision!r}",
        f"train.compile={str(compile).lower()}",
        f"train.accelerate={accelerate!r}",
        "train.eval_batch_size=1000",
    ]
    config = load_config(ROOT / "configs" / "pytorch-examples.toml", overrides)
    marks: list[float] = []
    lines: list[str] = []

    def mark(line: str) -> None:
        if line.startswith("epoch"):
            marks.append(time.perf_counter())
            lines.append(line)

    with tempfile.TemporaryDirectory() as tmp:
        marks.append(time.perf_counter())
        vaekit.train(config, Path(tmp) / "run", progress=False, log=mark)
        metrics = [json.loads(row) for row in (Path(tmp) / "run" / "metrics.jsonl").open()]
        gradients = json.loads((Path(tmp) / "run" / "provenance.json").read_text())["gradients"]
    seconds = [b - a for a, b in itertools.pairwise(marks[: epochs + 1])]
    return {
        "epoch_seconds": seconds,
        "test_loss": [row["val/loss"] for row in metrics],
        "gradients": gradients,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-canonical", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both loops")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (benchmark 3: GPU path)")
    parser.add_argument(
        "--precision", default="float32", choices=["float32", "bfloat16"], help="vaekit's loop"
    )
    parser.add_argument(
        "--compile", action="store_true", help="vaekit's train.compile (compiled in epoch 1)"
    )
    parser.add_argument(
        "--accelerate", choices=accel.ACCELERATE_MODES, default="auto",
        help="vaekit's train.accelerate",
    )  # fmt: skip
    args = parser.parse_args()
    retained = accel.retain_freed_memory()  # as the CLI does
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    config = load_config(ROOT / "configs" / "pytorch-examples.toml")
    dataset = build_dataset(config.data, config.train.seed)
    to_uint8 = lambda x: (x.squeeze(1) * 255).round().to(torch.uint8).numpy()  # noqa: E731
    train = PerItemMNIST(to_uint8(dataset.train.x), dataset.train.y.numpy())
    test = PerItemMNIST(to_uint8(dataset.test.x), dataset.test.y.numpy())

    params = 784 * 400 + 400 * 40 + 20 * 400 + 400 * 784
    flops_per_epoch = 6.0 * params * len(train)  # forward 2, backward 4 FLOPs per weight
    result: dict[str, object] = {"benchmark": "train_throughput", "machine": machine()}
    result["retain_freed_memory"] = retained
    result["device"] = args.device
    result["precision_vaekit"] = args.precision
    result["compile_vaekit"] = args.compile
    result["accelerate_vaekit"] = args.accelerate
    result["sgemm_gflops"] = sgemm_gflops(device=args.device)
    result["model_flops_per_epoch_gflop"] = flops_per_epoch / 1e9
    result["matmul_floor_seconds_per_epoch"] = flops_per_epoch / 1e9 / result["sgemm_gflops"]
    if args.precision == "bfloat16":  # the floor of the same work in bfloat16 matmuls
        low_rate = sgemm_gflops(device=args.device, dtype=torch.bfloat16)
        result["bfloat16_gemm_gflops"] = low_rate
        result["bfloat16_matmul_floor_seconds_per_epoch"] = flops_per_epoch / 1e9 / low_rate
    runs = {
        "vaekit": run_vaekit(
            args.epochs, args.device, args.precision, args.compile, args.accelerate
        )
    }
    if args.device != "cpu":
        result["cuda_max_allocated_mib_vaekit"] = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    if not args.skip_canonical:
        runs["canonical"] = run_canonical(train, test, args.epochs, args.device)
        if args.device != "cpu":
            result["cuda_max_allocated_mib_canonical"] = torch.cuda.max_memory_allocated() / 2**20
    for run in runs.values():
        steady = run["epoch_seconds"][1:] or run["epoch_seconds"]  # type: ignore[index]
        per_epoch = float(np.median(steady))
        run["seconds_per_epoch"] = per_epoch
        run["effective_gflops"] = flops_per_epoch / 1e9 / per_epoch
        run["ratio_to_floor"] = per_epoch / result["matmul_floor_seconds_per_epoch"]
    if args.precision == "bfloat16":
        runs["vaekit"]["ratio_to_bfloat16_floor"] = (
            runs["vaekit"]["seconds_per_epoch"] / result["bfloat16_matmul_floor_seconds_per_epoch"]
        )
    if "canonical" in runs:
        result["speedup_vs_canonical"] = (
            runs["canonical"]["seconds_per_epoch"] / runs["vaekit"]["seconds_per_epoch"]
        )
    result["runs"] = runs
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
