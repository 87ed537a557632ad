"""Command line: ``vaekit train | sample | interpolate | impute | reconstruct | plot | evaluate |
compare | data``. Wiring only: one module per subcommand, each with its handler and options.

Every user error, from the arguments (``common.Parser``) or from a command (a VaekitError), is
one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vaekit import __version__, accel
from vaekit.cli.checks import check_arguments, out_of_memory, path_problem
from vaekit.cli.common import Parser, error_line
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
    parser = Parser(
        prog="vaekit", description="Train, sample, evaluate and explain generative autoencoders."
    )
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # --help, --version and argument errors (one line, see common.Parser) exit here
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # blamed on the subcommand that was given them, or on the top level
            before = argv.index(args.command) if args.command in argv else len(argv)
            owner = parser if argv.index(unknown[0]) < before else args.parser
            owner.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 2
    args.argv = argv  # recorded in each run's provenance
    accel.retain_freed_memory()  # every step frees and re-asks megabyte temporaries
    try:
        check_arguments(args)
        return int(args.handler(args))
    except VaekitError as error:
        error_line(str(error), cause=error)
        return 2
    except KeyboardInterrupt as error:
        error_line("interrupted", cause=error)
        return 130
    except OSError as error:  # a path that cannot be written or read, found while working
        error_line(path_problem(error), cause=error)
        return 2
    except (MemoryError, RuntimeError) as error:
        if not out_of_memory(error):
            raise
        first = (str(error).splitlines() or [type(error).__name__])[0][:200]
        error_line(
            f"not enough memory ({first}); ask for less: fewer samples, steps or datapoints, "
            "a smaller batch or model",
            cause=error,
        )
        return 2
