"""Screening inputs on the image side: find a folder's image files and decode each one safely."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import cv2
import numpy as np

from .errors import InputError
from .results import display_name
from .image_header import Header, ImageDecodeError, read_header, without_tiff_orientation
from .stalled_reads import DEFAULT_STALL_S, ImagesUnreachable, stalled_line, while_progressing
if TYPE_CHECKING:
    from .output_paths import OutputFolder

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_FILE_BYTES = 200 * 2**20
# Decoder memory per image (see decode_bytes): a 24-megapixel 8-bit RGB PNG or TIFF fits, as
# does any JPEG up to the pixel limit (decoded reduced); a 16-bit 24-megapixel TIFF does not.
DEFAULT_MAX_DECODE_BYTES = 256 * 2**20
# Progressive JPEGs from cameras and optimisers have about 10 scans; thousands of (tiny)
# scans make the decoder pass over all coefficients thousands of times, a known way to hold a
# decoder for minutes with a small file.
MAX_JPEG_SCANS = 100
# Pictures that decode in milliseconds in any case (see decodes_quickly): 16 megapixels, 32 MiB.
QUICK_MAX_PIXELS = 16_000_000
QUICK_MAX_FILE_BYTES = 32 * 2**20
# Largest first: the smallest image that is still big enough decodes fastest.
_REDUCTIONS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
               (2, cv2.IMREAD_REDUCED_COLOR_2), (1, cv2.IMREAD_COLOR))
# EXIF orientations 5-8 turn the stored picture by a quarter, so height and width swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def _quiet_opencv_logging() -> None:
    """Stop OpenCV logging every bad file to stderr: our own one-line reason replaces it.

    An explicit OPENCV_LOG_LEVEL in the environment still wins, for debugging the decoder.
    """
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)


_quiet_opencv_logging()


# -- discovery --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Discovery:
    """The files found under an images folder, as sorted POSIX paths relative to ``root``."""

    root: Path
    images: list[str]  # files with an image suffix, in screening order
    ignored: list[str]  # every other visible file, for the run summary
    # Linked folders not walked (a loop, a folder already walked by another path, or one the
    # run writes its outputs to), one line each for the user: nothing under the folder is
    # silently left out.
    skipped: list[str] = field(default_factory=list)
    # Images reached through a symbolic link (a linked file, or any file in a linked folder) ->
    # their real path. Only these can be a file outside the images folder, so only these need
    # comparing with the run's output files (screening.output_paths.check_output_location); the
    # real paths come from the listing's own lookups, not from one more lookup per image.
    linked: dict[str, str] = field(default_factory=dict)


def no_images(discovery: Discovery) -> InputError:
    """The refusal for a folder without image files: a night that screened nothing must fail
    loudly (an unmounted share, a mistyped path), saying what was there instead."""
    if discovery.ignored:
        shown = ", ".join(display_name(name) for name in discovery.ignored[:3])
        more = f" and {len(discovery.ignored) - 3} more" if len(discovery.ignored) > 3 else ""
        found = f"only {len(discovery.ignored)} other file{'s' if len(discovery.ignored) > 1 else ''} ({shown}{more})"
    else:
        found = "nothing: is the share mounted?"
    return InputError(f"no image files in {discovery.root} (looked for {' '.join(IMAGE_SUFFIXES)}, recursively; "
                      f"found {found}); nothing screened, the last results left as they were "
                      f"(screen folder --allow-empty writes an empty results CSV)")


def discover_images(root: Path, outputs: Iterable[OutputFolder] = (), *,
                    stall_s: float = DEFAULT_STALL_S) -> Discovery:
    """Find the image files under ``root``, recursively and in a deterministic order.

    A file is an image when its suffix is one of ``IMAGE_SUFFIXES`` (any letter case), whatever
    else it is: a FIFO, device or socket named like an image becomes an error row when it is
    read, never a hang. Names may hold any bytes. Hidden files and folders (names starting with
    '.', e.g. .DS_Store, .git) are skipped and are not counted as ignored either.

    Symbolic links to folders are followed once: a link to a folder outside ``root`` is walked
    like a sub-folder; a link into ``root`` itself (whose files are found by their real path)
    and a link back to a folder already walked (a loop) are not walked again and each gives a
    line in ``skipped``. Sub-folders are walked in sorted order, so the same tree always gives
    the same paths.

    A run's own output folders (``outputs``, see :func:`screening.output_paths.output_folders`)
    are never walked, however they are reached: a link in the images folder to the results
    folder must not make tomorrow's run screen tonight's mask PNGs and report thumbnails as
    lesions. Each such folder not walked gives a line in ``skipped``, and so does a linked image
    file that leads inside one of them (a link to a mask PNG). (Outputs inside the images folder
    itself are refused before a run starts; only links reach them.)

    Each image reached through a symbolic link is given with its real path (``linked``), for
    the ``--out`` check, at one lookup per linked file or folder: none per plain image, which
    matters on a network share of 100,000 files.

    A folder on a network drive that stops answering mid-listing would block the listing in
    the kernel for as long as the drive is silent: the listing runs in a watched thread
    (:func:`screening.stalled_reads.while_progressing`) and stops the run when no entry has been
    read for ``stall_s`` seconds, however long a large folder takes in all.

    Args:
        root: The images folder.
        outputs: Folders the run writes into: each one (and, for one whose ``whole`` is set,
            everything inside it) is left out.
        stall_s: Seconds without an entry read after which the folder is taken as gone.

    Returns:
        The images and the other (ignored) files, each sorted by relative path, the linked
        folders not walked and linked images not screened, and the real path of each image
        reached through a link.

    Raises:
        InputError: ``root`` does not exist, is not a folder, or a folder in it cannot be listed.
        ImagesUnreachable: the folder stopped answering while it was being listed.
    """
    root = Path(root)
    return while_progressing(lambda beat: _discover(root, outputs, beat), stall_s,
                             lambda: listing_stalled(root, stall_s))


def is_folder(path: Path, stall_s: float = DEFAULT_STALL_S) -> bool:
    """``Path(path).is_dir()``, waiting at most ``stall_s`` for a drive that stopped answering.

    Raises:
        ImagesUnreachable: the folder did not answer (as :func:`discover_images`).
    """
    return while_progressing(lambda beat: Path(path).is_dir(), stall_s, lambda: listing_stalled(Path(path), stall_s))


def listing_stalled(root: Path, stall_s: float) -> ImagesUnreachable:
    """The one line of a run stopped by a folder that stopped answering while it was listed."""
    return ImagesUnreachable(stalled_line(f"the images folder {display_name(str(root))}", "it was being listed",
                                          stall_s))


def _discover(root: Path, outputs: Iterable[OutputFolder], beat: Callable[[], None]) -> Discovery:
    """:func:`discover_images` itself, calling ``beat`` for every entry it reads or looks up."""
    if not root.exists():
        raise InputError(f"images folder not found: {root}")
    if not root.is_dir():
        raise InputError(f"images path is not a folder: {root}")

    def fail(error: OSError) -> None:
        # An unlistable sub-folder would silently drop images from the results: stop instead.
        raise InputError(f"cannot list folder {display_name(str(error.filename))}: {error.strerror}")

    real_root = os.path.realpath(root)
    guards = _OutputGuards(outputs, real_root)
    walked: dict[tuple[int, int], str] = {}  # (device, inode) of each folder walked -> its path
    # Each folder walked through a link -> its real path. A folder reached without one lies in
    # the images folder (absent here); below a link, a plain sub-folder's real path is its
    # parent's plus its name, and only a further link needs a lookup.
    real_folders: dict[str, str] = {}
    images: list[str] = []
    ignored: list[str] = []
    skipped: list[str] = []
    through_links: dict[str, str] = {}
    for folder, subfolders, files, linked in _walk(os.fspath(root), fail, beat):
        base = Path(folder).relative_to(root)
        real_folder = real_folders.get(folder)
        if not walked:
            info = os.stat(folder)
            walked[(info.st_dev, info.st_ino)] = "."
        keep = []
        for name in sorted(subfolders):
            if name.startswith("."):
                continue
            beat()
            path = os.path.join(folder, name)
            is_link = os.path.islink(path)
            reason = _not_walked(Path(path), is_link, (base / name).as_posix(), real_root, walked, guards)
            if reason is None:
                keep.append(name)
                if is_link:
                    real_folders[path] = os.path.realpath(path)
                elif real_folder is not None:
                    real_folders[path] = os.path.join(real_folder, name)
            else:
                skipped.append(reason)
        subfolders[:] = keep
        for name in sorted(files):  # sorted: the same tree gives the same skipped lines
            if name.startswith("."):
                continue
            relative = (base / name).as_posix()
            is_image = os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
            if is_image and name in linked:
                beat()
                # A linked file, like a linked folder, may lead into a run's own output tree.
                real = os.path.realpath(os.path.join(folder, name))
                output = guards.inside(real)
                if output is not None:
                    skipped.append(_an_output("linked file", display_name(relative), output, inside=True,
                                              verb="screened"))
                    continue
                through_links[relative] = real
            elif is_image and real_folder is not None:
                through_links[relative] = os.path.join(real_folder, name)
            (images if is_image else ignored).append(relative)
    return Discovery(root=root, images=sorted(images), ignored=sorted(ignored), skipped=skipped,
                     linked=dict(sorted(through_links.items())))


def _walk(top: str, onerror: Callable[[OSError], None],
          beat: Callable[[], None]) -> Iterator[tuple[str, list[str], list[str], set[str]]]:
    """``os.walk(top, onerror=onerror, followlinks=True)``, top-down, that also yields the names
    of the files that are symbolic links (from the folder entries: no call per file) and calls
    ``beat`` for every entry read, so that a large folder read slowly is told from a silent one.

    The caller may prune the sub-folder list in place, as with ``os.walk``.
    """
    pending = [top]
    while pending:
        folder = pending.pop()
        subfolders: list[str] = []
        files: list[str] = []
        linked: set[str] = set()
        try:
            entries = os.scandir(folder)
        except OSError as error:
            onerror(error)
            continue
        with entries:
            try:
                for entry in entries:
                    beat()
                    try:
                        is_folder = entry.is_dir()  # follows links, as followlinks=True
                    except OSError:
                        is_folder = False
                    if is_folder:
                        subfolders.append(entry.name)
                    else:
                        files.append(entry.name)
                        try:
                            if entry.is_symlink():
                                linked.add(entry.name)
                        except OSError:
                            pass  # as os.path.islink: an entry that cannot be looked at is no link
            except OSError as error:
                onerror(error)
                continue
        yield folder, subfolders, files, linked
        pending.extend(os.path.join(folder, name) for name in reversed(subfolders))


class _OutputGuards:
    """The run's output folders as discovery compares them: by real path, and by (device, inode)
    for those that exist (the same folder mounted twice is still the same folder)."""

    def __init__(self, outputs: Iterable[OutputFolder], real_root: str) -> None:
        self.folders: list[tuple[str, OutputFolder, bool]] = []  # (real path, folder, whole)
        self.inodes: dict[tuple[int, int], OutputFolder] = {}
        for output in outputs:
            real = os.path.realpath(output.path)
            # A whole output tree that holds the images folder (--save-masks /data for images in
            # /data/images) cannot leave out all it holds: only the folder itself is left out.
            holds_root = real_root == real or real_root.startswith(os.path.join(real, ""))
            self.folders.append((real, output, output.whole and not holds_root))
            try:
                info = os.stat(real)
            except (OSError, ValueError):
                continue  # not made yet (a first night's masks folder): nothing there to screen
            self.inodes.setdefault((info.st_dev, info.st_ino), output)

    def inside(self, target: str) -> OutputFolder | None:
        """The output folder that ``target`` (a real path) is, or lies inside of a whole one."""
        for real, output, whole in self.folders:
            if target == real or (whole and target.startswith(os.path.join(real, ""))):
                return output
        return None


def _not_walked(folder: Path, linked: bool, relative: str, real_root: str,
                walked: dict[tuple[int, int], str], guards: _OutputGuards) -> str | None:
    """Why the sub-folder ``folder`` (a symbolic link when ``linked``) is not walked, or None to
    walk it (and remember it as walked)."""
    shown = display_name(relative)
    kind = "linked folder" if linked else "folder"
    if linked:
        target = os.path.realpath(folder)
        if target == real_root or target.startswith(os.path.join(real_root, "")):
            # Its images are found by their own path inside the folder; following the link too
            # would screen them twice (or loop, for a link to a parent).
            where = display_name(Path(os.path.relpath(target, real_root)).as_posix())
            where = "the images folder itself" if where == "." else f"{where} in the images folder"
            return f"linked folder {shown} not followed: it leads to {where}, whose images are screened there"
        # Only a link can lead into the middle of an output tree: a plain sub-folder of a folder
        # walked is that tree's top (caught below) or was left out with its parent.
        output = guards.inside(target)
        if output is not None:
            return _an_output(kind, shown, output, inside=target != os.path.realpath(output.path))
    try:
        info = os.stat(folder)
    except OSError as error:
        return f"linked folder {shown} not followed: {error.strerror}"
    output = guards.inodes.get((info.st_dev, info.st_ino))
    if output is not None:
        return _an_output(kind, shown, output, inside=False)
    seen = walked.get((info.st_dev, info.st_ino))
    if seen is not None:
        where = "the images folder" if seen == "." else display_name(seen)
        return f"folder {shown} not walked: it is the same folder as {where} (a link loop or a second mount)"
    walked[(info.st_dev, info.st_ino)] = relative
    return None


def _an_output(kind: str, shown: str, output: OutputFolder, inside: bool, verb: str = "walked") -> str:
    return (f"{kind} {shown} not {verb}: it is {'inside ' if inside else ''}{output.what}, which this "
            f"run writes to; a run never screens its own outputs (masks, report pictures, results)")


# -- pixels -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecodedImage:
    """An image ready for preprocessing, upright as its EXIF orientation says."""

    rgb: np.ndarray  # uint8 (H, W, 3), C-contiguous
    original_size: tuple[int, int]  # (height, width) at full resolution, upright
    reduced: int  # 1, 2, 4 or 8: the decoder's downscale factor
    format: str  # JPEG, PNG, BMP or TIFF, from the file content (not its suffix)
    # Mean alpha of the decoded pixels as a fraction of fully opaque (1.0 without alpha): how
    # much of the picture survives compositing onto black, for the row's warnings.
    opacity: float = 1.0


def _reduction(height: int, width: int, min_size: tuple[int, int]) -> tuple[int, int]:
    """(factor, imdecode flag) of the smallest JPEG decode that still covers ``min_size``."""
    min_height, min_width = min_size
    for factor, flag in _REDUCTIONS:
        # Floor division is conservative: libjpeg rounds the scaled size up.
        if height // factor >= min_height and width // factor >= min_width:
            return factor, flag
    return 1, cv2.IMREAD_COLOR


def _to_8bit(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        # Rounds 0..65535 onto 0..255 (x / 257); keeping only the low byte would be noise.
        return cv2.convertScaleAbs(pixels, alpha=1.0 / 257.0)
    raise ImageDecodeError(f"not a readable image ({pixels.dtype} pixels are not supported)")


def _to_rgb(pixels: np.ndarray) -> np.ndarray:
    """8-bit gray, gray+alpha, BGR or BGRA -> RGB, compositing any alpha onto black.

    Colours under transparent pixels are undefined (exporters leave anything there), so they
    are composited rather than dropped; black matches the dark surround of the dermoscope's
    field of view, the background the models see in every training image.
    """
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    channels = pixels.shape[2]
    if channels == 1:
        return cv2.cvtColor(pixels[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels in (2, 4):
        colour, alpha = pixels[:, :, :channels - 1], pixels[:, :, channels - 1]
        colour = np.ascontiguousarray(colour)
        if channels == 2:
            colour = cv2.cvtColor(colour[:, :, 0], cv2.COLOR_GRAY2BGR)
        if alpha.min() < 255:
            weights = cv2.merge([np.ascontiguousarray(alpha)] * 3)
            colour = cv2.multiply(colour, weights, scale=1.0 / 255.0)
        pixels = colour
    elif channels != 3:
        raise ImageDecodeError(f"not a readable image ({channels} colour channels)")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) so that the picture is upright."""
    if orientation == 2:
        return cv2.flip(pixels, 1)
    if orientation == 3:
        return cv2.rotate(pixels, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(pixels, 0)
    if orientation == 5:
        return cv2.transpose(pixels)
    if orientation == 6:
        return cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(pixels), -1)
    if orientation == 8:
        return cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return pixels


def decode_bytes(header: Header, factor: int = 1) -> int:
    """Memory to decode an image, in bytes, from its header alone.

    The decoder's output (width x height x channels x bytes per sample, at the reduced size
    for a JPEG, which always decodes to 3 channels of 8 bits), plus the two 8-bit RGB working
    copies made after it (conversion, orientation), plus, for a progressive JPEG, the
    full-size DCT coefficients (2 bytes per sample in 8x8 blocks) held until the last scan.
    """
    height, width = -(-header.height // factor), -(-header.width // factor)
    channels, sample_bytes = (3, 1) if header.format == "JPEG" else (header.channels, header.sample_bytes)
    total = height * width * (channels * sample_bytes + 2 * 3)
    if header.progressive:
        blocks = -(-header.width // 8) * -(-header.height // 8)
        total += blocks * 64 * 2 * header.channels
    return total


def decode_image(data: bytes, min_size: tuple[int, int], *,
                 max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> DecodedImage:
    """Decode JPEG, PNG, BMP or TIFF bytes to an upright 8-bit RGB image.

    The header is read first, without decoding pixels: images above ``max_pixels`` or whose
    decoding would need more than ``max_decode_bytes`` (:func:`decode_bytes`), progressive
    JPEGs with more than ``MAX_JPEG_SCANS`` scans, and files cut short are refused before the
    decoder allocates anything. Large JPEGs are decoded at
    1/2, 1/4 or 1/8 scale (the largest factor that keeps both sides at least ``min_size``).
    The EXIF orientation is always applied here, by us, rather than by OpenCV, which skips it
    for the unchanged-depth decode that 16-bit and alpha images need. Grayscale, palette,
    16-bit and alpha images all become 8-bit RGB (alpha composited onto black).

    Args:
        data: The whole file content.
        min_size: (height, width) the image must keep after a reduced decode, upright.
        max_pixels: Largest width x height accepted.
        max_decode_bytes: Largest decoder memory accepted, estimated from the header.

    Returns:
        The decoded image with its full-resolution size and the reduction used.

    Raises:
        ImageDecodeError: The image cannot be used; its reason goes into the result row.
    """
    if len(data) == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    header = read_header(data)
    if header.width == 0 or header.height == 0:
        raise ImageDecodeError(f"not a readable image ({header.format} header says "
                               f"{header.width}x{header.height} pixels)")
    if header.width * header.height > max_pixels:
        raise ImageDecodeError(f"image is {header.width}x{header.height} pixels, above the "
                               f"{max_pixels / 1e6:g} megapixel limit")
    upright = (header.width, header.height) if header.orientation in _QUARTER_TURNS \
        else (header.height, header.width)
    factor, flag = 1, cv2.IMREAD_UNCHANGED
    if header.format == "JPEG":  # 8-bit colour without alpha: the decoder can downscale it
        factor, flag = _reduction(*upright, min_size)
    _check_cost(header, factor, max_decode_bytes)
    if not header.complete:
        raise ImageDecodeError("truncated image file")
    if header.tiff_orientation_at is not None and header.orientation != 1:
        data = without_tiff_orientation(data, header.tiff_orientation_at)
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        pixels = None
    if pixels is None or pixels.size == 0:
        raise ImageDecodeError(f"not a readable image (corrupt {header.format} data)")
    if factor > 1:
        # libjpeg rounds a scaled size up: 1503 px / 4 gives 376 columns, the last one made
        # from 3 source columns. Resized as a full column it shifts the whole picture by up to
        # 3/4 of a reduced pixel (a 224 px result differed by up to 151 grey levels at the
        # field-of-view edge). Dropping it leaves the same picture as a full decode, short of at
        # most factor - 1 source rows/columns at the far edges.
        pixels = pixels[:header.height // factor, :header.width // factor]
    pixels = _to_8bit(pixels)
    alpha = pixels.ndim == 3 and pixels.shape[2] in (2, 4)  # what _to_rgb composites onto black
    opacity = float(np.mean(pixels[:, :, -1])) / 255.0 if alpha else 1.0
    rgb = _orient(_to_rgb(pixels), header.orientation)
    return DecodedImage(np.ascontiguousarray(rgb), upright, factor, header.format, opacity)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "a special file"


def _file_kind(path: Path) -> str:
    try:
        return _kind(os.stat(path).st_mode)
    except OSError:
        return "a special file"


def _check_data_fits_header(header: Header) -> None:
    """Refuse a Huffman JPEG whose data is too short for the picture its header claims."""
    if header.huffman_bytes is None:
        return
    mcus = -(-header.width // 32) * -(-header.height // 32)  # the fewest MCUs the picture can have
    if header.huffman_bytes * 8 < mcus:
        raise ImageDecodeError(f"JPEG data ({header.huffman_bytes} bytes) is too short for the "
                               f"{header.width}x{header.height} picture its header claims (corrupt or "
                               f"forged header)")


def _check_cost(header: Header, factor: int, max_decode_bytes: int) -> None:
    _check_data_fits_header(header)
    if header.progressive and header.scans > MAX_JPEG_SCANS:
        raise ImageDecodeError(f"progressive JPEG with {header.scans} scans, above the {MAX_JPEG_SCANS} "
                               f"scan limit (decoding time grows with every scan)")
    needed = decode_bytes(header, factor)
    if needed > max_decode_bytes:
        sample = "byte" if header.sample_bytes == 1 else "bytes"
        raise ImageDecodeError(
            f"decoding needs {needed / 2**20:.0f} MiB ({header.width}x{header.height} pixels x "
            f"{header.channels} channels x {header.sample_bytes} {sample}"
            f"{', progressive' if header.progressive else ''}), above the "
            f"{max_decode_bytes / 2**20:g} MiB limit",
            # The limit is an option: a run given a higher --max-decode-mib tries again, and
            # refusing from the header again costs nothing.
            transient=True)


def load_image(path: Path, min_size: tuple[int, int], *,
               max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS,
               max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> DecodedImage:
    """Read an image file and decode it with :func:`decode_image`.

    Args:
        path: The image file.
        min_size: (height, width) the image must keep after a reduced decode.
        max_file_bytes: Larger files are refused without being read whole.
        max_pixels: Largest width x height accepted.
        max_decode_bytes: Largest decoder memory accepted (see :func:`decode_image`).

    Returns:
        The decoded image.

    Raises:
        ImageDecodeError: The file cannot be read or decoded; the reason says why.
    """
    data = read_image_file(path, max_file_bytes)
    return decode_image(data, min_size, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes)


def read_image_file(path: Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The whole content of an image file; FIFOs, devices and sockets are refused, not read.

    Raises:
        ImageDecodeError: the file cannot be read, is not a regular file, or is too large.
    """
    try:
        # Non-blocking: opening a FIFO named like an image would otherwise wait for a writer
        # forever. Only regular files are read.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        if error.errno == errno.ENXIO:  # a socket (or a FIFO on some systems)
            raise ImageDecodeError(f"not a regular file ({_file_kind(path)})") from None
        raise ImageDecodeError(f"cannot read file ({error.strerror or error})", transient=True) from None
    with os.fdopen(fd, "rb") as handle:
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ImageDecodeError(f"not a regular file ({_kind(info.st_mode)})")
            size = info.st_size
            if size > max_file_bytes:
                raise ImageDecodeError(f"file is {size / 2**20:.1f} MiB, above the "
                                       f"{max_file_bytes / 2**20:g} MiB limit")
            # read(n) allocates n bytes before reading anything: ask for the file's size (one
            # byte more shows a file still growing), not for the limit, or every image costs a
            # limit-sized allocation.
            data = handle.read(size + 1)
            if len(data) > max_file_bytes:
                raise ImageDecodeError(f"file is over the {max_file_bytes / 2**20:g} MiB limit")
        except OSError as error:
            raise ImageDecodeError(f"cannot read file ({error.strerror or error})",
                                   transient=True) from None
    return data


def decodes_quickly(header: Header, file_bytes: int) -> bool:
    """Whether decoding can be trusted to take milliseconds, from the header alone.

    Baseline JPEG, PNG and BMP decoders do work in proportion to the file and its pixels, so a
    moderate picture in a moderate file is quick whatever its content. Progressive JPEGs (work
    grows with the number of scans), TIFF (many codecs) and large pictures are not vouched for.
    """
    if header.format not in ("JPEG", "PNG", "BMP") or header.progressive:
        return False
    return header.width * header.height <= QUICK_MAX_PIXELS and file_bytes <= QUICK_MAX_FILE_BYTES

