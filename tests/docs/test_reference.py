"""The generated reference covers the code: every config key with its meaning, every command
and option of the CLI, every public name of the Python API; and the site builds."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vaekit
from vaekit.cli import build_parser
from vaekit.config import Config, config_to_dict
from vaekit.config_ranges import RANGES
from vaekit.reference import (
    FREE_TEXT,
    REGISTRIES,
    cli_commands,
    cli_reference,
    config_keys,
    config_reference,
    expand,
)

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"


def _all_keys() -> list[str]:
    """Every key of the default config: the top-level ones, then ``section.key`` per table."""
    tree = config_to_dict(Config())
    top = [name for name, value in tree.items() if not isinstance(value, dict)]
    tables = [
        f"{name}.{key}" for name, value in tree.items() if isinstance(value, dict) for key in value
    ]
    return top + tables


def test_every_config_key_has_a_description() -> None:
    undocumented = [k.key for k in config_keys() if not k.doc]
    assert not undocumented, f"add a docstring under these fields in config.py: {undocumented}"


def test_the_config_reference_lists_every_key_with_its_default() -> None:
    page = config_reference()
    keys = {k.key: k for k in config_keys()}
    assert list(keys) == _all_keys()
    for key, entry in keys.items():
        row = next(line for line in page.splitlines() if f'<a id="{key}"></a>`{key}`' in line)
        assert f"`{entry.default}`" in row
    assert "`[256, 128]`" in page and "`0.002`" in page and "`1e-8`" in page


def test_the_config_reference_names_ranges_and_choices() -> None:
    keys = {k.key: k for k in config_keys()}
    for key, (_, allowed) in RANGES.items():
        assert allowed in keys[key].allowed
    assert '`"cosine"`' in keys["train.schedule"].allowed  # a Literal's choices
    assert '`"aae-gaussian"`' in keys["model.kind"].allowed  # a registry's names
    assert "not empty" in keys["model.hidden"].allowed
    assert keys["train.grad_clip"].type == "number or none"
    assert keys["model.hidden"].type == "list of integers"


def test_every_free_string_key_is_a_registry_name_or_declared_free_text() -> None:
    # A new string setting either names a registry (so the page lists its valid values) or
    # is declared free text in vaekit.reference.
    strings = [
        k.key
        for k in config_keys()
        if k.type in ("string", "string or none") and "`" not in k.allowed
    ]
    assert sorted(strings) == sorted(set(FREE_TEXT))
    assert set(REGISTRIES) <= {k.key for k in config_keys()}


def _top_level_commands(parser: argparse.ArgumentParser) -> list[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_the_cli_reference_lists_every_command_and_option() -> None:
    page = cli_reference()
    commands = cli_commands()
    assert {c.name.split()[1] for c in commands} == set(_top_level_commands(build_parser()))
    assert "vaekit data fetch" in [c.name for c in commands]
    sections = re.split(r"^## ", page, flags=re.M)[1:]
    assert [s.splitlines()[0] for s in sections] == [c.name for c in commands]
    for command, section in zip(commands, sections, strict=True):
        for action in command.parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert f"`{option}`" in section, f"{command.name}: {option} missing"
            if not action.option_strings:
                assert f"`{action.metavar or action.dest.upper()}`" in section


def test_markers_expand_and_unknown_ones_fail() -> None:
    assert expand("a\n<!-- generated: config-reference -->\nb").startswith("a\n## Top level")
    with pytest.raises(ValueError, match="config-reference"):
        expand("<!-- generated: nope -->")
    for name, marker in [("config", "config-reference"), ("cli", "cli-reference")]:
        assert f"<!-- generated: {marker} -->" in (DOCS / "reference" / f"{name}.md").read_text()


def test_the_api_page_documents_every_public_name() -> None:
    page = (DOCS / "reference" / "api.md").read_text()
    documented = re.findall(r"^:::\s*([\w.]+)", page, flags=re.M)
    public = [name for name in vaekit.__all__ if name != "__version__"]
    missing = [name for name in public if not any(d.rsplit(".", 1)[-1] == name for d in documented)]
    assert not missing, f"add '::: vaekit.NAME' to docs/reference/api.md for {missing}"
    for path in documented:
        module, _, name = path.rpartition(".")
        assert hasattr(sys.modules.get(module) or importlib.import_module(module), name), path


def _site_tools_installed() -> bool:
    names = ("mkdocs", "material", "mkdocstrings_handlers.python")
    try:
        return all(importlib.util.find_spec(name) is not None for name in names)
    except ModuleNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _site_tools_installed(), reason="the docs extra is not installed")
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not on PATH")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "config" / "index.html").is_file()
