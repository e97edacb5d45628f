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
process whose main thread is stuck in the kernel (Linux's NFS and SMB clients wait killably, so
the exit completes). Nothing finished is lost by ending so: every journal line was fsync'd
before the next batch began, the results CSV and the journal's compaction are atomic (the old
file or the new, never half of one, and an unnamed temp file vanishes with the process), the
kernel releases the output lock (``flock``) with the process, and the decoder processes
(screening.decode_pool) end by themselves when their pipe closes.

Ctrl-C (or SIGTERM, SIGHUP) stays prompt while a write is stuck: Python runs a signal's handler
only in the main thread, which is stuck, but ``signal.set_wakeup_fd`` also writes the signal's
number to a pipe the watchdog listens on. A signal that comes while a step has not moved on for a
second (the main thread would have run its handler by then) ends the process as the stall would,
with the interrupt's line and exit code (130 for Ctrl-C).

Cost: a step is a clock read and a few assignments, 2-6 us with its context manager (a journal
append it watches takes 0.3 ms and more: an fsync); a beat, 0.07 us per line of a large file.
The watchdog wakes four times per time limit (docs/performance.md).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from .interrupt import HANDLED

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
# How long a signal waits for the main thread to run its handler (it does so at once unless stuck in
# the kernel) before the watchdog ends the process itself.
SIGNAL_GRACE_S = 1.0
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
        # (what the step does, its folder, when it last moved on), or None between steps. One
        # attribute, assigned whole: the watchdog reads it without a lock.
        self._current: tuple[str, Path, float] | None = None
        self._stopped = threading.Event()
        self._signals: _Signals | None = None

    def __enter__(self) -> "OutputWatch":
        self._stopped.clear()
        self._signals = _Signals.listen()
        threading.Thread(target=self._watch, args=(self._signals,), name="output-watch", daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._signals is not None:
            # First: once stopped is set the watchdog closes the pipe, and a descriptor closed
            # there may be reused here before a late write.
            self._signals.stop()
            self._signals = None
        self._stopped.set()  # the thread ends at its next look; a daemon, never waited for

    @contextmanager
    def step(self, doing: str, folder: Path | None = None) -> Iterator[None]:
        """Watch the block: ``doing`` says what it does ("appending to the journal ..."), in
        ``folder`` when it is not the output folder (the masks, the report's pictures)."""
        outer = self._current
        self._current = (doing, self.folder if folder is None else Path(folder), time.monotonic())
        try:
            yield
        finally:
            self._current = None if outer is None else (*outer[:2], time.monotonic())

    def beat(self) -> None:
        """The step in progress moved on (a piece of a large file was written)."""
        current = self._current
        if current is not None:
            self._current = (*current[:2], time.monotonic())

    def beating(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, with a :meth:`beat` as each is taken: the lines of a file being written."""
        for item in items:
            self.beat()
            yield item

    def message(self, doing: str, folder: Path | None = None) -> str:
        """The line a stalled step ends the run with."""
        return (f"Error: the output folder {self.folder if folder is None else folder} stopped answering for "
                f"{self.budget_s:g} s while {doing} (a stalled network drive?); {self.advice}")

    def _watch(self, signals: _Signals | None) -> None:
        while True:
            if signals is None:
                received = b""
                if self._stopped.wait(self.budget_s / 4):
                    return
            else:
                received = signals.wait(self.budget_s / 4)
                if self._stopped.is_set():
                    signals.close()
                    return
            current = self._current
            if current is None:
                continue
            for signum in received:
                if signum in HANDLED:  # the signals a run stops on
                    self._interrupted(signum, current)
            if time.monotonic() - current[2] >= self.budget_s:
                self._end(self.message(current[0], current[1]))

    def _interrupted(self, signum: int, current: tuple[str, Path, float]) -> None:
        """A signal came during the step ``current``: end the process if the main thread is stuck
        in it (it does not move on within the grace), else leave the signal to the main thread."""
        deadline = time.monotonic() + SIGNAL_GRACE_S
        while self._current is current and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._current is current:
            self._end(f"Interrupted ({signal.Signals(signum).name}) while the output folder {current[1]} was not "
                      f"answering ({current[0]}; a stalled network drive?); {self.advice}", 128 + signum)

    def _end(self, line: str, code: int = EXIT_STALLED) -> None:
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
        os._exit(code)


class _Signals:
    """The signals this process receives, seen from the watchdog's thread: Python writes each
    one's number to a pipe (``signal.set_wakeup_fd``) as it arrives, even while the main thread,
    which alone runs the handlers, is stuck in the kernel."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)  # set_wakeup_fd wants it so; a full pipe drops, never blocks
        try:
            self._previous = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        except BaseException:
            self.close()
            raise

    @classmethod
    def listen(cls) -> "_Signals | None":
        """Listen from here on; None outside the main thread, where Python cannot (a library caller's thread)."""
        if threading.current_thread() is not threading.main_thread():
            return None
        return cls()

    def wait(self, timeout: float) -> bytes:
        """The numbers of the signals received, after waiting at most ``timeout`` for one."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self._read, 64)
        except (BlockingIOError, OSError):
            return b""

    def stop(self) -> None:
        """Give the wake-up back to whoever had it (main thread) and wake the watchdog, which closes the pipe."""
        signal.set_wakeup_fd(self._previous)
        try:
            os.write(self._write, b"\0")  # 0: no signal, only a wake-up
        except OSError:
            pass

    def close(self) -> None:
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


@contextmanager
def watched(watch: OutputWatch | None, doing: str, folder: Path | None = None) -> Iterator[None]:
    """:meth:`OutputWatch.step` of ``watch``; the block unwatched when there is none (a library
    caller that writes to a local folder)."""
    if watch is None:
        yield
        return
    with watch.step(doing, folder):
        yield
