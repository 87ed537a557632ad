"""Fixtures of the fault-injection suite and a session tally of faults and bad inputs.

Set VAEKIT_RELIABILITY_REPORT=path.json to write the tally (faults injected and survived, bad
inputs tried) when the session ends; docs/reference/reliability.md describes it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import vaekit.experiment

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path; the test
# modules import their helpers from this folder.
sys.path.insert(0, str(Path(__file__).parent))

_TALLY: Counter[str] = Counter()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = os.environ.get("VAEKIT_RELIABILITY_REPORT")
    if report and _TALLY:
        Path(report).write_text(json.dumps(dict(sorted(_TALLY.items())), indent=2) + "\n")


@pytest.fixture
def tally() -> Callable[..., None]:
    """``tally(name, n=1)`` adds n to a session-wide count (faults injected, inputs tried, ...)."""

    def add(name: str, n: int = 1) -> None:
        _TALLY[name] += n

    return add


@pytest.fixture
def no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the end-of-run figures (matplotlib), which no reliability test looks at."""
    monkeypatch.setattr(vaekit.experiment, "render_run_figures", lambda *a, **k: [])


@pytest.fixture(autouse=True)
def _restore_deterministic_mode() -> Iterator[None]:
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    if torch.are_deterministic_algorithms_enabled() != enabled:
        torch.use_deterministic_algorithms(enabled)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of the tiny recipe: a run directory with every file a resume reads."""
    from reliability_helpers import tiny_config

    out = tmp_path_factory.mktemp("runs") / "finished"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vaekit.experiment, "render_run_figures", lambda *a, **k: [])
        vaekit.experiment.train(tiny_config("train.epochs=1"), out, progress=False)
    return out


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    """A copy of ``finished`` that a test may change."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy
