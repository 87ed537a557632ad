"""Time estimates and progress bars for long metrics, written to stderr.

A long metric walks over chunks (batches of datapoints, blocks of samples). ``Progress.track``
times the first chunk, and when all chunks together are expected to take ``min_seconds`` or
more it says how long before going on, then shows a bar with the time left. Quick metrics print
nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

# Below this expected duration a metric shows neither an estimate nor a bar.
MIN_SECONDS = 5.0


def format_duration(seconds: float) -> str:
    """``42 s``, ``7.5 min`` or ``1.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Estimates and bars on ``stream`` (stderr); ``enabled=False`` (``--quiet``) is silent."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        min_seconds: float = MIN_SECONDS,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.enabled = enabled
        self.min_seconds = min_seconds
        self.stream = stream
        self.clock = clock

    def track(self, items: Iterable[T], total: int, what: str) -> Iterator[T]:
        """Yield ``items`` (``total`` of them), timing the first; announce and show a bar for
        the rest when all of them are expected to take ``min_seconds`` or more."""
        stream = self.stream or sys.stderr
        iterator = iter(items)
        start = self.clock()
        first = next(iterator, None)
        if first is None:
            return
        yield first  # the caller's work on the first chunk happens before the next request
        if not self.enabled or total <= 1:
            yield from iterator
            return
        took = self.clock() - start
        expected = took * total
        if expected < self.min_seconds:
            yield from iterator
            return
        print(
            f"{what}: about {format_duration(expected)} ({total} chunks; the first took "
            f"{took:.2f} s)",
            file=stream,
            flush=True,
        )
        with tqdm(total=total, initial=1, desc=what, file=stream, leave=False) as bar:
            for item in iterator:
                yield item
                bar.update()


SILENT = Progress(enabled=False)
