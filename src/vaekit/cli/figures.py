"""``vaekit reconstruct`` and ``vaekit plot``: a run's figures, drawn from its files."""

from __future__ import annotations

import argparse

from vaekit import plots
from vaekit.cli.common import (
    Subcommands,
    command,
    data_paths,
    device,
    in_units,
    output_path,
    run_and_points,
    with_run,
    with_split,
)
from vaekit.runs import load_run


def cmd_reconstruct(args: argparse.Namespace) -> int:
    run, x, y = run_and_points(args)
    with run.model.given(y):
        recon = run.model.reconstruct(x).cpu()
    out_path = output_path(args, run, f"reconstructions-{args.split}")
    if x.dim() == 2:  # vectors: reconstructed against true values, in the data's units
        out = plots.save_vector_reconstructions(
            in_units(run, x.cpu()),
            in_units(run, recon),
            out_path,
            names=run.feature_names or None,
        )
    else:
        out = plots.save_reconstructions(x.cpu(), recon, out_path)
    print(f"wrote {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from vaekit.figures import render_run_figures
    from vaekit.training.run_files import read_metrics

    run = load_run(args.run, device=device(args), **data_paths(args))
    dataset = run.dataset()
    history = read_metrics(run.dir)
    for path in render_run_figures(run.model, dataset, run.dir, history, seed=args.seed):
        print(f"wrote {path}")
    return 0


def add_reconstruct(sub: Subcommands) -> None:
    """The ``reconstruct`` subcommand."""
    p = command(sub, "reconstruct", cmd_reconstruct, "inputs above their reconstructions, as a PNG")
    with_run(p)
    p.add_argument(
        "--out", default=None, help="output PNG (default: RUN/figures/reconstructions-<split>.png)"
    )
    with_split(p, "the split the datapoints come from")
    p.add_argument("--num", type=int, default=16, help="datapoints shown (default 16)")


def add_plot(sub: Subcommands) -> None:
    """The ``plot`` subcommand."""
    p = command(sub, "plot", cmd_plot, "re-draw a run's figures from its files")
    with_run(p)
    p.add_argument("--seed", type=int, default=0, help="seeds the figures' samples (default 0)")
