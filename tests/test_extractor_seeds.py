"""benchmarks/extractor_seeds.py: extractors of other seeds are other weights, every sample
set is scored under each, and the summary is computed from the per-seed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.extractor_seeds import main


@pytest.mark.slow
def test_each_seed_scores_the_same_samples_with_its_own_extractor(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "cache"))  # must stay empty
    out = tmp_path / "seeds.json"
    argv = ["--run", str(run_dir), "--seeds", "2", "--num-samples", "200", "--chain-steps", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["extractors"]
    assert [r["seed"] for r in rows] == [0, 1] and rows[0]["hash"] != rows[1]["hash"]
    assert all(r["prior"]["fid"] > 0 and r["fid_half_vs_half"] > 0 for r in rows)
    gain = report["summary"]["chain_minus_prior_fid"]
    assert gain["per_seed"] == [r["chain step 2"]["fid"] - r["prior"]["fid"] for r in rows]
    fids = [r["prior"]["fid"] for r in rows]
    assert report["summary"]["prior"]["fid"]["mean"] == pytest.approx(sum(fids) / 2)
    assert not (tmp_path / "cache").exists()  # the extractors were trained in a temporary cache
    assert report["machine"]["cpu_count"]
