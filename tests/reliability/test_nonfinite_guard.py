"""Promise 5: non-finite steps are skipped and counted on the device, runs of them roll back with
half the learning rate, too many rollbacks stop the run, and no checkpoint holds a NaN.

Faults are injected by wrapping ``model.loss`` and the hand-derived gradients
(``vaekit.accel.DirectELBO``): a NaN or infinite objective, a finite objective with a NaN
gradient, or a NaN written straight into a weight (a flipped bit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_helpers import assert_trees_equal, tiny_config

import vaekit.experiment
import vaekit.training.trainer
from vaekit.accel import DirectELBO
from vaekit.build import build_dataset, build_model
from vaekit.cli import main
from vaekit.data.base import Dataset
from vaekit.models import Autoencoder, Loss
from vaekit.training.checkpoint import load_training_state
from vaekit.training.guard import all_finite, clone_tree
from vaekit.training.rollback import TrainingDiverged
from vaekit.training.schedules import learning_rate
from vaekit.training.trainer import Trainer

STEPS_PER_EPOCH = 5  # tiny: 240 training digits in batches of 50


def inject(model: Autoencoder, faults: dict[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make training step i (counted from 0) go wrong as ``faults[i]`` says, on whichever path
    the trainer takes: gradients written by ``DirectELBO`` or autograd through ``loss``."""
    real_loss, real_direct, calls = model.loss, DirectELBO.__call__, [0]
    weight = next(model.parameters())
    bad_value = {"nan-loss": float("nan"), "inf-loss": float("inf")}

    def poison_weight(fault: str | None) -> None:
        if fault == "nan-weight":
            with torch.no_grad():
                weight.view(-1)[0] = float("nan")

    def direct(self: DirectELBO, x: torch.Tensor, **kwargs: Any) -> tuple[Loss, Any] | None:
        if self.model is not model:
            return real_direct(self, x, **kwargs)
        fault = faults.get(calls[0])
        poison_weight(fault)
        out = real_direct(self, x, **kwargs)
        if out is None:  # no direct path: the trainer calls loss, which counts the step
            return None
        calls[0] += 1
        loss, finite = out
        if fault in bad_value:
            objectives = {k: v * bad_value[fault] for k, v in loss.objectives.items()}
            return Loss(objectives, loss.metrics), finite
        if fault == "nan-grad":
            assert weight.grad is not None
            weight.grad.view(-1)[0] = float("nan")
            # as if the direct path had computed a NaN: the trainer trusts its test
            return loss, finite & weight.grad.isfinite().all()
        return out

    def loss(x: torch.Tensor, **kwargs: Any) -> Loss:
        if not model.training:  # validation passes are not steps
            return real_loss(x, **kwargs)
        fault = faults.get(calls[0])
        calls[0] += 1
        poison_weight(fault)
        out = real_loss(x, **kwargs)
        if fault in bad_value:
            objectives = {k: v * bad_value[fault] for k, v in out.objectives.items()}
            return Loss(objectives, out.metrics)
        if fault == "nan-grad":
            # sqrt has an infinite slope at 0: the value added is 0, its gradient 0 · inf = NaN.
            poison = 0.0 * torch.sqrt(weight - weight.detach()).sum()
            return Loss({k: v + poison for k, v in out.objectives.items()}, out.metrics)
        return out

    monkeypatch.setattr(model, "loss", loss)
    monkeypatch.setattr(DirectELBO, "__call__", direct)


# The trainer's switch for each gradient path: "off" never takes the hand-derived gradients.
ACCELERATE = {"direct": "auto", "autograd": "off"}


def tiny_model() -> tuple[Autoencoder, Dataset]:
    config = tiny_config()
    dataset = build_dataset(config.data, config.train.seed)
    return build_model(config.model, dataset.event_shape), dataset


def snapshot(trainer: Trainer) -> dict[str, Any]:
    optimizers = {k: opt.state_dict() for k, opt in trainer.optimizers.items()}
    return clone_tree({"model": trainer.model.state_dict(), "optimizers": optimizers})


@pytest.mark.parametrize("path", ["direct", "autograd"])
@pytest.mark.parametrize("masked", [True, False], ids=["device-masked", "host-checked"])
@pytest.mark.parametrize("fault", ["nan-loss", "inf-loss", "nan-grad"])
def test_a_bad_step_changes_nothing_and_is_counted(
    fault: str, masked: bool, path: str, monkeypatch: pytest.MonkeyPatch, tally: Callable
) -> None:
    if not masked:  # the fallback for devices without a fused Adam kernel
        monkeypatch.setattr(vaekit.training.trainer, "MASKABLE_DEVICES", ())
    model, dataset = tiny_model()
    bad = {2, 3, 6}
    inject(model, dict.fromkeys(bad, fault), monkeypatch)
    after: dict[int, dict[str, Any]] = {}  # cursor.step -> model and optimiser state
    trainer = Trainer(
        model,
        dataset,
        epochs=2,
        batch_size=50,
        lr=3e-3,
        weight_decay=1e-4,
        checkpoint_every=1,
        progress=False,
        on_checkpoint=lambda t: after.__setitem__(t.cursor.step, snapshot(t)),
        accelerate=ACCELERATE[path],
    )
    assert trainer.masked_step == masked and trainer.gradient_path == path
    trainer.fit()
    tally("faults_injected", len(bad))
    for step in range(1, 2 * STEPS_PER_EPOCH):
        if step in bad:  # parameters, both Adam moments and its step count: untouched
            assert_trees_equal(after[step + 1], after[step], f"step {step}")
        else:
            old, new = after[step]["model"], after[step + 1]["model"]
            assert any(not torch.equal(old[k], new[k]) for k in old), f"step {step}"
    assert trainer.guard.skipped == len(bad)
    assert (
        trainer.rollback.count == 0 and trainer.rollback.lr_scale == 1.0
    )  # skipped, not repaired later
    assert [r["skipped_steps"] for r in trainer.history] == [2.0, 3.0]
    assert all(all_finite(list(s["model"].values())) for s in after.values())
    assert all(torch.isfinite(torch.tensor(v)) for r in trainer.history for v in r.values())
    tally("faults_survived", len(bad))


def test_consecutive_bad_steps_roll_back_with_half_the_learning_rate(
    monkeypatch: pytest.MonkeyPatch, tally: Callable
) -> None:
    model, dataset = tiny_model()
    inject(model, dict.fromkeys([5, 6, 7], "nan-grad"), monkeypatch)  # epoch 2's first three
    saved: dict[int, dict[str, Any]] = {}
    trainer = Trainer(
        model,
        dataset,
        epochs=2,
        batch_size=50,
        lr=3e-3,
        max_bad_steps=3,
        checkpoint_every=9,
        progress=False,
        on_checkpoint=lambda t: saved.__setitem__(t.cursor.step, snapshot(t)),
    )
    trainer.fit()
    tally("faults_injected", 3)
    assert trainer.rollback.count == 1 and trainer.rollback.lr_scale == 0.5
    # The host looked at step 9 (every max_bad_steps), saw the run of 3 and restored the
    # checkpoint of step 5, the last good state, before saving step 9.
    assert sorted(saved) == [5, 9, 10]
    assert_trees_equal(saved[9], saved[5])
    schedule_lr = learning_rate(10, 10, lr=3e-3, schedule="constant")
    assert trainer.history[1]["lr"] == 0.5 * schedule_lr
    tally("faults_survived", 3)


def test_too_many_rollbacks_stop_the_run_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, tally: Callable
) -> None:
    model, dataset = tiny_model()
    inject(model, {i: "nan-loss" for i in range(7, 1000)}, monkeypatch)
    saved: list[dict[str, Any]] = []
    trainer = Trainer(
        model,
        dataset,
        epochs=50,
        batch_size=50,
        lr=3e-3,
        max_bad_steps=2,
        max_rollbacks=2,
        progress=False,
        on_checkpoint=lambda t: saved.append(snapshot(t)),
    )
    with pytest.raises(TrainingDiverged, match=r"training diverged: .* after 2 rollback\(s\)"):
        trainer.fit()
    tally("faults_injected", trainer.guard.skipped)
    assert trainer.rollback.count == 2 and trainer.rollback.lr_scale == 0.25
    assert all(all_finite(list(s["model"].values())) for s in saved)
    tally("faults_survived", trainer.guard.skipped)  # a clean stop, every checkpoint finite


def test_cli_exits_non_zero_when_training_diverges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_figures: None, capsys: Any, tally: Callable
) -> None:
    def build_faulty(*args: Any, **kwargs: Any) -> Autoencoder:
        model = build_model(*args, **kwargs)
        inject(model, {i: "inf-loss" for i in range(6, 1000)}, monkeypatch)
        return model

    monkeypatch.setattr(vaekit.experiment, "build_model", build_faulty)
    out = tmp_path / "run"
    argv = ["train", "--config", "configs/tiny.toml", "--out", str(out), "--quiet"]
    argv += ["--set", "train.epochs=50", "--set", "train.max_bad_steps=2"]
    assert main(argv) == 3
    assert "training diverged" in capsys.readouterr().err
    state = load_training_state(out / "training_state.pt")  # the last good checkpoint
    assert state["rollbacks"] >= 1 and all_finite(list(state["model"].values()))
    tally("faults_injected", state["guard"]["skipped"])
    tally("faults_survived", state["guard"]["skipped"])


@pytest.mark.parametrize("ema_decay", [None, 0.9], ids=["live", "averaged"])
def test_non_finite_parameters_are_never_saved(
    ema_decay: float | None, monkeypatch: pytest.MonkeyPatch, tally: Callable
) -> None:
    """A NaN written into a weight mid-epoch: the epoch-end check rolls back instead of saving.
    With weight averaging the NaN reaches the average too, which rolls back with the rest."""
    model, dataset = tiny_model()
    inject(model, {7: "nan-weight"}, monkeypatch)
    saved: list[dict[str, Any]] = []

    def keep(trainer: Trainer) -> None:
        state = snapshot(trainer)
        if trainer.average is not None:
            state["average"] = clone_tree(trainer.average.averages)
        saved.append(state)

    trainer = Trainer(
        model,
        dataset,
        epochs=3,
        batch_size=50,
        lr=3e-3,
        ema_decay=ema_decay,
        max_bad_steps=100,  # the guard's counters never trigger: only the pre-save check can
        progress=False,
        on_checkpoint=keep,
    )
    trainer.fit()
    tally("faults_injected")
    assert len(saved) == 3 and trainer.rollback.count == 1
    assert_trees_equal(saved[1]["model"], saved[0]["model"])  # epoch 2 rolled back to epoch 1
    if ema_decay is not None:
        assert_trees_equal(saved[1]["average"], saved[0]["average"])
        assert all(all_finite(state["average"]) for state in saved)
    for state in saved:
        assert all_finite(list(state["model"].values()))
        assert all_finite([t for o in state["optimizers"].values() for s in o["state"].values()
                           for t in s.values()])  # fmt: skip
    assert all(torch.isfinite(torch.tensor(r["val/loss"])) for r in trainer.history)
    tally("faults_survived")


HOST_READS = ("__bool__", "__int__", "__float__", "__index__", "item", "tolist", "numpy")


@contextmanager
def forbid_host_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any Python-level read of a tensor's value (what forces a GPU sync) raises."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tensor was read on the host during a training step")

    with monkeypatch.context() as patch:
        for name in HOST_READS:
            patch.setattr(torch.Tensor, name, refuse)
        yield


@pytest.mark.parametrize(
    ("masked", "ema_decay"),
    [(True, None), (True, 0.9), (False, None)],
    ids=["device-masked", "device-masked-averaged", "host-checked"],
)
def test_the_fast_path_never_reads_the_device(
    masked: bool, ema_decay: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not masked:  # the control: the host-checked fallback must trip the detector
        monkeypatch.setattr(vaekit.training.trainer, "MASKABLE_DEVICES", ())
    model, dataset = tiny_model()
    inject(model, {1: "nan-loss", 3: "nan-grad"}, monkeypatch)
    trainer = Trainer(
        model, dataset, epochs=1, batch_size=50, lr=3e-3, ema_decay=ema_decay, progress=False
    )
    _, steps = trainer._epoch_batches()
    if masked:
        with forbid_host_reads(monkeypatch):
            for step in steps:
                trainer._step(*step)
        assert trainer.guard.skipped == 2
    else:
        with forbid_host_reads(monkeypatch), pytest.raises(AssertionError, match="on the host"):
            for step in steps:
                trainer._step(*step)


@pytest.mark.parametrize("path", ["direct", "autograd"])
def test_direct_gradients_are_tested_where_they_are_written(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One process, no clipping: the trainer takes the direct path's own test (the flag
    ``DirectELBO`` returns) instead of reading every gradient again; autograd's gradients it
    tests itself."""
    model, dataset = tiny_model()

    def refuse(grads: list[torch.Tensor]) -> torch.Tensor:
        raise AssertionError("the trainer read the gradients again")

    monkeypatch.setattr(vaekit.training.trainer, "grads_finite", refuse)
    trainer = Trainer(
        model, dataset, epochs=1, batch_size=50, lr=3e-3, progress=False,
        accelerate=ACCELERATE[path],
    )  # fmt: skip
    assert trainer.gradient_path == path
    if path == "direct":
        trainer.fit()
        assert trainer.guard.skipped == 0
    else:
        with pytest.raises(AssertionError, match="read the gradients again"):
            trainer.fit()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_fast_path_never_synchronises_a_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    model, dataset = tiny_model()
    inject(model, {1: "nan-loss", 3: "nan-grad"}, monkeypatch)
    trainer = Trainer(model, dataset, epochs=1, batch_size=50, lr=3e-3, device="cuda")
    _, steps = trainer._epoch_batches()
    trainer._step(*next(steps))  # the first step allocates the optimiser state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in steps:
            trainer._step(*step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.guard.skipped == 2


@pytest.mark.parametrize("log_var", [-1e4, 1e4])
def test_log_variances_are_kept_in_a_safe_range(log_var: float) -> None:
    model, dataset = tiny_model()
    with torch.no_grad():
        model.encoder.head.log_var.bias.fill_(log_var)  # type: ignore[union-attr]
    loss = model.loss(dataset.train.x[:50], generator=torch.Generator().manual_seed(0))
    loss.objectives["model"].backward()
    assert all(torch.isfinite(v).all() for v in loss.metrics.values())
    assert all_finite([p.grad for p in model.parameters() if p.grad is not None])
