"""Writes to an output folder on a network drive that stops answering: a watchdog ends the run
with one line instead of a night that never ends.

A write, fsync, rename or unlink on a share that stopped answering blocks in the kernel for as
long as the share is silent, and nothing in Python can interrupt it: not a time-out, not Ctrl-C
(a signal's handler runs only once the call returns). Nor can a write be handed to a thread and
left behind, as a stuck read is (``screening.stalled_reads``): whatever the run does next (the
journal's next line, closing it, releasing the output lock) touches the same silent folder and
blocks the same way, and so would the interpreter's own exit, flushing the file left open.

So the run's writes stay where they were, in the main thread, each inside
:meth:`OutputWatch.step`, and one watchdog thread looks at the step in progress every quarter of
the time limit. A step that has not moved on for the whole limit ends the process: the watchdog
prints the reason (stderr and ``--log-file``) and calls ``os._exit(2)``, the one way out of a
process whose main thread is stuck in the kernel (the exit's SIGKILL of that thread ends NFS and
SMB waits, which are killable). Nothing finished is lost by ending so: every journal line was
fsync'd before the next batch began, the results CSV and the journal's compaction are atomic
(the old file or the new, never half of one, and an unnamed temp file vanishes with the
process), and the kernel releases the output lock (``flock``) with the process.

Cost: a step is two assignments and a clock read (well under a microsecond); the watchdog wakes
four times per time limit.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")

# Exit code of a run ended by the watchdog: unusable input or output, as for a stalled images
# folder (documented in `screen --help`).
EXIT_STALLED = 2
# Writes wait at least this long, whatever --decode-timeout: that option is a limit per image and
# is often set low, while an fsync on a busy but healthy file server can take a few seconds; a
# night must not be ended for a slow write, only for a silent folder.
MIN_WRITE_STALL_S = 10.0
# What the line of a stalled night tells the user to do.
RESUME_ADVICE = "everything screened so far is in the journal: rerun the same command with --resume once the drive answers"
# How long the watchdog waits for its last line to be written (stderr or the log may sit on the
# same silent share) before it ends the process anyway.
LAST_WORDS_S = 2.0


def write_stall_s(stall_s: float) -> float:
    """The time limit of a write for a run whose reads wait ``stall_s`` (``--decode-timeout``)."""
    return max(stall_s, MIN_WRITE_STALL_S)


class OutputWatch:
    """Ends the process when a write to ``folder`` has not moved on for ``budget_s`` seconds.

    Use as a context manager around the run's writes (the watchdog runs inside the block), and
    wrap each write in :meth:`step`; a step of many pieces (a large file) calls :meth:`beat` as
    each piece is written. Steps belong to one thread (the run's main thread) and may nest.

    Args:
        folder: the output folder, named in the message.
        budget_s: seconds a step may go without moving on.
        log: the ``--log-file`` (``screening.progress.LogFile``), which gets the message too.
        advice: what the message tells the user to do (a night: rerun with --resume).
    """

    def __init__(self, folder: Path, budget_s: float, log: Any = None, advice: str = RESUME_ADVICE) -> None:
        self.folder = Path(folder)
        self.budget_s = budget_s
        self.log = log
        self.advice = advice
        # (what the step does, when it last moved on), or None between steps. One attribute,
        # assigned whole: the watchdog reads it without a lock.
        self._current: tuple[str, float] | None = None
        self._stopped = threading.Event()

    def __enter__(self) -> "OutputWatch":
        self._stopped.clear()
        threading.Thread(target=self._watch, name="output-watch", daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopped.set()  # the thread ends at its next look; a daemon, never waited for

    @contextmanager
    def step(self, doing: str) -> Iterator[None]:
        """Watch the block: ``doing`` says what it does ("appending to the journal ...")."""
        outer = self._current
        self._current = (doing, time.monotonic())
        try:
            yield
        finally:
            self._current = None if outer is None else (outer[0], time.monotonic())

    def beat(self) -> None:
        """The step in progress moved on (a piece of a large file was written)."""
        current = self._current
        if current is not None:
            self._current = (current[0], time.monotonic())

    def beating(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, with a :meth:`beat` as each is taken: the lines of a file being written."""
        for item in items:
            self.beat()
            yield item

    def message(self, doing: str) -> str:
        """The line a stalled step ends the run with."""
        return (f"Error: the output folder {self.folder} stopped answering for {self.budget_s:g} s while "
                f"{doing} (a stalled network drive?); {self.advice}")

    def _watch(self) -> None:
        while not self._stopped.wait(self.budget_s / 4):
            current = self._current
            if current is not None and time.monotonic() - current[1] >= self.budget_s:
                self._end(self.message(current[0]))

    def _end(self, line: str) -> None:
        """Say why, then end the process: the main thread is stuck in the kernel and cannot be
        raised into, and no clean-up can run on a folder that does not answer."""
        said = threading.Event()

        def say() -> None:
            try:
                print(line, file=sys.stderr, flush=True)
                if self.log is not None:
                    self.log.write(line)
            finally:
                said.set()

        # In a thread of its own: stderr or the log may be on the silent share as well.
        threading.Thread(target=say, name="last-words", daemon=True).start()
        said.wait(LAST_WORDS_S)
        os._exit(EXIT_STALLED)


@contextmanager
def watched(watch: OutputWatch | None, doing: str) -> Iterator[None]:
    """:meth:`OutputWatch.step` of ``watch``; the block unwatched when there is none (a library
    caller that writes to a local folder)."""
    if watch is None:
        yield
        return
    with watch.step(doing):
        yield
