"""docs/how-to/own-data.md runs as written: its Python blocks and console commands, in page
order, in one empty directory holding a copy of configs/; a command shown with a
`vaekit: error:` line exits 2 with that error, every other command exits 0."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from vaekit.cli import main

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "how-to" / "own-data.md"
BLOCK = re.compile(r"```(python|console)\n(.*?)```", flags=re.S)


def steps(text: str) -> list[tuple[str, str, str | None]]:
    """(kind, code, expected error line or None) for each Python block and console command."""
    found: list[tuple[str, str, str | None]] = []
    for kind, body in BLOCK.findall(text):
        if kind == "python":
            found.append((kind, body, None))
            continue
        lines = body.strip().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ "):
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                found.append((kind, line[2:], nxt if nxt.startswith("vaekit: error:") else None))
    return found


def test_the_own_data_how_to_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "cache"))
    namespace: dict[str, object] = {"__name__": "own_data"}
    ran = 0
    for kind, code, error in steps(PAGE.read_text()):
        if kind == "python":
            exec(compile(code, str(PAGE), "exec"), namespace)
            continue
        argv = shlex.split(code)
        if argv[0] == "mv":
            shutil.move(argv[1], argv[2])
            continue
        assert argv[0] == "vaekit", code
        capsys.readouterr()
        status = main(argv[1:])
        err = capsys.readouterr().err.strip()
        if error is None:
            assert status == 0, (code, err)
        else:
            # the shown line up to its first parenthesis (details such as a library's own
            # wording of a decoding error may differ)
            assert status == 2 and err.startswith(error.split("(")[0]), (code, err)
        ran += 1
    assert ran >= 12
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "kinds",
        "shapes",
        "shapes-streamed",
        "strokes",
        "wine",
    ]  # fmt: skip  (the refused commands left no run directory)
    # the class folders labelled the conditional run; the flat folder stayed unlabelled
    assert json.loads((tmp_path / "runs" / "kinds" / "config.json").read_text())["num_classes"] == 2
    assert "num_classes" not in json.loads(
        (tmp_path / "runs" / "shapes" / "config.json").read_text()
    )
    header = (tmp_path / "wine-samples.csv").read_text().splitlines()[0]
    assert header.split(",")[:2] == ["alcohol", "malic_acid"]
