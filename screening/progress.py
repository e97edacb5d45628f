"""How a run talks while it works: a progress bar on a terminal, plain log lines in a cron log."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import sys
import time
from datetime import datetime, timezone
from typing import Callable, TextIO

from .stalled_reads import DEFAULT_STALL_S, while_progressing

BAR_WIDTH = 24
# A terminal bar redraws at most this often; a log gets one line per LOG_INTERVAL_S.
REDRAW_INTERVAL_S = 0.2
LOG_INTERVAL_S = 30.0


def format_duration(seconds: float) -> str:
    """Short human duration: '42s', '3m05s', '2h07m'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Images done out of a total, with throughput and ETA.

    On a TTY one line is redrawn in place; otherwise (stdout redirected to a log) a plain
    line is written every ``log_interval_s`` seconds and once at the end. ``quiet`` writes
    nothing.
    """

    def __init__(self, total: int, *, stream: TextIO | None = None, quiet: bool = False,
                 tty: bool | None = None, log_interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, log: "LogFile | None" = None,
                 width: Callable[[], int] | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = quiet
        self.tty = self._isatty() if tty is None else tty
        self.interval = REDRAW_INTERVAL_S if self.tty else log_interval_s
        self.clock = clock
        self.started = clock()
        self.last_shown = self.started
        self.closed = False
        self.log = log  # --log-file: a timestamped line every log_interval_s, whatever the terminal
        self.log_interval = log_interval_s
        self.last_logged = self.started
        self.logged_done = -1
        self.width = width or terminal_width

    def _isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, n: int) -> None:
        """Count ``n`` more images as done and show progress if it is time to."""
        self.done += n
        now = self.clock()
        if now - self.last_shown >= self.interval:
            self.last_shown = now
            self._show(now)
        if self.log is not None and now - self.last_logged >= self.log_interval:
            self.last_logged, self.logged_done = now, self.done
            self.log.write(self.plain_line(now))

    def close(self) -> None:
        """Show the final state once (ends the bar's line on a terminal)."""
        if self.closed:
            return
        self.closed = True
        self._show(self.clock())
        if self.log is not None and self.logged_done != self.done:
            self.log.write(self.plain_line(self.clock()))
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()

    def _counts(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        remaining = self.total - self.done
        eta = format_duration(remaining / rate) if rate > 0 else "?"
        percent = 100.0 * self.done / self.total if self.total else 100.0
        return f"{self.done}/{self.total} images ({percent:.0f}%), {rate:.1f} images/s, ETA {eta}"

    def plain_line(self, now: float) -> str:
        """The progress as a log line: no bar."""
        return f"screening: {self._counts(now)}"

    def line(self, now: float) -> str:
        """The text shown at time ``now``, without bar redraw control characters.

        On a terminal it fits the terminal's width (a line that wraps cannot be redrawn in
        place): the bar shrinks first, then the text is cut.
        """
        counts = self._counts(now)
        if not self.tty:
            return f"screening: {counts}"
        room = self.width() - 1  # the cursor sits after the last character
        bar_width = max(0, min(BAR_WIDTH, room - len(counts) - len("screening [] ")))
        if bar_width < 5:
            return f"screening {counts}"[:room]
        filled = int(bar_width * self.done / self.total) if self.total else bar_width
        return f"screening [{'#' * filled}{'.' * (bar_width - filled)}] {counts}"

    def _show(self, now: float) -> None:
        if self.quiet:
            return
        text = self.line(now)
        # \r plus clearing to the end of the line redraws the bar in place on a terminal.
        self.stream.write(f"\r{text}\x1b[K" if self.tty else f"{text}\n")
        self.stream.flush()


def terminal_width() -> int:
    """Columns of the terminal (80 when unknown)."""
    return shutil.get_terminal_size((80, 24)).columns


class LogFile:
    """``--log-file``: lines appended with a UTC timestamp, flushed at once (a cron job's record).

    Opened for appending, so every night adds to the same file; a log that cannot be written
    is reported once and then skipped, never the reason a run fails halfway. A symbolic link at
    its name is refused, not followed (``O_NOFOLLOW``), as is a FIFO or a socket (a FIFO without
    a reader would hold the night forever); a character device such as /dev/null is accepted.

    A log on a network share that stops answering would block its writer in the kernel, so
    each write (and the open and the close) runs in a watched thread
    (:func:`screening.stalled_reads.while_progressing`) that the caller waits for at most
    ``stall_s`` seconds: past that, logging stops with one warning and the night goes on, the
    stuck thread left behind. A line is written when :meth:`write` returns, as before; a thread
    per line costs some 0.1 ms, and a night logs a line every 30 s.

    Raises:
        OSError: the log cannot be opened; for a link, ELOOP with the reason in ``strerror``;
            for a share that does not answer, ETIMEDOUT.
    """

    def __init__(self, path: str, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 stall_s: float = DEFAULT_STALL_S) -> None:
        self.path = path
        self.clock = clock
        self.stall_s = stall_s
        self._handle: TextIO | None = while_progressing(lambda beat: open_log(path), stall_s, lambda: OSError(
            errno.ETIMEDOUT, f"it stopped answering while it was being opened (nothing for {stall_s:g} s; a stalled "
                             f"network drive?): run the same command again once the drive answers", path))

    def write(self, message: str) -> None:
        handle = self._handle
        if handle is None:
            return
        stamp = self.clock().isoformat(timespec="seconds")
        text = "".join(f"{stamp} {line}\n" for line in str(message).splitlines() or [""])

        def append(beat: Callable[[], None]) -> None:
            handle.write(text)
            handle.flush()

        try:
            while_progressing(append, self.stall_s, _LogStalled)
        except _LogStalled:
            self._stop(f"it stopped answering for {self.stall_s:g} s; a stalled network drive?")
        except OSError as error:
            self._stop(str(error.strerror))

    def _stop(self, reason: str) -> None:
        if self._handle is None:  # another thread (the output watchdog's last words) stopped it first
            return
        self._handle = None  # never closed: a stuck write may still hold it
        print(f"Warning: cannot write the log file {self.path} ({reason}); logging stopped",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            # Closing flushes to the share as well: given up, as a write is, when it does not answer.
            with contextlib.suppress(_LogStalled, OSError):
                while_progressing(lambda beat: handle.close(), self.stall_s, _LogStalled)


class _LogStalled(Exception):
    """A write to the log file did not finish within its time limit."""


def is_stream(path: str | os.PathLike) -> bool:
    """Whether a terminal, pipe or other character device lies behind ``path`` (following links):
    ``--log-file /dev/stdout`` in cron or a container, a stream to write to, not a file to damage."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def open_log(path: str) -> TextIO:
    """``path`` opened for appending text, never through a symbolic link (see :class:`LogFile`),
    except a link to a stream (``/dev/stdout`` -> ``/proc/self/fd/1`` -> a pipe or terminal)."""
    stream = os.path.islink(path) and is_stream(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC | (0 if stream else os.O_CREAT | os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP and os.path.islink(path):
            raise OSError(errno.ELOOP, "it is a symbolic link (refusing to follow it)", path) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or (stream and stat.S_ISFIFO(mode))):
            raise OSError(errno.EINVAL, "it is not a regular file", path)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")
    except BaseException:
        os.close(fd)
        raise


class Reporter:
    """Where a run's messages go: notes and progress to stdout (unless quiet), warnings to stderr,
    and everything, timestamped, to the ``--log-file`` when there is one."""

    def __init__(self, *, quiet: bool = False, out: TextIO | None = None, err: TextIO | None = None,
                 log: LogFile | None = None) -> None:
        self.quiet = quiet
        self._out = out
        self._err = err
        self.log = log

    @property
    def out(self) -> TextIO:
        # Resolved late so that a test runner that swaps sys.stdout is honoured.
        return self._out if self._out is not None else sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err if self._err is not None else sys.stderr

    def info(self, message: str) -> None:
        """A note for the user (backend picked, results resumed); silent when quiet."""
        if not self.quiet:
            print(message, file=self.out, flush=True)
        if self.log is not None:
            self.log.write(message)

    def warn(self, message: str) -> None:
        """Something the user must see even when quiet (a stale lock taken over, a torn journal)."""
        print(f"Warning: {message}", file=self.err, flush=True)
        if self.log is not None:
            self.log.write(f"Warning: {message}")

    def progress(self, total: int) -> Progress:
        """A progress display for ``total`` images on this reporter's stdout."""
        return Progress(total, stream=self.out, quiet=self.quiet, log=self.log)
