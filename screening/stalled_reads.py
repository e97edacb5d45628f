"""Reads of image files that wait at most the time budget: a stalled network drive gives error rows.

A read from a network drive (NAS, SMB, NFS) that stopped answering blocks in the kernel, and a
thread blocked there cannot be stopped. So every file read (the hash and the image bytes) runs in
a daemon reader thread while the calling thread waits at most the budget; past it the image
becomes an error row (retried by ``--resume``) and the stuck reader is left behind, never waited
for. A few stuck reads at once mean the drive is gone: the run stops (:class:`ImagesUnreachable`)
rather than leave a thread behind for every image of the night.

A walk over many files (the folder listing) is watched as a whole instead
(:func:`while_progressing`): it runs in one daemon thread that says when it moves on, and it is
given up only when it has said nothing for the whole budget, so a large folder that lists slowly
is never cut short and a folder that answers costs one thread, not one per file.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Callable, Generic, TypeVar

from .errors import InputError
from .fingerprint import content_digest
from .image_header import ImageDecodeError

T = TypeVar("T")

# Reads stuck past the time budget at the same time beyond which the images folder is taken as
# gone: one stuck file is a flaky drive, several at once are a drive that stopped answering, and
# the run stops instead of leaving a thread behind for every image still to read.
MAX_STUCK_READS = 4
# How long a step that is not an image's read (the folder listing, the report's thumbnails) waits
# for a silent drive unless told: --decode-timeout's default (decode_pool.DEFAULT_TIME_BUDGET_S).
DEFAULT_STALL_S = 30.0
# The longest --decode-timeout: a day. A night waits no longer for one file, and a much longer
# limit (``inf`` for "no limit", 1e12) overflows the waits' timeouts (an OverflowError traceback).
MAX_STALL_S = 86400.0


def usable_stall_s(seconds: object) -> bool:
    """Whether ``seconds`` is a --decode-timeout a run accepts: a number above 0 and at most a day
    (not NaN)."""
    return isinstance(seconds, (int, float)) and 0 < seconds <= MAX_STALL_S


def check_stall_s(seconds: float) -> None:
    """Refuse a --decode-timeout that is not above 0 and at most a day (NaN included).

    Raises:
        InputError: naming the option and the value.
    """
    if not usable_stall_s(seconds):
        raise InputError(f"--decode-timeout must be above 0 and at most {MAX_STALL_S:g} seconds (a day), "
                         f"got {seconds:g}")


def stalled_line(what: str, doing: str, stall_s: float) -> str:
    """The one line of a command stopped because ``what`` stopped answering while ``doing``
    ("it was being read"): the same sentence wherever a silent drive stops a command."""
    return (f"{what} stopped answering while {doing} (nothing for {stall_s:g} s; a stalled network drive?): "
            f"run the same command again once the drive answers")


class ImagesUnreachable(InputError):
    """Several reads of image files are stuck at once: the images folder stopped answering."""


class ReadTimedOut(ImageDecodeError):
    """One read did not finish within the budget: the file's drive may answer later (transient)."""


class StallGuard:
    """Runs file reads in daemon reader threads and waits for each at most ``budget_s``.

    A read past the budget is abandoned: its reader stays blocked until the drive answers, if
    it ever does, and the process exits without it. The readers are kept between reads (handing
    a read to a waiting thread costs a fraction of starting one); there are as many as reads in
    progress at once plus the stuck ones, so never more than the calling threads plus
    ``max_stuck``. :meth:`close` wakes every waiting caller at once, so an interrupted run never
    waits for a stuck read. Safe to call from many threads; a context manager.
    """

    def __init__(self, budget_s: float, max_stuck: int = MAX_STUCK_READS) -> None:
        self.budget_s = budget_s
        self.max_stuck = max_stuck
        self._lock = threading.Lock()
        self._reads: queue.SimpleQueue[_Read | None] = queue.SimpleQueue()
        self._readers = 0  # reader threads started and not yet ended
        self._idle = 0  # of those, the ones free to take a read now
        self._stuck = 0  # reads abandoned past the budget and still blocked
        self._waiting: set[_Read] = set()
        self._closed = False

    def call(self, read: Callable[[Path], T], path: Path) -> T:
        """``read(path)``'s result, or its exception, if it comes within the budget.

        Raises:
            ReadTimedOut: the read took longer than the budget (an ImageDecodeError, transient).
            ImageDecodeError: the guard was closed (the run is stopping), or the read's own.
            ImagesUnreachable: ``max_stuck`` reads are stuck at once.
        """
        task = _Read(read, path)
        with self._lock:
            self._refuse_new_reads()
            if self._idle == 0:
                # A daemon thread: the interpreter exits without waiting for one stuck in the kernel.
                threading.Thread(target=self._serve, name="read", daemon=True).start()
                self._readers += 1
                self._idle += 1
            self._idle -= 1
            self._waiting.add(task)
        self._reads.put(task)
        task.done.wait(self.budget_s)
        with self._lock:
            self._waiting.discard(task)
            if not task.finished:
                if self._closed:
                    raise ImageDecodeError("the run was stopped", transient=True)
                task.abandoned = True
                self._stuck += 1
                self._refuse_new_reads()
                raise ReadTimedOut(f"the file did not finish reading within the {self.budget_s:g} s "
                                   f"limit per image (a stalled network drive?)", transient=True)
        return task.result()

    def digest(self, path: Path) -> str | None:
        """:func:`screening.fingerprint.content_digest`, read within the budget (raises as :meth:`call`)."""
        return self.call(content_digest, path)

    def _refuse_new_reads(self) -> None:
        """Raise when no read may start: the run is stopping, or the drive looks gone (under the lock)."""
        if self._closed:
            raise ImageDecodeError("the run was stopped", transient=True)
        if self._stuck >= self.max_stuck:
            raise ImagesUnreachable(
                f"the images folder stopped answering: {self._stuck} file reads are stuck (each for over "
                f"{self.budget_s:g} s; a stalled network drive?); the run stopped, finished images are kept "
                f"in the journal: once the drive answers, rerun the same command with --resume")

    def _serve(self) -> None:
        """A reader's loop: one read after another, until :meth:`close` sends it None."""
        while (task := self._reads.get()) is not None:
            task.run()
            with self._lock:
                task.finished = True
                if task.abandoned:
                    self._stuck -= 1  # the drive answered after all
                self._idle += 1
            task.done.set()
        with self._lock:
            self._readers -= 1

    def close(self) -> None:
        """Wake every caller still waiting (each raises at once, leaving its read behind) and end
        the readers, the stuck ones once their read returns."""
        with self._lock:
            self._closed = True
            waiting = list(self._waiting)
            for _ in range(self._readers):
                self._reads.put(None)
        for task in waiting:
            task.done.set()

    def __enter__(self) -> "StallGuard":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Read(Generic[T]):
    """One read handed to a reader thread: its result or exception once ``done``."""

    def __init__(self, read: Callable[[Path], T], path: Path) -> None:
        self.read, self.path = read, path
        self.done = threading.Event()  # set when finished, or by close() to wake the caller
        self.finished = False  # set under the guard's lock
        self.abandoned = False  # likewise: the caller stopped waiting for it
        self.value: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.read(self.path)
        except BaseException as error:  # handed to the caller, who raises it
            self.error = error

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value


def while_progressing(work: Callable[[Callable[[], None]], T], budget_s: float,
                      stalled: Callable[[], BaseException]) -> T:
    """``work(beat)``'s result, or its exception, run in a daemon thread that calls ``beat()``
    each time it moves on (a folder entry read, a file looked at).

    The caller waits as long as the work goes on beating; once ``budget_s`` passes without a
    beat (a call stuck on a drive that stopped answering), ``stalled()`` is raised and the
    thread is left behind, as a stuck read is. A stall is noticed between ``budget_s`` and
    1.25 x ``budget_s`` after the last beat. A signal (Ctrl-C) interrupts the wait at once.
    """
    beats = [0]  # a list, not a nonlocal int: the work's thread adds, this thread compares

    def beat() -> None:
        beats[0] += 1

    done = threading.Event()
    outcome: list = [None, None]  # value, exception

    def run() -> None:
        try:
            outcome[0] = work(beat)
        except BaseException as error:  # handed to the caller, who raises it
            outcome[1] = error
        finally:
            done.set()

    threading.Thread(target=run, name="walk", daemon=True).start()
    seen, since = beats[0], time.monotonic()
    while not done.wait(budget_s / 4):
        now = time.monotonic()
        if beats[0] != seen:
            seen, since = beats[0], now
        elif now - since >= budget_s:
            raise stalled()
    if outcome[1] is not None:
        raise outcome[1]
    return outcome[0]


# A file read whole in a watched thread is read in pieces of this size, each one a sign of
# progress: a large file on a slow share is never taken for a stalled one, and a stalled share is
# noticed within the time limit.
READ_PIECE = 256 * 1024


def read_pieces(path: Path, beat: Callable[[], None], limit: int | None = None) -> bytes:
    """The bytes of ``path`` (at most ``limit``), with a ``beat()`` once it is open and after each
    piece: the work of :func:`while_progressing` for a file read whole."""
    pieces = []
    left = limit
    with open(path, "rb") as fh:
        beat()
        while left is None or left > 0:
            piece = fh.read(READ_PIECE if left is None else min(READ_PIECE, left))
            if not piece:
                break
            pieces.append(piece)
            if left is not None:
                left -= len(piece)
            beat()
    return b"".join(pieces)


def read_within(path: Path, stall_s: float, stalled: Callable[[], BaseException], limit: int | None = None) -> bytes:
    """The bytes of ``path`` (at most ``limit``), given up with ``stalled()`` once nothing came for
    ``stall_s`` seconds (a drive that stopped answering); the file's own OSError as it is."""
    return while_progressing(lambda beat: read_pieces(path, beat, limit), stall_s, stalled)
