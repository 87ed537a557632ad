"""Bad paths, counts and sizes given to any subcommand: one ``vaekit: error:`` line, exit 2,
nothing written, whether the problem is found before the work starts or while it runs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vaekit.cli.checks
import vaekit.cli.data
from vaekit.cli import main

ROOT = Path(__file__).parents[1]
TINY = str(ROOT / "configs" / "tiny.toml")


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A Gaussian run_dir trained on 6 columns, and files of 7 and of 6 other columns."""
    folder = tmp_path_factory.mktemp("vectors")
    rng = np.random.default_rng(0)
    np.save(folder / "six.npy", rng.normal(size=(100, 6)).astype(np.float32))
    np.save(folder / "seven.npy", rng.normal(size=(100, 7)).astype(np.float32))
    np.save(folder / "other.npy", rng.normal(size=(100, 6)).astype(np.float32))
    out = folder / "run"
    data = ["--set", "data.name=arrays", "--set", f"data.path={folder / 'six.npy'!s}"]
    model = ["--set", "model.likelihood=gaussian", "--set", "train.epochs=1"]
    assert main(["train", "--config", TINY, *data, *model, "--out", str(out), "--quiet"]) == 0
    return out, folder / "seven.npy"


def one_error(argv: list[str], message: str, capsys: Any) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaekit: error:") and err.count("\n") == 1, err
    assert message in err, err


def test_counts_seeds_and_lists_are_checked_before_any_work(run_dir: Path, capsys: Any) -> None:
    cases = [
        (["evaluate", str(run_dir), "--threads", "0"], "--threads must be at least 1, got 0"),
        (["evaluate", str(run_dir), "--batch-size", "-2"], "--batch-size must be at least 1"),
        (["evaluate", str(run_dir), "--metrics", ""], "--metrics is empty"),
        (["sample", str(run_dir), "--sampler", "markov-chain", "--steps", ","], "--steps is empty"),
        (["sample", str(run_dir), "--seed", str(2**64)], "--seed must be an integer in [0, 2**63)"),
        (["interpolate", str(run_dir), "--pairs", "100000"], "ask for at most"),
    ]
    for argv, message in cases:
        one_error(argv, message, capsys)
    one_error(["train", "--set", f"train.seed={2**64}", "--quiet"], "train.seed", capsys)


def test_train_options_that_do_not_apply_are_refused(
    run_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    before = sorted(p.name for p in run_dir.iterdir())
    one_error(
        ["train", "--resume", str(run_dir), "--out", str(tmp_path / "x")], "drop --out", capsys
    )
    one_error(
        ["train", "--config", TINY, "--data-path", "x.npy", "--out", str(tmp_path / "y")],
        "--set data.path=FILE",
        capsys,
    )
    assert sorted(p.name for p in run_dir.iterdir()) == before
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_output_paths_that_cannot_be_written(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    a_folder = tmp_path / "folder"
    a_folder.mkdir()
    new = ["train", "--config", TINY, "--quiet", "--out"]
    one_error([*new, str(a_file)], "is a file", capsys)
    one_error([*new, str(a_file / "run")], "which is a file", capsys)
    one_error(["sample", str(run_dir), "--out", str(a_folder)], "is a folder", capsys)
    one_error(
        ["evaluate", str(run_dir), "--out", str(a_file / "e.json")], "which is a file", capsys
    )
    one_error(["compare", "a.json", "b.json", "--out", str(a_folder)], "is a folder", capsys)
    assert a_file.read_text() == "mine" and not any(a_folder.iterdir())
    # A folder this process may not write (as root, chmod would not stop it).
    monkeypatch.setattr(vaekit.cli.checks.os, "access", lambda path, mode: False)
    one_error(
        ["sample", str(run_dir), "--out", str(a_folder / "s.png")], "cannot be written", capsys
    )


def test_file_and_memory_failures_while_working_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def fails(error: BaseException) -> Any:
        def handler(args: Any) -> int:
            raise error

        return handler

    read_only = OSError(30, "Read-only file system")
    read_only.filename = "data/mnist"
    monkeypatch.setattr(vaekit.cli.data, "cmd_data_fetch", fails(read_only))
    one_error(["data", "fetch", "mnist"], "Read-only file system ('data/mnist')", capsys)
    too_big = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 12 TB")
    monkeypatch.setattr(vaekit.cli.data, "cmd_data_fetch", fails(too_big))
    one_error(["data", "fetch", "mnist"], "not enough memory", capsys)
    monkeypatch.setattr(vaekit.cli.data, "cmd_data_fetch", fails(MemoryError()))
    one_error(["data", "fetch", "mnist"], "not enough memory (MemoryError)", capsys)
    # Any other RuntimeError is a bug, not bad input: it is not dressed up as one.
    monkeypatch.setattr(vaekit.cli.data, "cmd_data_fetch", fails(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["data", "fetch", "mnist"])


def test_data_that_do_not_fit_the_run(vectors: tuple[Path, Path], capsys: Any) -> None:
    trained, seven = vectors
    other = seven.with_name("other.npy")
    for command in (["evaluate", "--metrics", "elbo"], ["reconstruct"]):
        argv = [command[0], str(trained), *command[1:], "--data-path"]
        one_error([*argv, str(seven)], "have points of shape (7,), but", capsys)
        one_error([*argv, str(other)], "differ from those", capsys)
    moved = seven.with_name("moved.npy")
    shutil.copy(seven.with_name("six.npy"), moved)  # the same data elsewhere are fine
    assert (
        main(["reconstruct", str(trained), "--data-path", str(moved), "--out", str(moved) + ".png"])
        == 0
    )


def test_data_path_on_a_dataset_that_reads_no_file(run_dir: Path, capsys: Any) -> None:
    """The tiny recipe trains on the built-in digits: a --data-path would be ignored, so every
    command that reads the run refuses it and says what moves a data cache."""
    message = "'digits', which reads no file or folder; leave --data-path out; a moved data cache"
    for command in (
        ["sample", str(run_dir)],
        ["evaluate", str(run_dir), "--metrics", "elbo"],
        ["train", "--resume", str(run_dir)],
    ):
        one_error([*command, "--data-path", "elsewhere.npz"], message, capsys)


def test_paths_of_the_wrong_kind_say_so(run_dir: Path, tmp_path: Path, capsys: Any) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    out = ["--out", str(tmp_path / "r"), "--quiet"]
    one_error(["train", "--config", str(tmp_path), *out], "is a folder, not a file", capsys)
    one_error(["sample", str(a_file)], "is a file, not a folder", capsys)
    arrays = ["train", "--config", TINY, "--set", "data.name=arrays", *out]
    one_error([*arrays, "--set", "data.path=nope.csv"], "nope.csv is not found", capsys)
    one_error([*arrays, "--set", f"data.path={tmp_path}"], "is a folder, not a file", capsys)
    assert not (tmp_path / "r").exists()


def test_a_recipe_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    recipe = tmp_path / "bom.toml"
    recipe.write_text("\ufeff" + (ROOT / "configs" / "tiny.toml").read_text(), encoding="utf-8")
    assert vaekit.load_config(recipe) == vaekit.load_config(TINY)


def test_damaged_run_files_say_how_to_repair_them(
    run_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "model.safetensors").unlink()
    one_error(["sample", str(copy)], f"vaekit train --resume {copy}", capsys)
    # ... and that command does: the finished run_dir's weights are written again.
    assert main(["train", "--resume", str(copy), "--quiet"]) == 0
    assert (copy / "model.safetensors").read_bytes() == (run_dir / "model.safetensors").read_bytes()
    damaged = b"PK\x03\x04 not a state"
    (copy / "training_state.pt").write_bytes(damaged)
    one_error(["train", "--resume", str(copy), "--quiet"], "restore the file from a copy", capsys)
    assert (copy / "training_state.pt").read_bytes() == damaged  # left as it was
