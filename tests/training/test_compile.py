"""train.compile: the hand-derived gradients through torch.compile equal the eager ones.

Without a working C++ compiler torch.compile fails, vaekit warns and trains eagerly, and these
comparisons still hold.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from vaekit.accel import DirectELBO, fused_elbo
from vaekit.build import build_model
from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.models import VAE

ROOT = Path(__file__).parents[2]
SHAPE = (1, 8, 8)


def _gradients(
    model: torch.nn.Module, x: torch.Tensor, *, compile: bool, kl_weight: float = 0.7
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    direct = DirectELBO.of(model, compile=compile)
    assert direct is not None
    out = direct(x, kl_weight=kl_weight, generator=torch.Generator().manual_seed(3))
    assert out is not None
    return [p.grad.clone() for p in model.parameters()], out[0].metrics  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("particles", "estimator", "precision"),
    [(1, "reparam", "float32"), (5, "dreg", "float32"), (1, "reparam", "bfloat16")],
)
def test_compiled_gradients_equal_the_eager_ones(
    particles: int, estimator: str, precision: str
) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        latent_dim=3, hidden=(64,), activation="tanh", num_particles=particles,
        gradient_estimator=estimator,  # type: ignore[arg-type]
    )  # fmt: skip
    model = build_model(cfg, SHAPE).train()
    assert isinstance(model, VAE)
    x = torch.bernoulli(torch.full((17, *SHAPE), 0.3))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        eager, eager_metrics = _gradients(model, x, compile=False)
        compiled, compiled_metrics = _gradients(model, x, compile=True)
    # float32: the same sums in another order; bfloat16: products rounded in other places
    tolerance = (
        {"rtol": 1e-4, "atol": 1e-5} if precision == "float32" else {"rtol": 0.03, "atol": 1e-3}
    )
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b, **tolerance)
    for name, value in eager_metrics.items():
        torch.testing.assert_close(compiled_metrics[name], value, **tolerance)


def test_a_new_kl_weight_is_not_a_new_graph() -> None:
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=2, hidden=(16,)), SHAPE).train()
    x = torch.bernoulli(torch.full((9, *SHAPE), 0.5))
    _gradients(model, x, compile=True, kl_weight=0.1)
    graphs = counters["stats"]["unique_graphs"]
    for weight in (0.2, 0.3, 1.0):
        eager, _ = _gradients(model, x, compile=False, kl_weight=weight)
        compiled, _ = _gradients(model, x, compile=True, kl_weight=weight)
        for a, b in zip(compiled, eager, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == graphs  # warm-up weights: no recompiles


@pytest.fixture
def fresh_compiled_path() -> Iterator[None]:
    """The process-wide compiled direct path made anew for the test, and again after it."""
    fused_elbo._compiled_values_and_grads.cache_clear()
    yield
    fused_elbo._compiled_values_and_grads.cache_clear()


@pytest.mark.usefixtures("fresh_compiled_path")
def test_a_failing_compiler_warns_once_and_trains_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken(*args: object) -> None:
        calls.append(args)
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda fn, **options: broken)
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=2, hidden=(16,)), SHAPE).train()
    x = torch.bernoulli(torch.full((9, *SHAPE), 0.5))
    eager, _ = _gradients(model, x, compile=False)
    with pytest.warns(UserWarning, match="training eagerly"):
        compiled, _ = _gradients(model, x, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        again, _ = _gradients(model, x, compile=True)
    assert len(calls) == 1  # the compiled function is not tried again
    for a, b, c in zip(compiled, again, eager, strict=True):
        assert torch.equal(a, c) and torch.equal(b, c)


def test_train_compile_through_the_cli(tmp_path: Path) -> None:
    tiny = str(ROOT / "configs" / "tiny.toml")
    losses = {}
    for compile in ("false", "true"):
        out = tmp_path / compile
        args = ["train", "--config", tiny, "--out", str(out), "--quiet"]
        assert main([*args, "--set", f"train.compile={compile}", "--set", "train.epochs=2"]) == 0
        config = json.loads((out / "config.json").read_text())["config"]
        assert config["train"]["compile"] is (compile == "true")
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses[compile] = [row["val/loss"] for row in rows]
        provenance = json.loads((out / "provenance.json").read_text())
        assert provenance["gradients"] == "direct"
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-4)
    # a model trained through autograd says so: nothing of it is compiled
    out = tmp_path / "ae"
    sets = ["--set", "train.compile=true", "--set", "train.epochs=1", "--set", "model.kind=ae"]
    assert main(["train", "--config", tiny, "--out", str(out), "--quiet", *sets]) == 0
    assert json.loads((out / "provenance.json").read_text())["gradients"] == "autograd"


def test_compile_applies_to_models_trained_through_autograd() -> None:
    """A Gaussian-likelihood VAE (no hand-derived gradients): its encoder and decoder run
    compiled while fit runs, with the eager losses, and are plain modules again afterwards."""
    import vaekit

    cfg = ModelConfig(latent_dim=2, hidden=(16,), likelihood="gaussian")
    x = torch.rand(40, *SHAPE, generator=torch.Generator().manual_seed(0))
    histories = {}
    for compile in (False, True):
        torch.manual_seed(0)
        model = build_model(cfg, SHAPE)
        rows: list[dict[str, float]] = []
        options = {"epochs": 1, "batch_size": 20, "warmup_epochs": 0.0, "compile": compile}
        vaekit.fit(model, x, callbacks=[rows.append], **options)
        histories[compile] = rows
        assert "forward" not in vars(model.encoder) and "forward" not in vars(model.decoder)
    eager, compiled = histories[False], histories[True]
    assert compiled[0]["train/loss"] == pytest.approx(eager[0]["train/loss"], rel=1e-4)


def test_compiled_parts_fall_back_to_eager_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vaekit import accel
    from vaekit.accel import compile as compile_module

    def broken(fn, **_: object):  # type: ignore[no-untyped-def]
        def fail(*args: object) -> object:
            raise RuntimeError("no compiler here")

        return fail

    monkeypatch.setattr(compile_module.torch, "compile", broken)
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,)), SHAPE)
    x = torch.rand(3, *SHAPE)
    expected = model.reconstruct(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with accel.compiled_parts(model):
            torch.testing.assert_close(model.reconstruct(x), expected)
            torch.testing.assert_close(model.reconstruct(x), expected)
    messages = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    assert len(messages) == 2  # once per part (encoder, decoder), not once per call
    assert "forward" not in vars(model.encoder)
