"""Image reading and decoding under a time budget: reads wait at most the budget, and the
images that could be slow decode in child processes.

A read from a network drive (NAS, SMB, NFS) that stopped answering blocks in the kernel, and a
thread blocked there cannot be stopped. So every file read (the hash and the image bytes, see
:class:`StallGuard`) runs in a daemon reader thread while the calling thread waits at most
``time_budget_s``; past it the image becomes an error row (retried by ``--resume``) and the
stuck reader is left behind, never waited for. A few stuck reads at once mean the drive is
gone: the run stops (:class:`ImagesUnreachable`, ``MAX_STUCK_READS``) rather than leave a thread
behind for every image of the night.

A C decoder (libjpeg, libpng, libtiff through OpenCV) cannot be interrupted from Python: a
thread stuck in a pathological progressive JPEG holds its worker, and the run's exit, for as
long as the decoder likes. So each file is read (as above) and its header checked in the
calling thread; an image whose decoding is bounded by its header (:func:`screening.images.decodes_quickly`:
baseline JPEG, PNG, BMP of moderate size, the bulk of a clinic's photos) is decoded right
there, at no extra cost. Every other image (progressive JPEG, TIFF, large pictures) goes to a
child process (``python -m screening.decode_pool``, started on first need, one per thread)
that decodes it with :func:`screening.images.load_image`; the parent waits at most
``time_budget_s`` and otherwise kills the child (the image becomes an error row, retried by
``--resume``) and starts a fresh one. Interrupting the run kills the children at once,
whatever they are doing.

The children run in their own session, so a Ctrl-C on the terminal reaches only the parent,
which decides how the run stops; a child whose parent vanished reads end-of-file and exits.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Generic, TypeVar

from .errors import InputError
from .fingerprint import content_digest
from .image_header import ImageDecodeError, read_header
from .images import decode_image, decodes_quickly, read_image_file

T = TypeVar("T")

# Wall-clock seconds per image: a 100-megapixel TIFF decodes in a few seconds on a slow CPU;
# a decoder busy for longer is stuck in a hostile file.
DEFAULT_TIME_BUDGET_S = 30.0
# A generous ceiling for a child to import numpy and OpenCV on a loaded machine: not part of
# any image's budget.
STARTUP_TIMEOUT_S = 300.0
# Reads stuck past the time budget at the same time beyond which the images folder is taken as
# gone: one stuck file is a flaky drive, several at once are a drive that stopped answering, and
# the run stops instead of leaving a thread behind for every image still to read.
MAX_STUCK_READS = 4


@dataclass(frozen=True)
class DecodeLimits:
    """What one image may cost to decode; beyond either it becomes an error row."""

    time_budget_s: float  # wall-clock seconds per image, for reading the file and for decoding it
    max_decode_bytes: int  # decoder memory, estimated from the header before decoding


class ImagesUnreachable(InputError):
    """Several reads of image files are stuck at once: the images folder stopped answering."""


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
            ImageDecodeError: the read took longer than the budget (transient), or the guard
                was closed (the run is stopping).
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
                raise ImageDecodeError(f"the file did not finish reading within the {self.budget_s:g} s "
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


class _Child:
    """One decoder process and the two pipes to it."""

    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                # libjpeg and libtiff print warnings about hostile files; the row says why.
                stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.requests = Connection(to_child_w, readable=False)
        self.answers = Connection(from_child_r, writable=False)
        self.ready = False

    def decode(self, path: Path, min_size: tuple[int, int], limits: DecodeLimits):
        """The decoded image, or ImageDecodeError; marks itself dead when it had to be killed."""
        if not self.ready:
            try:
                if not self.answers.poll(STARTUP_TIMEOUT_S):
                    raise ImageDecodeError("the decoder process did not start", transient=True)
                self.answers.recv()  # "ready"
            except (EOFError, OSError):  # killed while starting (out of memory): not the file's doing
                self.kill()
                raise ImageDecodeError("the decoder process died while starting", transient=True) from None
            self.ready = True
        self.requests.send((os.fsencode(path), min_size, limits.max_decode_bytes))
        if not self.answers.poll(limits.time_budget_s):
            self.kill()
            raise ImageDecodeError(f"decoding took longer than the {limits.time_budget_s:g} s "
                                   f"limit per image", transient=True)
        try:
            kind, value, transient = self.answers.recv()
        except (EOFError, OSError):
            code = self.process.wait()
            self.kill()
            cause = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            # SIGKILL comes from outside (the kernel's out-of-memory killer, an admin): the file
            # may well decode another night. A crash of the decoder's own is the file's doing.
            raise ImageDecodeError(f"the decoder crashed on this file ({cause})",
                                   transient=code == -signal.SIGKILL) from None
        if kind == "ok":
            return value
        raise ImageDecodeError(value, transient=transient)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and self.process.poll() is None

    def kill(self) -> None:
        for end in (self.requests, self.answers):
            end.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class DecodePool:
    """``workers`` decoder processes shared by the decode threads; a context manager.

    :meth:`load` is called from up to ``workers`` threads at once; each call reads the file
    within the time budget and uses one idle child for one image that needs it.
    """

    def __init__(self, workers: int, limits: DecodeLimits) -> None:
        self.limits = limits
        self.reads = StallGuard(limits.time_budget_s)
        self._idle: queue.SimpleQueue[_Child | None] = queue.SimpleQueue()
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(workers):  # a child is started when a slow-looking image first needs it
            self._idle.put(None)

    def _start(self) -> _Child:
        child = _Child()
        with self._lock:
            self._children.append(child)
        return child

    def load(self, path: Path, min_size: tuple[int, int]):
        """:func:`screening.images.load_image`'s result, decoded here or in a child process.

        Raises:
            ImageDecodeError: the image cannot be used, took longer than the time budget to read
                or to decode, or crashed its decoder.
            ImagesUnreachable: several reads are stuck at once (see :class:`StallGuard`).
        """
        data = self.reads.call(read_image_file, path)
        try:
            quick = decodes_quickly(read_header(data), len(data))
        except ImageDecodeError:
            quick = True  # decode_image says why at once, without decoding
        if quick:
            return decode_image(data, min_size, max_decode_bytes=self.limits.max_decode_bytes)
        del data  # the child reads the file itself: no copy through the pipe
        child = self._idle.get()
        try:
            if self._closed:
                raise ImageDecodeError("the run was stopped", transient=True)
            if child is None or not child.alive:
                child = self._start()
            return child.decode(path, min_size, self.limits)
        finally:
            self._idle.put(child)

    def digest(self, path: Path) -> str | None:
        """The file's content digest, read within the time budget (raises as :meth:`StallGuard.call`)."""
        return self.reads.digest(path)

    def close(self) -> None:
        """Kill every child now, busy or not, and stop waiting for stuck reads: neither holds
        state worth waiting for."""
        self._closed = True
        self.reads.close()
        with self._lock:
            children, self._children = self._children, []
        for child in children:
            child.kill()

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _serve(requests_fd: int, answers_fd: int) -> None:
    """The child's loop: decode each requested file and send back the image or the reason."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a run stops
    from .images import load_image  # after the pipes: its import is the child's start-up

    requests = Connection(requests_fd, writable=False)
    answers = Connection(answers_fd, readable=False)
    answers.send("ready")
    while True:
        try:
            path, min_size, max_decode_bytes = requests.recv()
        except (EOFError, OSError):
            return  # the parent closed the pipe or is gone
        try:
            answer = ("ok", load_image(os.fsdecode(path), min_size, max_decode_bytes=max_decode_bytes), False)
        except ImageDecodeError as error:
            answer = ("error", error.reason, error.transient)
        except MemoryError:
            answer = ("error", "not enough memory to decode this image", True)
        except Exception as error:  # an unforeseen decoder failure is still one image's problem
            text = " ".join(str(error).split())[:300]
            answer = ("error", f"cannot decode image ({error.__class__.__name__}: {text})", False)
        answers.send(answer)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
