"""``vaekit evaluate`` end to end on the tiny recipe: every metric, the JSON, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vaekit.cli import main
from vaekit.evaluation import METRICS
from vaekit.evaluation import extractor as extractor_module

ROOT = Path(__file__).parents[2]
TINY = str(ROOT / "configs" / "tiny.toml")
FAST = ["--num-importance-samples", "10", "--num-samples", "200"]


@pytest.fixture(autouse=True)
def small_extractor(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    # A private cache and a short training: the extractor's spec (and so its cache key) says so.
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path_factory.getbasetemp() / "data"))
    monkeypatch.setattr(extractor_module, "MIN_STEPS", 20)


def _train(out: Path, *overrides: str) -> Path:
    sets = [item for override in overrides for item in ("--set", override)]
    assert main(["train", "--config", TINY, "--out", str(out), "--quiet", *sets]) == 0
    return out


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("runs") / "vae")


def test_every_metric_runs_through_the_cli(vae_run: Path, capsys: pytest.CaptureFixture) -> None:  # type: ignore[type-arg]
    args = ["evaluate", str(vae_run), "--metrics", ",".join(METRICS), "--threads", "1"]
    assert main([*args, *FAST]) == 0
    table = capsys.readouterr().out
    report = json.loads((vae_run / "evaluation.json").read_text())
    assert report["format"] == "vaekit-evaluation"
    assert list(report["metrics"]) == list(METRICS)
    for name, result in report["metrics"].items():
        assert "status" not in result, (name, result)
        assert result["seconds"] >= 0 and name in table
    metrics = report["metrics"]
    assert metrics["log-likelihood"]["num_importance_samples"] == 10
    assert metrics["log-likelihood"]["log_likelihood"] >= metrics["elbo"]["elbo"] - 1.0
    assert metrics["elbo"]["elbo"] == pytest.approx(
        -(metrics["elbo"]["reconstruction"] + metrics["elbo"]["kl"])
    )
    extractor_hash = report["provenance"]["feature_extractor"]["hash"]
    assert f"fid-{extractor_hash}" in metrics["sample-quality"]
    assert "test_accuracy" in report["provenance"]["feature_extractor"]
    provenance = report["provenance"]
    for key in ("dataset", "dataset_identity", "split", "binarize", "binarization_seed",
                "num_importance_samples", "num_samples", "vaekit", "torch", "seconds"):  # fmt: skip
        assert key in provenance, key
    assert provenance["split"] == "test" and provenance["num_samples"] == 200


def test_plain_autoencoder_reports_not_applicable(tmp_path: Path) -> None:
    run = _train(tmp_path / "ae", "model.kind=ae", "train.epochs=1")
    out = tmp_path / "ae-eval.json"
    args = [
        "evaluate",
        str(run),
        "--metrics",
        "elbo,log-likelihood,active-units",
        "--out",
        str(out),
    ]
    assert main([*args, *FAST]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    for name in ("elbo", "log-likelihood"):
        assert metrics[name]["status"] == "not applicable"
        assert "density" in metrics[name]["reason"]
    assert "kl_per_unit" not in metrics["active-units"]
    assert "warning" not in metrics["active-units"]  # no posterior, so no posterior collapse
    assert not (run / "evaluation.json").exists()


def test_binarised_run_records_the_binarisation_seed(tmp_path: Path) -> None:
    run = _train(tmp_path / "bin", "data.binarize=static", "train.epochs=1", "train.seed=3")
    assert main(["evaluate", str(run), "--metrics", "elbo", *FAST]) == 0
    report = json.loads((run / "evaluation.json").read_text())
    assert report["provenance"]["binarize"] == "static"
    assert report["provenance"]["binarization_seed"] == 3
    assert "note" not in report["metrics"]["elbo"]  # binary targets: a normalised likelihood


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "fid"], "unknown metric 'fid'"),
        (["--split", "val", "--num-importance-samples", "0"], "must be at least 1"),
    ],
)
def test_bad_arguments_exit_2(
    vae_run: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture,  # type: ignore[type-arg]
) -> None:
    assert main(["evaluate", str(vae_run), *args]) == 2
    assert message in capsys.readouterr().err


def test_missing_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # type: ignore[type-arg]
    assert main(["evaluate", str(tmp_path / "nope"), "--metrics", "elbo"]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("amx", [True, False])
def test_bfloat16x3_products_through_the_cli(  # type: ignore[no-untyped-def]
    vae_run: Path, tmp_path: Path, capsys, monkeypatch, amx: bool
) -> None:
    from vaekit import evaluate

    monkeypatch.setattr(evaluate, "cpu_has_amx", lambda: amx)
    reports, logs = {}, {}
    for matmul in ("float32", "bfloat16x3"):
        out = tmp_path / f"{matmul}.json"
        args = ["evaluate", str(vae_run), "--metrics", "log-likelihood", "--matmul", matmul]
        assert main([*args, "--out", str(out), *FAST]) == 0
        reports[matmul] = json.loads(out.read_text())
        logs[matmul] = capsys.readouterr().err
    # Each setting is pointed at the other where the CPU says so, and only there.
    assert ("this CPU has AMX: --matmul bfloat16x3" in logs["float32"]) is amx
    assert ("pays off on CPUs with AMX" in logs["bfloat16x3"]) is not amx
    assert reports["bfloat16x3"]["provenance"]["matmul"] == "bfloat16x3"
    float32, split = (report["metrics"]["log-likelihood"] for report in reports.values())
    assert split["log_likelihood"] == pytest.approx(float32["log_likelihood"], rel=1e-5)


def test_bfloat16x3_on_a_gaussian_run_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:  # type: ignore[type-arg]
    run = _train(tmp_path / "gaussian", "model.likelihood=gaussian", "train.epochs=1")
    args = ["evaluate", str(run), "--metrics", "log-likelihood", "--matmul", "bfloat16x3"]
    assert main([*args, *FAST]) == 2
    assert "Bernoulli likelihood only" in capsys.readouterr().err
    assert not (run / "evaluation.json").exists()
