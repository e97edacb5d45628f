"""Image file headers read without decoding pixels: format, size, EXIF orientation, completeness."""

from __future__ import annotations

import struct
from dataclasses import dataclass

# JPEG start-of-frame markers; C4 (DHT), C8 (reserved) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_JPEG_HUFFMAN = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})  # the others are arithmetic-coded
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Samples per pixel OpenCV returns for each PNG colour type (palette and gray+alpha may come
# back as 4 channels): an upper bound.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}


class ImageDecodeError(Exception):
    """One image cannot be used; ``reason`` is a short user-readable text for its result row.

    ``transient`` marks causes that may pass (a read error, a time-out on a busy machine):
    ``--resume`` tries such an image again, while a corrupt or oversized file that has not
    changed keeps its error row.
    """

    def __init__(self, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class _Truncated(Exception):
    """A header field points past the end of the data."""


@dataclass(frozen=True)
class Header:
    """What the file header says, read without decoding pixels."""

    format: str
    width: int  # as stored, before EXIF orientation
    height: int
    orientation: int  # EXIF orientation 1-8; 1 = stored upright
    complete: bool  # False when the data ends before the format's end marker or pixel data
    # Byte offset of a TIFF orientation value: the TIFF decoder applies it whatever the flags
    # say (OpenCV 5 fully, 4.x partly), so it is overwritten with 1 before decoding.
    tiff_orientation_at: int | None = None
    # What decoding costs, known before decoding (screening.images turns it into bytes):
    channels: int = 3  # samples per pixel the decoder returns (JPEG: its components)
    sample_bytes: int = 1  # bytes per sample (2 for 16-bit PNG/TIFF)
    progressive: bool = False  # a progressive JPEG keeps every DCT coefficient in memory
    scans: int = 1  # JPEG scans: a progressive decoder passes over the coefficients once per scan
    # Huffman-coded JPEG: bytes from the first scan on. Every MCU (at most 32x32 pixels) costs at
    # least one bit of them, so a header claiming far more pixels than the data can hold is
    # forged or corrupt: libjpeg would pad the missing picture with grey and report success.
    huffman_bytes: int | None = None


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


def _jpeg_header(data: bytes) -> Header:
    size: tuple[int, int] | None = None
    orientation = 1
    components, progressive, huffman = 3, False, False
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
            height, width, components = _unpack(">HHB", segment, 1)
            size = (width, height)
            progressive = marker in _JPEG_PROGRESSIVE
            huffman = marker in _JPEG_HUFFMAN
        elif marker == 0xDA:  # start of scan: the entropy-coded data follows
            break
        pos += length
    if size is None:
        raise ImageDecodeError("not a readable image (JPEG has no image frame)")
    # Inside entropy-coded data every 0xFF byte is stuffed (FF 00) or a restart marker, so
    # FF D9 after the first scan can only be the end-of-image marker.
    complete = data.find(b"\xff\xd9", pos) != -1
    # For the same reason FF DA is always a start-of-scan marker: one C-speed count.
    scans = data.count(b"\xff\xda", pos - 2)
    return Header("JPEG", size[0], size[1], orientation, complete, channels=max(1, components),
                  progressive=progressive, scans=scans, huffman_bytes=len(data) - pos if huffman else None)


def _png_header(data: bytes) -> Header:
    length, kind = _unpack(">I4s", data, 8)
    if kind != b"IHDR" or length < 8:
        raise ImageDecodeError("not a readable image (PNG has no IHDR header)")
    width, height, depth, colour = _unpack(">IIBB", data, 16)
    cost = {"channels": _PNG_CHANNELS.get(colour, 4), "sample_bytes": 2 if depth == 16 else 1}
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
        return Header("PNG", width, height, orientation, complete=False, **cost)
    return Header("PNG", width, height, orientation, complete=True, **cost)


def _bmp_header(data: bytes) -> Header:
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
    return Header("BMP", width, height, 1, complete, channels=4 if bits == 32 else 3)


def _tiff_header(data: bytes) -> Header:
    if data[2:4] in (b"+\x00", b"\x00+"):
        raise ImageDecodeError("not a readable image (BigTIFF is not supported)")
    tags = _tiff_tags(data, {256, 257, 258, 273, 274, 277, 279, 324, 325})
    if 256 not in tags or 257 not in tags:
        raise ImageDecodeError("not a readable image (TIFF has no image size)")
    values = {tag: found[0] for tag, found in tags.items()}
    orientation = values.get(274, [1])[0]
    offsets = values.get(273, []) + values.get(324, [])  # strips or tiles
    counts = values.get(279, []) + values.get(325, [])
    complete = all(start + count <= len(data) for start, count in zip(offsets, counts))
    bits = max(values.get(258) or [8])
    return Header("TIFF", values[256][0], values[257][0],
                  orientation if 1 <= orientation <= 8 else 1, complete,
                  tags[274][1] if 274 in tags else None,
                  channels=max(1, (values.get(277) or [1])[0]), sample_bytes=max(1, (bits + 7) // 8))


def read_header(data: bytes) -> Header:
    """The header of JPEG, PNG, BMP or TIFF bytes, told apart by content, not by file suffix.

    Raises:
        ImageDecodeError: unrecognised format, unusable header, or a header cut short.
    """
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


def without_tiff_orientation(data: bytes, offset: int) -> bytearray:
    """A copy of a TIFF file whose orientation tag says 'upright', so that only we apply it."""
    patched = bytearray(data)
    patched[offset:offset + 2] = struct.pack("<H" if data[:2] == b"II" else ">H", 1)
    return patched
