"""Screening inputs on the image side: find a folder's image files and decode each one safely."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_FILE_BYTES = 200 * 2**20
# Largest first: the smallest image that is still big enough decodes fastest.
_REDUCTIONS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
               (2, cv2.IMREAD_REDUCED_COLOR_2), (1, cv2.IMREAD_COLOR))
# EXIF orientations 5-8 turn the stored picture by a quarter, so height and width swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
# JPEG start-of-frame markers; C4 (DHT), C8 (reserved) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


# -- file headers: pixel size, orientation and completeness before any pixel is decoded -------

class ImageDecodeError(Exception):
    """One image cannot be used; ``reason`` is a short user-readable text for its result row."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Truncated(Exception):
    """A header field points past the end of the data."""


@dataclass(frozen=True)
class _Header:
    """What the file header says, read without decoding pixels."""

    format: str
    width: int  # as stored, before EXIF orientation
    height: int
    orientation: int  # EXIF orientation 1-8; 1 = stored upright
    complete: bool  # False when the data ends before the format's end marker or pixel data
    # Byte offset of a TIFF orientation value: the TIFF decoder applies it whatever the flags
    # say (OpenCV 5 fully, 4.x partly), so it is overwritten with 1 before decoding.
    tiff_orientation_at: int | None = None


def _unpack(fmt: str, data: bytes, offset: int) -> tuple:
    if offset < 0:
        raise _Truncated
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise _Truncated from None


def _tiff_tags(data: bytes, tags: set[int]) -> dict[int, tuple[list[int], int]]:
    """(integer values, byte offset of the values) of the requested tags in a TIFF's first IFD."""
    endian = "<" if data[:2] == b"II" else ">"
    (ifd,) = _unpack(endian + "I", data, 4)
    (count,) = _unpack(endian + "H", data, ifd)
    sizes = {1: (1, "B"), 3: (2, "H"), 4: (4, "I")}  # BYTE, SHORT, LONG
    found: dict[int, tuple[list[int], int]] = {}
    for index in range(count):
        entry = ifd + 2 + 12 * index
        tag, kind, n = _unpack(endian + "HHI", data, entry)
        if tag not in tags or kind not in sizes:
            continue
        size, code = sizes[kind]
        offset = entry + 8 if size * n <= 4 else _unpack(endian + "I", data, entry + 8)[0]
        if offset + size * n > len(data):
            raise _Truncated
        found[tag] = (list(_unpack(f"{endian}{n}{code}", data, offset)), offset)
    return found


def _exif_orientation(tiff: bytes) -> int:
    """The orientation tag of an EXIF block; 1 when absent or malformed, as viewers do."""
    if tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    try:
        values = _tiff_tags(tiff, {274}).get(274, ([1], 0))[0]
    except _Truncated:
        return 1
    return values[0] if values and 1 <= values[0] <= 8 else 1


def _jpeg_header(data: bytes) -> _Header:
    size: tuple[int, int] | None = None
    orientation = 1
    pos = 2
    while True:
        if pos >= len(data):
            raise _Truncated
        if data[pos] != 0xFF:
            raise ImageDecodeError("not a readable image (corrupt JPEG marker structure)")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= len(data):
            raise _Truncated
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length field
            continue
        if marker == 0xD9:
            raise ImageDecodeError("not a readable image (JPEG has no image frame)")
        (length,) = _unpack(">H", data, pos)
        if length < 2:
            raise ImageDecodeError("not a readable image (corrupt JPEG marker structure)")
        segment = data[pos + 2:pos + length]
        if pos + length > len(data):
            raise _Truncated
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00") and orientation == 1:
            orientation = _exif_orientation(segment[6:])
        elif marker in _JPEG_SOF:
            height, width = _unpack(">HH", segment, 1)
            size = (width, height)
        elif marker == 0xDA:  # start of scan: the entropy-coded data follows
            break
        pos += length
    if size is None:
        raise ImageDecodeError("not a readable image (JPEG has no image frame)")
    # Inside entropy-coded data every 0xFF byte is stuffed (FF 00) or a restart marker, so
    # FF D9 after the first scan can only be the end-of-image marker.
    complete = data.find(b"\xff\xd9", pos) != -1
    return _Header("JPEG", size[0], size[1], orientation, complete)


def _png_header(data: bytes) -> _Header:
    length, kind = _unpack(">I4s", data, 8)
    if kind != b"IHDR" or length < 8:
        raise ImageDecodeError("not a readable image (PNG has no IHDR header)")
    width, height = _unpack(">II", data, 16)
    orientation = 1
    pos = 8
    try:
        while True:
            length, kind = _unpack(">I4s", data, pos)
            end = pos + 12 + length
            if end > len(data):
                raise _Truncated
            if kind == b"eXIf":
                orientation = _exif_orientation(data[pos + 8:pos + 8 + length])
            if kind == b"IEND":
                break
            pos = end
    except _Truncated:
        return _Header("PNG", width, height, orientation, complete=False)
    return _Header("PNG", width, height, orientation, complete=True)


def _bmp_header(data: bytes) -> _Header:
    file_size, pixel_offset, dib_size = _unpack("<I4xII", data, 2)
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height, bits = _unpack("<HH2xH", data, 18)
        compression = 0
    else:
        width, height, bits, compression = _unpack("<ii2xHI", data, 18)
    width, height = abs(width), abs(height)  # negative height = rows stored top-down
    if compression in (0, 3, 6):  # uncompressed (plain or bit fields): size is exact
        stride = (width * bits + 31) // 32 * 4
        complete = pixel_offset + stride * height <= len(data)
    else:
        complete = file_size <= len(data)
    return _Header("BMP", width, height, 1, complete)


def _tiff_header(data: bytes) -> _Header:
    if data[2:4] in (b"+\x00", b"\x00+"):
        raise ImageDecodeError("not a readable image (BigTIFF is not supported)")
    tags = _tiff_tags(data, {256, 257, 273, 274, 279, 324, 325})
    if 256 not in tags or 257 not in tags:
        raise ImageDecodeError("not a readable image (TIFF has no image size)")
    values = {tag: found[0] for tag, found in tags.items()}
    orientation = values.get(274, [1])[0]
    offsets = values.get(273, []) + values.get(324, [])  # strips or tiles
    counts = values.get(279, []) + values.get(325, [])
    complete = all(start + count <= len(data) for start, count in zip(offsets, counts))
    return _Header("TIFF", values[256][0], values[257][0],
                   orientation if 1 <= orientation <= 8 else 1, complete,
                   tags[274][1] if 274 in tags else None)


def _read_header(data: bytes) -> _Header:
    if data[:3] == b"\xff\xd8\xff":
        parse = _jpeg_header
    elif data[:8] == _PNG_SIGNATURE:
        parse = _png_header
    elif data[:2] == b"BM":
        parse = _bmp_header
    elif data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        parse = _tiff_header
    else:
        raise ImageDecodeError("not a readable image (unrecognised file format)")
    try:
        return parse(data)
    except _Truncated:
        raise ImageDecodeError("truncated image file") from None


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


def _without_tiff_orientation(data: bytes, offset: int) -> bytearray:
    """A copy of a TIFF file whose orientation tag says 'upright', so that only we apply it."""
    patched = bytearray(data)
    patched[offset:offset + 2] = struct.pack("<H" if data[:2] == b"II" else ">H", 1)
    return patched


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
    header = _read_header(data)
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
        data = _without_tiff_orientation(data, header.tiff_orientation_at)
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        pixels = None
    if pixels is None or pixels.size == 0:
        raise ImageDecodeError(f"not a readable image (corrupt {header.format} data)")
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
            data = handle.read(max_file_bytes + 1)
            if len(data) > max_file_bytes:
                size = os.fstat(handle.fileno()).st_size
                raise ImageDecodeError(f"file is {size / 2**20:.1f} MiB, above the "
                                       f"{max_file_bytes / 2**20:g} MiB limit")
    except OSError as error:
        raise ImageDecodeError(f"cannot read file ({error.strerror or error})") from None
    return decode_image(data, min_size, max_pixels=max_pixels)
