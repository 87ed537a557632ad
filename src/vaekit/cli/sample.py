"""``vaekit sample``: draws of a trained model (any sampler, the Markov chain step by step)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vaekit import plots
from vaekit.build import lookup
from vaekit.cli.common import (
    Subcommands,
    command,
    data_paths,
    device,
    in_units,
    output_path,
    parse_steps,
    with_run,
)
from vaekit.data.base import Dataset
from vaekit.errors import VaekitError
from vaekit.exports import write_csv, write_npy
from vaekit.runs import Run, load_run
from vaekit.samplers import SAMPLERS, MarkovChainSampler, PriorSampler, Sampler
from vaekit.samplers.markov_chain import STARTS

SAMPLE_FORMATS = ("png", "npy", "csv")


def cmd_sample(args: argparse.Namespace) -> int:
    run = load_run(args.run, device=device(args), **data_paths(args))
    cls = lookup(SAMPLERS, args.sampler, "sampler")
    generator = torch.Generator(device(args)).manual_seed(args.seed)
    if args.num_samples is not None and args.num_samples < 1:
        raise VaekitError(f"--num-samples must be at least 1, got {args.num_samples}")
    condition = run.model.condition
    if condition is None and args.condition is not None:
        raise VaekitError("--condition applies to a conditional model (model.conditional = true)")
    if args.condition is not None:  # a class name or index, from here on its index
        args.condition = run.class_index(args.condition)
    if cls is MarkovChainSampler:
        return _sample_chain(args, run, generator)
    for option in ("steps", "start"):
        if getattr(args, option) is not None:
            raise VaekitError(f"--{option} applies to --sampler markov-chain only")
    sampler: Sampler
    dataset = None
    images = len(run.event_shape) == 3
    if cls is PriorSampler:
        sampler = PriorSampler(run.model, decode=args.decode)
    else:
        dataset = run.dataset()
        if condition is not None and dataset.train.y is None:
            raise VaekitError(
                f"--sampler {args.sampler} fits the codes of the training data, which a "
                "conditional model encodes with their labels, but the data found here have no "
                "labels: point --data-path at the labelled data the run was trained on, or use "
                "--sampler prior or markov-chain"
            )
        # a conditional model encodes each x with its label; other models ignore the labels
        sampler = cls(run.model, dataset.train.x, decode=args.decode, labels=dataset.train.y)
    default_count = 64 if images and args.format == "png" else 1000
    labels = _sample_labels(args, run, default_count)
    count = args.num_samples or default_count if labels is None else len(labels)
    with run.model.given(labels):
        samples = sampler.sample(count, generator=generator).cpu()
    if images and args.format == "png":
        title = f"{args.sampler} samples" + _condition_title(args, run, labels)
        path = output_path(args, run, f"sample-{args.sampler}" + _condition_name(args))
        if labels is not None and args.condition is None and args.num_samples is None:
            classes = range(len(samples) // 8)  # one row of 8 per class, each row named
            row_labels = [run.class_label(k) for k in classes]
            out = plots.save_rows(list(samples.split(8)), path, row_labels=row_labels, title=title)
        else:
            out = plots.save_image_grid(
                samples, path, title=title, ncols=8 if labels is not None else None
            )
    else:
        name = f"sample-{args.sampler}" + _condition_name(args)
        out = _write_samples(args, run, samples, dataset, name)
    print(f"wrote {out}")
    return 0


def _sample_labels(args: argparse.Namespace, run: Run, default_count: int) -> torch.Tensor | None:
    """The class of each sample of a conditional model: ``--condition`` for all of them, else
    one row of 8 per class (or the classes in turn, for ``--num-samples``); None otherwise."""
    condition = run.model.condition
    if condition is None:
        return None
    on = next(run.model.parameters()).device
    if args.condition is not None:
        return torch.full((args.num_samples or default_count,), args.condition, device=on)
    if args.num_samples is not None:
        return torch.arange(args.num_samples, device=on) % condition.dim
    return torch.arange(condition.dim, device=on).repeat_interleave(8)


def _condition_name(args: argparse.Namespace) -> str:
    return "" if args.condition is None else f"-class-{args.condition}"


def _condition_title(args: argparse.Namespace, run: Run, labels: torch.Tensor | None) -> str:
    if labels is None:
        return ""
    if args.condition is not None:
        return f", {run.class_label(args.condition)}"
    return ", one row per class" if args.num_samples is None else ", classes in turn"


def _write_samples(
    args: argparse.Namespace,
    run: Run,
    samples: torch.Tensor,
    dataset: Dataset | None,
    name: str,
) -> Path:
    """Samples as numbers (npy, csv) or, for vectors, as marginals against the training data
    (png); in the data's own units where it was standardised."""
    samples = in_units(run, samples)
    out = output_path(args, run, name, args.format)
    if args.format == "npy":
        return write_npy(out, samples)
    if args.format == "csv":
        return write_csv(out, samples, names=run.feature_names)
    dataset = dataset or run.dataset()
    real = dataset.train.x[:5000]
    if dataset.standardization is not None:
        real = dataset.standardization.invert(real)
    return plots.save_marginals(real, samples, out, names=run.feature_names or None)


def _sample_chain(args: argparse.Namespace, run: Run, generator: torch.Generator) -> int:
    """One figure row per recorded step of the encode-decode chain (Creswell et al. 2016); for
    vectors, or with ``--format npy|csv``, the samples of the last recorded step."""
    steps = parse_steps(args.steps or "0,1,5,10")
    start = args.start or "prior"
    data = None
    if start == "data":
        data = run.dataset().train.x
    sampler = MarkovChainSampler(run.model, data, start=start, decode=args.decode)
    images = len(run.event_shape) == 3
    condition = run.model.condition
    default_count = (10 if images else 1000) if condition is None else condition.dim
    labels = _sample_labels(args, run, default_count)
    if labels is not None and args.condition is None and args.num_samples is None:
        labels = labels.unique()  # one chain per class
    count = args.num_samples or default_count if labels is None else len(labels)
    with run.model.given(labels):
        trajectory = sampler.run(count, steps[-1], record=steps, generator=generator)
        rows = [sampler.decode_latent(trajectory.states[t].z, generator=generator) for t in steps]
    title = f"Markov chain from {start} ({args.decode} decoding)"
    title += _condition_title(args, run, labels)
    title = title.replace("one row per class", "one column per class")
    name = "sample-markov-chain" + _condition_name(args)
    name += "" if start == "prior" else f"-from-{start}"
    name += "" if args.decode == "mean" else f"-{args.decode}"
    name += "-" + "-".join(map(str, steps))
    if images and args.format == "png":
        out = plots.save_rows(
            [r.cpu() for r in rows],
            output_path(args, run, name),
            row_labels=[f"step {t}" for t in steps],
            title=title,
        )
    else:  # numbers, or vectors against the training data: the last recorded step
        out = _write_samples(args, run, rows[-1].cpu(), None, name)
    power = trajectory.diagnostics["latent_power"]
    assert isinstance(power, list)
    for t in steps[1:] if steps[0] == 0 else steps:
        print(f"step {t}: mean ||z||^2 / D = {power[t - 1]:.3f}")
    print(f"wrote {out}")
    return 0


def add_sample(sub: Subcommands) -> None:
    """The ``sample`` subcommand."""
    p = command(
        sub,
        "sample",
        cmd_sample,
        "draw samples from a trained model: a PNG grid, or numbers (--format npy, csv)",
    )
    with_run(p)
    p.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="default 64 for an image grid, else 1000; markov-chain: 10 chains on images (any "
        "--format), 1000 on vectors; a conditional model: see --condition",
    )
    p.add_argument(
        "--format",
        choices=SAMPLE_FORMATS,
        default="png",
        help="png: a figure (an image grid; for vectors, marginals against the training data); "
        "npy or csv: the numbers, in the data's own units when it was standardised",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output file (default: in the run, RUN/figures/sample-<sampler>.png for a figure, "
        "RUN/samples/sample-<sampler>.<format> for npy/csv; markov-chain adds the start, the "
        "decoding and the steps, e.g. RUN/figures/sample-markov-chain-0-1-5-10.png)",
    )
    p.add_argument("--sampler", default="prior", help=f"one of: {', '.join(SAMPLERS)}")
    p.add_argument(
        "--decode",
        choices=["mean", "sample"],
        default="mean",
        help="images (and, for markov-chain, each chain step) use E[x|z] or a draw of p(x|z)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the draws (default 0)")
    p.add_argument(
        "--steps", help="markov-chain: chain steps to show, one row each (default 0,1,5,10)"
    )
    p.add_argument("--start", choices=STARTS, help="markov-chain: where chains start (prior)")
    p.add_argument(
        "--condition",
        default=None,
        help="a conditional model's class for every sample, by index or by the name its data "
        "gave it (a class folder, a text label); default: one row of 8 per class, for "
        "markov-chain one chain per class",
    )
