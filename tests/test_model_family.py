"""benchmarks/model_family.py end to end on the 8x8 digits (slow: seven rows, two epochs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.model_family import ROWS, main


@pytest.mark.slow
def test_the_tiny_family_runs_every_row_then_skips_them(tmp_path: Path, capsys) -> None:
    argv = ["--tiny", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    assert main(argv) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["row"] for r in results["rows"]] == list(ROWS)
    for row in results["rows"]:
        assert row["test_nll"] <= row["test_negative_elbo"] + 0.5  # K = 50 against one draw
        assert row["epochs"] == 2 and len(row["epoch_seconds"]) == 2
    table = (tmp_path / "out" / "table.md").read_text()
    capsys.readouterr()
    assert main(argv) == 0  # every row is done: nothing trains, the table is the same
    assert "training at epoch" not in capsys.readouterr().err
    assert (tmp_path / "out" / "table.md").read_text() == table
    assert main([*argv, "--set", "train.seed=1"]) == 2  # other settings, same --out
