"""Per-datapoint values beside evaluation reports, and ``vaekit compare`` on them."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vaekit.cli import main
from vaekit.evaluation.per_example import paired_difference, per_example_path

ROOT = Path(__file__).parents[2]
TINY = str(ROOT / "configs" / "tiny.toml")
K = ["--num-importance-samples", "10"]


def _train(out: Path, *overrides: str) -> Path:
    sets = [item for override in overrides for item in ("--set", override)]
    assert main(["train", "--config", TINY, "--out", str(out), "--quiet", *sets]) == 0
    return out


def _evaluate(run: Path, *args: str) -> None:
    assert main(["evaluate", str(run), "--metrics", "elbo,log-likelihood", *K, *args]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    a = _train(root / "a", "train.epochs=1")
    b = _train(root / "b", "train.epochs=4")
    for run in (a, b):
        _evaluate(run)
    return a, b


def _refusal(capsys: pytest.CaptureFixture, *paths: Path) -> str:  # type: ignore[type-arg]
    """``vaekit compare PATHS...`` exits 2 and prints nothing but its one error line."""
    capsys.readouterr()
    assert main(["compare", *map(str, paths)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("vaekit: error: ") and err.count("\n") == 1, err
    return str(err)


def test_paired_difference_closed_forms() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(20_000, generator=generator, dtype=torch.float64) * 3.0
    shifted = paired_difference("q", a, a + 0.5)
    assert shifted.difference == pytest.approx(0.5)
    assert shifted.stderr == pytest.approx(0.0, abs=1e-12)
    assert shifted.unpaired_stderr == pytest.approx(math.sqrt(2 * float(a.var()) / 20_000))
    assert shifted.z > 1e12  # no spread at all: the shift is certain
    # Independent scores: the paired error equals the unpaired one, sqrt(9 + 9) / sqrt(n).
    other = torch.randn(20_000, generator=generator, dtype=torch.float64) * 3.0
    independent = paired_difference("q", a, other)
    assert independent.stderr == pytest.approx(math.sqrt(18 / 20_000), rel=0.03)
    assert independent.stderr == pytest.approx(independent.unpaired_stderr, rel=0.03)
    # Scores sharing the per-datapoint difficulty: the paired error is the noise's, 0.1 / sqrt(n).
    noise = torch.randn(20_000, generator=generator, dtype=torch.float64) * 0.1
    shared = paired_difference("q", a, a + 0.02 + noise)
    assert shared.stderr == pytest.approx(0.1 / math.sqrt(20_000), rel=0.03)
    assert shared.unpaired_stderr > 25 * shared.stderr
    assert shared.difference == pytest.approx(0.02, abs=5 * shared.stderr)
    swapped = paired_difference("q", a + 0.02 + noise, a)
    assert swapped.difference == pytest.approx(-shared.difference)
    assert swapped.stderr == pytest.approx(shared.stderr)
    assert paired_difference("q", a, a).z == 0.0
    with pytest.raises(ValueError, match="two \\[n\\] tensors"):
        paired_difference("q", a, a[:-1])


def test_evaluate_keeps_per_datapoint_values_that_match_the_report(
    runs: tuple[Path, Path],
) -> None:
    run = runs[0]
    report = json.loads((run / "evaluation.json").read_text())
    record = report["provenance"]["per_example"]
    assert record["file"] == "evaluation.per-example.safetensors"
    assert record["quantities"] == ["elbo", "log_likelihood"]
    values = load_file(str(per_example_path(run / "evaluation.json")))
    n = report["provenance"]["num_points"]
    assert values["elbo"].shape == values["log_likelihood"].shape == (n,)
    assert values["elbo"].dtype == torch.float64
    metrics = report["metrics"]
    assert float(values["elbo"].mean()) == pytest.approx(metrics["elbo"]["elbo"], abs=1e-9)
    assert float(values["log_likelihood"].mean()) == pytest.approx(
        metrics["log-likelihood"]["log_likelihood"], abs=1e-9
    )
    assert float(values["log_likelihood"].std()) / math.sqrt(n) == pytest.approx(
        metrics["log-likelihood"]["stderr"]
    )


def test_compare_prints_and_writes_paired_differences(
    runs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,  # type: ignore[type-arg]
) -> None:
    a, b = runs
    out = tmp_path / "comparison.json"
    capsys.readouterr()
    assert main(["compare", str(a), str(b / "evaluation.json"), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "elbo" in table and "log_likelihood" in table and "± paired" in table
    (comparison,) = json.loads(out.read_text())["comparisons"]
    assert comparison["b"] == str(b / "evaluation.json")
    rows = {row["quantity"]: row for row in comparison["differences"]}
    assert set(rows) == {"elbo", "log_likelihood"}
    values_a = load_file(str(per_example_path(a / "evaluation.json")))
    values_b = load_file(str(per_example_path(b / "evaluation.json")))
    for name, row in rows.items():
        diff = values_b[name] - values_a[name]
        assert row["difference"] == pytest.approx(float(diff.mean()))
        assert row["stderr"] == pytest.approx(float(diff.std()) / math.sqrt(diff.numel()))
        assert row["z"] == pytest.approx(row["difference"] / row["stderr"])
        assert f"{row['difference']:+.4f}" in table
    # Four epochs beat one on this data, and the paired error is smaller than the unpaired one.
    assert rows["log_likelihood"]["difference"] > 0
    assert rows["log_likelihood"]["stderr"] < rows["log_likelihood"]["unpaired_stderr"]


def test_compare_several_runs_with_one(
    runs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,  # type: ignore[type-arg]
) -> None:
    a, b = runs
    out = tmp_path / "several.json"
    assert main(["compare", str(a), str(a), str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("B: ") == 2 and "+0.0000" in printed  # A against itself
    itself, other = json.loads(out.read_text())["comparisons"]
    assert {row["difference"] for row in itself["differences"]} == {0.0}
    assert {row["z"] for row in itself["differences"]} == {0.0}
    assert other["b"] == str(b / "evaluation.json")
    # One refused pair refuses the whole command before anything is printed.
    assert "nope" in _refusal(capsys, a, b, tmp_path / "nope")


def test_compare_refuses_estimates_with_different_k(
    runs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,  # type: ignore[type-arg]
) -> None:
    report = tmp_path / "k5.json"
    assert main(["evaluate", str(runs[1]), "--metrics", "log-likelihood",
                 "--num-importance-samples", "5", "--out", str(report)]) == 0  # fmt: skip
    assert (tmp_path / "k5.per-example.safetensors").is_file()
    assert "--num-importance-samples" in _refusal(capsys, runs[0], report)


def test_compare_refuses_different_data(
    runs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,  # type: ignore[type-arg]
) -> None:
    report = tmp_path / "val.json"
    _evaluate(runs[1], "--split", "val", "--out", str(report))
    assert "scored different data: split" in _refusal(capsys, runs[0], report)


def test_compare_refuses_different_binarised_pixels(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,  # type: ignore[type-arg]
) -> None:
    a = _train(tmp_path / "s0", "data.binarize=static", "train.epochs=1", "train.seed=0")
    b = _train(tmp_path / "s1", "data.binarize=static", "train.epochs=1", "train.seed=1")
    for run in (a, b):
        assert main(["evaluate", str(run), "--metrics", "elbo"]) == 0
    err = _refusal(capsys, a, b)
    assert "binarization_seed" in err and "train.seed" in err


def test_compare_refuses_missing_or_altered_values(
    runs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,  # type: ignore[type-arg]
) -> None:
    a = runs[0]
    assert "run `vaekit evaluate" in _refusal(capsys, tmp_path / "nope", a)

    only_units = tmp_path / "units.json"
    assert main(["evaluate", str(a), "--metrics", "active-units", "--out", str(only_units)]) == 0
    assert not per_example_path(only_units).exists()
    assert "no per-datapoint values" in _refusal(capsys, only_units, a)

    copy = tmp_path / "copy.json"
    _evaluate(a, "--out", str(copy))
    values = per_example_path(copy)
    values.write_bytes(values.read_bytes()[:-8] + b"\0" * 8)  # one value altered in place
    assert "sha256 differs" in _refusal(capsys, copy, a)
    values.unlink()
    assert "is missing" in _refusal(capsys, copy, a)

    # A file of the wrong length, with the report's hash updated to match it.
    save_file({"elbo": torch.zeros(3, dtype=torch.float64)}, str(values))
    report = json.loads(copy.read_text())
    report["provenance"]["per_example"]["sha256"] = hashlib.sha256(values.read_bytes()).hexdigest()
    copy.write_text(json.dumps(report))
    assert "not the report's" in _refusal(capsys, copy, a)

    for record in ({"file": "../elsewhere/x.safetensors", "sha256": "0"}, ["not", "a", "record"]):
        report["provenance"]["per_example"] = record
        copy.write_text(json.dumps(report))
        assert "is not a vaekit evaluation report" in _refusal(capsys, copy, a)
    copy.write_text("{not json")
    assert "is not a vaekit evaluation report" in _refusal(capsys, copy, a)


def test_compare_refuses_other_datapoints_under_the_same_split_name(
    runs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,  # type: ignore[type-arg]
) -> None:
    # tiny.toml carves its validation points at random with train.seed: same size, other points.
    other = _train(tmp_path / "seed1", "train.epochs=1", "train.seed=1")
    reports = [tmp_path / "a-val.json", tmp_path / "b-val.json"]
    _evaluate(runs[0], "--split", "val", "--out", str(reports[0]))
    _evaluate(other, "--split", "val", "--out", str(reports[1]))
    assert "scored different data: split_identity" in _refusal(capsys, *reports)
