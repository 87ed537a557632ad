"""Helpers of the distributed suite: launch worker processes, and the SGD-equivalence setup.

Workers get torchrun's environment contract (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) from ``launch`` directly, without the torchrun agent, which saves its start-up;
the CLI test runs real torchrun. Every launch has a timeout so that a hang fails the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from vaekit.build import build_model
from vaekit.config import ModelConfig
from vaekit.data.base import Dataset, Split
from vaekit.training.distributed import World
from vaekit.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.toml"
WORKER = Path(__file__).with_name("worker.py")
LAUNCH_TIMEOUT = 120.0  # seconds; a healthy launch takes 5-20 s on 2 shared cores


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The parent's environment, one thread per child, no inherited process-group variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def launch(*args: str, nprocs: int = 2, timeout: float = LAUNCH_TIMEOUT) -> list[str]:
    """Run ``python worker.py args...`` as ranks 0..nprocs-1 of one group; returns their output.

    Fails the test with every rank's output if a rank exits non-zero or the launch times out.
    """
    port = str(free_port())
    procs = []
    for rank in range(nprocs):
        env = child_env(
            RANK=str(rank),
            WORLD_SIZE=str(nprocs),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE=str(nprocs),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), *args],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs, hung = [], False
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            hung = True
            for other in procs:
                other.kill()
            outputs.append(proc.communicate()[0])
    report = "\n".join(
        f"--- rank {r} (exit {p.returncode}):\n{o}"
        for r, (p, o) in enumerate(zip(procs, outputs, strict=False))
    )
    assert not hung, f"the launch hung for {timeout} s\n{report}"
    assert all(p.returncode == 0 for p in procs), report
    return outputs


# ------------------------------------------------------------ resume equality
# Tiny pPCA recipe: 240 training points, 6 steps per epoch at 2 ranks × 20; a checkpoint every 4
# steps, the ranks' stop flags compared every 5 steps, KL warm-up ending mid-run.
RESUME_RECIPE = (
    "data.name=ppca",
    "model.likelihood=gaussian",
    "train.batch_size=20",
    "train.epochs=2",
    "train.warmup_epochs=0.5",
    "train.checkpoint_every_steps=4",
    "train.max_bad_steps=5",
)
# One optimiser; two (autoencoder and discriminator). The AAE also averages its weights, one
# more piece of state every rank must restore.
RESUME_OVERRIDES = {"vae": ("model.kind=vae",), "aae": ("model.kind=aae", "train.ema_decay=0.9")}
RESUME_KINDS = tuple(RESUME_OVERRIDES)


# ----------------------------------------------------------- SGD equivalence
SGD_KINDS = ("ae", "aae")
NUM_TRAIN = 61  # with a global batch of 20: 20, 20, 20, 1, so one rank's last slice is empty
SGD_LR = 0.05


def sgd_dataset() -> Dataset:
    """Float64 data in [0, 1], fixed by a seed, with a ragged last batch."""
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(NUM_TRAIN + 20, 1, 4, 4, generator=generator, dtype=torch.float64)
    train, val = Split(x[:NUM_TRAIN]), Split(x[NUM_TRAIN:])
    return Dataset("sgd", train, val, val, "unit", "none", identity="sgd")


def sgd_trainer(kind: str, batch_size: int, world: World | None = None) -> Trainer:
    """A float64 ``kind`` model trained with plain SGD in a fixed order (no noise for an AE).

    For the AAE, ``adversarial_weight=0`` makes the autoencoder group noise-free; its critic
    still sees random prior draws, which differ between ranks.
    """
    torch.manual_seed(0)
    adversarial = {"discriminator_hidden": (8,), "adversarial_weight": 0.0}
    cfg = ModelConfig(
        kind=kind, latent_dim=2, hidden=(8,), **(adversarial if kind == "aae" else {})
    )
    model = build_model(cfg, (1, 4, 4)).double()
    trainer = Trainer(
        model,
        sgd_dataset(),
        epochs=3,
        batch_size=batch_size,
        lr=SGD_LR,
        schedule="constant",
        eval_batch_size=7,
        seed=0,
        progress=False,
        world=world,
    )
    # Plain SGD: Adam would normalise away a doubled or halved gradient. Fused, as the trainer
    # hands its non-finite flag to fused optimisers (found_inf).
    trainer.optimizers = {
        name: torch.optim.SGD(params, lr=SGD_LR, fused=True)
        for name, params in trainer.groups.items()
    }
    return trainer


def parameters_by_group(trainer: Trainer) -> dict[str, list[Any]]:
    """Each parameter group's tensors, detached copies."""
    return {k: [p.detach().clone() for p in ps] for k, ps in trainer.groups.items()}
