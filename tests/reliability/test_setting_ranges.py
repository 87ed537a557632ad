"""Every setting is checked before anything is created: a bad value of any key is one
``vaekit: error:`` line, exit 2, no traceback and no run directory."""

from __future__ import annotations

import math
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vaekit.cli import main
from vaekit.config import Config, load_config
from vaekit.config_ranges import RANGES

ROOT = Path(__file__).parents[2]
TINY = str(ROOT / "configs" / "tiny.toml")


def _annotation(key: str) -> object:
    section, name = key.split(".")
    section_type = typing.get_type_hints(Config)[section]
    return typing.get_type_hints(section_type)[name]


def _numbers(tp: object) -> st.SearchStrategy[object]:
    """Values of the setting's own type (int or float), bad ones among them."""
    args = typing.get_args(tp)
    base = next((a for a in args if a is not type(None)), tp) if args else tp
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        width = len(typing.get_args(base)) if typing.get_args(base)[-1] is not Ellipsis else 2
        return st.lists(_numbers(item), min_size=width, max_size=width)
    if base is int:
        return st.integers(-(10**6), 10**6)
    return st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -1.0, 2.5])


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def _allowed(key: str, value: object) -> bool:
    test, _ = RANGES[key]
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(test(item) for item in items)


def _fails_cleanly(
    override: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], *, also: str = ""
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--config", TINY, "--set", override, "--out", str(out), "--quiet"]
    argv += ["--set", also] if also else []
    assert main(argv) == 2, override
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaekit: error:"), (override, err)
    assert "Traceback" not in err[0]
    assert not out.exists(), override


@pytest.mark.parametrize("key", sorted(RANGES))
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_value_out_of_range_is_one_error_and_creates_nothing(
    key: str, data: st.DataObject, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    value = data.draw(_numbers(_annotation(key)), label=key)
    assume(not _allowed(key, value))
    _fails_cleanly(f"{key}={_toml(value)}", tmp_path, capsys)


@pytest.mark.parametrize(
    ("override", "also"),
    [
        ("model.hidden=[]", ""),
        ("model.hidden=[0]", ""),
        ("train.lr=-1", ""),
        ("train.batch_size=0", ""),
        ("train.epochs=-1", ""),
        ("model.corruption_level=1.5", "model.corruption='masking'"),
        ("data.name='digitz'", ""),
        ("model.kind='vea'", ""),
        ("model.activation='rleu'", ""),
        ("model.adversarial_weight=2.0", ""),  # does not apply to a VAE
        ("train.schedule='linear'", ""),
    ],
)
def test_the_reported_bad_settings_fail_before_any_directory(
    override: str, also: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fails_cleanly(override, tmp_path, capsys, also=also)


def test_the_recipes_are_within_range() -> None:
    for recipe in sorted((ROOT / "configs").glob("*.toml")):
        load_config(recipe)  # raises ConfigError for a value out of range
