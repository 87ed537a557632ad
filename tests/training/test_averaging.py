"""train.ema_decay: an exponential moving average of the weights, used for validation and saving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from benchmarks.live_weights import copy_with_live_weights
from safetensors.torch import load_file

from vaekit.build import build_dataset, build_model
from vaekit.cli import main
from vaekit.config import load_config
from vaekit.experiment import train
from vaekit.training.averaging import WeightAverage
from vaekit.training.trainer import Trainer

ROOT = Path(__file__).parents[2]
TINY = ROOT / "configs" / "tiny.toml"


def test_the_average_follows_its_recurrence_with_the_warm_up_rate() -> None:
    param = torch.zeros(3, dtype=torch.float64)
    average = WeightAverage([param], decay=0.9)
    values = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = param.clone()
    for n, value in enumerate(values):
        rate = 1 - min(0.9, (1 + n) / (10 + n))
        param.copy_(value)
        average.update()
        expected += rate * (value - expected)
    assert average.updates == 40
    torch.testing.assert_close(average.averages[0], expected, rtol=1e-12, atol=1e-12)


def test_after_the_warm_up_it_is_a_geometric_average() -> None:
    """With a decay below 0.1 the rate is constant: a_n = sum_k r (1-r)^(n-k) v_k + (1-r)^n a_0."""
    decay, start = 0.05, torch.full((2,), 4.0, dtype=torch.float64)
    param = start.clone()
    average = WeightAverage([param], decay)
    values = torch.linspace(-1, 1, 12, dtype=torch.float64)
    for value in values:
        param.fill_(value)
        average.update()
    rate, n = 1 - decay, len(values)
    weights = rate * (1 - rate) ** torch.arange(n - 1, -1, -1, dtype=torch.float64)
    closed = (weights * values).sum() + (1 - rate) ** n * start
    torch.testing.assert_close(average.averages[0], closed, rtol=1e-12, atol=1e-12)


def test_applied_swaps_the_averages_in_and_the_live_weights_back_even_on_error() -> None:
    layer = torch.nn.Linear(3, 2)
    average = WeightAverage(list(layer.parameters()), decay=0.99)
    with torch.no_grad():
        layer.weight.add_(1.0)
    average.update()
    live = {k: v.clone() for k, v in layer.state_dict().items()}
    with average.applied():
        assert torch.equal(layer.weight, average.averages[0])
        assert not torch.equal(layer.weight, live["weight"])
    assert all(torch.equal(layer.state_dict()[k], v) for k, v in live.items())
    with pytest.raises(RuntimeError, match="inside"), average.applied():
        raise RuntimeError("inside")
    assert all(torch.equal(layer.state_dict()[k], v) for k, v in live.items())


def test_a_mismatched_state_is_refused() -> None:
    average = WeightAverage([torch.zeros(3)], decay=0.9)
    with pytest.raises(ValueError, match="do not match"):
        average.load_state_dict({"updates": 1, "averages": [torch.zeros(4)]})
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        WeightAverage([torch.zeros(3)], decay=1.0)


def _trainer(ema_decay: float | None) -> Trainer:
    config = load_config(TINY, [])
    dataset = build_dataset(config.data, 0)
    torch.manual_seed(0)
    model = build_model(config.model, dataset.event_shape)
    return Trainer(
        model, dataset, epochs=3, batch_size=50, lr=3e-3, seed=0, ema_decay=ema_decay,
        progress=False,
    )  # fmt: skip


def test_validation_scores_the_average_and_training_steps_the_live_weights() -> None:
    plain, averaged = _trainer(None), _trainer(0.9)
    plain.fit()
    averaged.fit()
    assert averaged.average is not None and averaged.average.updates == 15  # 5 steps x 3 epochs
    # The live weights follow exactly the same path as without averaging.
    for a, b in zip(plain.model.parameters(), averaged.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [r["train/loss"] for r in plain.history] == [r["train/loss"] for r in averaged.history]
    # Validation used the average: recompute it both ways.
    live = averaged._evaluate(averaged.dataset.val)
    assert live["loss"] == plain.history[-1]["val/loss"]
    with averaged.averaged_weights():
        scored = averaged._evaluate(averaged.dataset.val)
    assert scored["loss"] == averaged.history[-1]["val/loss"] != live["loss"]


def test_the_saved_model_is_the_average(tmp_path: Path) -> None:
    config = load_config(TINY, ["train.ema_decay=0.9", "train.epochs=2"])
    run = train(config, tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "training_state.pt", weights_only=True)
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    names = [name for name, _ in run.model.named_parameters()]
    for name, average in zip(names, state["average"]["averages"], strict=True):
        assert torch.equal(saved[name], average)
        assert torch.equal(run.model.state_dict()[name], average)  # the returned model too
        assert not torch.equal(state["model"][name], average)  # the live weights are kept apart
    # benchmarks/live_weights.py: a copy of the run that scores the live weights instead
    live = load_file(
        str(copy_with_live_weights(tmp_path / "run", tmp_path / "live") / "model.safetensors")
    )
    assert live.keys() == state["model"].keys()
    assert all(torch.equal(live[k], v) for k, v in state["model"].items())
    assert (tmp_path / "live" / "training_state.pt").is_file()


@pytest.mark.parametrize("value", ["1.0", "0", "-0.5"])
def test_an_out_of_range_decay_is_one_clear_error(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--config", str(TINY), "--out", str(out), "--quiet"]
    assert main([*argv, "--set", f"train.ema_decay={value}"]) == 2
    err = capsys.readouterr().err
    assert f"train.ema_decay = {float(value)} is out of range" in err
    assert "it must be strictly between 0 and 1" in err
    assert "Traceback" not in err and not out.exists()
