"""docs/how-to/own-model.md runs as written: its Python blocks, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "how-to" / "own-model.md"


def test_the_own_model_and_data_how_to_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "own_model_and_data"}
    exec(compile("\n".join(blocks), str(PAGE), "exec"), namespace)
    history = namespace["history"]
    assert isinstance(history, list) and [row["epoch"] for row in history] == [1.0, 2.0]
    assert torch.isfinite(torch.tensor(history[-1]["val/elbo"]))
    assert (tmp_path / "runs" / "laplace-vae" / "training_state.pt").is_file()
