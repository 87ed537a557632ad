"""Command line: ``vaekit train | sample | interpolate | impute | reconstruct | plot | evaluate |
compare | data``. Wiring only: one module per subcommand, each with its handler and options.

Every user error is a VaekitError: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vaekit import accel
from vaekit.cli.common import error_line
from vaekit.cli.data import add_data
from vaekit.cli.evaluate import add_compare, add_evaluate
from vaekit.cli.figures import add_plot, add_reconstruct
from vaekit.cli.impute import add_impute
from vaekit.cli.interpolate import add_interpolate
from vaekit.cli.sample import add_sample
from vaekit.cli.train import add_train
from vaekit.errors import VaekitError

__all__ = ["build_parser", "main"]

# In the order of ``vaekit --help``.
SUBCOMMANDS = (
    add_train,
    add_sample,
    add_interpolate,
    add_impute,
    add_reconstruct,
    add_plot,
    add_evaluate,
    add_compare,
    add_data,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="vaekit", description="Train, sample, evaluate and explain generative autoencoders."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in each run's provenance
    for name in ("num_samples", "num", "pairs"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            error_line(f"--{name.replace('_', '-')} must be at least 1")
            return 2
    accel.retain_freed_memory()  # every step frees and re-asks megabyte temporaries
    try:
        return int(args.handler(args))
    except VaekitError as error:
        error_line(str(error))
        return 2
    except KeyboardInterrupt:
        error_line("interrupted")
        return 130
