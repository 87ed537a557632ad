"""The conditional VAE on MNIST: samples drawn for class c are classified as c by the evaluation
suite's extractor at least 90% of the time (slow: six MNIST epochs through autograd, plus the
extractor's training the first time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vaekit.cli import main

RECIPE = str(Path(__file__).parents[2] / "configs" / "mnist-vae.toml")


@pytest.mark.slow
def test_class_conditional_mnist_samples_are_classified_as_their_class(tmp_path: Path) -> None:
    run = tmp_path / "cvae"
    # 4-d codes leave the class to the label (3 epochs: 0.88 of samples recognised, 6: 0.94)
    overrides = [
        "model.conditional=true",
        "model.latent_dim=4",
        "model.hidden=[500, 500]",
        "train.epochs=6",
    ]
    argv = ["train", "--config", RECIPE, "--out", str(run), "--quiet"]
    assert main([*argv, *(arg for value in overrides for arg in ("--set", value))]) == 0
    report = tmp_path / "evaluation.json"
    evaluate = ["evaluate", str(run), "--metrics", "sample-quality", "--num-samples", "2000"]
    assert main([*evaluate, "--out", str(report), "--quiet"]) == 0
    quality = json.loads(report.read_text())["metrics"]["sample-quality"]
    assert quality["extractor"]["objective"] == "classifier"
    assert quality["conditional_accuracy"] >= 0.9, quality["conditional_accuracy"]
