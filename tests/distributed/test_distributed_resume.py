"""A distributed run interrupted and resumed with the same world size equals the uninterrupted run.

Two ranks (gloo) train each recipe three times (see worker.py): uninterrupted; crashed on rank 0
straight after the mid-epoch checkpoint at step 8 and resumed; and signalled (SIGINT to rank 0
alone at step 4) and resumed. The final training states must be bitwise equal: weights, every
optimiser, the history, the cursor, and each rank's own RNG states and metric sums. A different
number of processes is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from distributed_helpers import RESUME_KINDS, RESUME_RECIPE, TINY

import vaekit.experiment
from vaekit.config import load_config
from vaekit.errors import CheckpointError
from vaekit.training.checkpoint import load_training_state


@pytest.fixture(scope="module")
def runs(two_rank_runs: Path) -> Path:
    """The runs of worker.resume: OUT/KIND/{reference,crashed,signalled}."""
    return two_rank_runs / "resume"


def assert_equal_trees(a: Any, b: Any, where: str = "state") -> None:
    """Bitwise equality of nested dicts, lists and tensors."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_equal_trees(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_trees(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("kind", RESUME_KINDS)
@pytest.mark.parametrize("interruption", ["crashed", "signalled"])
def test_resumed_equals_uninterrupted(runs: Path, kind: str, interruption: str) -> None:
    reference = load_training_state(runs / kind / "reference" / "training_state.pt")
    resumed = load_training_state(runs / kind / interruption / "training_state.pt")
    assert reference["world_size"] == 2 and len(reference["ranks"]) == 2
    assert reference["cursor"] == {"epoch": 2, "batch": 0, "step": 12}
    assert ("average" in reference) == (kind == "aae")
    assert_equal_trees(resumed, reference)
    # the two ranks drew different noise: their generator states differ
    generators = [rank["rng"]["generator"] for rank in reference["ranks"]]
    assert not torch.equal(*generators)


@pytest.mark.parametrize("kind", RESUME_KINDS)
def test_a_signal_to_one_rank_stops_all_at_one_step(runs: Path, kind: str) -> None:
    """Rank 0 alone was signalled at step 4; the ranks compare flags every 5 steps."""
    cursors = [json.loads((runs / kind / f"interrupted-rank{r}.json").read_text()) for r in (0, 1)]
    assert cursors == [{"epoch": 0, "batch": 5, "step": 5}] * 2


def test_resume_with_another_world_size_is_refused(runs: Path) -> None:
    config = load_config(TINY, [*RESUME_RECIPE, "model.kind=vae"])
    with pytest.raises(CheckpointError, match=r"written by 2 process\(es\) and this run has 1"):
        vaekit.experiment.train(config, runs / "vae" / "reference", resume=True, progress=False)
