"""Shared helpers for the benchmark scripts: machine facts, matmul rate, peak memory, one
trainer step."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from vaekit.config import Config
from vaekit.experiment import train
from vaekit.runtime import cpu_has_bfloat16
from vaekit.training.trainer import Trainer


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    info: dict[str, object] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1min": os.getloadavg()[0],
        "cpu_has_bfloat16": cpu_has_bfloat16(),  # AMX or AVX512-BF16: native bfloat16 matmuls
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info


def sgemm_gflops(
    m: int = 2048,
    k: int = 2048,
    n: int = 2048,
    *,
    device: str = "cpu",
    seconds: float = 2.0,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Measured matmul rate (GFLOP/s) for [m, k] @ [k, n] on ``device``, float32 by default."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    if device != "cpu":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return 2.0 * m * k * n * count / elapsed / 1e9


def peak_rss_mib() -> float:
    """Peak resident set size of this process's own memory in MiB: VmHWM on Linux, which
    starts afresh at exec (``ru_maxrss`` keeps the parent's peak across fork and exec)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def steady(epoch_seconds: list[float]) -> float:
    """Median seconds per epoch, leaving out the first (compilation, warm-up)."""
    return statistics.median(epoch_seconds[1:] or epoch_seconds)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the platform's processor."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def trainer_step(trainer: Trainer, index: torch.Tensor) -> None:
    """One step of ``trainer`` on the rows ``index`` of its training split, gathered as the
    trainer gathers them (one process: the whole batch, a share of 1)."""
    (x,) = trainer.data.train.gather([index], trainer.device)  # type: ignore[union-attr]
    trainer._step(x, 1.0, len(index))


def emit(result: dict[str, object], out: Path | None) -> None:
    """Print ``result`` as JSON and, with ``out``, write it there too."""
    text = json.dumps(result, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def train_logged(
    config: Config,
    path: Path,
    *,
    resume: bool,
    label: str,
    callbacks: Sequence[Callable[[dict[str, float]], object]],
    log: Callable[[str], None],
) -> None:
    """Train ``config`` into the run ``path`` (or resume it exactly), without a progress bar,
    each of the trainer's lines passed to ``log`` behind ``label``; a callback's exception (a
    budget stop after the epoch's checkpoint) propagates."""
    train(
        config,
        path,
        resume=resume,
        overwrite=not resume,
        progress=False,
        log=lambda line: log(f"{label}: {line}"),
        callbacks=list(callbacks),
    )
