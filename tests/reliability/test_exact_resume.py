"""Promise 2: a run interrupted, then resumed in a fresh process, ends bitwise-equal to one not.

The recipe exercises every piece of state: dynamic binarisation and reparameterised samples draw
from the trainer's generator, the KL warm-up ends mid-run, the learning rate follows a cosine,
and a checkpoint every 3 steps (5 steps per epoch) lets the run stop mid-epoch with partial
metric sums. The interruption is a crash straight after a checkpoint was written.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from reliability_helpers import (
    assert_trees_equal,
    run_child,
    tiny_config,
    write_unit_arrays,
)

import vaekit.experiment
import vaekit.runs
import vaekit.training.launch
import vaekit.training.run_files
from vaekit.config import Config
from vaekit.models import MODELS
from vaekit.training.checkpoint import load_training_state, save_training_state

RECIPE = (
    "data.name=arrays",
    "data.binarize=dynamic",
    "train.epochs=3",
    "train.warmup_epochs=1.5",
    "train.schedule=cosine",
    "train.checkpoint_every_steps=3",
)
# The adversarial autoencoder has two parameter groups, so two optimisers to restore; the
# weight average (train.ema_decay) is one more piece of state; bfloat16 products (64 hidden
# units, wide enough for the direct path to cast them) must round the same way after a resume;
# compiled gradients (train.compile) are compiled again by the resuming process.
KINDS = [kind for kind in ("vae", "aae") if kind in MODELS]
VARIANTS = {
    **{kind: (f"model.kind={kind}",) for kind in KINDS},
    "vae-ema": ("model.kind=vae", "train.ema_decay=0.9"),
    "vae-bfloat16": ("model.kind=vae", "train.precision='bfloat16'", "model.hidden=[64]"),
    "vae-compiled": ("model.kind=vae", "train.compile=true"),
    # the compositions: a flow posterior, learned priors, two stochastic layers, labels, and a
    # bound with two optimisers
    "vae-iaf": ("model.kind=vae", "model.posterior='iaf'"),
    "vae-vamp": ("model.kind=vae", "model.prior='vamp'", "model.prior_components=3"),
    "vae-two-layers": ("model.kind=vae", "model.stochastic_layers=2", "model.lower_latent_dim=4"),
    "vae-conditional": ("model.kind=vae", "model.conditional=true"),
    "vae-piwae": (
        "model.kind=vae",
        "model.bound='piwae'",
        "model.num_particles=2",
        "model.bound_groups=2",
    ),
}
TWO_OPTIMISERS = ("aae", "vae-piwae")


class Crash(Exception):
    """Stands in for a power cut straight after a checkpoint."""


def train_until(
    config: Config, out: Path, cursor: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Train ``config`` into ``out`` and crash once the checkpoint at (epoch, batch) is written."""
    real = vaekit.training.launch.write_checkpoint

    def checkpoint_then_crash(run, model, state, history) -> None:  # type: ignore[no-untyped-def]
        real(run, model, state, history)
        if (state["cursor"]["epoch"], state["cursor"]["batch"]) == cursor:
            raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(vaekit.training.launch, "write_checkpoint", checkpoint_then_crash)
        patch.setattr(vaekit.experiment, "render_run_figures", lambda *a, **k: [])
        with pytest.raises(Crash):
            vaekit.experiment.train(config, out, progress=False)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """RECIPE on 300 random 8x8 images in [0, 1] (no scikit-learn import in the children)."""
    path = write_unit_arrays(tmp_path_factory.mktemp("data"))
    return [*RECIPE, f"data.path={str(path)!r}"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, recipe: list[str]) -> dict[str, Path]:
    """The uninterrupted runs, one per model kind."""
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vaekit.experiment, "render_run_figures", lambda *a, **k: [])
        for variant, overrides in VARIANTS.items():
            out = tmp_path_factory.mktemp("reference") / variant
            vaekit.experiment.train(tiny_config(*recipe, *overrides), out, progress=False)
            runs[variant] = out
    return runs


def assert_same_run(a: Path, b: Path) -> None:
    """Parameters, optimiser moments, RNGs, cursor and every logged loss, bit for bit."""
    assert_trees_equal(
        load_training_state(a / "training_state.pt"), load_training_state(b / "training_state.pt")
    )
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


SCENARIOS = {
    "vae-epoch-boundary": ("vae", (1, 0)),
    "vae-mid-epoch": ("vae", (1, 1)),
    **{f"{kind}-mid-epoch": (kind, (1, 1)) for kind in KINDS if kind != "vae"},
    "vae-ema-mid-epoch": ("vae-ema", (1, 1)),
    "vae-bfloat16-mid-epoch": ("vae-bfloat16", (1, 1)),
    "vae-compiled-mid-epoch": ("vae-compiled", (1, 1)),
    "vae-iaf-mid-epoch": ("vae-iaf", (1, 1)),
    "vae-vamp-mid-epoch": ("vae-vamp", (1, 1)),
    "vae-two-layers-mid-epoch": ("vae-two-layers", (1, 1)),
    "vae-conditional-mid-epoch": ("vae-conditional", (1, 1)),
    "vae-piwae-mid-epoch": ("vae-piwae", (1, 1)),
}

# Resumes every run named on the command line; the interrupted runs happened in the test
# process, so none of them shares memory with this one (one child keeps the suite quick).
RESUME_CHILD = """
import sys
import vaekit.experiment
vaekit.experiment.render_run_figures = lambda *a, **k: []
from vaekit.cli import main
raise SystemExit(max(main(["train", "--resume", run, "--quiet"]) for run in sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory, recipe: list[str]) -> dict[str, Path]:
    """Each scenario's run, crashed in this process and resumed in a fresh one."""
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, (variant, cursor) in SCENARIOS.items():
            runs[name] = tmp_path_factory.mktemp("resumed") / name
            train_until(tiny_config(*recipe, *VARIANTS[variant]), runs[name], cursor, patch)
    for name, (variant, cursor) in SCENARIOS.items():
        state = load_training_state(runs[name] / "training_state.pt")
        assert (state["cursor"]["epoch"], state["cursor"]["batch"]) == cursor
        assert bool(state["sums"]) == (cursor[1] > 0)  # mid-epoch: partial metric sums saved
        assert len(state["optimizers"]) == (2 if variant.startswith(TWO_OPTIMISERS) else 1)
        assert ("average" in state) == variant.endswith("-ema")
    done = run_child(RESUME_CHILD, *(str(run) for run in runs.values()), timeout=180)
    assert done.returncode == 0, done.stderr
    return runs


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_resume_in_a_fresh_process_is_bitwise_exact(
    scenario: str, reference: dict[str, Path], resumed: dict[str, Path], tally: Callable
) -> None:
    tally("faults_injected")
    assert_same_run(reference[SCENARIOS[scenario][0]], resumed[scenario])
    tally("faults_survived")


def test_resume_without_the_rng_state_diverges(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_figures: None,
    reference: dict[str, Path],
    recipe: list[str],
) -> None:
    """The negative control: the same resume with the generator freshly seeded must differ."""
    config = tiny_config(*recipe, "model.kind=vae")
    out = tmp_path / "run"
    train_until(config, out, (1, 1), monkeypatch)
    intact = tmp_path / "intact"
    shutil.copytree(out, intact)
    state = load_training_state(out / "training_state.pt")
    fresh = torch.Generator().manual_seed(config.train.seed).get_state()
    state["rng"]["generator"] = fresh  # what a checkpoint without RNG state would resume with
    del state["format_version"]
    save_training_state(out / "training_state.pt", state)
    vaekit.experiment.train(config, out, resume=True, progress=False)
    vaekit.experiment.train(config, intact, resume=True, progress=False)
    assert_same_run(reference["vae"], intact)  # in-process resume is exact too
    with pytest.raises(AssertionError):
        assert_same_run(reference["vae"], out)
    ours = load_training_state(out / "training_state.pt")["model"]
    theirs = load_training_state(reference["vae"] / "training_state.pt")["model"]
    assert any(not torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_run_started_before_a_setting_existed_resumes_exactly(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_figures: None,
    reference: dict[str, Path],
    recipe: list[str],
    tally: Callable,
) -> None:
    """A vaekit upgrade that adds a setting (with a default that keeps the old behaviour) must
    not strand runs begun before it: their config.json and state hash lack the new key."""
    tally("faults_injected")
    config = tiny_config(*recipe, "model.kind=vae")
    out = tmp_path / "run"
    real = vaekit.training.run_files.config_to_dict

    def without_precision(config: Config) -> dict:  # what an older vaekit wrote and hashed
        tree = real(config)
        del tree["train"]["precision"]
        return tree

    with monkeypatch.context() as patch:
        patch.setattr(vaekit.training.run_files, "config_to_dict", without_precision)
        patch.setattr(vaekit.runs, "config_to_dict", without_precision)
        train_until(config, out, (1, 1), patch)
    assert "precision" not in (out / "config.json").read_text()
    vaekit.experiment.train(config, out, resume=True, progress=False)
    for name in ("metrics.jsonl", "model.safetensors"):
        assert (out / name).read_bytes() == (reference["vae"] / name).read_bytes()
    tally("faults_survived")
