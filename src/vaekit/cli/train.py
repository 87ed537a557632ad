"""``vaekit train``: a run from a TOML recipe, or an interrupted run continued exactly."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from vaekit.cli.common import Subcommands, command, data_paths, error_line, with_data_paths
from vaekit.config import config_from_dict, config_to_dict, load_config
from vaekit.errors import VaekitError
from vaekit.runtime import new_run_path
from vaekit.training.rollback import TrainingDiverged
from vaekit.training.trainer import TrainingInterrupted


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
        config, _ = read_run_config(args.resume, **data_paths(args))
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
        error_line(f"{stop}: vaekit train --resume {out}", cause=stop)
        return 128 + stop.signum
    except TrainingDiverged as error:
        error_line(str(error), cause=error)
        return 3
    if main_process:
        print(f"done: {run.dir.path}")
    return 0


def add_train(sub: Subcommands) -> None:
    """The ``train`` subcommand."""
    p = command(
        sub, "train", cmd_train, "train a model from a TOML recipe (default: VAE on digits)"
    )
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
