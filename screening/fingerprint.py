"""Content fingerprints of image files: what ``--resume`` compares to decide "unchanged".

Size and modification time are not enough: ``cp -p``, ``rsync -t``, ``mv`` and archive
extraction keep mtimes, and same-size uncompressed images from one camera are common, so a
replaced photo would keep its old result. The journal therefore keys each result on a hash
of the file's bytes (BLAKE2b, 128 bits: collision-safe for this purpose and faster than
SHA-256 on 64-bit CPUs; ``bench/fingerprint.py`` measures its cost).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

DIGEST_PREFIX = "b2:"  # names the algorithm, so a future change never compares unlike digests
_DIGEST_BYTES = 16
_CHUNK = 1 << 20
# Files above this are not hashed whole (they become error rows anyway, see images.py);
# size and mtime stand in for their content.
MAX_HASHED_BYTES = 256 * 2**20


def content_digest(path: Path, max_bytes: int = MAX_HASHED_BYTES) -> str | None:
    """The BLAKE2b digest of a regular file's bytes, e.g. ``b2:1f0c…``; None when it cannot be read.

    Opened non-blocking, so a FIFO or device named like an image never hangs the run; only
    regular files are hashed. None means "unknown", which never matches a journaled result,
    so an unreadable file is screened (and reported) again next time.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > max_bytes:
            return f"large:{info.st_size}:{info.st_mtime_ns}"
        digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
        return DIGEST_PREFIX + digest.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)
