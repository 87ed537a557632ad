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
EVALUATION_FORMAT_VERSION = 1
EXTRACTOR_DIR = "feature-extractors"


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
    """Run the named metrics on ``ctx``; each result gets its wall time in ``seconds``."""
    results: dict[str, MetricResult] = {}
    for name in check_metric_names(names):
        start = time.perf_counter()
        try:
            result = METRICS[name](ctx)
        except NotApplicable as reason:
            result = {"status": "not applicable", "reason": str(reason)}
        result["seconds"] = round(time.perf_counter() - start, 3)
        results[name] = result
        if log is not None:
            log(f"{name}: {result['seconds']:.1f} s")
    return results


def _rows(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [(prefix, str(value))]
    if isinstance(value, float):
        return [(prefix, f"{value:.6g}")]
    if isinstance(value, str):
        return [(prefix, value)]
    if isinstance(value, dict) and not prefix.endswith("validation_by_bandwidth"):
        return [row for key, item in value.items() for row in _rows(f"{prefix}.{key}", item)]
    return []  # per-unit lists and bandwidth tables stay in the JSON


def format_table(report: dict[str, Any]) -> str:
    """The report's scalar values as an aligned text table, one row per quantity."""
    lines = []
    for name, result in report["metrics"].items():
        for key, value in result.items():
            if key != "seconds":
                lines += [(name, quantity, text) for quantity, text in _rows(key, value)]
        lines.append((name, "seconds", f"{result['seconds']:.1f}"))
    widths = [max(len(row[i]) for row in lines) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in lines)
