"""Stopping early: on SIGINT/SIGTERM (the first signal asks for a checkpoint, the second exits at
once), or when an epoch callback raises ``StopTraining`` (the run ends there, finished).

The trainer installs the handlers for the length of ``fit`` and polls ``agreed`` after every
step; in a distributed run the ranks agree on one step to stop at, so all of them checkpoint the
same state.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from vaekit.training.distributed import World


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a resumable checkpoint."""

    def __init__(self, signum: int):
        super().__init__(f"training interrupted by signal {signum}; resume with --resume")
        self.signum = signum


class StopTraining(Exception):
    """Raised by an epoch callback to end training after the epoch it was given.

    Early stopping, e.g. on a converged validation objective. The epoch is already checkpointed;
    the trainer records ``{"epoch": n, "reason": str(exception)}`` as ``Trainer.stopped``, in
    the training state (a resumed run stays stopped: it does not train on) and in the run's
    provenance.json under ``stopped``, and ``fit`` returns normally. Unlike a signal, the run is
    then finished, not interrupted.
    """


class StopRequests:
    """The signal that asked this process to stop, if any (``signum``)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @contextmanager
    def installed(self) -> Iterator[None]:
        """SIGINT/SIGTERM: first sets ``signum`` (checkpoint at the next batch), second exits now.

        Outside the main thread (where Python cannot install handlers) nothing is installed."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: object) -> None:
            if self.signum is not None:
                raise SystemExit(128 + signum)  # second signal: out now; files are atomic
            self.signum = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def agreed(self, world: World, *, look: bool) -> int | None:
        """The signal to stop on at this step, the same on every rank (None: go on).

        In one process, as soon as a signal came. Distributed, the ranks compare their flags (a
        max all-reduce) only where ``look`` is true, which must be the same steps on every rank:
        a signal that reached only some ranks, or them at different steps, stops all at one step.
        """
        if world.size == 1:
            return self.signum
        if not look:
            return None
        agreed = world.max(self.signum or 0)
        if agreed and self.signum is None:
            self.signum = agreed
        return agreed or None
