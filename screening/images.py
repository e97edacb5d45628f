"""Screening inputs on the image side: find a folder's image files and decode each one safely."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .image_header import ImageDecodeError, read_header, without_tiff_orientation

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_FILE_BYTES = 200 * 2**20
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


def discover_images(root: Path) -> Discovery:
    """Find the image files under ``root``, recursively and in a deterministic order.

    A file is an image when its suffix is one of ``IMAGE_SUFFIXES`` (any letter case). Hidden
    files and folders (names starting with '.', e.g. .DS_Store, .git) are skipped and are not
    counted as ignored either. Symbolic links to folders are not followed, so a link loop
    cannot make the walk endless.

    Args:
        root: The images folder.

    Returns:
        The images and the other (ignored) files, each sorted by relative path.

    Raises:
        InputError: ``root`` does not exist, is not a folder, or a folder in it cannot be listed.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"images folder not found: {root}")
    if not root.is_dir():
        raise InputError(f"images path is not a folder: {root}")

    def fail(error: OSError) -> None:
        # An unlistable sub-folder would silently drop images from the results: stop instead.
        raise InputError(f"cannot list folder {error.filename}: {error.strerror}")

    images: list[str] = []
    ignored: list[str] = []
    for folder, subfolders, files in os.walk(root, onerror=fail):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        base = Path(folder).relative_to(root)
        for name in files:
            if name.startswith("."):
                continue
            relative = (base / name).as_posix()
            is_image = os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
            (images if is_image else ignored).append(relative)
    return Discovery(root=root, images=sorted(images), ignored=sorted(ignored))


# -- pixels -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecodedImage:
    """An image ready for preprocessing, upright as its EXIF orientation says."""

    rgb: np.ndarray  # uint8 (H, W, 3), C-contiguous
    original_size: tuple[int, int]  # (height, width) at full resolution, upright
    reduced: int  # 1, 2, 4 or 8: the decoder's downscale factor
    format: str  # JPEG, PNG, BMP or TIFF, from the file content (not its suffix)


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


def decode_image(data: bytes, min_size: tuple[int, int], *,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode JPEG, PNG, BMP or TIFF bytes to an upright 8-bit RGB image.

    The header is read first, without decoding pixels: images above ``max_pixels`` and files
    cut short are refused before the decoder allocates anything. Large JPEGs are decoded at
    1/2, 1/4 or 1/8 scale (the largest factor that keeps both sides at least ``min_size``).
    The EXIF orientation is always applied here, by us, rather than by OpenCV, which skips it
    for the unchanged-depth decode that 16-bit and alpha images need. Grayscale, palette,
    16-bit and alpha images all become 8-bit RGB (alpha composited onto black).

    Args:
        data: The whole file content.
        min_size: (height, width) the image must keep after a reduced decode, upright.
        max_pixels: Largest width x height accepted.

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
    if not header.complete:
        raise ImageDecodeError("truncated image file")

    upright = (header.width, header.height) if header.orientation in _QUARTER_TURNS \
        else (header.height, header.width)
    factor, flag = 1, cv2.IMREAD_UNCHANGED
    if header.format == "JPEG":  # 8-bit colour without alpha: the decoder can downscale it
        factor, flag = _reduction(*upright, min_size)
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
    rgb = _orient(_to_rgb(_to_8bit(pixels)), header.orientation)
    return DecodedImage(np.ascontiguousarray(rgb), upright, factor, header.format)


def load_image(path: Path, min_size: tuple[int, int], *,
               max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Read an image file and decode it with :func:`decode_image`.

    Args:
        path: The image file.
        min_size: (height, width) the image must keep after a reduced decode.
        max_file_bytes: Larger files are refused without being read whole.
        max_pixels: Largest width x height accepted.

    Returns:
        The decoded image.

    Raises:
        ImageDecodeError: The file cannot be read or decoded; the reason says why.
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
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
        raise ImageDecodeError(f"cannot read file ({error.strerror or error})") from None
    return decode_image(data, min_size, max_pixels=max_pixels)
