"""benchmarks/markov_chain_study.py: the convergence rule, the mean ± std summary, the resume
logic, and (slow) the whole study end to end on the digits, run twice."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from benchmarks.markov_chain_measure import LATENT_SAMPLERS
from benchmarks.markov_chain_report import Units, aggregate, cell, fid_summary, mean_std
from benchmarks.markov_chain_study import (
    MEASUREMENT,
    Budget,
    EpochGuard,
    OutOfBudget,
    converged_at,
    main,
    models_of,
    parse_args,
    plan,
    retrain_if_lost,
    train_unit,
)

from vaekit.training import StopTraining


def test_the_convergence_rule_finds_the_first_flat_window() -> None:
    decaying = [100 * math.exp(-0.3 * t) + 50 for t in range(100)]  # flattens towards 50
    epoch = converged_at(decaying, window=10, tolerance=1e-3)
    assert epoch is not None
    for t in range(11, epoch):  # no earlier epoch qualifies (decreasing: best = value)
        assert decaying[t - 11] - decaying[t - 1] >= 1e-3 * decaying[t - 11]
    assert decaying[epoch - 11] - decaying[epoch - 1] < 1e-3 * decaying[epoch - 11]
    # A constant curve converges at the first comparable epoch, window + 1: there is no
    # objective before epoch 1
    assert converged_at([5.0] * 30, window=10, tolerance=1e-3) == 11
    assert converged_at([5.0] * 10, window=10, tolerance=1e-3) is None
    # Still falling by 1 % per epoch: never within 100 epochs
    falling = [100 * 0.99**t for t in range(100)]
    assert converged_at(falling, window=10, tolerance=1e-3) is None
    # Negative objectives use |best(t - window)|
    assert converged_at([-5.0] * 12, window=10, tolerance=1e-3) == 11


def test_a_noisy_curve_that_returns_to_an_earlier_value_is_not_converged() -> None:
    """Validation of a real run: epoch 20 equals epoch 10 to 0.03 %, but the best value fell
    by 1.25 % in between (102.56 at epoch 15), so the model is still improving."""
    curve = [120.55, 114.14, 111.54, 109.29, 106.68, 107.89, 106.89, 105.75, 104.90, 103.86]
    curve += [104.67, 104.23, 103.42, 103.86, 102.56, 102.87, 103.00, 102.61, 102.61, 103.83]
    assert abs(curve[19] - curve[9]) < 1e-3 * curve[9]  # the two epochs alone look flat
    assert converged_at(curve, window=10, tolerance=1e-3) is None
    flat_noise = [*curve, *(103.06 + 0.5 * (-1) ** t for t in range(10))]  # no new best
    assert converged_at(flat_noise, window=10, tolerance=1e-3) == 25


def test_mean_and_sample_std_over_seeds() -> None:
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([4.0]) == (4.0, None)
    rows = [
        {"model": "VAE", "step": 0, "fid": 10.0, "acceptance": None},
        {"model": "VAE", "step": 0, "fid": 14.0, "acceptance": None},
        {"model": "AAE", "step": 0, "fid": 7.0, "acceptance": 0.5},
    ]
    summary = aggregate(rows, ["model", "step"], ["fid", "acceptance"])
    assert [(r["model"], r["seeds"]) for r in summary] == [("VAE", 2), ("AAE", 1)]
    assert summary[0]["fid"] == 12.0 and summary[0]["fid_std"] == pytest.approx(math.sqrt(8))
    assert summary[0]["acceptance"] is None  # no number for it: "–" in the table
    assert cell(summary[0], "fid", 1) == "12.0 ± 2.8"
    assert cell(summary[1], "fid", 1) == "7.0"  # one seed: no std
    assert cell(summary[0], "acceptance", 3) == "–"


def test_thefid_summary_lays_the_chain_out_by_step_and_finds_the_best_cell() -> None:
    """FID at a glance: one row per model and chain setting with a column per step (mean over
    seeds), and per model the fitted samplers beside the lowest chain cell after step 0."""

    def chain(seed: int, start: str, step: int, fid: float) -> dict[str, object]:
        return {"model": "VAE", "seed": seed, "sampler": "chain", "start": start,
                "decode": "mean", "step": step, "fid": fid}  # fmt: skip

    rows = [chain(s, "prior", 0, 60.0 + s) for s in (0, 1)]
    rows += [chain(s, "prior", 5, 40.0 + 2 * s) for s in (0, 1)]
    rows += [chain(s, "wide", 0, 10.0) for s in (0, 1)]  # step 0 never counts as the best
    rows += [chain(s, "wide", 5, 45.0) for s in (0, 1)]
    rows += [{"model": "VAE", "seed": s, "sampler": n, "fid": f}
             for s in (0, 1) for n, f in (("prior", 60.0 + s), ("flow", 30.0 + s))]  # fmt: skip
    spec = SimpleNamespace(kind="vae", network="mlp")
    along, baselines = fid_summary(rows, [spec], ["prior", "flow"])
    assert [(r["start"], r["seeds"], r["fid_0"], r["fid_5"]) for r in along] == [
        ("prior", 2, 60.5, 41.0),
        ("wide", 2, 10.0, 45.0),
    ]
    (line,) = baselines
    assert (line["seeds"], line["fid_prior"], line["fid_flow"]) == (2, 60.5, 30.5)
    assert (line["fid_best_chain"], line["best_chain"]) == (41.0, "prior, mean, step 5")
    assert line["fid_best_chain_std"] == pytest.approx(math.sqrt(2))


def test_finished_units_are_skipped_and_new_ones_recorded(tmp_path: Path) -> None:
    units, calls = Units(tmp_path), []

    def compute() -> dict[str, object]:
        calls.append(1)
        return {"value": len(calls)}

    first = units.run("samples/vae-mlp-s0/prior", compute)
    assert first["value"] == 1 and "seconds" in first
    again = Units(tmp_path)  # a new process
    assert again.run("samples/vae-mlp-s0/prior", compute, before=pytest.fail) == first
    assert len(calls) == 1 and again.skipped == 1 and again.ran == 0
    assert list(again.finished()) == ["samples/vae-mlp-s0/prior"]

    def out_of_budget() -> None:
        raise TimeoutError

    with pytest.raises(TimeoutError):  # ``before`` stops a unit before it starts
        again.run("samples/vae-mlp-s0/chain-prior-mean", compute, before=out_of_budget)
    assert len(calls) == 1 and again.get("samples/vae-mlp-s0/chain-prior-mean") is None


OWN = ("vae,dvae", "aae,daae")  # two disjoint shares of the default kinds


def test_the_plan_covers_every_measurement_per_model() -> None:
    args = parse_args(["--out", "o", "--runs", "r"])
    assert (args.seeds, args.num_samples, args.pairs, args.max_epochs) == (3, 10_000, 1000, 100)
    models = models_of(args)
    assert len(models) == 4 * 3 + 4  # 3 MLP seeds and 1 conv seed per recipe
    keys = [unit.key for unit in plan(args)]
    samplers = 4  # the prior, the Gaussian mixture, the flow and the two-stage VAE
    assert len(LATENT_SAMPLERS) == samplers
    assert len(keys) == len(set(keys)) == 1 + len(models) * (1 + samplers + 4 + 1 + 6)
    assert keys.index("train/vae-mlp-s0") < keys.index("samples/vae-mlp-s0/chain-wide-sample")
    tiny = parse_args(["--out", "o", "--runs", "r", "--tiny", "--set", "train.lr=0.1"])
    assert tiny.num_samples < args.num_samples and tiny.set[-1] == "train.lr=0.1"
    # --only: one process's share of the same study (the settings it records do not change)
    shares = [plan(parse_args(["--out", "o", "--runs", "r", "--only", o])) for o in OWN]
    assert sorted(u.key for u in shares[0] + shares[1][1:]) == sorted(keys)
    assert all("daae" not in u.key for u in shares[0])
    assert "only" not in MEASUREMENT and "networks" not in MEASUREMENT
    with pytest.raises(SystemExit):
        parse_args(["--out", "o", "--runs", "r", "--kinds", "vae", "--only", "aae"])
    # --networks: which models this process runs, in that order
    conv_first = [u.key for u in plan(parse_args(["--out", "o", "--runs", "r", "--networks",
                                                  "conv,mlp"]))]  # fmt: skip
    assert sorted(conv_first) == sorted(keys) and conv_first[1] == "train/vae-conv-s0"
    conv = plan(parse_args(["--out", "o", "--runs", "r", "--networks", "conv"]))
    assert {u.spec.network for u in conv if u.spec} == {"conv"} and len(conv) == 1 + 4 * (
        1 + samplers + 4 + 1 + 6
    )
    for bad in ("", "mlp,cnn"):
        with pytest.raises(SystemExit):
            parse_args(["--out", "o", "--runs", "r", "--networks", bad])


def test_the_training_guard_stops_on_convergence_and_before_the_budget(tmp_path: Path) -> None:
    args = parse_args(["--out", str(tmp_path), "--runs", "r", "--window", "2"])
    record = {"epoch": 3.0, "val/loss": 10.0}
    guard = EpochGuard(args, Budget(None), tmp_path / "progress.json", [10.0, 10.0])
    with pytest.raises(StopTraining, match=r"less than 0\.001"):
        guard(record)  # 10, 10, 10: converged at epoch 3, a finished run
    assert len(json.loads((tmp_path / "progress.json").read_text())["epoch_seconds"]) == 1
    guard = EpochGuard(args, Budget(0.0), tmp_path / "progress.json", [30.0, 20.0])
    with pytest.raises(OutOfBudget):
        guard(record)  # not converged, and no time for another epoch: an interrupted run
    args.max_epochs = 3
    guard = EpochGuard(args, Budget(0.0), tmp_path / "progress.json", [30.0, 20.0])
    guard(record)  # the last epoch: nothing left to stop


def test_a_finished_model_whose_run_is_gone_is_trained_again(tmp_path: Path) -> None:
    """A new machine without the runs folder: the model is trained again by the same rule and
    seed before its remaining units, and the new curve is compared with the recorded one."""
    args = parse_args(["--tiny", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "r")])
    args.max_epochs, units = 2, Units(tmp_path / "out")
    spec = models_of(args)[0]
    units.run(f"train/{spec.id}", lambda: train_unit(spec, args, Budget(None)))
    run = tmp_path / "r" / spec.id
    model = (run / "model.safetensors").read_bytes()
    retrain_if_lost(spec, args, Budget(None), units)  # the run is there: nothing to do
    assert units.get(f"retrain/{spec.id}") is None
    shutil.rmtree(run)
    retrain_if_lost(spec, args, Budget(None), units)
    again = units.get(f"retrain/{spec.id}")
    assert again is not None and again["epochs"] == 2 and again["seconds"] > 0
    first = units.get(f"train/{spec.id}")
    assert first is not None and again["first_run"]["epochs"] == first["epochs"]
    # One machine, one seed: the same curve and the same weights
    assert again["max_relative_difference"] == 0.0
    assert (run / "model.safetensors").read_bytes() == model


@pytest.mark.slow
def test_the_tiny_study_runs_end_to_end_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "data"))  # the extractor's cache
    argv = ["--tiny", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    assert main([*argv, "--budget-minutes", "0.75"]) == 0  # stops cleanly after ~15 s
    partial = json.loads((tmp_path / "out" / "results.json").read_text())
    assert partial["left"] and "reference/extractor" not in partial["left"]
    assert main(argv) == 0  # goes on where it stopped
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    tables = results["tables"]
    args = parse_args(argv)
    models = 4 * (args.seeds > 0) + 4 * (args.conv_seeds > 0)
    steps = len(args.steps.split(","))
    assert len(tables["training"]) == models
    for start in ("prior", "wide"):
        for decode in ("mean", "sample"):
            assert len(tables[f"samples-{start}-{decode}"]) == models * (
                steps + len(LATENT_SAMPLERS)
            )
    assert len(tables["interpolation"]) == models * 4  # lerp, slerp, slerp + 1, slerp + 5
    # Metropolis-within-Gibbs needs an encoder density: VAE and DVAE only
    impute_steps = len(args.impute_steps.split(","))
    assert len(tables["imputation"]) == models * 3 * impute_steps * 3 // 2
    assert {r["seeds"] for r in tables["training"]} == {args.seeds, args.conv_seeds}
    assert results["left"] == [] and results["machine"]["cpu_count"]
    # One extractor, kept beside the results, scored every unit
    assert list(results["extractors"]) == [results["reference"]["extractor"]["hash"]]
    assert list((tmp_path / "out" / "extractor").rglob("extractor.safetensors"))
    text = (tmp_path / "out" / "tables.md").read_text()
    headings = ("Training", "FID at a glance", "Samples: chain from prior", "Interpolation")
    for heading in (*headings, "Class histogram"):
        assert f"## {heading}" in text
    assert "Not applicable for AAE" in text
    figures = {p.name for p in (tmp_path / "out" / "figures").iterdir()}
    assert "vae-mlp-s0-chain-prior-mean.png" in figures
    assert "daae-conv-s0-interpolation.png" in figures
    assert "vae-mlp-s0-imputation-center-mwg.png" in figures

    unit_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "units").rglob("*.json")}
    assert main(argv) == 0  # resumes: every unit is found done
    again = json.loads((tmp_path / "out" / "results.json").read_text())
    assert again["tables"] == tables
    assert {p: p.stat().st_mtime_ns for p in unit_files} == unit_files
