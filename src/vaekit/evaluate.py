"""Evaluate a run directory: the edge that turns a run's config into its data, its model and an
evaluation context, runs the selected metrics and writes ``evaluation.json`` with provenance.

The metrics themselves (``vaekit.evaluation``) take objects, never configs.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from vaekit import accel
from vaekit.build import build_dataset
from vaekit.config import DataConfig
from vaekit.data import dataset_identity, default_data_root
from vaekit.data.base import Dataset
from vaekit.errors import ConfigError
from vaekit.evaluation.context import EvaluationContext
from vaekit.evaluation.evaluator import (
    EVALUATION_FORMAT,
    EVALUATION_FORMAT_VERSION,
    EXTRACTOR_DIR,
    METRICS,
    SPLITS,
    check_metric_names,
    run_metrics,
)
from vaekit.evaluation.extractor import ExtractorCache
from vaekit.evaluation.features import Features, features_for
from vaekit.evaluation.likelihood import DEFAULT_NUM_IMPORTANCE_SAMPLES, below_elbo_fraction
from vaekit.evaluation.per_example import REPORT_NAME, write_per_example
from vaekit.evaluation.progress import SILENT, Progress
from vaekit.files import write_json
from vaekit.runs import load_run, provenance
from vaekit.runtime import cpu_has_amx


def extractor_data_config(data: DataConfig) -> DataConfig:
    """The data an extractor is trained (or vectors standardised) on: the run's source in its
    own units (no binarisation, no ``data.standardize``), with a fixed 10 % random validation
    carve, so every run on one dataset shares one extractor."""
    return replace(data, binarize="none", standardize=False, val_size=0.1, val_from="random")


def extractor_loader(data: DataConfig) -> Callable[[], Features]:
    """A function returning the features FID/KID compare for the run's dataset: the cached (or
    newly trained) classifier or, without labels, autoencoder extractor for images; standardised
    raw features for vectors (``vaekit.evaluation.features.features_for``)."""

    def load() -> Features:
        dataset = build_dataset(extractor_data_config(data), 0)
        root = (Path(data.root) if data.root else default_data_root()) / EXTRACTOR_DIR
        return features_for(dataset, ExtractorCache(root))

    return load


def _grey_targets(likelihood: str, dataset: Dataset, split: str) -> bool:
    x = getattr(dataset, split).x
    return likelihood == "bernoulli" and not bool(((x == 0) | (x == 1)).all())


def _matmul_note(matmul: str, *, lean: bool) -> str | None:
    """A line for the log where the likelihood's ``matmul`` and this CPU do not go together."""
    amx = cpu_has_amx()
    if matmul == "bfloat16x3" and not amx:
        return (
            "note: --matmul bfloat16x3 pays off on CPUs with AMX; without it its four bfloat16 "
            "products are likely slower than one float32 product (drop --matmul here)"
        )
    if matmul == "float32" and amx and lean:
        return (
            "note: this CPU has AMX: --matmul bfloat16x3 --compile evaluates the log-likelihood "
            "~1.25 times faster, float32-accurate to ~2e-6 (docs/how-to/evaluate-and-compare.md)"
        )
    return None


def evaluate_run(
    path: str | Path,
    *,
    metrics: Sequence[str] | None = None,
    split: str = "test",
    num_importance_samples: int = DEFAULT_NUM_IMPORTANCE_SAMPLES,
    num_samples: int = 10_000,
    batch_size: int = 100,
    elbo_samples: int = 1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    compile: bool = False,
    matmul: str = "float32",
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    progress: Progress = SILENT,
    argv: list[str] | None = None,
    data_path: str | None = None,
    data_root: str | None = None,
) -> dict[str, Any]:
    """Evaluate the run at ``path`` and write ``evaluation.json`` (or ``out``) atomically.

    ``data_path`` / ``data_root`` point the run at data that moved since it was trained.

    ``metrics=None`` runs every metric in METRICS. Per-datapoint ELBOs (each the mean of
    ``elbo_samples`` single-sample estimates) and log p(x) go beside the report
    (``evaluation.per-example.safetensors``) for ``vaekit compare``. ``progress`` announces
    the expected time of each long metric and shows its bar (``Progress()``: on stderr).
    Returns the written report; every value has its unit in the metric's ``units``.
    """
    names = check_metric_names(list(METRICS) if metrics is None else metrics)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    for name, value in (("num_importance_samples", num_importance_samples),
                        ("num_samples", num_samples), ("batch_size", batch_size),
                        ("elbo_samples", elbo_samples)):  # fmt: skip
        if value < 1:
            raise ConfigError(f"{name.replace('_', '-')} must be at least 1, got {value}")
    if matmul not in accel.MATMUL_PRECISIONS:
        raise ConfigError(
            f"unknown matmul {matmul!r}; choose one of: {', '.join(accel.MATMUL_PRECISIONS)}"
        )
    started = time.perf_counter()
    run = load_run(path, device=device, data_path=data_path, data_root=data_root)
    lean = accel.has_lean_path(run.model.decoder)
    if matmul != "float32" and not lean:
        raise ConfigError(
            f"--matmul {matmul} {accel.BFLOAT16X3_SCOPE}, and {path} has a "
            f"{run.config.model.likelihood} likelihood with a {run.config.model.network} "
            "network; drop --matmul (float32 is the default)"
        )
    on_cpu = torch.device(device).type == "cpu"
    note = _matmul_note(matmul, lean=lean) if on_cpu else None
    if log is not None and note and "log-likelihood" in names:
        log(note)
    data, run_seed = run.config.data, run.config.train.seed
    dataset = run.dataset()
    ctx = EvaluationContext(
        model=run.model,
        dataset=dataset,
        split=split,
        num_importance_samples=num_importance_samples,
        num_samples=num_samples,
        batch_size=batch_size,
        elbo_samples=elbo_samples,
        progress=progress,
        seed=seed,
        grey_targets=_grey_targets(run.config.model.likelihood, dataset, split),
        compile=compile,
        matmul=matmul,
        load_grey=lambda: run.dataset(replace(data, binarize="none")),
        load_extractor=extractor_loader(data),
    )
    results = run_metrics(ctx, names, log=log)
    if {"elbo", "log_likelihood"} <= ctx.per_example.keys():
        below = below_elbo_fraction(ctx.per_example["log_likelihood"], ctx.per_example["elbo"])
        results["log-likelihood"]["below_elbo_fraction"] = below
        results["log-likelihood"]["units"]["below_elbo_fraction"] = "fraction"
        results["log-likelihood"]["below_elbo_note"] = (
            "the fraction of datapoints whose log p(x) estimate is below their ELBO estimate; "
            "the exact values never are (log p(x) >= ELBO): it measures the estimates' "
            f"per-datapoint noise, mostly the ELBO's (the mean of {elbo_samples} draw(s)); "
            "raise --elbo-samples (and --num-importance-samples) to shrink it"
        )
    report_path = Path(out) if out else run.dir.path / REPORT_NAME
    info = provenance(argv)
    info.update(
        {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "run": str(Path(path)),
            "dataset": dataset.name,
            "dataset_identity": dataset.identity,
            "split": split,
            # the scored datapoints themselves, in order: what `vaekit compare` pairs on
            "split_identity": dataset_identity(
                dataset.name, dataset.binarize, {split: ctx.data}, {}
            ),
            "num_points": len(ctx.data),
            "binarize": dataset.binarize,
            # binarize_splits draws the validation and test pixels with the run's seed.
            "binarization_seed": run_seed if dataset.binarize != "none" else None,
            "num_importance_samples": num_importance_samples,
            "num_samples": num_samples,
            "elbo_samples": elbo_samples,
            "compile": compile,
            "matmul": matmul,
            "seed": seed,
            "device": str(ctx.device),
            "torch_threads": torch.get_num_threads(),
            "feature_extractor": extractor.describe()
            if (extractor := ctx.loaded_extractor())
            else None,
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    if ctx.per_example:  # written first: the report, renamed last, is what points to it
        info["per_example"] = write_per_example(report_path, ctx.per_example)
    report = {
        "format": EVALUATION_FORMAT,
        "version": EVALUATION_FORMAT_VERSION,
        "provenance": info,
        "metrics": results,
    }
    write_json(report_path, report)
    return report
