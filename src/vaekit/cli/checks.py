"""Checks of the arguments every subcommand shares, made before any work, and the error line
of a path or memory failure met while working."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from vaekit.errors import VaekitError

# Options that count something: each must be at least 1.
COUNTS = (
    "num_samples",
    "num",
    "pairs",
    "threads",
    "batch_size",
    "num_importance_samples",
    "elbo_samples",
)
SEED_LIMIT = 2**63  # torch and numpy take seeds below this


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse counts below 1, seeds out of range, empty lists and output paths that cannot
    be written, naming the option and what it takes."""
    for name in COUNTS:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise VaekitError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise VaekitError(f"--seed must be an integer in [0, 2**63), got {seed}")
    for name in ("steps", "metrics"):
        value = getattr(args, name, None)
        if value is not None and not value.replace(",", "").strip():
            raise VaekitError(f"--{name} is empty; give a comma-separated list or leave it out")
    out = getattr(args, "out", None)
    if args.command == "train":
        _check_train(args)
    elif out and args.command != "data":
        output_file(Path(out))


def _check_train(args: argparse.Namespace) -> None:
    if args.resume and args.out:
        raise VaekitError(
            "--resume continues a run in its own directory; drop --out (or copy the run there "
            "first and resume the copy)"
        )
    if not args.resume and (args.data_path or args.data_root):
        raise VaekitError(
            "--data-path and --data-root point a run at data that moved (with --resume); a new "
            "run reads the recipe's: --set data.path=FILE or --set data.root=FOLDER"
        )
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise VaekitError(f"--out {args.out!r} is a file; give a directory path for the run")
        writable(out, "--out")


def output_file(path: Path) -> None:
    """An output file the command may write: not a folder, in a folder that can be written."""
    if path.is_dir():
        raise VaekitError(
            f"--out {str(path)!r} is a folder; give a file name in it, e.g. {str(path / 'out')!r} "
            "with the command's suffix"
        )
    writable(path, "--out")


def writable(path: Path, option: str) -> None:
    """Refuse ``path`` when it lies under a file or in a folder this process cannot write."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if existing != path and not existing.is_dir():
        raise VaekitError(
            f"{option} {str(path)!r} lies under {str(existing)!r}, which is a file; choose "
            f"another {option}"
        )
    folder = existing if existing.is_dir() else existing.parent
    if not os.access(folder, os.W_OK):
        raise VaekitError(
            f"{option} {str(path)!r}: {str(folder)!r} cannot be written (read-only, or no "
            f"permission); choose another {option}"
        )


def path_problem(error: OSError) -> str:
    """The error line of a file operation that failed while working."""
    name = error.filename2 if error.filename2 is not None else error.filename
    what = error.strerror or str(error)
    where = f" ({str(name)!r})" if name is not None else ""
    return (
        f"{what}{where}; check that path: a folder where a file belongs (or the reverse), "
        "permissions, a read-only place or free space"
    )


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation that failed (host or device)."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
