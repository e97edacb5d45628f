"""The TensorRT timing cache of one GPU model and TensorRT version, shared by every build on the machine.

Loaded once per ``screen engines build`` and attached to both models' builder configs; saved
after both builds by merging into whatever the file holds by then, under an exclusive lock, so
two builds running at once (two bundles, two terminals) both keep their timings. A cache that
TensorRT rejects (made on a different device under the same name, or damaged) is never written
back: the build goes on with a fresh cache kept in memory only, and the file is left alone for
the user to delete. The cache folder may be on a network home: each read of the file gives up
once nothing has come for ``stall_s`` seconds, and the build stops with one line (InputError).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..atomic import atomic_write
from ..errors import InputError
from ..stalled_reads import DEFAULT_STALL_S, read_pieces, stalled_line, while_progressing
from .progress import Echo


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) inside the block; waits for other holders.

    A kernel lock (``flock``): it dies with its process, so a killed build never leaves it stale.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class TimingCache:
    """One ``ITimingCache`` attached to every builder config of a build, and saved back once."""

    def __init__(self, path: Path, echo: Echo, stall_s: float = DEFAULT_STALL_S) -> None:
        self.path = Path(path)
        self.echo = echo
        self.stall_s = stall_s  # seconds to wait for the file on a drive that stopped answering
        self.cache: Any = None  # the ITimingCache attached to the configs
        self.saveable = True  # False once TensorRT rejected the file's cache
        self._loaded = b""  # the file's bytes when we read them
        self._config: Any = None  # a builder config, to deserialise caches with when saving

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def attach(self, config: Any) -> None:
        """Attach the cache to ``config``, loading it from the file on the first call."""
        first = self._config is None
        if first:
            self._loaded = self._read()  # first: a read given up leaves the cache unloaded
            self._config = config
            self.cache = self._deserialise(config, self._loaded)
        if self.cache is not None and config.set_timing_cache(self.cache, False):
            if first and self._loaded:
                self.echo(f"  timing cache: {self.path}")
            return
        if self._loaded and self.saveable:  # the file's cache: unreadable, or refused just now
            self.echo(f"  TensorRT rejected the timing cache {self.path} (made on another device or damaged): "
                      f"building without it; the file is left as it is (delete it to start a new one)")
            self.saveable = False
        self.cache = config.create_timing_cache(b"")
        if not config.set_timing_cache(self.cache, False):
            self.echo("  TensorRT rejected a new, empty timing cache: building without one")
            self.cache = None

    def _read(self) -> bytes:
        """The file's bytes, b"" when there is none; InputError when its drive stopped answering."""
        def read(beat) -> bytes:
            return read_pieces(self.path, beat) if self.path.is_file() else b""

        return while_progressing(read, self.stall_s, lambda: InputError(
            stalled_line(f"the timing cache {self.path}", "it was being read", self.stall_s)))

    @staticmethod
    def _deserialise(config: Any, data: bytes) -> Any:
        """An ITimingCache from serialised bytes; None when TensorRT cannot read them."""
        try:
            return config.create_timing_cache(data)
        except Exception:  # TensorRT raises for bytes it cannot read at all
            return None

    def save(self) -> bool:
        """Merge our timings into the file under the lock; returns whether the file was written."""
        if self.cache is None or not self.saveable:
            return False
        with file_lock(self.lock_path):
            current = self._read()
            if current and current != self._loaded:
                # Another build saved meanwhile: keep its timings too. One TensorRT will not
                # combine (another device's, or damaged) is replaced, as our first load would have.
                other = self._deserialise(self._config, current)
                if other is None or not self.cache.combine(other, False):
                    self.echo(f"  could not merge the timing cache saved meanwhile to {self.path}; replacing it")
            atomic_write(self.path, memoryview(self.cache.serialize()))
        return True
