"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file a run writes goes through here, and none of them follows a symbolic link planted at
its name: a new file is created with ``O_EXCL | O_NOFOLLOW`` (a link, even a dangling one, makes
the create fail instead of writing where it points), and a replaced file is renamed over, which
replaces a link rather than following it. New files get the permissions the umask allows (not
``mkstemp``'s 0600), and a replaced file keeps its mode, so a clinician group can read what a
service account wrote.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator


def atomic_write(path: Path, data: bytes | bytearray | memoryview, *, durable: bool = True) -> Path:
    """Replace ``path`` with ``data`` so that readers see the old file or the new one, never half.

    The temp file lives in the same folder (``os.replace`` is atomic only within a file system)
    and is fsync'd before the rename, and the folder after it, so a power cut cannot leave an
    empty file behind the new name.
    """
    return atomic_write_chunks(path, (data,), durable=durable)


def atomic_write_chunks(path: Path, chunks: Iterable[bytes | bytearray | memoryview], *,
                        durable: bool = True) -> Path:
    """:func:`atomic_write` of data given piece by piece, e.g. the lines of a large file.

    Only one chunk is in memory at a time (plus the file buffer), so the peak memory of
    writing does not grow with the size of the file.
    """
    with atomic_file(path, durable=durable) as fh:
        for chunk in chunks:
            fh.write(chunk)
    return Path(path)


@contextmanager
def atomic_file(path: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary file to write that replaces ``path`` atomically and durably when the block ends.

    For writers that want a file object (``torch.save``, ``np.save``) rather than bytes. If the
    block raises, ``path`` keeps its old content and no temp file is left (on Linux, not even
    when the process is killed: see :func:`_unnamed_file`). A new file gets 0666 minus the
    umask; a replaced file keeps its mode. ``durable=False`` skips the fsyncs, for files a
    rerun recreates (mask PNGs), where two fsyncs per file would cost more than the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = file_mode(path)
    fd = _unnamed_file(path.parent, mode)
    if fd is not None:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            _publish(fh.fileno(), path)
    else:
        # mkstemp creates with O_EXCL | O_NOFOLLOW and mode 0600; the mode is widened before
        # any data is written, so the temp file is never more open than the final file.
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    if durable:
        fsync_dir(path.parent)


def _unnamed_file(folder: Path, mode: int) -> int | None:
    """A file in ``folder`` with no name yet (Linux ``O_TMPFILE``), or None where unsupported.

    A process killed while writing it, even by ``kill -9``, leaves nothing behind: the kernel
    frees a file that never got a name. Its name comes from a hard link through /proc.
    """
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError:  # a file system without O_TMPFILE (some network ones)
        return None
    os.fchmod(fd, mode)  # exactly the mode asked for, whatever the umask
    return fd


def _publish(fd: int, path: Path) -> None:
    """Give the unnamed file ``fd`` the name ``path``, replacing (never following) what is there.

    A hard link cannot replace a name, so it links a fresh temp name (created by the link
    itself, so it fails rather than follow a planted link) and renames that over ``path``: only
    a kill in the microseconds between the two calls leaves a temp file.
    """
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for _ in range(100):
            tmp = f"{temp_prefix(path)}{os.urandom(TEMP_RANDOM_BYTES).hex()}{TEMP_SUFFIX}"
            try:
                # A folder descriptor makes os.link call linkat(), which can follow /proc's link
                # to the open file; plain link() would try to link the /proc entry itself.
                os.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=folder, follow_symlinks=True)
                break
            except FileExistsError:
                continue
            except OSError as error:
                # Its filename would be /proc/self/fd/N: name the file being written instead.
                raise _naming(error, path, path.parent / tmp) from None
        else:
            raise FileExistsError(f"no free temp name beside {path}")
        try:
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException as error:
            os.unlink(tmp, dir_fd=folder)
            if isinstance(error, OSError):  # its filenames are relative to the folder descriptor
                raise _naming(error, path, path.parent / tmp) from None
            raise
    finally:
        os.close(folder)


def _naming(error: OSError, path: Path, tmp: Path) -> OSError:
    """``error`` again, naming the file being written (and the temp name it was written
    through) rather than the paths the system call saw."""
    if error.errno is None:
        return error
    reason = error.strerror or str(error)
    if error.errno == errno.ENAMETOOLONG:
        reason += f" (it is written through the temp name {tmp.name}, {len(os.fsencode(tmp.name))} bytes)"
    return OSError(error.errno, reason, str(path), None, str(tmp))


TEMP_SUFFIX = ".tmp"
# The random part of a temp name: 6 bytes, written as 12 hex digits.
TEMP_RANDOM_BYTES = 6


def temp_name_bytes(path: Path) -> int:
    """Bytes in the longest temp file name :func:`atomic_file` gives while writing ``path``:
    18 more than the name itself (``.NAME.`` + 12 hex digits + ``.tmp``). A name checked up
    front against the folder's limit must be checked with these, or the write fails at the end."""
    return len(os.fsencode(temp_prefix(path))) + 2 * TEMP_RANDOM_BYTES + len(os.fsencode(TEMP_SUFFIX))


def temp_prefix(path: Path) -> str:
    """Name prefix of :func:`atomic_file`'s temp files for ``path`` (hidden, beside it)."""
    return f".{Path(path).name}."


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Remove temp files that a killed writer of ``path`` left beside it; returns them.

    Call only while holding the lock that makes this process the one writer of ``path``: a
    ``kill -9`` cannot run cleanup code, so the next run removes what it left (it may hold
    patient data).
    """
    path = Path(path)
    prefix = temp_prefix(path)
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if name.startswith(prefix) and name.endswith(TEMP_SUFFIX):
            stale = path.parent / name
            try:
                if stat.S_ISREG(os.lstat(stale).st_mode):
                    stale.unlink()
                    removed.append(stale)
            except OSError:
                pass
    return removed


def umask() -> int:
    """This process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # the only portable way to read it: set and restore at once
    os.umask(mask)
    return mask


def file_mode(path: Path) -> int:
    """Permissions for writing ``path``: an existing regular file's own, else 0666 minus the umask."""
    try:
        info = os.lstat(path)
    except OSError:
        info = None
    if info is not None and stat.S_ISREG(info.st_mode):
        return stat.S_IMODE(info.st_mode)
    return 0o666 & ~umask()


def create_exclusive(path: Path, flags: int = os.O_WRONLY) -> int:
    """Create ``path`` as a new file and return its descriptor; never opens an existing file or
    follows a link (``FileExistsError`` either way). Permissions: 0666 minus the umask."""
    return os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)


def open_no_follow(path: Path, flags: int) -> int:
    """``os.open`` that refuses a symbolic link as the last path component (``OSError`` ELOOP)."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)


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
