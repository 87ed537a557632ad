"""A run directory made or refused, and held by one training process from start to end.

- A new run never lands in a directory holding anything but a run: ``overwrite`` replaces a
  run (a directory with a ``config.json``), never other files or the working directory.
- The run it replaces is moved aside to ``<out>.replaced`` and deleted only once the new run
  has finished. If the new one fails before writing anything, the old run is moved back; if it
  fails later, both are kept and the error says where the old one is.
- While a process trains into a directory it holds an exclusive lock on ``<out>/.vaekit-lock``
  (``fcntl.flock``; the operating system releases it when the process ends, however it ends):
  a second training into the same directory, or a second resume, is refused instead of writing
  into the same files. Where there is no ``fcntl`` (Windows) or the file system refuses locks,
  runs train without the lock (with a warning in the second case).
"""

from __future__ import annotations

import errno
import os
import shutil
import warnings
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
# flock's answers on file systems without locks (NFS without lockd, Lustre without -o flock)
NO_LOCKS = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)


@dataclass
class _Claim:
    lock: IO[bytes] | None
    created: bool  # the directory did not exist before this run
    replaced: Path | None = None  # where the run this one replaces waits, if any


_CLAIMS: dict[Path, _Claim] = {}


def replaced_path(path: Path) -> Path:
    """Where ``overwrite`` keeps the run it replaces until the new one has finished."""
    return path.with_name(f"{path.name}.replaced")


def check_new_run_dir(path: Path, *, overwrite: bool) -> None:
    """Refuse a new run at ``path`` unless it is free: absent, empty (a lock file alone left by
    a run that failed before writing counts as empty), or (with ``overwrite``) a run that may
    be replaced. Nothing is touched."""
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"--out {str(path)!r} is a file; give a directory path for the run")
    if not _has_run_files(path):
        return
    if (path / LOCK_NAME).is_file():  # a directory some process trains into: said so
        _unlock(_lock(path))
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
    if aside.exists() or aside.is_symlink():
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
        _hold(path, created=False)
        remove_stale_temporaries(path)  # left by a writer killed mid-checkpoint
        return run
    check_new_run_dir(path, overwrite=overwrite)
    replaced = None
    if _has_run_files(path):
        old = _lock(path)  # a run still training is not moved away under its process
        try:
            path.rename(replaced_path(path))  # a symlink to a run: the link moves
            replaced = replaced_path(path)
        finally:
            _unlock(old)
    try:
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        _hold(path, created=created, replaced=replaced)
        if _has_run_files(path):  # another process was quicker
            release(path)
            raise CheckpointError(
                f"run directory {str(path)!r} was filled by another process meanwhile; choose "
                "another --out"
            )
    except BaseException as error:
        if replaced is not None:
            error.add_note(_kept(replaced))
        raise
    return run


@contextmanager
def training_into(path: Path | None, *, main: bool = True) -> Iterator[None]:
    """Around one training into ``path`` (``main``: this process writes the run, rank 0).

    On success the run it replaced, if any, is deleted. On failure, a run that wrote nothing
    yet is removed again (and the run it replaced moved back); one that did is kept, and the
    error carries a note naming the replaced run. Either way the directory is released.
    """
    key = None if path is None or not main else _key(path)
    held_before = _CLAIMS.get(key) if key is not None else None

    def made_here() -> tuple[Path, _Claim] | None:
        """The claim this training made (not one held before it), released."""
        claim = _CLAIMS.get(key) if key is not None else None
        if key is None or claim is None or claim is held_before:
            return None
        release(key)
        return key, claim

    try:
        yield
    except BaseException as error:
        if (made := made_here()) is not None:
            _undo(*made, error)
        raise
    if (made := made_here()) is not None and made[1].replaced is not None:
        _discard(made[1].replaced)


def release(path: Path) -> None:
    """Let go of ``path`` (no-op where this process does not hold it)."""
    claim = _CLAIMS.pop(_key(path), None)
    if claim is not None:
        _unlock(claim.lock)


def _key(path: Path) -> Path:
    return Path(os.path.abspath(path))  # symlinks kept: a moved link is not its target


def _has_run_files(path: Path) -> bool:
    return path.is_dir() and any(item.name != LOCK_NAME for item in path.iterdir())


def _kept(replaced: Path) -> str:
    return f"the run --overwrite was replacing is kept in {str(replaced)!r}"


def _undo(path: Path, claim: _Claim, error: BaseException) -> None:
    """After a failed run: remove what it made if that is only its lock file, and put the
    replaced run back; else leave both and say where the replaced run is."""
    if _has_run_files(path):
        if claim.replaced is not None:
            error.add_note(_kept(claim.replaced))
        return
    try:
        if claim.created or claim.replaced is not None:
            (path / LOCK_NAME).unlink(missing_ok=True)
            path.rmdir()
        if claim.replaced is not None:
            claim.replaced.rename(path)
    except OSError as cleanup:
        error.add_note(f"could not tidy {str(path)!r} ({cleanup})")
        if claim.replaced is not None:
            error.add_note(_kept(claim.replaced))


def _discard(replaced: Path) -> None:
    try:
        if replaced.is_symlink():
            replaced.unlink()  # the link alone: its target is not ours to delete
        else:
            shutil.rmtree(replaced)
    except OSError as error:
        warnings.warn(
            f"the run finished, but the run it replaced could not be deleted from "
            f"{str(replaced)!r} ({error}); delete it by hand",
            stacklevel=3,
        )


def _hold(path: Path, *, created: bool, replaced: Path | None = None) -> None:
    _CLAIMS[_key(path)] = _Claim(_lock(path), created, replaced)


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
    except OSError as error:
        handle.close()
        if error.errno not in NO_LOCKS:
            raise
        warnings.warn(
            f"{str(path)!r} is on a file system without locks ({error.strerror}): a second "
            "process training into it would not be refused",
            stacklevel=3,
        )
        return None
    return handle


def _unlock(handle: IO[bytes] | None) -> None:
    if handle is not None:
        handle.close()  # closing the file releases its flock
