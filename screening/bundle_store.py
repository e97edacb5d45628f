"""Where bundles live and how a new one is put there without ever half-replacing an old one.

Bundles are folders ``<root>/<name>/`` with a ``manifest.json``. A new bundle (from training
export or ``screen calibrate``) is built in a hidden temp folder beside its destination, checked
by loading it back, and only then moved into place: by a rename when the destination is free,
or, with ``force``, by an atomic exchange of the two folders (Linux ``renameat2`` with
``RENAME_EXCHANGE``), so a screen running meanwhile sees the old bundle or the new one, never a
mix of their files. Without ``force`` an existing folder, or another bundle with the same
``name@version`` beside it, is never replaced.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .atomic import fsync_dir, umask
from .errors import BundleError, InputError
from .manifest import MANIFEST_NAME, Manifest, load_manifest

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class BundleExists(InputError):
    """The destination bundle (folder or name@version) exists and --force was not given."""


@dataclass
class FoundBundle:
    """A folder holding a manifest, and what loading it gave."""

    path: Path
    manifest: Manifest | None  # None when it does not load
    problem: str = ""  # why it does not load (or, with verify, why its files fail)


def find_bundles(roots: list[Path], verify: bool = False) -> list[FoundBundle]:
    """Every bundle directly inside each root (and each root itself if it is one), by path."""
    found = []
    seen = set()
    for root in roots:
        root = Path(root)
        candidates = [root] if (root / MANIFEST_NAME).is_file() else []
        if root.is_dir():
            candidates += sorted(p for p in root.iterdir()
                                 if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_NAME).is_file())
        for path in candidates:
            key = path.resolve()
            if key in seen:
                continue
            seen.add(key)
            try:
                found.append(FoundBundle(path, load_manifest(path, verify_files=verify)))
            except BundleError as exc:
                found.append(FoundBundle(path, None, str(exc)))
    return found


def check_destination(dest: Path, tag: str, force: bool) -> None:
    """Refuse to replace an existing bundle folder, or to add a second bundle called ``tag``.

    Raises:
        BundleExists: without ``force``, naming what is in the way.
    """
    dest = Path(dest)
    if force:
        return
    if dest.exists():
        raise BundleExists(f"{dest} already exists: choose another folder, or pass --force to replace it")
    for other in find_bundles([dest.parent]):
        if other.manifest is not None and other.manifest.tag == tag:
            raise BundleExists(f"{other.path} already holds bundle {tag}: bump the version, or pass --force")


@contextmanager
def staged_bundle(dest: Path, tag: str, force: bool = False) -> Iterator[Path]:
    """A temp folder beside ``dest`` to build a bundle in; installed when the block ends.

    The same as :func:`install_bundle` for builders that are a block of code rather than a
    function: if the block raises, the temp folder is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    check_destination(dest, tag, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_folder_beside(dest)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _install_built(tmp, dest, tag, force)


def _new_folder_beside(dest: Path) -> Path:
    """A temp folder to build in, with the permissions a plain mkdir would give (mkdtemp's 0700
    would survive the rename and hide the installed bundle from a clinic's other accounts)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
    tmp.chmod(0o777 & ~umask())
    return tmp


def install_bundle(build: Callable[[Path], None], dest: Path, tag: str, force: bool = False) -> Path:
    """Build a bundle in a temp folder beside ``dest``, check it, and move it into place.

    Args:
        build: writes the bundle's files into the folder it is given.
        dest: the bundle folder to create (or, with ``force``, replace).
        tag: the new bundle's ``name@version``, checked against the bundles beside ``dest``.
        force: replace an existing folder or tag.

    Raises:
        BundleExists: see :func:`check_destination`.
        BundleError: the built bundle does not load (it is removed; ``dest`` is untouched).
    """
    dest = Path(dest)
    check_destination(dest, tag, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_folder_beside(dest)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _install_built(tmp, dest, tag, force)


def _install_built(tmp: Path, dest: Path, tag: str, force: bool) -> Path:
    """Check the bundle built in ``tmp`` and move it to ``dest``; ``tmp`` is gone afterwards."""
    try:
        check_destination(dest, tag, force)  # again: another export may have finished meanwhile
        built = load_manifest(tmp)  # every file present and matching its sha256
        if built.tag != tag:
            raise BundleError(f"the built bundle is {built.tag}, expected {tag}")
        for path in tmp.iterdir():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        if dest.exists():
            _exchange(tmp, dest)  # tmp now holds the old bundle
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders atomically; falls back to two renames where renameat2 is missing."""
    libc_name = ctypes.util.find_library("c")
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None) if libc_name else None
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        errno = ctypes.get_errno()
        if errno not in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
            raise OSError(errno, os.strerror(errno), str(b))
    # Not atomic: for a moment ``b`` does not exist (a screen starting then reports no bundle).
    old = Path(tempfile.mkdtemp(prefix=f".{b.name}.old-", dir=b.parent))
    os.rename(b, old / "bundle")
    os.rename(a, b)
    os.rename(old / "bundle", a)
    os.rmdir(old)
