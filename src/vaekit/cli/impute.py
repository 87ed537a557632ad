"""``vaekit impute``: missing pixels (or features) filled in by a Markov chain, step by step."""

from __future__ import annotations

import argparse

import torch

from vaekit import plots
from vaekit.cli.common import (
    Subcommands,
    command,
    device,
    in_units,
    output_path,
    parse_steps,
    run_and_points,
    with_run,
    with_split,
)
from vaekit.errors import VaekitError
from vaekit.runs import Run
from vaekit.samplers import IMPUTATION_KERNELS, MASKS, impute


def cmd_impute(args: argparse.Namespace) -> int:
    run, x, y = run_and_points(args)
    with run.model.given(y):
        return _impute(args, run, x)


def _impute(args: argparse.Namespace, run: Run, x: torch.Tensor) -> int:
    steps = parse_steps(args.steps)
    generator = torch.Generator(device(args)).manual_seed(args.seed)
    shape = tuple(int(n) for n in x.shape[1:])
    missing = MASKS[args.mask](len(x), shape, torch.Generator().manual_seed(args.seed))
    missing = missing.to(x.device)
    try:
        trajectory = impute(
            run.model,
            x,
            missing,
            method=args.method,
            num_steps=steps[-1],
            record=steps,
            generator=generator,
        )
    except ValueError as error:
        raise VaekitError(str(error)) from None
    # Shown: the observed pixels, and the decoder mean at the chain's z in the missing ones.
    completed = [
        torch.where(missing, run.model.decode_mean(trajectory.states[t].z), x).cpu() for t in steps
    ]
    title = f"{args.method} imputation, {args.mask} mask"
    out_path = output_path(args, run, f"imputation-{args.mask}-{args.method}")
    for t, values in zip(steps, completed, strict=True):
        squared = float((values - x.cpu())[missing.cpu()].square().mean())
        units = " (standardised units)" if run.standardization is not None else ""
        print(f"step {t}: mean squared error on the missing values{units} = {squared:.4g}")
    if x.dim() == 2:  # vectors: imputed against true values of the missing entries
        out = plots.save_vector_reconstructions(
            in_units(run, x.cpu()),
            in_units(run, completed[-1]),
            out_path,
            only=missing.cpu(),
            names=run.feature_names or None,
            title=f"{title}, step {steps[-1]}",
            ylabel="imputed",
        )
    else:
        rows = [x.cpu(), torch.where(missing, 0.5, x).cpu(), *completed]
        labels = ["original", "observed", *[f"step {t}" for t in steps]]
        out = plots.save_rows(rows, out_path, row_labels=labels, title=title)
    if "acceptance_rate" in trajectory.diagnostics:
        print(f"acceptance rate: {trajectory.diagnostics['acceptance_rate']:.3f}")
    print(f"wrote {out}")
    return 0


def add_impute(sub: Subcommands) -> None:
    """The ``impute`` subcommand."""
    p = command(sub, "impute", cmd_impute, "fill in missing pixels with a Markov chain, as a PNG")
    with_run(p)
    p.add_argument(
        "--mask",
        choices=sorted(MASKS),
        default="center",
        help="the hidden pixels (for vectors: features): center, left-half or random",
    )
    p.add_argument(
        "--method",
        choices=sorted(IMPUTATION_KERNELS),
        default="mwg",
        help="mwg (Metropolis-within-Gibbs, exact) or pseudo-gibbs",
    )
    p.add_argument(
        "--steps",
        default="0,1,10,100",
        help="comma-separated chain steps to show, one row each (default 0,1,10,100)",
    )
    p.add_argument("--num", type=int, default=8, help="datapoints to impute (default 8)")
    with_split(p, "the split the datapoints come from")
    p.add_argument(
        "--out",
        default=None,
        help="output PNG (default: RUN/figures/imputation-<mask>-<method>.png)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the masks and the chains (default 0)")
