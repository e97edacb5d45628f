"""Where a run may write: the output files beside ``--out``, checked against its inputs up front.

A results file that resolves to the patients CSV, to an image or to one of the model bundle's
files would destroy an input; one inside the images folder would be screened (or trip discovery) the next
night. Each is refused before any work starts (exit 2), as is a folder the run cannot write to,
a name too long for it and a symbolic link or a file where the run history folder goes, so that
a nightly job fails at 2 a.m. with one line instead of after an hour of screening with a traceback. ``--log-file`` is
checked the same way (:func:`check_log_file`): a log appends to whatever it names.

A linked folder in the images folder can still lead to where the run writes; discovery leaves
out the folders :func:`output_folders` names (screening.images), with a warning.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .atomic import temp_name_bytes
from .errors import InputError
from .engines.naming import TRT_FOLDER
from .journal import journal_path, lock_path
from .manifest import MANIFEST_NAME
from .results import display_name, history_folder, summary_path

# The first bytes of the image formats screened (JPEG, PNG, BMP, TIFF): a log must not grow one.
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"BM", b"II*\x00", b"MM\x00*")
# = screening.images.IMAGE_SUFFIXES (not imported: that module loads OpenCV, and the log file is
# checked before the command starts).
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def output_files(output: Path) -> list[Path]:
    """Every file a run writes beside ``--out``: the CSV, its journal, lock and summary JSON, and
    the run history folder (a dated summary per run)."""
    output = Path(output)
    return [output, journal_path(output), lock_path(output), summary_path(output), history_folder(output)]


@dataclass(frozen=True)
class OutputFolder:
    """A folder a run writes into; image discovery never walks it (screening.images)."""

    path: Path
    what: str  # for the warning: "the folder of --out results.csv (/srv/results)"
    whole: bool = False  # nothing inside it is an input either (masks, report pictures, history)


def output_folders(output: Path, save_masks: Path | None = None, report: Path | None = None) -> list[OutputFolder]:
    """The folders a run with these outputs writes into, for discovery to leave out.

    The folder of ``--out`` (and of ``--report``) is left out as a whole but not what lies
    inside it by another way (it may hold the images folder: results.csv beside images/); the
    masks folder, the report's pictures folder and the run history folder hold nothing but the
    run's own files, wherever a link leads into them.
    """
    from .report.render import asset_folder  # the report's own rule for its pictures folder

    output = Path(output)
    folders = [OutputFolder(output.parent, f"the folder of --out {_shown(output)} "
                                           f"({_shown(_real(output.parent))})"),
               OutputFolder(history_folder(output), f"the run history folder {_shown(history_folder(output))}", True)]
    if save_masks is not None:
        folders.append(OutputFolder(Path(save_masks), f"the --save-masks folder {_shown(save_masks)}", True))
    if report is not None:
        report = Path(report)
        folders += [OutputFolder(report.parent, f"the folder of --report {_shown(report)} "
                                                f"({_shown(_real(report.parent))})"),
                    OutputFolder(asset_folder(report), f"the report's pictures folder {_shown(asset_folder(report))}", True)]
    return folders


def _shown(path: Path) -> str:
    return display_name(str(path))


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # hard links too, not only equal paths
    except (OSError, ValueError):
        return False


def check_output_location(output: Path, images_dir: Path, meta_csv: Path,
                          linked_images: Iterable[str] = (), bundle_dir: Path | None = None) -> None:
    """Refuse an ``--out`` whose files would land on an input or in a folder the run cannot use.

    An image reached without a symbolic link lies inside ``images_dir``, where no output file may
    resolve: only the images reached through one can be an output file elsewhere, and only those
    are compared, by the real paths discovery found (``Discovery.linked``), so that the check
    costs no lookup per image on a network share.

    Args:
        output: the ``--out`` CSV.
        images_dir: the images folder; no output file may resolve inside it.
        meta_csv: the patients CSV; no output file may be it.
        linked_images: real paths of the images reached through a link (which may point anywhere).
        bundle_dir: the model bundle; no output file may be one of its files (``--out
            engines/starter/manifest.json`` would replace the manifest with the results).

    Raises:
        InputError: naming the clash or the unusable folder.
    """
    output = Path(output)
    try:
        _check_writable_folder(output)
        folder = _real(images_dir)
        meta = _real(meta_csv)
        image_files = {Path(image) for image in linked_images}
        bundle = _real(bundle_dir) if bundle_dir is not None else None
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
            if bundle is not None and _bundle_file(real, bundle):
                raise InputError(f"{what} is among the model bundle's files ({real.relative_to(bundle)} in "
                                 f"{bundle_dir}): choose another output file")
        _check_history_folder(output)
    except ValueError as error:  # e.g. an embedded NUL byte
        raise InputError(f"--out {output!s} is not a usable path ({error})") from None


def _bundle_file(real: Path, bundle: Path) -> bool:
    """Whether ``real`` is a file of the bundle: its manifest, a model (``*.onnx`` beside it) or
    anything in its TensorRT engines folder. Results kept beside a bundle are the clinic's layout
    to choose; results written over its manifest leave every later night without a bundle."""
    if real.is_relative_to(bundle / TRT_FOLDER):
        return True
    return real.parent == bundle and (real.name == MANIFEST_NAME or real.suffix.lower() == ".onnx")


def _check_history_folder(output: Path) -> None:
    """The run history goes in ``results.history/``: a folder the run can write, or nothing yet.

    A symbolic link there would send summaries naming patients wherever it points; a file there
    would fail the night after its results were written. Both are refused before any work.
    """
    folder = history_folder(output)
    if Path(folder).name == Path(output).name:  # --out x.history: the file would be its own history folder
        raise InputError(f"--out {output} is named like its own run-history folder ({folder.name}, where each "
                         f"night's summary is kept): give the results another name, e.g. {Path(output).stem}.csv")
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return  # made by the first run
    except OSError as error:
        raise InputError(f"--out {output} would write its run history in {folder}, which cannot be "
                         f"read ({error.strerror or error})") from None
    if stat.S_ISLNK(info.st_mode):
        raise InputError(f"--out {output} would write its run history in {folder}, which is a symbolic "
                         f"link (refusing to follow it): remove the link, or choose another output name")
    if not stat.S_ISDIR(info.st_mode):
        raise InputError(f"--out {output} would write its run history in {folder}, which is a file, not a "
                         f"folder: move it away, or choose another output name")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to the run history folder {folder} of --out {output}: permission denied")


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
    max_name = name_limit(parent)
    longest = max(output_files(output), key=lambda path: len(os.fsencode(path.name)))
    if len(os.fsencode(longest.name)) > max_name:
        raise InputError(f"--out {output} is too long a file name for its folder ({longest.name} "
                         f"would have {len(os.fsencode(longest.name))} bytes, the limit is {max_name})")
    # Each file but the lock and the history folder is written through a longer temp name
    # (screening.atomic) and renamed: that name must fit too, or the write fails at the end.
    longest = max((output, journal_path(output), summary_path(output)), key=temp_name_bytes)
    if temp_name_bytes(longest) > max_name:
        extra = temp_name_bytes(longest) - len(os.fsencode(longest.name))
        raise InputError(f"--out {output} is too long a file name for its folder ({longest.name} is written "
                         f"through a temp name {extra} bytes longer, {temp_name_bytes(longest)} bytes, the limit "
                         f"is {max_name}): choose a name at least {temp_name_bytes(longest) - max_name} bytes shorter")


def name_limit(folder: Path) -> int:
    """The longest file name ``folder`` takes, in bytes (255 where the file system does not say)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_log_file(log: Path, *, images_dir: Path | None = None, meta_csv: Path | None = None,
                   output: Path | None = None, save_masks: Path | None = None, report: Path | None = None,
                   config: Path | None = None, bundle: Path | None = None) -> None:
    """Refuse a ``--log-file`` that names an input or an output of the run, or a symbolic link.

    The log is appended to, every night: pointed at the patients CSV, an image, the job's
    config, the bundle, or a file the run writes, it would damage it (or the run would replace
    the log). A link is refused as the output files refuse one: the log is never written through
    one (:class:`screening.progress.LogFile` opens it with ``O_NOFOLLOW`` as well).

    Raises:
        InputError: naming what the log file would be.
    """
    log = Path(log)
    try:
        reason = _log_clash(log, images_dir, meta_csv, output, save_masks, report, config, bundle)
    except ValueError as error:  # e.g. an embedded NUL byte
        raise InputError(f"--log-file {log!s} is not a usable path ({error})") from None
    if reason:
        raise InputError(f"--log-file {log} {reason}")


def _log_clash(log: Path, images_dir: Path | None, meta_csv: Path | None, output: Path | None,
               save_masks: Path | None, report: Path | None, config: Path | None,
               bundle: Path | None) -> str | None:
    from .progress import is_stream  # progress imports nothing of this module's; kept local all the same

    if log.is_symlink() and is_stream(log):
        return None  # /dev/stdout, /dev/stderr: a terminal or pipe, no file of the run's to damage
    if log.is_symlink():
        return ("is a symbolic link (refusing to follow it): give the log file's own path; a log is "
                "never written through a link")
    real = _real(log)

    def same(other: Path | None) -> bool:
        return other is not None and (real == _real(other) or _same_file(log, other))

    def inside(folder: Path | None) -> bool:
        return folder is not None and real.is_relative_to(_real(folder))

    another = "the log's lines would be appended to it; give another log file"
    if same(meta_csv):
        return f"is the metadata CSV {meta_csv}: {another}"
    if same(config):
        return f"is the --config file {config}: {another}"
    if os.path.splitext(log.name)[1].lower() in _IMAGE_SUFFIXES or _holds_an_image(log):
        return f"is an image (or named like one): {another}"
    if inside(images_dir):
        return (f"is inside the images folder {images_dir}: it would be screened, or damage an image; "
                f"give a log file outside it")
    if inside(bundle):
        return f"is inside the model bundle {bundle}: {another}"
    if output is not None:
        for path in output_files(output):
            folder = path == history_folder(output)
            if same(path) or (folder and inside(path)):
                shown = ("the --out file" if path == Path(output) else
                         f"{'inside ' if folder else ''}{path}, which the run writes beside --out {output}")
                return f"is {shown}: the run would replace the log, or the log damage it; give another log file"
    if save_masks is not None and inside(save_masks):
        return f"is inside the --save-masks folder {save_masks}: give a log file outside it"
    if report is not None:
        from .report.render import asset_folder

        if same(report) or inside(asset_folder(report)):
            return (f"is the --report file or inside its pictures folder: the run would replace the log, "
                    f"or the log damage the report; give another log file")
    return None


def _holds_an_image(path: Path) -> bool:
    """Whether ``path`` is a regular file that starts like an image (a link or hard link to one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # not there yet (a new log), or not readable: nothing to damage we can see
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.read(fd, 8)
    except OSError:
        return False
    finally:
        os.close(fd)
    return head.startswith(_IMAGE_MAGIC)
