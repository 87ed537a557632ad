"""The metric registry and the runner: run metrics on a context, format a report as a table.

A metric is a plain function ``EvaluationContext -> dict``; one that does not apply to a model
(log p(x) of a plain autoencoder) or to a dataset (probes without labels) raises NotApplicable
and is reported as such. The runner records each metric's wall time; ``vaekit/evaluate.py``
evaluates a run directory and writes the report with the provenance needed to compare the
numbers with published ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from vaekit.errors import ConfigError
from vaekit.evaluation.context import EvaluationContext, MetricResult, NotApplicable
from vaekit.evaluation.latent import active_units_metric, aggregate_posterior_metric, probes_metric
from vaekit.evaluation.likelihood import (
    elbo_metric,
    log_likelihood_metric,
)
from vaekit.evaluation.parzen import parzen_metric
from vaekit.evaluation.sample_quality import sample_quality_metric

Metric = Callable[[EvaluationContext], MetricResult]

METRICS: dict[str, Metric] = {
    "elbo": elbo_metric,
    "log-likelihood": log_likelihood_metric,
    "active-units": active_units_metric,
    "aggregate-posterior": aggregate_posterior_metric,
    "probes": probes_metric,
    "sample-quality": sample_quality_metric,
    "parzen": parzen_metric,
}

SPLITS = ("train", "val", "test")
EVALUATION_FORMAT = "vaekit-evaluation"
# 2: a "units" entry per metric; the Parzen score is "parzen_log_density" (was "log_likelihood")
EVALUATION_FORMAT_VERSION = 2
EXTRACTOR_DIR = "feature-extractors"


NATS = "nats per datapoint"
COUNT = "count"
FRACTION = "fraction"
# metric -> {value key -> unit}; a key missing here has no unit (text, or lists kept in JSON).
UNITS: dict[str, dict[str, str]] = {
    "elbo": {
        "elbo": NATS,
        "elbo_stderr": NATS,
        "reconstruction": NATS,
        "kl": NATS,
        "bits_per_dim": "bits/dim",
        "num_points": COUNT,
        "elbo_samples": COUNT,
    },
    "log-likelihood": {
        "log_likelihood": NATS,
        "nll": NATS,
        "stderr": NATS,
        "bits_per_dim": "bits/dim",
        "num_importance_samples": COUNT,
        "num_points": COUNT,
        "below_elbo_fraction": FRACTION,
    },
    "active-units": {
        "active_units": COUNT,
        "latent_dim": COUNT,
        "threshold": "variance of E_q[z] (latent units²)",
        "activity": "variance of E_q[z] (latent units²)",
        "kl_per_unit": NATS,
        "kl_total": NATS,
    },
    "aggregate-posterior": {
        "mmd.mmd2": "squared MMD (Gaussian kernel)",
        "mmd.null_mean": "squared MMD (Gaussian kernel)",
        "mmd.null_std": "squared MMD (Gaussian kernel)",
        "mmd.scaled": "null standard deviations",
        "mmd.p_value": "probability",
        "mmd.bandwidth": "latent units",
        "mmd.num_points": COUNT,
        "gaussian_fit_kl": "nats",
        "aggregate_mean_norm": "latent units",
    },
    "probes": {
        "logistic_accuracy": FRACTION,
        "knn_accuracy": FRACTION,
        "knn_neighbours": COUNT,
        "chance": FRACTION,
        "num_train": COUNT,
        "num_test": COUNT,
    },
    "sample-quality": {
        "fid-*": "squared feature distance",
        "kid-*": "squared MMD of features",
        "precision": FRACTION,
        "recall": FRACTION,
        "conditional_accuracy": FRACTION,
        "num_real": COUNT,
        "num_samples": COUNT,
        "reference.fid_half_vs_half": "squared feature distance",
        "reference.fid_noise_vs_real": "squared feature distance",
        "reference.kid_half_vs_half": "squared MMD of features",
        "reference.kid_noise_vs_real": "squared MMD of features",
    },
    "parzen": {
        "parzen_log_density": NATS,
        "stderr": NATS,
        "bandwidth": "data units (kernel σ)",
        "validation_by_bandwidth": NATS,
        "num_samples": COUNT,
        "num_val": COUNT,
        "num_test": COUNT,
    },
}


def units_of(metric: str, result: MetricResult) -> dict[str, str]:
    """{key: unit} for the values of ``result`` (nested keys dotted), and ``seconds``."""
    table = UNITS.get(metric, {})
    units = {}
    for key in _keys(result):
        unit = table.get(key)
        if unit is None and "-" in key:  # fid-<hash>, kid-<hash>, kid-<hash>_std
            unit = table.get(key.split("-", 1)[0] + "-*")
        if unit is not None:
            units[key] = unit
    units["seconds"] = "seconds"
    return units


def _keys(result: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in result.items():
        if isinstance(value, dict) and key != "validation_by_bandwidth":
            keys += _keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def check_metric_names(names: Sequence[str]) -> list[str]:
    """The names, in order, or a ConfigError listing the valid ones."""
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ConfigError(
            f"unknown metric {', '.join(map(repr, unknown))}; choose from: {', '.join(METRICS)}"
        )
    return list(dict.fromkeys(names))


def run_metrics(
    ctx: EvaluationContext,
    names: Sequence[str],
    *,
    log: Callable[[str], None] | None = None,
) -> dict[str, MetricResult]:
    """Run the named metrics on ``ctx``; each result gets its wall time in ``seconds`` and the
    unit of each value in ``units``."""
    results: dict[str, MetricResult] = {}
    for name in check_metric_names(names):
        start = time.perf_counter()
        try:
            result = METRICS[name](ctx)
        except NotApplicable as reason:
            result = {"status": "not applicable", "reason": str(reason)}
        result["seconds"] = round(time.perf_counter() - start, 3)
        if "status" not in result:
            result["units"] = units_of(name, result)
        results[name] = result
        if log is not None:
            log(f"{name}: {result['seconds']:.1f} s")
    return results


def _rows(prefix: str, value: Any, units: dict[str, str]) -> list[tuple[str, str]]:
    if isinstance(value, bool) or value is None:
        return []
    unit = units.get(prefix)
    suffix = f" {unit}" if unit else ""
    if isinstance(value, int):
        return [(prefix, f"{value}{suffix}")]
    if isinstance(value, float):
        return [(prefix, f"{value:.6g}{suffix}")]
    if isinstance(value, str):
        return [(prefix, value)]
    if isinstance(value, dict) and not prefix.endswith("validation_by_bandwidth"):
        return [row for key, item in value.items() for row in _rows(f"{prefix}.{key}", item, units)]
    return []  # per-unit lists and bandwidth tables stay in the JSON


def format_table(report: dict[str, Any]) -> str:
    """The report's scalar values as an aligned text table, one row per quantity, each value
    with its unit."""
    lines = []
    for name, result in report["metrics"].items():
        units = result.get("units", {})
        for key, value in result.items():
            if key not in ("seconds", "units"):
                lines += [(name, quantity, text) for quantity, text in _rows(key, value, units)]
        lines.append((name, "seconds", f"{result['seconds']:.1f} seconds"))
    widths = [max(len(row[i]) for row in lines) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in lines)
