"""Command line: ``vaekit train | sample | evaluate | compare | plot | data ...``. Wiring only.

Every user error is a VaekitError: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from vaekit import accel, plots, vector_plots
from vaekit.build import build_dataset, lookup
from vaekit.config import config_from_dict, config_to_dict, load_config
from vaekit.data.base import Dataset
from vaekit.errors import VaekitError
from vaekit.exports import write_csv, write_npy
from vaekit.models.conditional import labels_for
from vaekit.runs import Run, load_run
from vaekit.runtime import choose_device, new_run_path
from vaekit.samplers import (
    IMPUTATION_KERNELS,
    MASKS,
    PATHS,
    SAMPLERS,
    MarkovChainSampler,
    PriorSampler,
    Sampler,
    impute,
    interpolate_images,
)
from vaekit.samplers.markov_chain import STARTS
from vaekit.training.rollback import TrainingDiverged
from vaekit.training.trainer import TrainingInterrupted

SAMPLE_FORMATS = ("png", "npy", "csv")

Handler = Callable[[argparse.Namespace], int]


def _err(message: str) -> None:
    print(f"vaekit: error: {message}", file=sys.stderr)


def _data_paths(args: argparse.Namespace) -> dict[str, str | None]:
    """--data-path / --data-root: where a run's data moved to (see ``runs.read_run_config``)."""
    return {"data_path": args.data_path, "data_root": args.data_root}


def cmd_train(args: argparse.Namespace) -> int:
    from vaekit.experiment import train
    from vaekit.runs import read_run_config
    from vaekit.training.distributed import env_world

    main_process = env_world().is_main  # under torchrun, rank 0 alone prints

    if args.resume:
        extension = [item for item in args.set if item.partition("=")[0].strip() == "train.epochs"]
        if args.config or len(extension) != len(args.set):
            raise VaekitError(
                "--resume continues a run with its saved config; drop --config and every --set "
                "but --set train.epochs=N, which extends the run to N epochs"
            )
        config, _ = read_run_config(args.resume, **_data_paths(args))
        if extension:
            config = config_from_dict(config_to_dict(config), extension)
        out = Path(args.resume)
    else:
        config = load_config(args.config, args.set)
        out = Path(args.out) if args.out else new_run_path("runs", config.name)
    if args.device:
        config = replace(config, train=replace(config.train, device=args.device))
    if args.deterministic and not config.train.deterministic:
        if args.resume:
            raise VaekitError(
                "--deterministic applies from the start of a run; this run was started without it"
            )
        config = replace(config, train=replace(config.train, deterministic=True))
    if main_process:
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
            argv=["vaekit", *args.argv],
        )
    except TrainingInterrupted as stop:
        _err(f"{stop}: vaekit train --resume {out}")
        return 128 + stop.signum
    except TrainingDiverged as error:
        _err(str(error))
        return 3
    if main_process:
        print(f"done: {run.dir.path}")
    return 0


def _device(args: argparse.Namespace) -> torch.device:
    return choose_device(args.device or "auto")


def cmd_sample(args: argparse.Namespace) -> int:
    run = load_run(args.run, device=_device(args), **_data_paths(args))
    cls = lookup(SAMPLERS, args.sampler, "sampler")
    generator = torch.Generator(_device(args)).manual_seed(args.seed)
    if args.num_samples is not None and args.num_samples < 1:
        raise VaekitError(f"--num-samples must be at least 1, got {args.num_samples}")
    condition = run.model.condition
    if condition is None and args.condition is not None:
        raise VaekitError("--condition applies to a conditional model (model.conditional = true)")
    if condition is not None and cls not in (PriorSampler, MarkovChainSampler):
        raise VaekitError(
            f"--sampler {args.sampler} fits the codes of unlabelled training data; a conditional "
            "model samples with --sampler prior or markov-chain"
        )
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
        dataset = build_dataset(run.config.data, run.config.train.seed)
        sampler = cls(run.model, dataset.train.x, decode=args.decode)
    default_count = 64 if images and args.format == "png" else 1000
    labels = _sample_labels(args, run, default_count)
    count = args.num_samples or default_count if labels is None else len(labels)
    with run.model.given(labels):
        samples = sampler.sample(count, generator=generator).cpu()
    if images and args.format == "png":
        title = f"{args.sampler} samples" + _condition_title(args, labels)
        out = plots.save_image_grid(
            samples,
            _out(args, run, f"sample-{args.sampler}" + _condition_name(args)),
            title=title,
            ncols=8 if labels is not None and args.condition is None else None,
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
    device = next(run.model.parameters()).device
    if args.condition is not None:
        if not 0 <= args.condition < condition.dim:
            raise VaekitError(
                f"--condition must be a class in 0..{condition.dim - 1}, got {args.condition}"
            )
        return torch.full((args.num_samples or default_count,), args.condition, device=device)
    if args.num_samples is not None:
        return torch.arange(args.num_samples, device=device) % condition.dim
    return torch.arange(condition.dim, device=device).repeat_interleave(8)


def _condition_name(args: argparse.Namespace) -> str:
    return "" if args.condition is None else f"-class-{args.condition}"


def _condition_title(args: argparse.Namespace, labels: torch.Tensor | None) -> str:
    if labels is None:
        return ""
    if args.condition is not None:
        return f", class {args.condition}"
    return ", one row per class" if args.num_samples is None else ", classes in turn"


def _in_units(run: Run, x: torch.Tensor) -> torch.Tensor:
    """x in the data's own units: the run's standardisation inverted, if it has one."""
    return x if run.standardization is None else run.standardization.invert(x)


def _out(args: argparse.Namespace, run: Run, name: str, suffix: str = "png") -> Path:
    """``--out`` where given, else the command's own path in the run (``RunDir.output``)."""
    return Path(args.out) if args.out else run.dir.output(name, suffix)


def _write_samples(
    args: argparse.Namespace,
    run: Run,
    samples: torch.Tensor,
    dataset: Dataset | None,
    name: str,
) -> Path:
    """Samples as numbers (npy, csv) or, for vectors, as marginals against the training data
    (png); in the data's own units where it was standardised."""
    samples = _in_units(run, samples)
    out = _out(args, run, name, args.format)
    if args.format == "npy":
        return write_npy(out, samples)
    if args.format == "csv":
        return write_csv(out, samples, names=run.feature_names)
    dataset = dataset or build_dataset(run.config.data, run.config.train.seed)
    real = dataset.train.x[:5000]
    if dataset.standardization is not None:
        real = dataset.standardization.invert(real)
    return vector_plots.save_marginals(real, samples, out, names=run.feature_names or None)


def _parse_steps(text: str) -> list[int]:
    """``"0,1,5,10"`` -> [0, 1, 5, 10] (sorted, unique, non-negative)."""
    try:
        steps = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise VaekitError(f"--steps must be comma-separated integers, got {text!r}") from None
    if not steps or steps[0] < 0:
        raise VaekitError(f"--steps needs non-negative integers, got {text!r}")
    return steps


def _sample_chain(args: argparse.Namespace, run: Run, generator: torch.Generator) -> int:
    """One figure row per recorded step of the encode-decode chain (Creswell et al. 2016); for
    vectors, or with ``--format npy|csv``, the samples of the last recorded step."""
    steps = _parse_steps(args.steps or "0,1,5,10")
    start = args.start or "prior"
    data = None
    if start == "data":
        data = build_dataset(run.config.data, run.config.train.seed).train.x
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
    title = f"Markov chain from {start} ({args.decode} decoding)" + _condition_title(args, labels)
    title = title.replace("one row per class", "one column per class")
    name = "sample-markov-chain" + _condition_name(args)
    name += "" if start == "prior" else f"-from-{start}"
    name += "" if args.decode == "mean" else f"-{args.decode}"
    name += "-" + "-".join(map(str, steps))
    if images and args.format == "png":
        out = plots.save_rows(
            [r.cpu() for r in rows],
            _out(args, run, name),
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


def cmd_interpolate(args: argparse.Namespace) -> int:
    if args.num_points < 2 or args.chain_steps < 0:
        raise VaekitError("--num-points must be at least 2 and --chain-steps non-negative")
    run = load_run(args.run, device=_device(args), **_data_paths(args))
    dataset = build_dataset(run.config.data, run.config.train.seed)
    split = getattr(dataset, args.split).x
    if len(split) < 2 * args.pairs:
        raise VaekitError(f"the {args.split} split has fewer than {2 * args.pairs} points")
    x = split[: 2 * args.pairs].to(_device(args))
    classes = labels_for(run.model, getattr(dataset, args.split).y)
    if classes is not None:  # a conditional model: paths between two images of one class
        x, classes = _same_class_pairs(split, classes, args.pairs)
        x = x.to(_device(args))
    generator = torch.Generator(_device(args)).manual_seed(args.seed)
    chain_steps = [0] if args.chain_steps == 0 else [0, args.chain_steps]
    name = f"interpolation-{args.method}" + (
        f"-chain-{args.chain_steps}" if args.chain_steps else ""
    )
    out_path = _out(args, run, name)
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
            ("decoded" if k == 0 else f"+{k} chain steps"): _in_units(run, images[k].cpu())
            for k in chain_steps
        }
        out = vector_plots.save_paths(paths, out_path, names=run.feature_names or None)
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


def _run_and_images(args: argparse.Namespace) -> tuple[Run, torch.Tensor, torch.Tensor | None]:
    """The run, the first ``args.num`` images of its ``args.split`` on the chosen device, and
    their labels for a conditional model (else None)."""
    run = load_run(args.run, device=_device(args), **_data_paths(args))
    split = getattr(build_dataset(run.config.data, run.config.train.seed), args.split)
    labels = labels_for(run.model, split.y)
    labels = None if labels is None else labels[: args.num].to(_device(args))
    return run, split.x[: args.num].to(_device(args)), labels


def cmd_impute(args: argparse.Namespace) -> int:
    run, x, y = _run_and_images(args)
    with run.model.given(y):
        return _impute(args, run, x)


def _impute(args: argparse.Namespace, run: Run, x: torch.Tensor) -> int:
    steps = _parse_steps(args.steps)
    generator = torch.Generator(_device(args)).manual_seed(args.seed)
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
    out_path = _out(args, run, f"imputation-{args.mask}-{args.method}")
    for t, values in zip(steps, completed, strict=True):
        squared = float((values - x.cpu())[missing.cpu()].square().mean())
        units = " (standardised units)" if run.standardization is not None else ""
        print(f"step {t}: mean squared error on the missing values{units} = {squared:.4g}")
    if x.dim() == 2:  # vectors: imputed against true values of the missing entries
        out = vector_plots.save_vector_reconstructions(
            _in_units(run, x.cpu()),
            _in_units(run, completed[-1]),
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


def cmd_reconstruct(args: argparse.Namespace) -> int:
    run, x, y = _run_and_images(args)
    with run.model.given(y):
        recon = run.model.reconstruct(x).cpu()
    out_path = _out(args, run, f"reconstructions-{args.split}")
    if x.dim() == 2:  # vectors: reconstructed against true values, in the data's units
        out = vector_plots.save_vector_reconstructions(
            _in_units(run, x.cpu()),
            _in_units(run, recon),
            out_path,
            names=run.feature_names or None,
        )
    else:
        out = plots.save_reconstructions(x.cpu(), recon, out_path)
    print(f"wrote {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from vaekit.experiment import read_metrics
    from vaekit.figures import render_run_figures

    run = load_run(args.run, device=_device(args), **_data_paths(args))
    dataset = build_dataset(run.config.data, run.config.train.seed)
    history = read_metrics(run.dir)
    for path in render_run_figures(run.model, dataset, run.dir, history, seed=args.seed):
        print(f"wrote {path}")
    return 0


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
        device=_device(args),
        compile=args.compile,
        matmul=args.matmul,
        out=args.out,
        **_data_paths(args),
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

    def with_data_paths(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-path", help="the run's data file or folder, where it moved to")
        p.add_argument("--data-root", help="the data cache the run reads, where it moved to")

    def with_run(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", help="run directory written by vaekit train")
        p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
        with_data_paths(p)

    def with_split(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument(
            "--split",
            choices=["train", "val", "test"],
            default="test",
            help=f"{what} (default test)",
        )

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
    with_data_paths(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic kernels: bitwise-identical runs for one seed (train.deterministic)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")

    p = command("sample", cmd_sample, "draw samples from a trained model into a PNG grid")
    with_run(p)
    p.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="64 for an image grid, 1000 for numbers and vector figures, 10 per chain row",
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
        type=int,
        default=None,
        help="a conditional model's class for every sample (default: one row of 8 per class; "
        "for markov-chain, one chain per class)",
    )

    p = command("interpolate", cmd_interpolate, "latent paths between pairs of images, as a PNG")
    with_run(p)
    p.add_argument(
        "--method",
        choices=sorted(PATHS),
        default="slerp",
        help="the path between two codes: lerp (straight line) or slerp (along the sphere)",
    )
    p.add_argument("--chain-steps", type=int, default=0, help="refine each point by k steps")
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

    p = command("impute", cmd_impute, "fill in missing pixels with a Markov chain, as a PNG")
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
    p.add_argument("--steps", default="0,1,10,100", help="chain steps to show, one row each")
    p.add_argument("--num", type=int, default=8, help="datapoints to impute (default 8)")
    with_split(p, "the split the datapoints come from")
    p.add_argument(
        "--out",
        default=None,
        help="output PNG (default: RUN/figures/imputation-<mask>-<method>.png)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the masks and the chains (default 0)")

    p = command("reconstruct", cmd_reconstruct, "inputs above their reconstructions, as a PNG")
    with_run(p)
    p.add_argument(
        "--out", default=None, help="output PNG (default: RUN/figures/reconstructions-<split>.png)"
    )
    with_split(p, "the split the datapoints come from")
    p.add_argument("--num", type=int, default=16, help="datapoints shown (default 16)")

    p = command("plot", cmd_plot, "re-draw a run's figures from its files")
    with_run(p)
    p.add_argument("--seed", type=int, default=0, help="seeds the figures' samples (default 0)")

    p = command("evaluate", cmd_evaluate, "score a run; print a table, write evaluation.json")
    with_run(p)
    with_split(p, "the datapoints scored")
    p.add_argument("--metrics", help="comma-separated metric names (default: all; see docs)")
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

    p = command(
        "compare",
        cmd_compare,
        "paired differences between evaluated runs (B - A, per datapoint)",
    )
    p.add_argument("run_a", metavar="A", help="run directory or evaluation report (JSON)")
    p.add_argument("run_b", metavar="B", nargs="+", help="one or more, each compared with A")
    p.add_argument("--out", help="also write the comparison as JSON")

    data = sub.add_parser("data", help="manage datasets", description="manage datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data_sub.add_parser("fetch", help="download or extract a dataset into the cache")
    p.set_defaults(handler=cmd_data_fetch)
    p.add_argument("name", help="dataset name, e.g. mnist")
    p.add_argument("--root", help="data directory (default: $VAEKIT_DATA or ~/.cache/vaekit/data)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in each run's provenance
    for name in ("num_samples", "num", "pairs"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            _err(f"--{name.replace('_', '-')} must be at least 1")
            return 2
    accel.retain_freed_memory()  # every step frees and re-asks megabyte temporaries
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
