"""CPU run-time tweaks for speed: subnormals flushed on every OpenMP thread, freed memory kept.

Both change no result a model learns (see each function); ``vaekit.accel`` applies them when
acceleration is on.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


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
