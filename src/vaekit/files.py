"""Files written complete-or-absent: stage in the same directory, fsync, then rename.

Every file vaekit writes (checkpoints, metrics, figures, downloads, evaluation reports) goes
through ``atomic_write`` so an interrupted write never leaves a partial file under its final name.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


@functools.cache
def _default_mode() -> int:
    """0666 less the process umask: what ``open()`` would give a new file (read once)."""
    umask = os.umask(0)  # the only way to read it; restored at once
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot open directories
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _stage(path: Path, write: Callable[[Path], object], mode: int | None = None) -> Path:
    """Write ``write(tmp)`` to a hidden temporary next to ``path`` and fsync it; return ``tmp``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp makes 0600; final files get normal modes (or ``mode``, e.g. a shared cache's).
        os.chmod(tmp, _default_mode() if mode is None else mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(
    path: str | Path, write: Callable[[Path], object], *, mode: int | None = None
) -> Path:
    """Write ``path`` complete-or-absent: ``write(tmp)`` in the same directory, fsync, rename.

    On any failure (``write`` raising included) the temporary file is removed and the previous
    ``path`` (if any) is intact. ``mode`` sets the file's permissions (default: 0666 & ~umask).
    """
    path = Path(path)
    tmp = _stage(path, write, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_many(files: Sequence[tuple[Path, Callable[[Path], object]]]) -> None:
    """Write several files as one checkpoint: every file is staged and fsynced before any rename.

    If any write fails (a full disk, a signal), every temporary is removed and no final file
    has changed. The renames run in order afterwards, so the last file is the commit point: put
    the file that makes the set resumable last.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in files:
            staged.append((_stage(Path(path), write), Path(path)))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for directory in {path.parent for _, path in staged}:
        _fsync_dir(directory)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete temporaries left by a writer that was killed mid-write (e.g. SIGKILL, power loss)."""
    stale = sorted(Path(directory).glob(f".*{TEMP_SUFFIX}"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def write_json(path: Path, value: Any) -> Path:
    """Atomically write ``value`` as indented JSON."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(value, indent=2) + "\n"))
