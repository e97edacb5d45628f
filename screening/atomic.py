"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator


def atomic_write(path: Path, data: bytes | bytearray | memoryview) -> Path:
    """Replace ``path`` with ``data`` so that readers see the old file or the new one, never half.

    The temp file lives in the same folder (``os.replace`` is atomic only within a file system)
    and is fsync'd before the rename, and the folder after it, so a power cut cannot leave an
    empty file behind the new name.
    """
    return atomic_write_chunks(path, (data,))


def atomic_write_chunks(path: Path, chunks: Iterable[bytes | bytearray | memoryview]) -> Path:
    """:func:`atomic_write` of data given piece by piece, e.g. the lines of a large file.

    Only one chunk is in memory at a time (plus the file buffer), so the peak memory of
    writing does not grow with the size of the file.
    """
    with atomic_file(path) as fh:
        for chunk in chunks:
            fh.write(chunk)
    return Path(path)


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write that replaces ``path`` atomically and durably when the block ends.

    For writers that want a file object (``torch.save``, ``np.save``) rather than bytes. If the
    block raises, ``path`` keeps its old content and the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Persist a folder's entries (a new or renamed file); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write(path, text.encode("utf-8"))
