"""Per-datapoint scores next to an evaluation report, and paired comparisons of two models.

``vaekit evaluate`` keeps each datapoint's ELBO and log p(x) in
``<report>.per-example.safetensors`` beside ``<report>.json``; the report records the file's
sha256. Two models scored on the same data (same dataset, split and binarised pixels) differ by
the mean of their per-datapoint differences, and the standard error of that mean is
std(b − a) / √n. Hard digits are hard for both models, so this paired error is usually far
smaller than the ± of either report alone, which mostly measures how much the images differ from
one another (``vaekit compare RUN_A RUN_B``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor

from vaekit.errors import CheckpointError, ConfigError
from vaekit.files import atomic_write

PER_EXAMPLE_SUFFIX = ".per-example.safetensors"
REPORT_NAME = "evaluation.json"
# What two reports must share for their datapoints to be the same datapoints in the same order,
# checked in this order (the first mismatch is the most telling); split_identity decides.
SAME_DATA = ("split", "num_points", "binarize", "binarization_seed", "split_identity")
# Quantities whose estimator depends on the evaluation setting: compared only when it matches.
SAME_SETTING = {"log_likelihood": "num_importance_samples", "elbo": "elbo_samples"}
# A setting's value in reports written before it was recorded.
SETTING_DEFAULTS = {"elbo_samples": 1}


def per_example_path(report: Path) -> Path:
    """Where the per-datapoint values of ``report`` live: X.json -> X.per-example.safetensors."""
    return report.with_name(report.stem + PER_EXAMPLE_SUFFIX)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_per_example(report: Path, values: dict[str, Tensor]) -> dict[str, Any]:
    """Write ``values`` ([N] each) beside ``report`` atomically; return the report's record."""
    path = per_example_path(report)
    tensors = {
        name: value.detach().to("cpu", torch.float64).contiguous() for name, value in values.items()
    }
    data = save(tensors)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    digest = hashlib.sha256(data).hexdigest()
    return {"file": path.name, "sha256": digest, "quantities": sorted(tensors)}


@dataclass(frozen=True)
class Evaluation:
    """One report and its per-datapoint values."""

    path: Path
    report: dict[str, Any]
    values: dict[str, Tensor]

    @property
    def provenance(self) -> dict[str, Any]:
        provenance: dict[str, Any] = self.report["provenance"]
        return provenance


def load_evaluation(path: str | Path) -> Evaluation:
    """The report at ``path`` (a run directory or a report's JSON) with its per-datapoint values.

    Raises CheckpointError when the report or its values are missing, unreadable, or do not match.
    """
    path = Path(path)
    report_path = path / REPORT_NAME if path.is_dir() else path
    if not report_path.is_file():
        raise CheckpointError(
            f"{str(report_path)!r} does not exist; run `vaekit evaluate {path}` first"
        )

    def not_a_report(error: Exception) -> CheckpointError:
        return CheckpointError(
            f"{str(report_path)!r} is not a vaekit evaluation report ({error!r}); "
            f"run `vaekit evaluate` again"
        )

    try:
        report = json.loads(report_path.read_text())
        record = report["provenance"].get("per_example")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise not_a_report(error) from None
    if not record:
        raise CheckpointError(
            f"{str(report_path)!r} has no per-datapoint values (written by an older vaekit, or "
            f"with no elbo/log-likelihood metric); run `vaekit evaluate` again with "
            f"--metrics elbo,log-likelihood"
        )
    try:  # a file name beside the report (with_name refuses a path) and its hash
        values_path, sha256 = report_path.with_name(record["file"]), str(record["sha256"])
    except (ValueError, KeyError, TypeError) as error:
        raise not_a_report(error) from None
    redo = f"run `vaekit evaluate` again to rewrite {str(report_path)!r} and its values"
    if not values_path.is_file():
        raise CheckpointError(f"{str(values_path)!r} is missing; {redo}")
    if _sha256(values_path) != sha256:
        raise CheckpointError(
            f"{str(values_path)!r} is not the file {str(report_path)!r} was written with "
            f"(sha256 differs); {redo}"
        )
    try:
        values = load_file(str(values_path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"cannot read {str(values_path)!r} ({error}); {redo}") from None
    n = report["provenance"].get("num_points")
    for name, value in values.items():
        if value.shape != (n,):
            raise CheckpointError(
                f"{str(values_path)!r} holds {name} of shape {tuple(value.shape)}, not the "
                f"report's {n} datapoints; {redo}"
            )
    return Evaluation(report_path, report, values)


@dataclass(frozen=True)
class PairedDifference:
    """Model B against model A on the same n datapoints; higher is better for every quantity."""

    quantity: str
    mean_a: float
    mean_b: float
    difference: float  # mean of b - a
    stderr: float  # std(b - a) / sqrt(n): the error of ``difference``
    unpaired_stderr: float  # sqrt(var a + var b) / sqrt(n): what treating them as independent gives
    num_points: int

    @property
    def z(self) -> float:
        """``difference`` in units of its standard error."""
        if self.stderr == 0:
            return math.copysign(math.inf, self.difference) if self.difference else 0.0
        return self.difference / self.stderr


def paired_difference(quantity: str, a: Tensor, b: Tensor) -> PairedDifference:
    """The mean of ``b - a`` over datapoints, with its paired and unpaired standard errors."""
    if a.shape != b.shape or a.ndim != 1 or a.numel() < 2:
        raise ValueError(
            f"need two [n] tensors with n >= 2, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    a, b = a.double(), b.double()
    n = a.numel()
    return PairedDifference(
        quantity=quantity,
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        difference=float((b - a).mean()),
        stderr=float((b - a).std()) / math.sqrt(n),
        unpaired_stderr=math.sqrt(float(a.var()) + float(b.var())) / math.sqrt(n),
        num_points=n,
    )


def compare_evaluations(a: Evaluation, b: Evaluation) -> list[PairedDifference]:
    """Paired differences B − A for every quantity both evaluations hold.

    Raises ConfigError when the two scored different datapoints, or a quantity with different
    settings (e.g. log p(x) with different K), or have nothing in common.
    """
    pa, pb = a.provenance, b.provenance
    for key in SAME_DATA:
        if pa.get(key) != pb.get(key):
            hint = (
                " (the evaluation pixels are binarised with each run's train.seed: compare "
                "runs trained with the same seed)"
                if key == "binarization_seed"
                else ""
            )
            raise ConfigError(
                f"the two evaluations scored different data: {key} is {pa.get(key)!r} in "
                f"{str(a.path)!r} and {pb.get(key)!r} in {str(b.path)!r}{hint}; evaluate both "
                f"runs on the same split of the same dataset"
            )
    shared = [name for name in a.values if name in b.values]
    if not shared:
        raise ConfigError(
            f"{str(a.path)!r} holds {', '.join(sorted(a.values))} and {str(b.path)!r} holds "
            f"{', '.join(sorted(b.values))}: nothing to compare; evaluate both with the same "
            f"--metrics"
        )
    for name in shared:
        setting = SAME_SETTING.get(name)
        default = SETTING_DEFAULTS.get(setting or "")
        if setting and pa.get(setting, default) != pb.get(setting, default):
            flag = "--" + setting.replace("_", "-")
            raise ConfigError(
                f"{name} was estimated with {setting} = {pa.get(setting, default)} in "
                f"{str(a.path)!r} and {pb.get(setting, default)} in {str(b.path)!r}; evaluate "
                f"both with the same {flag}"
            )
    return [paired_difference(name, a.values[name], b.values[name]) for name in shared]


def format_comparison(differences: list[PairedDifference]) -> str:
    """An aligned table: each quantity's means, B − A, its paired and unpaired errors, and z."""
    header = ("quantity", "A", "B", "B - A", "± paired", "± unpaired", "z")
    rows = [header] + [
        (
            d.quantity,
            f"{d.mean_a:.4f}",
            f"{d.mean_b:.4f}",
            f"{d.difference:+.4f}",
            f"{d.stderr:.4f}",
            f"{d.unpaired_stderr:.4f}",
            f"{d.z:+.1f}",
        )
        for d in differences
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )
