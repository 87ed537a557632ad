"""2 ranks × batch b train exactly like 1 process × batch 2b over the same samples (plain SGD).

Plain SGD in a fixed order makes the parameters a function of the summed gradients, so a wrong
reduction (sum instead of mean), a gradient counted twice, a rank seeing the wrong slice or an
epoch without its own permutation shows up as a difference; Adam would normalise most of it
away. The data end with a global batch of one point, so one rank's last slice is empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from distributed_helpers import parameters_by_group, sgd_trainer

TOLERANCE = {"rtol": 1e-9, "atol": 1e-12}  # float64: only the summation order differs


@pytest.fixture(scope="module")
def two_ranks(two_rank_runs: Path) -> Path:
    """Both SGD setups (ae, aae) trained by 2 ranks at batch 10 (worker.sgd), files per rank."""
    return two_rank_runs / "sgd"


def load(out: Path, kind: str, rank: int) -> dict[str, Any]:
    result: dict[str, Any] = torch.load(out / f"{kind}-rank{rank}.pt", weights_only=True)
    return result


def trained(kind: str, batch_size: int) -> tuple[dict[str, list[Any]], list[dict[str, float]]]:
    trainer = sgd_trainer(kind, batch_size)
    history = trainer.fit()
    return parameters_by_group(trainer), history


def assert_close(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **TOLERANCE)


def test_two_ranks_equal_one_process_with_twice_the_batch(two_ranks: Path) -> None:
    reference, reference_history = trained("ae", batch_size=20)
    for rank in (0, 1):
        result = load(two_ranks, "ae", rank)
        assert_close(result["params"]["model"], reference["model"])
        assert [r.keys() for r in result["history"]] == [r.keys() for r in reference_history]
        for row, expected in zip(result["history"], reference_history, strict=True):
            # train metrics are all-reduced over the ranks' slices, val over their shards
            assert row == pytest.approx(expected, rel=1e-9)
    # The comparison has teeth: one process at batch 10 (the per-rank batch) ends elsewhere.
    per_rank_batch, _ = trained("ae", batch_size=10)
    assert not torch.allclose(per_rank_batch["model"][0], reference["model"][0], rtol=1e-4)


def test_adversarial_autoencoder_two_optimisers(two_ranks: Path) -> None:
    """The AAE's groups: the noise-free autoencoder group matches; the critic stays in sync."""
    reference, reference_history = trained("aae", batch_size=20)
    ranks = [load(two_ranks, "aae", rank) for rank in (0, 1)]
    for result in ranks:
        assert_close(result["params"]["autoencoder"], reference["autoencoder"])
        recon = [row["train/recon"] for row in result["history"]]
        assert recon == pytest.approx([row["train/recon"] for row in reference_history], rel=1e-9)
    # The critic trains on each rank's own prior draws, but from summed gradients: the ranks
    # hold the same critic, and it has moved from its initial value.
    critics = [result["params"]["discriminator"] for result in ranks]
    assert all(torch.equal(a, b) for a, b in zip(*critics, strict=True))
    initial = parameters_by_group(sgd_trainer("aae", batch_size=20))["discriminator"]
    assert not torch.equal(ranks[0]["params"]["discriminator"][0], initial[0])
