"""The distributed suite: 2 processes on CPU with gloo; every launch has a timeout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path; the test
# modules and the worker processes import their helpers from this folder.
sys.path.insert(0, str(Path(__file__).parent))

from distributed_helpers import launch


@pytest.fixture(scope="session")
def two_rank_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One launch of 2 ranks runs every worker scenario (start-up is most of a launch's time)."""
    out = tmp_path_factory.mktemp("two-ranks")
    launch("sgd,resume", str(out))
    return out
