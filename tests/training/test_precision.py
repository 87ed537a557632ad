"""train.precision = "bfloat16": the loss under autocast, everything else float32."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vaekit import accel
from vaekit.build import build_model
from vaekit.config import ModelConfig, load_config
from vaekit.data.base import Dataset, Split
from vaekit.errors import ConfigError
from vaekit.experiment import train
from vaekit.models import VAE
from vaekit.runtime import cpu_has_bfloat16
from vaekit.training.run_files import read_metrics
from vaekit.training.trainer import Trainer

ROOT = Path(__file__).parents[2]
# 8x8 images and 64 hidden units: wide enough that the direct path's 64 -> 64 products run in
# bfloat16 (mlp_stack.MIN_LOW_PRECISION_WIDTH); the 2 -> 64 decoder layer and the head do not.
SHAPE = (1, 8, 8)
MODEL = ModelConfig(latent_dim=2, hidden=(64,))


def _patterns(num: int) -> Dataset:
    """Noisy copies of four 8x8 binary prototypes."""
    generator = torch.Generator().manual_seed(0)
    prototypes = (torch.rand(4, *SHAPE, generator=generator) > 0.5).float()
    x = prototypes[torch.arange(num) % 4]
    flips = torch.rand(x.shape, generator=generator) < 0.05
    x = torch.where(flips, 1 - x, x)
    train_split, val_split = Split(x[: num // 2]), Split(x[num // 2 :])
    return Dataset("patterns", train_split, val_split, val_split, "unit", "none", "test")


class _MatmulDtypes(TorchDispatchMode):
    """Records ((inner width, output width), dtype) of every matrix product run while active."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[tuple[int, ...], torch.dtype]] = set()

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm):
            a, b = args[-2], args[-1]
            self.seen.add(((a.shape[-1], b.shape[-1]), a.dtype))
        return func(*args, **(kwargs or {}))


def _trainer(precision: str, *, direct: bool = True) -> Trainer:
    """A trainer of MODEL; ``direct=False`` trains it through autograd (``accelerate="off"``)."""
    torch.manual_seed(0)
    model = build_model(MODEL, SHAPE)
    assert isinstance(model, VAE)
    trainer = Trainer(
        model, _patterns(400), epochs=8, batch_size=25, lr=1e-2, seed=0, precision=precision,
        accelerate="auto" if direct else "off",
    )  # fmt: skip
    assert trainer.gradient_path == ("direct" if direct else "autograd")
    return trainer


def _first_step(trainer: Trainer) -> Callable[[], None]:
    """The trainer's first training step of an epoch, to run (and record) later."""
    _, steps = trainer._epoch_batches()
    x, share, count, _ = next(steps)
    return lambda: trainer._step(x, share, count)


def _dtypes(run: Callable[[], object]) -> set[torch.dtype]:
    with _MatmulDtypes() as record:
        run()
    return {dtype for _, dtype in record.seen}


def test_bfloat16_direct_path_runs_the_wide_products_in_bfloat16_and_validation_in_float32() -> (
    None
):
    trainer = _trainer("bfloat16")
    model = trainer.model
    assert isinstance(model, VAE)
    modules_ran: list[bool] = []
    model.encoder.trunk.register_forward_hook(lambda m, i, out: modules_ran.append(m.training))
    step = _first_step(trainer)
    with _MatmulDtypes() as record:
        step()
    assert modules_ran == []  # hand-derived gradients, not autograd through the modules
    # 64 -> 64 layers (forward: inner width 64; weight gradients: inner width = the batch, 25)
    assert ((64, 64), torch.bfloat16) in record.seen
    assert ((25, 64), torch.bfloat16) in record.seen
    # the 2 -> 64 decoder layer and the 64 -> 2 head stay float32
    assert ((2, 64), torch.float32) in record.seen
    assert ((64, 2), torch.float32) in record.seen
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    assert _dtypes(lambda: trainer.evaluate(trainer.dataset.val)) == {torch.float32}
    assert modules_ran == [False]  # validation runs the modules, in float32
    plain = _trainer("float32")
    assert _dtypes(_first_step(plain)) == {torch.float32}


def test_bfloat16_without_hand_derived_gradients_runs_the_modules_under_autocast() -> None:
    trainer = _trainer("bfloat16", direct=False)
    assert isinstance(trainer.model, VAE) and trainer.direct is None
    assert torch.bfloat16 in _dtypes(_first_step(trainer))
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in trainer.model.parameters())
    assert _dtypes(lambda: trainer.evaluate(trainer.dataset.val)) == {torch.float32}


def _flat_gradient(model: VAE, low: bool, direct: bool, x: torch.Tensor) -> torch.Tensor:
    """All parameter gradients, concatenated, of one batch with fixed noise."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
        generator = torch.Generator().manual_seed(3)
        if direct:
            hand_derived = accel.direct_gradients(model)
            assert hand_derived is not None
            out = hand_derived(x, kl_weight=0.5, generator=generator)
            assert out is not None
            loss = out[0]
        else:
            loss = model.loss(x, kl_weight=0.5, generator=generator)
    if direct:
        assert loss.metrics["loss"].dtype == torch.float32
        grads: list[torch.Tensor] = [p.grad for p in model.parameters() if p.grad is not None]
    else:
        grads = list(torch.autograd.grad(loss.objectives["model"], list(model.parameters())))
    assert all(g.dtype == torch.float32 for g in grads)
    return torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize(
    ("seed", "particles", "estimator"), [(0, 1, "reparam"), (1, 1, "reparam"), (0, 5, "dreg")]
)
def test_bfloat16_direct_gradients_are_as_close_to_float32_as_autocasts(
    seed: int, particles: int, estimator: str
) -> None:
    torch.manual_seed(seed)
    config = dataclasses.replace(
        MODEL, hidden=(96, 80), num_particles=particles, gradient_estimator=estimator
    )
    model = build_model(config, SHAPE)
    assert isinstance(model, VAE) and accel.direct_gradients(model) is not None
    x = _patterns(64).train.x
    full = _flat_gradient(model, low=False, direct=True, x=x)
    error = torch.linalg.vector_norm(_flat_gradient(model, low=True, direct=True, x=x) - full)
    autocast = _flat_gradient(model, low=True, direct=False, x=x) - full
    reference = torch.linalg.vector_norm(autocast)
    # bfloat16 keeps 8 significant bits: a few percent here, as torch's own autocast (a wrong
    # transpose or a dropped term would be of the order of the gradient itself)
    assert error <= 0.1 * torch.linalg.vector_norm(full)
    assert error <= 2 * reference + 0.01 * torch.linalg.vector_norm(full)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "autograd"])
def test_bfloat16_training_learns_as_float32_does(direct: bool) -> None:
    low, full = _trainer("bfloat16", direct=direct), _trainer("float32", direct=direct)
    low.fit()
    full.fit()
    first, last = low.history[0], low.history[-1]
    assert last["val/loss"] < 0.8 * first["val/loss"]
    # Same data, seed and schedule: bfloat16 rounding moves the result a little, not a lot.
    assert last["val/loss"] == pytest.approx(full.history[-1]["val/loss"], rel=0.05)
    assert last["train/loss"] == pytest.approx(full.history[-1]["train/loss"], rel=0.05)


def test_precision_is_checked_in_the_config_and_reaches_the_trainer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"precision.*'float32', 'bfloat16'"):
        load_config(ROOT / "configs" / "tiny.toml", ["train.precision=float16"])
    with pytest.raises(ValueError, match="precision"):
        Trainer(build_model(ModelConfig(), SHAPE), _patterns(8), epochs=1, batch_size=4,
                lr=1e-3, precision="half")  # fmt: skip
    config = load_config(ROOT / "configs" / "tiny.toml", ["train.precision=bfloat16"])
    lines: list[str] = []
    run = train(config, tmp_path / "run", progress=False, log=lines.append)
    # On a CPU that only emulates bfloat16 the run says so (and how to avoid it).
    noted = any("train.precision = float32" in line for line in lines)
    assert noted is not cpu_has_bfloat16()
    assert run.config.train.precision == "bfloat16"
    history = read_metrics(run.dir)
    assert len(history) == config.train.epochs
    assert all(math.isfinite(r["val/loss"]) for r in history)
