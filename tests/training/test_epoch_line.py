"""The epoch line and metrics.jsonl say what the optimiser minimised: for a VAE the objective
recon + KL weight × KL (beta, and the warm-up factor while it ramps), beside the negative ELBO."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import vaekit
from vaekit.training.epoch_line import format_record

TINY = Path(__file__).parents[2] / "configs" / "tiny.toml"
LINE = re.compile(r"(train|val) objective (\S+) = recon (\S+) \+ (\S+) × kl (\S+); -elbo (\S+)")


def _half_unit(text: str) -> float:
    """Half a unit in the last place of a number printed with ``:.3f`` or ``:.4g``."""
    if "e" in text:
        raise AssertionError(f"unexpected exponent in {text!r}")
    decimals = len(text.partition(".")[2])
    return 0.5 * 10.0**-decimals


def _train(tmp_path: Path, *overrides: str) -> tuple[list[str], list[dict[str, float]]]:
    lines: list[str] = []
    config = vaekit.load_config(TINY, list(overrides))
    vaekit.train(config, out=tmp_path / "run", log=lines.append, progress=False)
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    return [line for line in lines if line.startswith("epoch")], rows


def _check_arithmetic(lines: list[str]) -> list[tuple[str, float]]:
    """Every objective equals recon + weight × kl to the printed digits; the (split, weight)s."""
    weights = []
    for line in lines:
        matches = LINE.findall(line)
        assert {m[0] for m in matches} == {"train", "val"}, line
        for split, *texts in matches:
            objective, recon, weight, kl, neg_elbo = map(float, texts)
            tolerance = (
                _half_unit(texts[0])
                + _half_unit(texts[1])
                + weight * _half_unit(texts[3])
                + kl * _half_unit(texts[2])
                + 1e-9
            )
            assert abs(objective - (recon + weight * kl)) <= tolerance, line
            assert abs(neg_elbo - (recon + kl)) <= 3 * _half_unit(texts[4]) + 1e-9, line
            weights.append((split, weight))
    return weights


def test_beta_vae_line_adds_up(tmp_path: Path) -> None:
    lines, rows = _train(tmp_path, "model.beta=4")
    assert len(lines) == 2
    weights = _check_arithmetic(lines)
    assert all(weight == 4 for _, weight in weights)
    for row in rows:
        for split in ("train", "val"):
            assert row[f"{split}/kl_weight"] == pytest.approx(4.0)
            total = row[f"{split}/recon"] + row[f"{split}/kl_weight"] * row[f"{split}/kl"]
            assert row[f"{split}/loss"] == pytest.approx(total, rel=1e-6)
            assert row[f"{split}/elbo"] == pytest.approx(
                -(row[f"{split}/recon"] + row[f"{split}/kl"]), rel=1e-6
            )
            assert row[f"{split}/loss"] > -row[f"{split}/elbo"]  # beta > 1 weighs the KL up
        assert "train/bits_per_dim" in row and "val/bits_per_dim" in row


def test_warm_up_line_adds_up_with_the_ramping_weight(tmp_path: Path) -> None:
    lines, rows = _train(tmp_path, "model.beta=2", "train.warmup_epochs=2")
    weights = _check_arithmetic(lines)
    train = [w for split, w in weights if split == "train"]
    assert 0 < train[0] < train[1] < 2  # beta × a warm-up factor below 1
    assert [w for split, w in weights if split == "val"] == [2, 2]  # validation: beta
    for row in rows:  # the weights average the ramp, so the sum holds in the file too
        total = row["train/recon"] + row["train/kl_weight"] * row["train/kl"]
        assert row["train/loss"] == pytest.approx(total, rel=1e-6)


def test_rows_written_before_the_kl_weight_still_print() -> None:
    old = {"epoch": 1.0, "train/loss": 10.0, "train/recon": 7.0, "train/kl": 3.0, "lr": 1e-3}
    line = format_record(old, 5)
    assert "objective 10.000 (recon 7.000, kl 3.000); -elbo 10.000" in line
