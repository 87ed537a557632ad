"""Early stopping: a callback that raises StopTraining ends a run after that epoch, finished,
recorded in the training state and provenance, and a resume does not train on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import vaekit
from vaekit.training import StopTraining

TINY = [
    "train.epochs=4",
    "train.batch_size=100",
    "data.limit=200",
]


class StopAt:
    """A callback that stops after ``epoch``, and counts the rows it saw."""

    def __init__(self, epoch: int):
        self.epoch, self.seen = epoch, 0

    def __call__(self, row: dict[str, float]) -> None:
        self.seen += 1
        if row["epoch"] == self.epoch:
            raise StopTraining(f"enough at epoch {self.epoch}")


def test_a_callback_stops_a_recipe_run_and_a_resume_stays_stopped(tmp_path: Path) -> None:
    config = vaekit.load_config("configs/tiny.toml", TINY)
    stop, rows = StopAt(2), []
    run = vaekit.train(config, tmp_path / "run", callbacks=[stop, rows.append])
    assert stop.seen == 2 and [r["epoch"] for r in rows] == [1.0, 2.0]  # later callbacks too
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["stopped"] == {"epoch": 2, "reason": "enough at epoch 2"}
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert len(metrics.splitlines()) == 2
    weights = [p.detach().clone() for p in run.model.parameters()]

    again = StopAt(99)
    resumed = vaekit.train(config, tmp_path / "run", resume=True, callbacks=[again])
    assert again.seen == 0  # no epoch trained
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics
    for a, b in zip(resumed.model.parameters(), weights, strict=True):
        assert torch.equal(a, b)

    # The stopped run's weights are those of a run trained for the same epochs and schedule
    full = vaekit.train(config, tmp_path / "full", callbacks=[StopAt(2)])
    for a, b in zip(full.model.parameters(), weights, strict=True):
        assert torch.equal(a, b)


def test_fit_stops_on_a_callback_and_other_exceptions_still_propagate(tmp_path: Path) -> None:
    x = torch.rand(80, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    config = vaekit.load_config("configs/tiny.toml")
    model = vaekit.build_model(config.model, (1, 4, 4))
    rows: list[dict[str, float]] = []
    options = {"epochs": 5, "batch_size": 40, "warmup_epochs": 0.0}
    vaekit.fit(model, x, x[:20], callbacks=[rows.append, StopAt(3)], **options)
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0]

    def broken(row: dict[str, float]) -> None:
        raise RuntimeError("a callback's own error")

    with pytest.raises(RuntimeError, match="own error"):
        vaekit.fit(model, x, callbacks=[broken], **options)
