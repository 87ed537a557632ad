"""Promise 3, continued: a run directory is never clobbered. --overwrite replaces only a run,
keeps it until the new one has finished, and a directory one process trains into is refused
to every other."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import vaekit
import vaekit.experiment
import vaekit.training.run_claim
from vaekit.cli import main
from vaekit.errors import CheckpointError, VaekitError
from vaekit.training.launch import run_trainer
from vaekit.training.rollback import TrainingDiverged
from vaekit.training.run_claim import LOCK_NAME, replaced_path

fcntl = pytest.importorskip("fcntl")  # the lock is what these tests are about

CONFIG = str(Path(__file__).parents[2] / "configs" / "tiny.toml")
TINY = ["--config", CONFIG, "--quiet", "--set", "train.epochs=1"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(
    tmp_path: Path, capsys: Any, no_figures: None, tally: Callable
) -> None:
    mine = tmp_path / "thesis"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.txt").write_text("three years")
    before = snapshot(mine)
    assert main(["train", *TINY, "--out", str(mine), "--overwrite"]) == 2
    assert "no vaekit run" in capsys.readouterr().err
    assert snapshot(mine) == before
    tally("bad_inputs_tried")


def test_overwrite_never_replaces_the_working_directory(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, no_figures: None, tally: Callable
) -> None:
    before = snapshot(run)
    monkeypatch.chdir(run)
    assert main(["train", *TINY, "--out", ".", "--overwrite"]) == 2
    assert "working directory" in capsys.readouterr().err
    assert snapshot(run) == before
    tally("bad_inputs_tried")


def test_a_failed_overwrite_keeps_the_old_run(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, no_figures: None
) -> None:
    def diverging(*args: Any, **kwargs: Any) -> None:  # trains and checkpoints, then fails
        run_trainer(*args, **kwargs)
        raise TrainingDiverged("training diverged (injected)")

    monkeypatch.setattr(vaekit.experiment, "run_trainer", diverging)
    before = snapshot(run)
    assert main(["train", *TINY, "--set", "train.seed=1", "--out", str(run), "--overwrite"]) == 3
    err = capsys.readouterr().err
    assert err.count("vaekit: error:") == 1 and "training diverged" in err
    assert f"kept in {str(replaced_path(run))!r}" in err
    assert snapshot(replaced_path(run)) == before  # the old run, whole
    assert (run / "training_state.pt").is_file()  # the failed one, to inspect or resume
    # A further --overwrite is refused until the kept run is dealt with.
    monkeypatch.undo()
    assert main(["train", *TINY, "--out", str(run), "--overwrite"]) == 2
    assert "earlier --overwrite" in capsys.readouterr().err
    assert snapshot(replaced_path(run)) == before


def test_a_finished_overwrite_leaves_only_the_new_run(run: Path, no_figures: None) -> None:
    old_model = (run / "model.safetensors").read_bytes()
    assert main(["train", *TINY, "--set", "train.seed=1", "--out", str(run), "--overwrite"]) == 0
    assert not replaced_path(run).exists()
    assert (run / "model.safetensors").read_bytes() != old_model
    assert json.loads((run / "config.json").read_text())["config"]["train"]["seed"] == 1


def hold(path: Path) -> Any:
    """Hold ``path`` as a training process does (another open file, as another process has)."""
    handle = (path / LOCK_NAME).open("ab")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def test_a_run_being_trained_is_refused_to_a_second_process(
    run: Path, capsys: Any, no_figures: None, tally: Callable
) -> None:
    handle = hold(run)
    try:
        before = snapshot(run)
        assert main(["train", "--resume", str(run), "--quiet"]) == 2
        assert "another vaekit process is training into" in capsys.readouterr().err
        assert main(["train", *TINY, "--out", str(run), "--overwrite"]) == 2
        assert "another vaekit process is training into" in capsys.readouterr().err
        assert snapshot(run) == before and not replaced_path(run).exists()
    finally:
        handle.close()
    tally("bad_inputs_tried", 2)
    # Released: the same commands go through.
    assert main(["train", "--resume", str(run), "--quiet", "--set", "train.epochs=2"]) == 0


def test_a_new_run_holds_its_directory_while_it_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, no_figures: None
) -> None:
    """While the first run trains (its epoch callback), a second into the same --out, or a
    resume of it, is refused; the first run ends normally."""
    out = tmp_path / "run"
    seen: list[int] = []

    def second_process(row: dict[str, float]) -> None:
        if not seen:
            with pytest.raises(Exception, match="another vaekit process"):
                vaekit.experiment.train(
                    vaekit.load_config(CONFIG), out, overwrite=True, progress=False
                )
        seen.append(1)

    config = vaekit.load_config(CONFIG)
    vaekit.experiment.train(config, out, progress=False, callbacks=[second_process])
    assert seen and (out / "model.safetensors").is_file() and not replaced_path(out).exists()


def fails_before_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    def trainer_fails(*args: Any, **kwargs: Any) -> None:
        raise VaekitError("no trainer (injected)")

    monkeypatch.setattr(vaekit.experiment, "make_trainer", trainer_fails)


def test_a_run_that_fails_before_writing_leaves_nothing(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, no_figures: None
) -> None:
    """A new directory is removed again; an overwritten run is put back whole."""
    fails_before_writing(monkeypatch)
    new = tmp_path / "new"
    assert main(["train", *TINY, "--out", str(new)]) == 2
    assert not new.exists()
    before = snapshot(run)
    assert main(["train", *TINY, "--out", str(run), "--overwrite"]) == 2
    assert "injected" in capsys.readouterr().err
    assert snapshot(run) == before and not replaced_path(run).exists()
    # A directory left holding only its lock file (a process killed at that point) is free.
    new.mkdir()
    (new / LOCK_NAME).touch()
    monkeypatch.undo()
    assert main(["train", *TINY, "--out", str(new)]) == 0


def test_overwrite_through_a_symlink_replaces_the_link_not_its_target(
    run: Path, tmp_path: Path, no_figures: None
) -> None:
    before = snapshot(run)
    link = tmp_path / "latest"
    link.symlink_to(run, target_is_directory=True)
    assert main(["train", *TINY, "--out", str(link), "--overwrite"]) == 0
    assert link.is_dir() and not link.is_symlink() and (link / "config.json").is_file()
    assert snapshot(run) == before and not replaced_path(link).exists()
    assert main(["train", *TINY, "--out", str(link), "--overwrite"]) == 0  # released


def test_a_file_system_without_locks_trains_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_figures: None
) -> None:
    def no_locks(*args: Any) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(vaekit.training.run_claim.fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match="without locks"):
        assert main(["train", *TINY, "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_fit_overwrites_only_runs(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    model = vaekit.build_model(vaekit.load_config(CONFIG).model, (1, 4, 4))
    x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(CheckpointError, match="no vaekit run"):
        vaekit.fit(model, x, out=mine, overwrite=True, epochs=1)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    vaekit.fit(model, x, out=tmp_path / "run", epochs=1, batch_size=10)
    vaekit.fit(model, x, out=tmp_path / "run", overwrite=True, epochs=1, batch_size=10)
    assert not replaced_path(tmp_path / "run").exists()
