"""Helpers of the fault-injection suite: tiny recipes, child processes, bitwise comparisons."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vaekit.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.toml"
# The synthetic pPCA data need no scikit-learn import, which keeps child processes quick.
PPCA = ("data.name=ppca", "model.likelihood=gaussian")


def write_unit_arrays(folder: Path, num_points: int = 300) -> Path:
    """An .npz of 8x8 images in [0, 1] with labels: image data without scikit-learn's import."""
    rng = np.random.default_rng(0)
    path = folder / "images.npz"
    x = rng.random((num_points, 8, 8), dtype=np.float32)
    np.savez(path, x=x, y=rng.integers(0, 10, num_points))
    return path


def tiny_config(*overrides: str) -> Config:
    """configs/tiny.toml (digits VAE, 5 steps per epoch) with ``section.key=value`` overrides."""
    return load_config(TINY, list(overrides))


def child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("VAEKIT_RELIABILITY_REPORT", None)
    return env


def run_child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code args...`` to completion; a hang fails the test after ``timeout``."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=ROOT,
        check=False,
    )


class Child:
    """A running ``python -c code`` whose stdout lines can be awaited with a timeout."""

    def __init__(self, code: str, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, line: str) -> None:
        """Write one line to the child's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, fragment: str, timeout: float = 60) -> str:
        """Block until a stdout line contains ``fragment``; fail on exit or timeout."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                self.kill()
                pytest.fail(f"no line with {fragment!r} within {timeout} s; saw {self.seen}")
            if line is None:
                pytest.fail(f"child exited before {fragment!r}: {self.finish(5)[1]}")
            self.seen.append(line)
            if fragment in line:
                return line

    def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for the exit code and stderr; a child still running after ``timeout`` fails."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"child still running {timeout} s later")
        assert self.process.stderr is not None
        return self.process.returncode, self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def assert_trees_equal(a: Any, b: Any, where: str = "state") -> None:
    """Bitwise equality of nested dicts/lists of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or torch.allclose(a, b, rtol=0, atol=0, equal_nan=True), where
        return
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), f"{where}: {set(a) ^ set(b)}"
        for key in a:
            assert_trees_equal(a[key], b[key], f"{where}.{key}")
        return
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_trees_equal(x, y, f"{where}[{i}]")
        return
    assert a == b, f"{where}: {a!r} != {b!r}"


def temporaries(folder: Path) -> list[Path]:
    """Hidden temporaries left by ``atomic_write`` in ``folder``."""
    return sorted(folder.glob(".*.tmp"))
