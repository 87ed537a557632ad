"""``vaekit data fetch``: a dataset downloaded or extracted into the data cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from vaekit.cli.common import Subcommands


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from vaekit.data import default_data_root, fetch

    root = Path(args.root) if args.root else default_data_root()
    for path in fetch(args.name, root):
        print(path)
    return 0


def add_data(sub: Subcommands) -> None:
    """The ``data`` subcommand and its actions."""
    data = sub.add_parser("data", help="manage datasets", description="manage datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    what = "download or extract a dataset into the cache"
    p = data_sub.add_parser("fetch", help=what, description=what)
    p.set_defaults(handler=cmd_data_fetch, parser=p)
    p.add_argument("name", help="dataset name, e.g. mnist")
    p.add_argument("--root", help="data directory (default: $VAEKIT_DATA or ~/.cache/vaekit/data)")
