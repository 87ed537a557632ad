"""Command line: ``vaekit train | sample | reconstruct | plot | data``. Wiring only.

Every user error is a VaekitError: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from vaekit import plots
from vaekit.build import build_dataset, lookup
from vaekit.config import load_config
from vaekit.errors import VaekitError
from vaekit.runs import load_run
from vaekit.runtime import choose_device, new_run_path
from vaekit.samplers import SAMPLERS, PriorSampler, Sampler
from vaekit.training.trainer import TrainingDiverged, TrainingInterrupted

Handler = Callable[[argparse.Namespace], int]


def _err(message: str) -> None:
    print(f"vaekit: error: {message}", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> int:
    from vaekit.experiment import train
    from vaekit.runs import read_run_config

    if args.resume:
        if args.config or args.set:
            raise VaekitError("--resume continues a run with its saved config; drop --config/--set")
        config, _ = read_run_config(args.resume)
        out = Path(args.resume)
    else:
        config = load_config(args.config, args.set)
        out = Path(args.out) if args.out else new_run_path("runs", config.name)
    if args.device:
        config = replace(config, train=replace(config.train, device=args.device))
    print(f"run directory: {out}")
    progress = False if args.quiet else None
    log = None if args.quiet else print
    try:
        run = train(
            config,
            out,
            resume=bool(args.resume),
            overwrite=args.overwrite,
            progress=progress,
            log=log,
            argv=["vaekit", *sys.argv[1:]],
        )
    except TrainingInterrupted as stop:
        _err(f"{stop}: vaekit train --resume {out}")
        return 128 + stop.signum
    except TrainingDiverged as error:
        _err(str(error))
        return 3
    print(f"done: {run.dir.path}")
    return 0


def _device(args: argparse.Namespace) -> torch.device:
    return choose_device(args.device or "auto")


def cmd_sample(args: argparse.Namespace) -> int:
    run = load_run(args.run, device=_device(args))
    cls = lookup(SAMPLERS, args.sampler, "sampler")
    generator = torch.Generator(_device(args)).manual_seed(args.seed)
    sampler: Sampler
    if cls is PriorSampler:
        sampler = PriorSampler(run.model, decode=args.decode)
    else:
        dataset = build_dataset(run.config.data, run.config.train.seed)
        sampler = cls(run.model, dataset.train.x, decode=args.decode)
    images = sampler.sample(args.num_samples, generator=generator).cpu()
    out = plots.save_image_grid(images, args.out, title=f"{args.sampler} samples")
    print(f"wrote {out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    run = load_run(args.run, device=_device(args))
    dataset = build_dataset(run.config.data, run.config.train.seed)
    x = getattr(dataset, args.split).x[: args.num].to(_device(args))
    out = plots.save_reconstructions(x.cpu(), run.model.reconstruct(x).cpu(), args.out)
    print(f"wrote {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    import json

    from vaekit.figures import render_run_figures

    run = load_run(args.run, device=_device(args))
    dataset = build_dataset(run.config.data, run.config.train.seed)
    history = []
    if run.dir.metrics.is_file():
        history = [json.loads(line) for line in run.dir.metrics.read_text().splitlines() if line]
    for path in render_run_figures(run.model, dataset, run.dir, history, seed=args.seed):
        print(f"wrote {path}")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from vaekit.data import default_data_root, fetch

    root = Path(args.root) if args.root else default_data_root()
    for path in fetch(args.name, root):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="vaekit", description="Train, sample, evaluate and explain generative autoencoders."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    def with_run(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", help="run directory written by vaekit train")
        p.add_argument("--device", default=None, help="auto (default), cpu or cuda")

    p = command("train", cmd_train, "train a model from a TOML recipe (default: VAE on digits)")
    p.add_argument("--config", help="TOML recipe, e.g. configs/digits.toml")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set model.latent_dim=2 (repeatable)",
    )
    p.add_argument("--out", help="run directory (default: a new folder under runs/)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run exactly")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")

    p = command("sample", cmd_sample, "draw samples from a trained model into a PNG grid")
    with_run(p)
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--out", default="samples.png")
    p.add_argument("--sampler", default="prior", help=f"one of: {', '.join(SAMPLERS)}")
    p.add_argument("--decode", choices=["mean", "sample"], default="mean")
    p.add_argument("--seed", type=int, default=0)

    p = command("reconstruct", cmd_reconstruct, "inputs above their reconstructions, as a PNG")
    with_run(p)
    p.add_argument("--out", default="reconstructions.png")
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--num", type=int, default=16)

    p = command("plot", cmd_plot, "re-draw a run's figures from its files")
    with_run(p)
    p.add_argument("--seed", type=int, default=0)

    data = sub.add_parser("data", help="manage datasets", description="manage datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data_sub.add_parser("fetch", help="download or extract a dataset into the cache")
    p.set_defaults(handler=cmd_data_fetch)
    p.add_argument("name", help="dataset name, e.g. mnist")
    p.add_argument("--root", help="data directory (default: $VAEKIT_DATA or ~/.cache/vaekit/data)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    for name in ("num_samples", "num"):
        if getattr(args, name, 1) < 1:
            _err(f"--{name.replace('_', '-')} must be at least 1")
            return 2
    try:
        return int(args.handler(args))
    except VaekitError as error:
        _err(str(error))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
