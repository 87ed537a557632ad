"""IWAE-paper protocol runs side by side: validation bound per epoch, test NLL at K = 5000.

Reads run directories written by ``vaekit train`` (metrics.jsonl) and scored by
``vaekit evaluate`` (evaluation.json), prints one JSON object, and draws the validation bound
of every run against its epochs with each run's test NLL marked at its last epoch.

    python -m benchmarks.iwae_protocol_report "VAE k=1=runs/k1" "IWAE k=5=runs/k5" \\
        --out benchmarks/results/iwae-protocol.png

Each argument is LABEL=RUN (split at the last '='). The validation bound is the IWAE bound with
the run's own k (the ELBO for k = 1) on the 400-image validation tail, one fresh binarisation
per evaluation; the test NLL is the K = 5000 estimate on the 10k test images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.common import machine
from vaekit.runtime import RunDir
from vaekit.training.run_files import read_metrics


def load_run(run: Path) -> dict[str, Any]:
    """Per-epoch validation bounds and the test NLL (if evaluated) of one run."""
    rows = read_metrics(RunDir(run))
    bound_key = "val/iwae" if "val/iwae" in rows[0] else "val/elbo"
    out: dict[str, Any] = {
        "run": str(run),
        "epochs": [int(r["epoch"]) for r in rows],
        "val_bound": [-float(r[bound_key]) for r in rows],
        "val_bound_kind": "IWAE bound" if bound_key == "val/iwae" else "ELBO",
    }
    evaluation = run / "evaluation.json"
    if evaluation.exists():
        metrics = json.loads(evaluation.read_text())["metrics"]
        if "log-likelihood" in metrics:
            ll = metrics["log-likelihood"]
            out["test_nll"] = ll["nll"]
            out["test_nll_stderr"] = ll["stderr"]
            out["num_importance_samples"] = ll["num_importance_samples"]
        if "elbo" in metrics:
            out["test_negative_elbo"] = -metrics["elbo"]["elbo"]
        if "active-units" in metrics:
            out["active_units"] = metrics["active-units"]["active_units"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIRECTORY")
    parser.add_argument("--out", type=Path, default=None, help="PNG of the curves")
    parser.add_argument(
        "--paper",
        action="append",
        default=[],
        help="LABEL=NLL: a published test NLL for that run's label, drawn as a dashed line",
    )
    parser.add_argument(
        "--ymax", type=float, default=140.0, help="top of the plot in nats (lower: zoom on the end)"
    )
    args = parser.parse_args()
    runs = {}
    for item in args.runs:
        label, _, path = item.rpartition("=")
        if not label:
            parser.error(f"expected LABEL=RUN, got {item!r}")
        runs[label] = load_run(Path(path))
    for item in args.paper:
        label, _, value = item.rpartition("=")
        if label not in runs:
            parser.error(f"--paper {item!r}: no run labelled {label!r}")
        runs[label]["paper_test_nll"] = float(value)
    if args.out is not None:
        # the legend goes under the axes (one line per run), where it hides no curve
        fig, ax = plt.subplots(figsize=(7, 4.5 + 0.22 * len(runs)), constrained_layout=True)
        for i, (label, run) in enumerate(runs.items()):
            color = f"C{i}"
            kind = run["val_bound_kind"]
            label_text = f"{label}: validation {kind}"
            if "test_nll" in run:
                label_text += f"; test NLL {run['test_nll']:.2f}"
            ax.plot(run["epochs"], run["val_bound"], color=color, label=label_text)
            if "paper_test_nll" in run:
                ax.axhline(run["paper_test_nll"], color=color, linestyle="--", linewidth=1)
            if "test_nll" in run:
                ax.plot([run["epochs"][-1]], [run["test_nll"]], "o", color=color)
        lows = [min(run["val_bound"]) for run in runs.values()]
        lows += [
            run[k] for run in runs.values() for k in ("test_nll", "paper_test_nll") if k in run
        ]
        ax.set_ylim(min(lows) - 3, args.ymax)  # the first epochs are far above: show the end
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats (lower is better)")
        ax.set_title("IWAE-paper protocol: validation bound per epoch; dots: test NLL (K = 5000)")
        ax.grid(alpha=0.3)
        ax.legend(
            title="dashed: published test NLL" if args.paper else None,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.14),
            fontsize="small",
        )
        fig.savefig(args.out, dpi=120)
    print(json.dumps({"report": "iwae_protocol", "machine": machine(), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
