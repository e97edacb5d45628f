"""Image reading and decoding under a time budget: reads wait at most the budget
(:mod:`screening.stalled_reads`: a stalled network drive gives error rows, not a hung night), and
the images that could be slow decode in child processes.

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

from .image_header import ImageDecodeError, read_header
from .images import decode_image, decodes_quickly, read_image_file
from .stalled_reads import StallGuard

# Wall-clock seconds per image: a 100-megapixel TIFF decodes in a few seconds on a slow CPU;
# a decoder busy for longer is stuck in a hostile file.
DEFAULT_TIME_BUDGET_S = 30.0
# A generous ceiling for a child to import numpy and OpenCV on a loaded machine: not part of
# any image's budget.
STARTUP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DecodeLimits:
    """What one image may cost to decode; beyond either it becomes an error row."""

    time_budget_s: float  # wall-clock seconds per image, for reading the file and for decoding it
    max_decode_bytes: int  # decoder memory, estimated from the header before decoding


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
