"""Where a run may write: the output files beside ``--out``, checked against its inputs up front.

A results file that resolves to the patients CSV or to an image would destroy an input; one
inside the images folder would be screened (or trip discovery) the next night. Each is refused
before any work starts (exit 2), as is a folder the run cannot write to, so that a nightly job
fails at 2 a.m. with one line instead of after an hour of screening with a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .errors import InputError
from .journal import journal_path, lock_path
from .results import summary_path


def output_files(output: Path) -> list[Path]:
    """Every file a run writes beside ``--out``: the CSV, its journal, lock and summary JSON."""
    output = Path(output)
    return [output, journal_path(output), lock_path(output), summary_path(output)]


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # hard links too, not only equal paths
    except (OSError, ValueError):
        return False


def check_output_location(output: Path, images_dir: Path, meta_csv: Path,
                          images: Iterable[str] = ()) -> None:
    """Refuse an ``--out`` whose files would land on an input or in a folder the run cannot use.

    Args:
        output: the ``--out`` CSV.
        images_dir: the images folder; no output file may resolve inside it.
        meta_csv: the patients CSV; no output file may be it.
        images: discovered image paths relative to ``images_dir`` (links may point anywhere).

    Raises:
        InputError: naming the clash or the unusable folder.
    """
    output = Path(output)
    try:
        _check_writable_folder(output)
        folder = _real(images_dir)
        meta = _real(meta_csv)
        image_files = {_real(folder / image) for image in images}
        for path in output_files(output):
            real = _real(path)
            what = f"--out {output}" if path == output else f"--out {output} would write {path}, which"
            if real == meta or _same_file(path, meta_csv):
                raise InputError(f"{what} is the metadata CSV {meta_csv}: choose another output file")
            if real in image_files:
                raise InputError(f"{what} is an image being screened: choose another output file")
            if real.is_relative_to(folder):
                raise InputError(f"{what} is inside the images folder {images_dir}: write the "
                                 f"results outside it")
    except ValueError as error:  # e.g. an embedded NUL byte
        raise InputError(f"--out {output!s} is not a usable path ({error})") from None


def _check_writable_folder(output: Path) -> None:
    name = output.name
    if not name or name in (".", ".."):
        raise InputError(f"--out {output} names no file: give a file name such as results.csv")
    if output.is_dir():
        raise InputError(f"--out {output} is a folder: give a file name such as {output / 'results.csv'}")
    parent = output.parent
    if not parent.is_dir():
        raise InputError(f"the folder of --out {output} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to the folder of --out {output}: permission denied")
    try:
        max_name = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        max_name = 255
    longest = max(output_files(output), key=lambda path: len(os.fsencode(path.name)))
    if len(os.fsencode(longest.name)) > max_name:
        raise InputError(f"--out {output} is too long a file name for its folder ({longest.name} "
                         f"would have {len(os.fsencode(longest.name))} bytes, the limit is {max_name})")
