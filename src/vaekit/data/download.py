"""Fetch a file over HTTP(S) with a checksum, writing it atomically so no partial file remains."""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from vaekit.errors import DataError
from vaekit.files import atomic_write

# A callable with urllib's signature; tests substitute one that fails part-way.
URLOpener = Callable[..., IO[bytes]]

CHUNK_BYTES = 1 << 20
# mkstemp creates owner-only files; a data cache may be shared, so publish them world-readable.
CACHE_FILE_MODE = 0o644


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``algorithm`` is any name ``hashlib.new`` accepts)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bytes_atomic(dest: Path, data: bytes) -> Path:
    """Write ``data`` to ``dest`` complete-or-absent (``vaekit.files.atomic_write``)."""
    return atomic_write(dest, lambda tmp: tmp.write_bytes(data), mode=CACHE_FILE_MODE)


def download_file(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    opener: URLOpener | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``; verify ``md5`` and/or ``sha256`` if given.

    The bytes go to a temporary file in ``dest``'s folder that is renamed onto ``dest`` with
    ``os.replace`` only after the whole body arrived and its checksum matched, so an interrupted
    or corrupt download never leaves a file under the final name. Any failure is a ``DataError``.
    """
    open_url: URLOpener = opener if opener is not None else urllib.request.urlopen

    def fetch_verified(tmp: Path) -> None:
        digests = {
            name: hashlib.new(name, usedforsecurity=False)
            for name, want in (("md5", md5), ("sha256", sha256))
            if want
        }
        with tmp.open("wb") as out, open_url(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(chunk)
                for digest in digests.values():
                    digest.update(chunk)
        for name, want in (("md5", md5), ("sha256", sha256)):
            if want and digests[name].hexdigest() != want.lower():
                raise DataError(
                    f"{url}: {name} checksum mismatch (got {digests[name].hexdigest()}, "
                    f"expected {want}); the mirror served a different file. Try again later or "
                    f"place a verified copy at {dest}."
                )

    try:
        # A failed fetch or checksum removes the temporary; nothing lands under ``dest``.
        return atomic_write(dest, fetch_verified, mode=CACHE_FILE_MODE)
    except DataError:
        raise
    except Exception as error:  # network, HTTP and disk errors all mean "this source failed"
        raise DataError(f"could not download {url}: {error}") from error
