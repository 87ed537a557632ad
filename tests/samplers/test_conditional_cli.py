"""Every command on a conditional run of the tiny recipe: train, sample --condition, plot,
reconstruct, interpolate, impute and evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit.cli import main

TINY = str(Path(__file__).parents[2] / "configs" / "tiny.toml")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "cvae"
    argv = ["train", "--config", TINY, "--out", str(out), "--quiet"]
    assert main([*argv, "--set", "model.conditional=true"]) == 0
    return out


def height(path: Path) -> int:
    with Image.open(path) as image:
        return image.size[1]


def test_the_run_records_its_classes_and_draws_a_row_per_class(run: Path, tmp_path: Path) -> None:
    assert json.loads((run / "config.json").read_text())["num_classes"] == 10
    rows = tmp_path / "rows.png"
    assert main(["sample", str(run), "--out", str(rows)]) == 0  # 10 rows of 8
    three = tmp_path / "three.png"
    assert main(["sample", str(run), "--condition", "3", "--out", str(three)]) == 0  # 8 rows of 8
    assert height(rows) > height(three)
    assert main(["sample", str(run), "--condition", "3"]) == 0
    assert (run / "figures" / "sample-prior-class-3.png").is_file()
    chain = ["sample", str(run), "--sampler", "markov-chain", "--steps", "0,2"]
    assert main([*chain, "--out", str(tmp_path / "chain.png")]) == 0
    numbers = tmp_path / "s.npy"
    assert (
        main(["sample", str(run), "--condition", "1", "--format", "npy", "--out", str(numbers)])
        == 0
    )


@pytest.mark.parametrize("sampler", ["gaussian-fit", "gaussian-mixture"])  # flow: test_codes.py
def test_samplers_fitted_to_codes_draw_the_class_asked_for(
    run: Path, tmp_path: Path, sampler: str
) -> None:
    """The codes are encoded with their labels; the draws are decoded with --condition (one
    fixed class) or a row per class, and differ between the two classes asked for."""
    draws = {}
    for label in (1, 7):
        out = tmp_path / f"{sampler}-{label}.npy"
        argv = ["sample", str(run), "--sampler", sampler, "--condition", str(label)]
        assert main([*argv, "--format", "npy", "--num-samples", "16", "--out", str(out)]) == 0
        draws[label] = np.load(out)
    assert draws[1].shape == draws[7].shape == (16, 1, 8, 8)
    assert not np.allclose(draws[1], draws[7])
    assert main(["sample", str(run), "--sampler", sampler]) == 0  # a row per class
    assert (run / "figures" / f"sample-{sampler}.png").is_file()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--condition", "10"], "unknown class '10': give a class index 0..9"),
        (["--condition", "-1"], "unknown class '-1': give a class index 0..9"),
        (["--condition", "three"], "unknown class 'three': give a class index 0..9"),
        (["--condition=--1"], "unknown class '--1'"),
        (["--condition", "²"], "unknown class '²'"),
    ],
)
def test_bad_conditions_are_refused(run: Path, argv: list[str], fragment: str, capsys) -> None:
    assert main(["sample", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_every_other_command_conditions_on_the_datas_labels(run: Path, tmp_path: Path) -> None:
    for argv in (
        ["reconstruct", str(run)],
        ["interpolate", str(run), "--chain-steps", "1"],
        ["impute", str(run), "--steps", "0,3", "--num", "8"],
        ["impute", str(run), "--method", "pseudo-gibbs", "--steps", "0,3", "--num", "8"],
        ["plot", str(run)],
    ):
        assert main([*argv, "--device", "cpu"]) == 0, argv
    report = tmp_path / "evaluation.json"
    metrics = "elbo,log-likelihood,active-units,aggregate-posterior,probes,parzen"
    argv = ["evaluate", str(run), "--metrics", metrics, "--num-importance-samples", "20"]
    assert main([*argv, "--num-samples", "500", "--out", str(report), "--quiet"]) == 0
    results = json.loads(report.read_text())["metrics"]
    assert results["log-likelihood"]["log_likelihood"] >= results["elbo"]["elbo"] - 1.0
    assert results["probes"]["logistic_accuracy"] > 0


def test_a_conditional_autoencoder_samples_each_class_from_a_fit_of_its_codes(
    tmp_path: Path,
) -> None:
    """A plain autoencoder has no prior: its samples (figures, vaekit sample, evaluation) come
    from a Gaussian fitted to its codes, encoded with their labels, decoded with the class."""
    out = tmp_path / "cae"
    argv = ["train", "--config", TINY, "--out", str(out), "--quiet"]
    assert main([*argv, "--set", "model.conditional=true", "--set", "model.kind=ae"]) == 0
    assert (out / "samples.png").is_file()  # drawn from the fit at the end of training
    draws = {}
    for label in (2, 5):
        npy = tmp_path / f"{label}.npy"
        sample = ["sample", str(out), "--sampler", "gaussian-fit", "--condition", str(label)]
        assert main([*sample, "--format", "npy", "--num-samples", "8", "--out", str(npy)]) == 0
        draws[label] = np.load(npy)
    assert not np.allclose(draws[2], draws[5])
    evaluated = ["evaluate", str(out), "--metrics", "sample-quality", "--num-samples", "200"]
    assert main([*evaluated, "--quiet"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    quality = report["metrics"]["sample-quality"]
    assert quality["sampler"] == "GaussianFitSampler"
    assert 0 <= quality["conditional_accuracy"] <= 1


def test_a_code_fit_needs_the_training_labels(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Data streamed without labels at sampling time: one error line, and the way out."""
    import dataclasses

    import vaekit.runs

    real = vaekit.runs.build_dataset

    def without_labels(*args: object, **kwargs: object):
        dataset = real(*args, **kwargs)
        return dataclasses.replace(dataset, train=dataclasses.replace(dataset.train, y=None))

    monkeypatch.setattr(vaekit.runs, "build_dataset", without_labels)
    assert main(["sample", str(run), "--sampler", "flow"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaekit: error: --sampler flow fits the codes") and "Traceback" not in err
    assert "use --sampler prior or markov-chain" in err


def test_conditions_that_cannot_be_met_are_refused_before_a_run_exists(
    tmp_path: Path, capsys
) -> None:
    unlabelled = tmp_path / "x.npy"
    np.save(unlabelled, np.random.default_rng(0).random((50, 4), dtype=np.float32))
    argv = ["train", "--config", TINY, "--quiet", "--set", "model.conditional=true"]
    for extra, fragment in (
        (["--set", "model.prior='vamp'"], "does not combine with model.prior"),
        (
            ["--set", "data.name=arrays", "--set", f"data.path={str(unlabelled)!r}"],
            "needs class labels",
        ),
    ):
        out = tmp_path / "run"
        assert main([*argv, "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err
        assert not out.exists()


def test_classes_named_by_the_data_are_asked_for_by_name(tmp_path: Path, capsys) -> None:
    """A CSV label column of text names the classes: the run records the names (sorted, so
    'heavy' is 0), --condition takes a name or an index, and an unknown one lists the names."""
    rng = np.random.default_rng(0)
    table = tmp_path / "items.csv"
    lines = ["a,b,c,kind"]
    for i in range(200):
        kind = ("light", "heavy")[i % 2]
        shift = 3.0 if kind == "heavy" else 0.0
        lines.append(",".join(f"{v + shift:.4f}" for v in rng.normal(size=3)) + f",{kind}")
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "named"
    settings = ["data.name='arrays'", f"data.path='{table}'", "data.label_column='kind'"]
    settings += ["model.likelihood='gaussian'", "model.conditional=true", "data.limit=none"]
    argv = ["train", "--config", TINY, "--out", str(out), "--quiet"]
    assert main([*argv, *(x for s in settings for x in ("--set", s))]) == 0
    assert json.loads((out / "config.json").read_text())["class_names"] == ["heavy", "light"]
    draws = {}
    for condition in ("heavy", "0", "light"):
        path = tmp_path / f"{condition}.npy"
        sample = ["sample", str(out), "--condition", condition, "--format", "npy", "--seed", "3"]
        assert main([*sample, "--num-samples", "50", "--out", str(path)]) == 0
        draws[condition] = np.load(path)
    assert np.array_equal(draws["heavy"], draws["0"])  # the name is the index
    assert not np.allclose(draws["heavy"], draws["light"])
    capsys.readouterr()
    assert main(["sample", str(out), "--condition", "medium"]) == 2
    assert "give a class index 0..1 or one of: heavy, light" in capsys.readouterr().err


def test_a_limit_that_leaves_a_named_class_out_still_knows_every_class(
    tmp_path: Path, capsys
) -> None:
    """data.limit keeps the first images in path order, here none of 'cat': the model is still
    built for the three named classes, and asking for 'cat' draws (an unseen class) instead of
    failing."""
    rng = np.random.default_rng(0)
    for name in ("ant", "bee", "cat"):
        for i in range(60):
            path = tmp_path / "kinds" / name / f"{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(path)
    out = tmp_path / "run"
    settings = ["data.name='image-folder'", f"data.path='{tmp_path / 'kinds'}'", "data.limit=100"]
    settings += ["data.image_size=8", "data.channels=1", "model.conditional=true"]
    argv = ["train", "--config", TINY, "--out", str(out), "--quiet"]
    assert main([*argv, *(x for s in settings for x in ("--set", s))]) == 0
    meta = json.loads((out / "config.json").read_text())
    assert meta["num_classes"] == 3 and meta["class_names"] == ["ant", "bee", "cat"]
    assert main(["sample", str(out), "--condition", "cat", "--out", str(tmp_path / "c.png")]) == 0
