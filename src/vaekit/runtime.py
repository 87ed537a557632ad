"""Run-time environment at the edge: seeding, device and thread choice, run-directory layout."""

from __future__ import annotations

import ctypes
import functools
import os
import random
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python, numpy's legacy global RNG and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def choose_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu"
        )
    return device


# Below this many FLOPs per training step, threading overhead costs more than it gains (a
# 64-256-128-8 MLP at batch 64 ran 0.8 ms/step on 1 thread, 5.6 ms on 2 with the other core busy).
SMALL_STEP_FLOPS = 2e8


def configure_threads(num_threads: int | None, *, step_flops: float | None = None) -> int:
    """Set torch's intra-op threads and return the number in use.

    ``None`` chooses: one thread for small steps (``step_flops`` below SMALL_STEP_FLOPS),
    torch's default (one per core) otherwise.
    """
    if num_threads is None and step_flops is not None and step_flops < SMALL_STEP_FLOPS:
        num_threads = 1
    if num_threads is not None:
        torch.set_num_threads(max(1, num_threads))
    return torch.get_num_threads()


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero on the CPU while the block runs (restored to off after).

    Adam's first moment of a weight whose gradient is exactly zero (an MNIST border pixel's
    first-layer weights) decays by beta1 per step through the subnormal range, where x86
    arithmetic is ~100x slower: ~7% subnormal moments made fused Adam 2.5x slower on the
    784-400-20 model. Values below 1.2e-38 change nothing a model learns.

    The mode is a per-thread CPU flag, and ``torch.set_flush_denormal`` sets the calling thread's
    only: torch's OpenMP worker threads, started before, kept computing subnormals (half of every
    parallel kernel; 3% of the moments were subnormal after two epochs on 2 threads, and steps
    grew 30% slower per epoch). So the flag is set on every thread of the team as well.
    """
    supported = torch.set_flush_denormal(True)
    if supported:
        on_every_thread(lambda: torch.set_flush_denormal(True))
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)
            on_every_thread(lambda: torch.set_flush_denormal(False))


# glibc's mallopt parameters (malloc.h) and the values retain_freed_memory sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
RETAINED_BLOCK_BYTES = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit machines
RETAINED_HEAP_BYTES = 512 * 2**20


def retain_freed_memory() -> bool:
    """Let the C allocator keep freed memory for reuse instead of returning it to the system.

    Every step of training or importance sampling frees megabyte-sized temporaries and asks for
    the same sizes again. glibc's malloc hands freed memory at the top of its heap back to the
    kernel once more than a few MiB are free there, and maps blocks over a (moving) threshold
    afresh, so the next step page-faults those pages in again: eager importance sampling of the
    784-400-20 model took 630-4,000 page faults per 1,000-row chunk (7.7-11 ms against 6.5 ms
    per chunk without them, an exploratory timing; tests/test_runtime.py checks the mechanism).
    With blocks up to 32 MiB served from the heap and up to 512 MiB of free heap kept, the faults
    go. The setting is process-wide and stays; the CLI sets it for every command (the library
    does not). False (nothing changed) where the C library has no ``mallopt`` (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    blocks = mallopt(_M_MMAP_THRESHOLD, RETAINED_BLOCK_BYTES)
    return bool(blocks and mallopt(_M_TRIM_THRESHOLD, RETAINED_HEAP_BYTES))


def on_every_thread(fn: Callable[[], object]) -> bool:
    """Run ``fn`` once on each thread of torch's intra-op (OpenMP) team, the caller included.

    For per-thread state such as the floating-point mode. Works where torch's parallel backend
    is GNU OpenMP (Linux builds); elsewhere, or with one thread, it runs ``fn`` on the calling
    thread only and returns False.
    """
    threads = torch.get_num_threads()
    gomp = _libgomp() if threads > 1 else None
    if gomp is None:
        fn()
        return False
    callback = _TEAM_FN(lambda _: fn())  # referenced until GOMP_parallel returns
    gomp.GOMP_parallel(callback, None, threads, 0)
    return True


_TEAM_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@functools.cache
def _libgomp() -> ctypes.CDLL | None:
    """The GNU OpenMP runtime that torch loaded (the same thread pool), or None.

    Other packages load their own copies (scikit-learn bundles one), each with its own threads:
    the one in torch's own lib folder is taken, else the only one loaded, else none.
    """
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        maps = Path("/proc/self/maps").read_text().split()
    except OSError:
        return None  # not Linux
    loaded = sorted({p for p in maps if p.startswith("/") and "/libgomp" in p})
    torch_lib = str(Path(torch.__file__).parent / "lib") + os.sep
    own = [p for p in loaded if p.startswith(torch_lib)]
    if len(own) != 1 and len(loaded) != 1:
        return None
    gomp = ctypes.CDLL((own or loaded)[0])  # already loaded: the same handle and pool
    gomp.GOMP_parallel.argtypes = [_TEAM_FN, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    gomp.GOMP_parallel.restype = None
    return gomp


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 natively (x86 AMX or AVX512-BF16 flags; Linux only)."""
    flags = _cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX bfloat16 tiles, where a bfloat16 GEMM runs 5-7 times faster than
    float32 sgemm (Linux only)."""
    return "amx_bf16" in _cpu_flags()


def compiled_or_eager(
    fn: Callable[..., Any], *, fallback: str, **options: Any
) -> Callable[..., Any]:
    """``fn`` through ``torch.compile`` (static shapes, inductor ``options``). Where compiling
    fails (inductor needs a C++ compiler; a GPU, triton) the first call warns, naming
    ``fallback`` (what runs instead, e.g. "training eagerly"), and this call and every later one
    run ``fn`` itself: the same maths. Errors of ``fn`` itself are raised as usual."""
    compiled = torch.compile(fn, dynamic=False, options=options or None)

    def run(*args: Any) -> Any:
        nonlocal compiled
        if compiled is fn:
            return fn(*args)
        try:
            return compiled(*args)
        except Exception as error:
            warnings.warn(
                f"torch.compile failed ({type(error).__name__}: {str(error)[:200]}); {fallback}",
                stacklevel=2,
            )
            compiled = fn
            return fn(*args)

    return run


def set_deterministic(enabled: bool) -> None:
    """Ask torch for deterministic kernels (bitwise-repeatable runs for one seed)."""
    # Only on a change: the call imports torch._inductor, seconds of start-up for every run.
    if torch.are_deterministic_algorithms_enabled() != enabled:
        torch.use_deterministic_algorithms(enabled, warn_only=True)
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@dataclass(frozen=True)
class RunDir:
    """The files of one run, all in one directory (see README "Run directory")."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def model(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def training_state(self) -> Path:
        return self.path / "training_state.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def provenance(self) -> Path:
        return self.path / "provenance.json"

    def figure(self, name: str) -> Path:
        return self.path / f"{name}.png"


def new_run_path(base: str | Path, name: str) -> Path:
    """A fresh directory name ``base/<name>-YYYYmmdd-HHMMSS[-n]`` that does not exist yet."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    path = Path(base) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate
