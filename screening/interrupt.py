"""Stopping a run on request: Ctrl-C, ``kill`` (SIGTERM) and a closed terminal (SIGHUP).

Each becomes :class:`Interrupted`, raised in the main thread, so that every ``with`` block on
the way out runs: temp files are removed, decoder processes are killed, the journal keeps
what finished (``--resume`` continues from there) and the lock is released. Slow decoding runs in
child processes (``screening.decode_pool``) and file reads in reader threads the run never
waits for (``screening.stalled_reads``), so the main thread is never stuck inside a C decoder
or a read from a silent network drive, and the first signal stops the run at once.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """The run was asked to stop by a signal; a BaseException so that ``except Exception``
    clean-up code does not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal (130 for
        Ctrl-C)."""
        return 128 + self.signum


def _raise(signum: int, frame) -> None:
    # Only the first signal interrupts: a second Ctrl-C while the run cleans up (a few
    # milliseconds: decoders are killed, not waited for) would leave its temp files behind.
    for handled in HANDLED:
        signal.signal(handled, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` inside the block.

    Outside the main thread (where Python cannot set handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise) for signum in HANDLED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
