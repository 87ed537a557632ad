"""Materialise a dataset's files in the cache ahead of time (``vaekit data fetch NAME``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vaekit.errors import DataError

from .mnist import fetch_idx
from .svhn import fetch_svhn

Fetcher = Callable[[Path, bool], list[Path]]

# Datasets with files to fetch; the others are bundled (digits), generated (ppca) or read
# from a path the user gives (arrays, image-folder, celeba).
FETCHERS: dict[str, Fetcher] = {
    "digits": lambda root, download: [],
    "mnist": lambda root, download: fetch_idx("mnist", root, download=download),
    "fashion-mnist": lambda root, download: fetch_idx("fashion-mnist", root, download=download),
    "svhn": lambda root, download: fetch_svhn(root / "svhn", download=download),
}


def fetch(name: str, root: Path, *, download: bool = True) -> list[Path]:
    """Make dataset ``name`` available under ``root`` and return the files that now hold it.

    Files already present are reused; missing ones are downloaded (checksummed) when
    ``download`` is true. Returns [] for datasets that ship with a library (digits).
    """
    fetcher = FETCHERS.get(name)
    if fetcher is None:
        raise DataError(
            f"dataset {name!r} has nothing to fetch; fetchable datasets: "
            f"{', '.join(sorted(FETCHERS))} (others are generated or read from a path you give)"
        )
    return fetcher(root, download)
