"""A run directory made or refused, and held by one training process from start to end.

- A new run never lands in a directory holding anything but a run: ``overwrite`` replaces a
  run (a directory with a ``config.json``), never other files or the working directory.
- The run it replaces is moved aside to ``<out>.replaced`` and deleted only once the new run
  has finished; if the new one fails, both are kept and the error says where the old one is.
- While a process trains into a directory it holds an exclusive lock on ``<out>/.vaekit-lock``
  (``fcntl.flock``; the operating system releases it when the process ends, however it ends):
  a second ``vaekit train`` into the same directory, or a second ``--resume``, is refused
  instead of writing into the same files. Platforms without ``fcntl`` train without the lock.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vaekit.errors import CheckpointError
from vaekit.files import remove_stale_temporaries
from vaekit.runtime import RunDir

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".vaekit-lock"


@dataclass
class _Claim:
    lock: IO[bytes] | None
    replaced: Path | None = None  # where the run this one replaces waits, if any


_CLAIMS: dict[Path, _Claim] = {}


def replaced_path(path: Path) -> Path:
    """Where ``overwrite`` keeps the run it replaces until the new one has finished."""
    return path.with_name(f"{path.name}.replaced")


def check_new_run_dir(path: Path, *, overwrite: bool) -> None:
    """Refuse a new run at ``path`` unless it is free: absent, an empty directory, or (with
    ``overwrite``) a run that may be replaced. Nothing is touched."""
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"--out {str(path)!r} is a file; give a directory path for the run")
    if not path.exists() or not any(path.iterdir()):
        return
    if not overwrite:
        raise CheckpointError(
            f"run directory {str(path)!r} already exists; pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )
    if not RunDir(path).config.is_file():
        raise CheckpointError(
            f"{str(path)!r} holds files but no vaekit run (no config.json); --overwrite replaces "
            "only a run directory: choose another --out"
        )
    here = Path.cwd().resolve()
    if path.resolve() in (here, *here.parents):
        raise CheckpointError(
            f"--out {str(path)!r} is the working directory or holds it; --overwrite cannot "
            "replace it: run from elsewhere or choose another --out"
        )
    aside = replaced_path(path)
    if aside.exists():
        raise CheckpointError(
            f"{str(aside)!r} holds a run kept by an earlier --overwrite whose new run did not "
            "finish; delete or move it, then run again"
        )


def prepare_run_dir(path: Path, *, resume: bool, overwrite: bool) -> RunDir:
    """Make (or, resuming, open) the run directory and hold it for this process until
    ``training_into`` ends; refuse a directory another process holds."""
    run = RunDir(path)
    if resume:
        if not run.training_state.is_file():
            raise CheckpointError(
                f"cannot resume {str(path)!r}: it has no training_state.pt; train without --resume"
            )
        _hold(path)
        remove_stale_temporaries(path)  # left by a writer killed mid-checkpoint
        return run
    check_new_run_dir(path, overwrite=overwrite)
    replaced = None
    if path.is_dir() and any(path.iterdir()):
        old = _lock(path)  # a run still training is not moved away under its process
        replaced = replaced_path(path)
        path.rename(replaced)
        _unlock(old)
    path.mkdir(parents=True, exist_ok=True)
    _hold(path, replaced)
    if any(item.name != LOCK_NAME for item in path.iterdir()):  # another process was quicker
        release(path)
        raise CheckpointError(
            f"run directory {str(path)!r} was filled by another process meanwhile; choose "
            "another --out"
        )
    return run


@contextmanager
def training_into(path: Path | None, *, main: bool = True) -> Iterator[None]:
    """Around one training into ``path``: on success, the run it replaced (if any) is deleted;
    on failure it is kept, and the error carries a note naming it; either way the directory
    is released. ``main``: whether this process is the one that writes the run (rank 0)."""
    key = None if path is None or not main else path.resolve()
    held_before = _CLAIMS.get(key) if key is not None else None
    try:
        yield
    except BaseException as error:
        claim = _CLAIMS.get(key) if key is not None else None
        if claim is not None and claim is not held_before and claim.replaced is not None:
            error.add_note(f"the run --overwrite was replacing is kept in {str(claim.replaced)!r}")
        raise
    else:
        claim = _CLAIMS.get(key) if key is not None else None
        if claim is not None and claim is not held_before and claim.replaced is not None:
            shutil.rmtree(claim.replaced)
    finally:
        if key is not None and _CLAIMS.get(key) is not held_before:
            release(key)


def release(path: Path) -> None:
    """Let go of ``path`` (no-op where this process does not hold it)."""
    claim = _CLAIMS.pop(path.resolve(), None)
    if claim is not None:
        _unlock(claim.lock)


def _hold(path: Path, replaced: Path | None = None) -> None:
    _CLAIMS[path.resolve()] = _Claim(_lock(path), replaced)


def _lock(path: Path) -> IO[bytes] | None:
    if fcntl is None:  # pragma: no cover - Windows
        return None
    handle = (path / LOCK_NAME).open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise CheckpointError(
            f"another vaekit process is training into {str(path)!r}; wait for it to end or "
            "choose another --out"
        ) from None
    return handle


def _unlock(handle: IO[bytes] | None) -> None:
    if handle is not None:
        handle.close()  # closing the file releases its flock
