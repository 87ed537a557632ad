"""The model family on the IWAE-paper protocol: one test NLL table, the same budget per row.

    python -m benchmarks.model_family --out benchmarks/results/model-family \\
        --runs runs/model-family --epochs 30 --budget-minutes 150

Every row trains ``configs/iwae-paper-vae.toml`` (dynamically binarised MNIST, 784-200-200-50
tanh, 400 validation images) for the same ``--epochs`` with the same optimisation (batch 50,
Adam with a cosine learning rate from 1.5e-3 to 1e-4, a KL warm-up over the first tenth of the
epochs, weight averaging, the decoder's output bias started at the log-odds of the mean training
pixel as in the IWAE code), changing only the piece the row names; then scores the 10,000 test
images with K = 5000 importance samples (``vaekit evaluate``: NLL ± standard error over the
test images, the ELBO and the active units). Published numbers (their own, longer budgets) are
printed beside ours.

Resumable: every row trains with exact resume and writes ``<out>/rows/<row>.json`` when scored;
a rerun skips finished rows and resumes an interrupted one. ``--budget-minutes`` stops cleanly
after an epoch's checkpoint when the next epoch would not fit. Every run rewrites
``<out>/results.json`` and ``<out>/table.md`` from the rows finished so far. ``--tiny`` runs
every row on the 8x8 digits for 2 epochs with K = 50 (about two minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine, train_logged
from vaekit.config import load_config
from vaekit.evaluate import evaluate_run
from vaekit.files import write_json
from vaekit.runtime import RunDir
from vaekit.training.run_files import read_metrics

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "iwae-paper-vae.toml"
# row -> (overrides of the recipe, published NLL, its source); the bounds' K and M are the
# papers' (Rainforth et al. 2018: M = 8, K = 8; CIWAE with K = 64 and beta = 0.05)
ROWS: dict[str, tuple[tuple[str, ...], float | None, str]] = {
    "vae": ((), 86.76, "Burda et al. 2016, 3,280 epochs"),
    "vampprior": (
        ("model.prior='vamp'", "model.prior_components=500"),
        85.57,
        "Tomczak & Welling 2018, as quoted by pythae",
    ),
    "iaf": (("model.posterior='iaf'", "model.flow_steps=2"), None, ""),
    "miwae": (
        ("model.bound='miwae'", "model.num_particles=8", "model.bound_groups=8"),
        84.97,
        "Rainforth et al. 2018, as quoted by pythae",
    ),
    "ciwae": (
        ("model.bound='ciwae'", "model.num_particles=64", "model.ciwae_beta=0.05"),
        84.57,
        "Rainforth et al. 2018, as quoted by pythae",
    ),
    "piwae": (
        ("model.bound='piwae'", "model.num_particles=8", "model.bound_groups=8"),
        84.46,
        "Rainforth et al. 2018, as quoted by pythae",
    ),
    "two-layers": (
        (
            "model.stochastic_layers=2",
            "model.lower_latent_dim=100",
            "model.lower_hidden=[100, 100]",
            "model.num_particles=50",
        ),
        82.90,
        "Burda et al. 2016 (IWAE k = 50), 3,280 epochs",
    ),
}
TINY = (
    "data.name='digits'",
    "data.val_size=100",
    "model.hidden=[32]",
    "model.latent_dim=4",
    "model.lower_latent_dim=6",
    "model.lower_hidden=[8]",
    "model.prior_components=5",
)
MARGIN_SECONDS = 30.0


class OutOfBudget(Exception):
    """The next epoch (or evaluation) would not finish within ``--budget-minutes``."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def shared_settings(epochs: int) -> list[str]:
    """The training setup every row shares (recorded in ``settings.json``)."""
    return [
        f"train.epochs={epochs}",
        "train.batch_size=50",
        "train.schedule='cosine'",
        "train.lr=1.5e-3",
        "train.min_lr=1e-4",
        f"train.warmup_epochs={max(epochs // 10, 0)}",
        "train.ema_decay=0.9998",
        "train.device='cpu'",
        "model.output_bias='marginal'",
    ]


def row_config(row: str, args: argparse.Namespace) -> Any:
    """The recipe with the shared training setup, the row's piece and ``--set`` overrides."""
    shared = shared_settings(args.epochs)
    tiny = [o for o in TINY if "lower" not in o or row == "two-layers"] if args.tiny else []
    tiny = [o for o in tiny if "prior_components" not in o or row == "vampprior"]
    overrides = ROWS[row][0]
    if args.tiny:  # the 8x8 digits are scored as grey pixels: 64-d particles stay cheap
        overrides = tuple(o for o in overrides if "prior_components" not in o)
    return load_config(RECIPE, [*shared, *overrides, *tiny, *args.set])


class EpochBudget:
    """A training callback: records each epoch's wall time in ``progress`` (kept across
    invocations) and, after the epoch's checkpoint, stops (OutOfBudget) when the next epoch,
    estimated as 1.25 x the slowest of the last three, would pass the deadline."""

    def __init__(self, deadline: float, epochs: int, done: int, progress: Path):
        self.deadline, self.epochs, self.done, self.progress = deadline, epochs, done, progress
        saved = json.loads(progress.read_text()) if progress.is_file() else {}
        self.seconds: list[float] = saved.get("epoch_seconds", [])[:done]
        self.last = time.monotonic()

    def __call__(self, record: dict[str, float]) -> None:
        now = time.monotonic()
        self.seconds.append(round(now - self.last, 2))
        self.last, self.done = now, self.done + 1
        self.progress.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.progress, {"epoch_seconds": self.seconds})
        if self.done < self.epochs and now + 1.25 * max(self.seconds[-3:]) > self.deadline:
            raise OutOfBudget(f"stopping after epoch {self.done} (budget)")


def run_row(row: str, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    """Train (or resume) and score one row; its JSON."""
    config = row_config(row, args)
    path = Path(args.runs) / row
    run = RunDir(path)
    resume = run.training_state.is_file()
    done = len(read_metrics(run)) if resume else 0
    guard = EpochBudget(deadline, args.epochs, done, Path(args.out) / "progress" / f"{row}.json")
    if done < args.epochs:
        log(f"{row}: {'resuming' if resume else 'training'} at epoch {done}")
        start = time.monotonic()
        try:
            train_logged(config, path, resume=resume, label=row, callbacks=[guard], log=log)
        except OutOfBudget as stop:
            log(f"{row}: {stop}")
            raise
        log(f"{row}: trained in {(time.monotonic() - start) / 60:.1f} min")
    metrics = read_metrics(run)
    log(f"{row}: scoring with K = {args.importance_samples}")
    start = time.monotonic()
    report = evaluate_run(
        path,
        metrics=["elbo", "log-likelihood", "active-units"],
        num_importance_samples=args.importance_samples,
        out=Path(args.out) / "evaluations" / f"{row}.json",
    )["metrics"]
    overrides, anchor, source = ROWS[row]
    likelihood = report["log-likelihood"]
    return {
        "row": row,
        "overrides": list(overrides),
        "epochs": len(metrics),
        "train_seconds": round(sum(guard.seconds), 1),
        "epoch_seconds": guard.seconds,
        "eval_seconds": round(time.monotonic() - start, 1),
        "test_nll": likelihood["nll"],
        "test_nll_stderr": likelihood["stderr"],
        "num_importance_samples": likelihood["num_importance_samples"],
        "test_negative_elbo": -report["elbo"]["elbo"],
        "active_units": report["active-units"]["active_units"],
        "latent_dim": report["active-units"]["latent_dim"],
        "published_nll": anchor,
        "published_source": source,
        "run": str(path),
    }


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The Markdown table of the rows finished so far."""
    lines = [
        f"Budget: {args.epochs} epochs per row; K = {args.importance_samples}; NLL in nats "
        "(lower is better), ± one standard error over the test images.",
        "",
        "| row | setting | test NLL | test −ELBO | active units | published NLL | train |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        published = "—" if r["published_nll"] is None else f"{r['published_nll']:.2f}"
        setting = ", ".join(o.removeprefix("model.") for o in r["overrides"]) or "the recipe"
        lines.append(
            f"| {r['row']} | {setting} | {r['test_nll']:.2f} ± {r['test_nll_stderr']:.2f} | "
            f"{r['test_negative_elbo']:.2f} | {r['active_units']} / {r['latent_dim']} | "
            f"{published} | {r['train_seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", required=True, help="rows, evaluations, results.json, table.md")
    parser.add_argument("--runs", required=True, help="where the rows are trained")
    parser.add_argument("--epochs", type=int, default=30, help="the budget of every row (30)")
    parser.add_argument("--importance-samples", type=int, default=5000, help="K (5000)")
    parser.add_argument("--rows", default=",".join(ROWS), help="a comma-separated subset")
    parser.add_argument("--budget-minutes", type=float, help="stop cleanly before this")
    parser.add_argument("--set", action="append", default=[], help="extra override")
    parser.add_argument("--tiny", action="store_true", help="digits, 2 epochs, K = 50")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.importance_samples = 2, 50
    unknown = sorted(set(args.rows.split(",")) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    settings = {
        "epochs": args.epochs,
        "k": args.importance_samples,
        "shared": shared_settings(args.epochs),
        "set": args.set,
    }
    settings_path = out / "settings.json"
    if settings_path.is_file() and json.loads(settings_path.read_text()) != settings:
        log(f"error: {out} holds rows of other settings; use a new --out")
        return 2
    write_json(settings_path, settings)
    minutes = args.budget_minutes
    deadline = math.inf if minutes is None else time.monotonic() + 60 * minutes - MARGIN_SECONDS
    for row in args.rows.split(","):
        path = out / "rows" / f"{row}.json"
        if path.is_file():
            continue
        try:
            write_json(path, run_row(row, args, deadline))
        except OutOfBudget:
            break
    rows = [
        json.loads((out / "rows" / f"{row}.json").read_text())
        for row in ROWS
        if (out / "rows" / f"{row}.json").is_file()
    ]
    write_json(out / "results.json", {"machine": machine(), "settings": settings, "rows": rows})
    (out / "table.md").write_text(table(rows, args))
    left = [row for row in args.rows.split(",") if not (out / "rows" / f"{row}.json").is_file()]
    log("model family complete" if not left else f"rows left: {', '.join(left)}")
    print(json.dumps({"rows": rows, "left": left}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
