"""docs/tutorial.md runs as written: its console commands, in page order, in one empty
directory, each exiting 0 and writing what the page says it writes."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from vaekit.cli import main

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "tutorial.md"
CONSOLE = re.compile(r"```console\n(.*?)```", flags=re.S)


def commands(text: str) -> list[str]:
    """The `$ ` lines of the page's console blocks, in order."""
    return [
        line[2:]
        for body in CONSOLE.findall(text)
        for line in body.splitlines()
        if line.startswith("$ ")
    ]


def test_the_tutorial_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "cache"))
    steps = commands(PAGE.read_text())
    assert [shlex.split(c)[:2] for c in steps] == [
        ["vaekit", "train"],
        ["vaekit", "sample"],
        ["vaekit", "evaluate"],
        ["vaekit", "sample"],
    ]
    for code in steps:
        capsys.readouterr()
        status = main(shlex.split(code)[1:])
        assert status == 0, (code, capsys.readouterr().err)
    run = tmp_path / "runs" / "first"
    for name in ("config.json", "model.safetensors", "training_state.pt", "provenance.json"):
        assert (run / name).is_file(), name
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 10  # the page's --set train.epochs=10
    assert epochs[-1]["val/elbo"] > epochs[0]["val/elbo"]  # "both should fall"
    report = json.loads((run / "evaluation.json").read_text())["metrics"]
    assert report["log-likelihood"]["log_likelihood"] >= report["elbo"]["elbo"]
    assert report["log-likelihood"]["num_points"] == 359  # the test digits the page names
    assert report["active-units"]["latent_dim"] == 8
    assert (run / "evaluation.per-example.safetensors").is_file()
    for figure in ("samples.png", "chain.png"):
        assert (tmp_path / figure).stat().st_size > 0, figure
