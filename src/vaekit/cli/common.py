"""What the subcommands share: the error line, the run and data options, output paths."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeAlias

import torch

from vaekit.errors import VaekitError
from vaekit.models.conditional import labels_for
from vaekit.runs import Run, load_run
from vaekit.runtime import choose_device

Handler = Callable[[argparse.Namespace], int]
Subcommands: TypeAlias = "argparse._SubParsersAction[Parser]"


def error_line(message: str, *, cause: BaseException | None = None) -> None:
    """The one line a user error prints on stderr; the notes of the exception ``cause``
    (``add_note``, e.g. where a replaced run was kept) follow on the same line."""
    notes = getattr(cause, "__notes__", [])
    print(f"vaekit: error: {'; '.join([message, *notes])}", file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors (a missing argument, an unknown option, a bad choice) are
    the CLI's one error line, pointing at the command's ``--help``, with exit code 2: argparse's
    own would print the usage block first. Subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        where = "" if self.prog == "vaekit" else f"{self.prog}: "
        error_line(f"{where}{message}; see '{self.prog} --help'")
        raise SystemExit(2)


def command(
    sub: Subcommands,
    name: str,
    handler: Handler,
    help: str,
) -> argparse.ArgumentParser:
    """A subcommand ``name`` run by ``handler``."""
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(handler=handler, parser=p)  # parser: to blame an unknown option on
    return p


def with_data_paths(p: argparse.ArgumentParser) -> None:
    """--data-path / --data-root: where a run's data moved to."""
    p.add_argument("--data-path", help="the run's data file or folder, where it moved to")
    p.add_argument("--data-root", help="the data cache the run reads, where it moved to")


def with_run(p: argparse.ArgumentParser) -> None:
    """The run directory a command reads, its device and where its data moved to."""
    p.add_argument("run", help="run directory written by vaekit train")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    with_data_paths(p)


def with_split(p: argparse.ArgumentParser, what: str) -> None:
    """--split: which of the run's splits a command reads."""
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="test",
        help=f"{what} (default test)",
    )


def data_paths(args: argparse.Namespace) -> dict[str, str | None]:
    """--data-path / --data-root as ``load_run`` takes them (see ``runs.read_run_config``)."""
    return {"data_path": args.data_path, "data_root": args.data_root}


def device(args: argparse.Namespace) -> torch.device:
    """--device, ``auto`` where not given."""
    return choose_device(args.device or "auto")


def output_path(args: argparse.Namespace, run: Run, name: str, suffix: str = "png") -> Path:
    """``--out`` where given, else the command's own path in the run (``RunDir.output``)."""
    return Path(args.out) if args.out else run.dir.output(name, suffix)


def in_units(run: Run, x: torch.Tensor) -> torch.Tensor:
    """x in the data's own units: the run's standardisation inverted, if it has one."""
    return x if run.standardization is None else run.standardization.invert(x)


def parse_steps(text: str) -> list[int]:
    """``"0,1,5,10"`` -> [0, 1, 5, 10] (sorted, unique, non-negative)."""
    try:
        steps = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise VaekitError(f"--steps must be comma-separated integers, got {text!r}") from None
    if not steps or steps[0] < 0:
        raise VaekitError(f"--steps needs non-negative integers, got {text!r}")
    return steps


def run_and_points(args: argparse.Namespace) -> tuple[Run, torch.Tensor, torch.Tensor | None]:
    """The run, the first ``args.num`` datapoints of its ``args.split`` on the chosen device,
    and their labels for a conditional model (else None)."""
    run = load_run(args.run, device=device(args), **data_paths(args))
    split = getattr(run.dataset(), args.split)
    labels = labels_for(run.model, split.y)
    labels = None if labels is None else labels[: args.num].to(device(args))
    return run, split.x[: args.num].to(device(args)), labels
