"""``vaekit interpolate``: latent paths between pairs of datapoints, optionally chain-refined."""

from __future__ import annotations

import argparse

import torch

from vaekit import plots
from vaekit.cli.common import (
    Subcommands,
    command,
    data_paths,
    device,
    in_units,
    output_path,
    with_run,
    with_split,
)
from vaekit.errors import VaekitError
from vaekit.models.conditional import labels_for
from vaekit.runs import load_run
from vaekit.samplers import PATHS, interpolate_images


def cmd_interpolate(args: argparse.Namespace) -> int:
    if args.num_points < 2 or args.chain_steps < 0:
        raise VaekitError("--num-points must be at least 2 and --chain-steps non-negative")
    run = load_run(args.run, device=device(args), **data_paths(args))
    dataset = run.dataset()
    split = getattr(dataset, args.split).x
    if len(split) < 2 * args.pairs:
        raise VaekitError(
            f"--pairs {args.pairs} needs {2 * args.pairs} points, and the {args.split} split has "
            f"{len(split)}: "
            + (
                f"ask for at most {len(split) // 2} pairs"
                if len(split) > 1
                else "use another --split"
            )
        )
    x = split[: 2 * args.pairs].to(device(args))
    classes = labels_for(run.model, getattr(dataset, args.split).y)
    if classes is not None:  # a conditional model: paths between two images of one class
        x, classes = _same_class_pairs(split, classes, args.pairs)
        x = x.to(device(args))
    generator = torch.Generator(device(args)).manual_seed(args.seed)
    chain_steps = [0] if args.chain_steps == 0 else [0, args.chain_steps]
    name = f"interpolation-{args.method}" + (
        f"-chain-{args.chain_steps}" if args.chain_steps else ""
    )
    out_path = output_path(args, run, name)
    images = {}
    for k in chain_steps:
        with run.model.given(classes):
            path = interpolate_images(  # [T, P, D]
                run.model,
                x[: args.pairs],
                x[args.pairs :],
                method=args.method,
                num_points=args.num_points,
                chain_steps=k,
                generator=generator,
            )
            decoded = run.model.decode_mean(path.flatten(0, 1))
        images[k] = decoded.view(*path.shape[:2], *x.shape[1:])
    if x.dim() == 2:  # vectors: each feature along the paths, in the data's units
        paths = {
            ("decoded" if k == 0 else f"+{k} chain steps"): in_units(run, images[k].cpu())
            for k in chain_steps
        }
        out = plots.save_paths(paths, out_path, names=run.feature_names or None)
        print(f"wrote {out}")
        return 0
    rows, labels = [], []
    for i in range(args.pairs):
        for k in chain_steps:
            rows.append(images[k][:, i].cpu())
            labels.append(f"pair {i + 1}" + (f" +{k} steps" if k else ""))
    title = f"{args.method} interpolation"
    if args.chain_steps:
        title += f", each point refined by {args.chain_steps} chain steps"
    out = plots.save_rows(rows, out_path, row_labels=labels, title=title)
    print(f"wrote {out}")
    return 0


def _same_class_pairs(
    x: torch.Tensor, y: torch.Tensor, pairs: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pairs`` pairs of points of one class (the first points, each with the next point of
    its class) stacked as x_a then x_b, [2P, ...], and their labels [P]."""
    first, second = [], []
    for i in range(len(x)):
        later = torch.nonzero(y[i + 1 :] == y[i]).flatten()
        if len(later) and i not in second:
            first.append(i)
            second.append(i + 1 + int(later[0]))
        if len(first) == pairs:
            break
    if len(first) < pairs:
        raise VaekitError(f"the split has fewer than {pairs} pairs of points of one class")
    index = torch.tensor(first + second)
    return x[index], y[torch.tensor(first)]


def add_interpolate(sub: Subcommands) -> None:
    """The ``interpolate`` subcommand."""
    p = command(
        sub, "interpolate", cmd_interpolate, "latent paths between pairs of images, as a PNG"
    )
    with_run(p)
    p.add_argument(
        "--method",
        choices=sorted(PATHS),
        default="slerp",
        help="the path between two codes: lerp (straight line) or slerp (along the sphere)",
    )
    p.add_argument(
        "--chain-steps",
        type=int,
        default=0,
        help="refine each point by this many Markov-chain steps (default 0: none)",
    )
    p.add_argument(
        "--num-points", type=int, default=10, help="points on each path, ends included (default 10)"
    )
    p.add_argument(
        "--pairs", type=int, default=4, help="paths, each between two images of --split (default 4)"
    )
    with_split(p, "the split the images come from")
    p.add_argument(
        "--out",
        default=None,
        help="output PNG (default: RUN/figures/interpolation-<method>[-chain-<k>].png)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the draws (default 0)")
