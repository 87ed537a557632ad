"""Evaluation reports say what their numbers are: units, distinct names, progress on stderr for
long metrics, and per-datapoint ELBOs whose noise can be averaged away."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from vaekit.cli import main
from vaekit.evaluate import evaluate_run
from vaekit.evaluation import format_table
from vaekit.evaluation.evaluator import UNITS
from vaekit.evaluation.likelihood import below_elbo_fraction, elbo_terms, log_likelihood
from vaekit.evaluation.progress import Progress
from vaekit.runs import load_run


@pytest.fixture(scope="module")
def vae_run(run_dir: Path) -> Path:
    return run_dir


def test_report_has_units_and_parzen_its_own_name(vae_run: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["evaluate", str(vae_run), "--metrics", "elbo,log-likelihood,parzen", "--quiet"]
    assert main([*argv, "--num-importance-samples", "10", "--num-samples", "200"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # --quiet: no estimates, bars or timings
    metrics = json.loads((vae_run / "evaluation.json").read_text())["metrics"]
    assert "log_likelihood" not in metrics["parzen"]
    assert metrics["parzen"]["units"]["parzen_log_density"] == "nats per datapoint"
    assert metrics["log-likelihood"]["units"]["log_likelihood"] == "nats per datapoint"
    assert metrics["elbo"]["units"]["bits_per_dim"] == "bits/dim"
    assert metrics["elbo"]["units"]["num_points"] == "count"
    assert metrics["log-likelihood"]["units"]["below_elbo_fraction"] == "fraction"
    for result in metrics.values():
        assert result["units"]["seconds"] == "seconds"
        numbers = [k for k, v in result.items() if isinstance(v, int | float) and k != "seconds"]
        assert set(numbers) <= set(result["units"]), set(numbers) - set(result["units"])
    assert "one z" not in metrics["elbo"]["per_example_note"]
    assert "noisy" in metrics["elbo"]["per_example_note"]
    table = captured.out
    assert "parzen_log_density" in table and "nats per datapoint" in table
    assert "bits/dim" in table and "seconds" in table


def test_every_unit_key_names_a_metric() -> None:
    from vaekit.evaluation import METRICS

    assert set(UNITS) == set(METRICS)


def test_table_reads_old_reports_without_units() -> None:
    report = {"metrics": {"elbo": {"elbo": -10.0, "seconds": 1.0}}}
    assert "-10" in format_table(report)


def test_long_metric_announces_its_time_and_shows_a_bar_on_stderr(vae_run: Path) -> None:
    stream = io.StringIO()
    progress = Progress(min_seconds=0.0, stream=stream)
    model = load_run(vae_run).model
    x = torch.rand(40, 1, 8, 8).bernoulli()
    log_likelihood(model, x, num_samples=20, batch_size=10, progress=progress)
    text = stream.getvalue()
    assert "log-likelihood: about" in text and "4 chunks" in text
    assert "1/4" in text  # the bar, after the first of 4 chunks
    silent = io.StringIO()
    log_likelihood(model, x, num_samples=20, batch_size=10, progress=Progress(stream=silent))
    assert silent.getvalue() == ""  # a quick metric prints nothing


def test_evaluate_progress_goes_to_stderr(vae_run: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    evaluate_run(
        vae_run,
        metrics=["log-likelihood"],
        num_importance_samples=10,
        batch_size=20,
        out=vae_run / "progress.json",
        progress=Progress(min_seconds=0.0),
    )
    captured = capsys.readouterr()
    assert "log-likelihood: about" in captured.err and captured.out == ""


def test_more_elbo_samples_make_per_datapoint_comparisons_meaningful(vae_run: Path) -> None:
    model = load_run(vae_run).model
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(300, 1, 8, 8, generator=generator).bernoulli(generator=generator)
    log_px = log_likelihood(model, x, num_samples=2000, generator=generator)
    fractions = {}
    for k in (1, 500):
        recon, kl = elbo_terms(model, x, num_samples=k, generator=generator)
        fractions[k] = below_elbo_fraction(log_px, -(recon + kl))
    # one draw: noisy ELBOs, many land above log p(x); 500 draws: the bound holds per datapoint
    assert fractions[1] > 0.05
    assert fractions[500] <= 0.01, fractions
