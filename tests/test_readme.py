"""The README's commands and Python snippet run as written (on the default and tiny recipes)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_names_setup_run_and_test_commands() -> None:
    first = _blocks("bash")[0]
    assert "bash scripts/setup.sh" in first and "vaekit train" in first
    assert "python -m pytest" in _blocks("bash")[1]
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()


def test_default_train_command_runs_on_the_embedded_digits(workdir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vaekit", "train"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    (run,) = (workdir / "runs").iterdir()
    assert run.name.startswith("digits-vae-")
    for name in ("model.safetensors", "metrics.jsonl", "samples.png", "curves.png"):
        assert (run / name).is_file()
    assert "epoch  60/60" in result.stdout


def test_readme_python_snippet_runs(workdir: Path) -> None:
    (snippet,) = _blocks("python")
    namespace: dict[str, object] = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert (workdir / "runs" / "tiny" / "model.safetensors").is_file()
    assert (workdir / "runs" / "mine" / "model.safetensors").is_file()
    saved = load_file(str(workdir / "runs" / "mine" / "model.safetensors"))
    loaded = namespace["same"].state_dict()  # type: ignore[attr-defined]
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[key], value) for key, value in loaded.items())
    assert tuple(namespace["samples"].shape) == (16, 1, 8, 8)  # type: ignore[attr-defined]


def test_readme_cli_tour_runs(workdir: Path) -> None:
    from vaekit.cli import main

    tour = _blocks("bash")[2]
    run = workdir / "runs" / "tour"
    assert main(["train", "--config", "configs/tiny.toml", "--out", str(run), "--quiet"]) == 0
    for line in tour.splitlines():
        command = line.split("#")[0].split()
        if not command or "--resume" in command or command[1:2] == ["data"]:
            continue  # resume is covered by tests/reliability, fetch by tests/data
        runs = ("RUN", "RUN_A", "RUN_B", "runs/digits-vae-...")  # compare: the run with itself
        argv = [str(run) if arg in runs else arg for arg in command[1:]]
        if argv[0] == "train":
            argv += ["--out", str(workdir / "t"), "--quiet"]
        if argv == ["--help"]:
            continue  # argparse exits; tests/test_cli.py runs it in a subprocess
        assert main(argv) == 0, line
