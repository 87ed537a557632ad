"""``vaekit evaluate`` and ``vaekit compare``: a run's scores, and paired differences of runs."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from vaekit import accel
from vaekit.cli.common import Subcommands, command, data_paths, device, with_run, with_split


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vaekit.evaluate import evaluate_run
    from vaekit.evaluation import format_table
    from vaekit.evaluation.progress import Progress
    from vaekit.runtime import configure_threads

    configure_threads(args.threads)
    metrics = [name.strip() for name in args.metrics.split(",")] if args.metrics else None
    report = evaluate_run(
        args.run,
        metrics=metrics,
        split=args.split,
        num_importance_samples=args.num_importance_samples,
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        elbo_samples=args.elbo_samples,
        seed=args.seed,
        device=device(args),
        compile=args.compile,
        matmul=args.matmul,
        out=args.out,
        **data_paths(args),
        log=None if args.quiet else lambda line: print(line, file=sys.stderr),
        progress=Progress(enabled=not args.quiet),
        argv=["vaekit", *sys.argv[1:]],
    )
    print(format_table(report))
    print(f"wrote {args.out or Path(args.run) / 'evaluation.json'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from vaekit.evaluation.per_example import (
        compare_evaluations,
        format_comparison,
        load_evaluation,
    )
    from vaekit.files import write_json

    a = load_evaluation(args.run_a)
    others = [load_evaluation(path) for path in args.run_b]
    comparisons = [(b, compare_evaluations(a, b)) for b in others]  # every refusal before output
    print(f"A: {a.path}")
    for b, differences in comparisons:
        print(f"\nB: {b.path}\n{differences[0].num_points} datapoints, B - A per datapoint")
        print(format_comparison(differences))
    if args.out:
        rows = [
            {"b": str(b.path), "differences": [_finite_z(asdict(d), d.z) for d in differences]}
            for b, differences in comparisons
        ]
        write_json(Path(args.out), {"a": str(a.path), "comparisons": rows})
        print(f"wrote {args.out}")
    return 0


def _finite_z(row: dict[str, Any], z: float) -> dict[str, Any]:
    return {**row, "z": z if math.isfinite(z) else None}  # JSON has no infinity


def add_evaluate(sub: Subcommands) -> None:
    """The ``evaluate`` subcommand."""
    p = command(sub, "evaluate", cmd_evaluate, "score a run; print a table, write evaluation.json")
    with_run(p)
    with_split(p, "the datapoints scored")
    from vaekit.evaluation import METRICS

    p.add_argument(
        "--metrics", help=f"comma-separated metric names (default: all): {', '.join(METRICS)}"
    )
    p.add_argument(
        "--num-importance-samples",
        type=int,
        default=5000,
        metavar="K",
        help="importance samples per datapoint for log-likelihood (default 5000)",
    )
    p.add_argument("--num-samples", type=int, default=10_000, help="samples for FID and Parzen")
    p.add_argument("--batch-size", type=int, default=100, help="datapoints per importance batch")
    p.add_argument(
        "--elbo-samples",
        type=int,
        default=1,
        metavar="K",
        help="elbo: average K single-sample ELBOs per datapoint (default 1). One sample is an "
        "unbiased but noisy per-datapoint estimate, which a datapoint's log p(x) can fall "
        "below; K samples divide that noise by sqrt(K)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the log-likelihood's softplus sum (needs a C++ compiler; "
        "~10 s once, then faster at K = 5000)",
    )
    p.add_argument(
        "--matmul",
        choices=accel.MATMUL_PRECISIONS,
        default="float32",
        help="the log-likelihood's decoder product: bfloat16x3 is float32-accurate and faster "
        "on CPUs with AMX (MLP decoders with a Bernoulli likelihood; see "
        "docs/how-to/evaluate-and-compare.md)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seeds every metric's randomness (default 0)"
    )
    p.add_argument("--out", help="report path (default: RUN/evaluation.json)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: one per core)")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no time estimates, progress bars or timings on stderr (the table still prints)",
    )


def add_compare(sub: Subcommands) -> None:
    """The ``compare`` subcommand."""
    p = command(
        sub,
        "compare",
        cmd_compare,
        "paired differences between evaluated runs (B - A, per datapoint)",
    )
    p.add_argument("run_a", metavar="A", help="run directory or evaluation report (JSON)")
    p.add_argument("run_b", metavar="B", nargs="+", help="one or more, each compared with A")
    p.add_argument("--out", help="also write the comparison as JSON")
