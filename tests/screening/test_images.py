"""Tests for screening.images: folder discovery and safe, orientation-aware image decoding."""

from __future__ import annotations

import csv
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from screening.errors import InputError
from screening.images import (IMAGE_SUFFIXES, ImageDecodeError, decode_image, discover_images,
                              load_image)

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
MIN = (16, 16)
FULL = (10_000, 10_000)  # a min_size no reduced decode can meet


# -- builders of tiny test files ------------------------------------------------------------

def encode(ext: str, pixels: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, pixels, list(params))
    assert ok
    return buf.tobytes()


def marked_bgr(height: int, width: int) -> np.ndarray:
    """Gray picture with a red block in the top-left corner, to see where the corner goes."""
    pixels = np.full((height, width, 3), 90, np.uint8)
    pixels[: height // 4, : width // 4] = (0, 0, 250)
    return pixels


def exif_block(orientation: int, little_endian: bool = True) -> bytes:
    """A TIFF structure holding only the EXIF orientation tag."""
    e = "<" if little_endian else ">"
    return ((b"II*\x00" if little_endian else b"MM\x00*") + struct.pack(e + "IH", 8, 1)
            + struct.pack(e + "HHIHH", 274, 3, 1, orientation, 0) + struct.pack(e + "I", 0))


def with_exif(jpeg: bytes, orientation: int, little_endian: bool = True) -> bytes:
    payload = b"Exif\x00\x00" + exif_block(orientation, little_endian)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def hand_png(width: int, height: int, colour_type: int, bit_depth: int, rows: list[bytes],
             extra: bytes = b"", end: bool = True) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra
            + png_chunk(b"IDAT", zlib.compress(raw)) + (png_chunk(b"IEND", b"") if end else b""))


def gray_tiff(pixels: np.ndarray, orientation: int = 1) -> bytes:
    """Uncompressed 8- or 16-bit grayscale TIFF, one strip, with an orientation tag."""
    height, width = pixels.shape
    pixels = pixels.astype(pixels.dtype.newbyteorder("<"))
    tags = [(256, 3, width), (257, 3, height), (258, 3, 8 * pixels.itemsize), (259, 3, 1),
            (262, 3, 1), (273, 4, 0), (274, 3, orientation), (277, 3, 1), (278, 3, height),
            (279, 4, pixels.nbytes)]
    data_offset = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        value = data_offset if tag == 273 else value
        ifd += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3
                                                    else struct.pack("<I", value))
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + pixels.tobytes()


def corrupt_tiff() -> bytes:
    """A TIFF whose headers are whole but whose JPEG-compressed strip is not JPEG data."""
    plain = struct.pack("<HHIHH", 259, 3, 1, 1, 0)
    tiff = gray_tiff(np.full((20, 20), 0xFF, np.uint8))
    return tiff.replace(plain, struct.pack("<HHIHH", 259, 3, 1, 7, 0))


def reason(data: bytes, **kw) -> str:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data, MIN, **kw)
    return caught.value.reason


# -- discovery --------------------------------------------------------------------------------

def test_discover_images_recursive_sorted_with_ignored_files(tmp_path):
    for name in ["b.JPG", "a.png", "sub/c.TIFF", "sub/deeper/d.jpeg", "z.bmp", "notes.txt",
                 "sub/report.pdf", ".DS_Store", ".git/e.jpg", "sub/.hidden.png", "x.tif"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")

    found = discover_images(tmp_path)

    assert found.images == ["a.png", "b.JPG", "sub/c.TIFF", "sub/deeper/d.jpeg", "x.tif", "z.bmp"]
    assert found.ignored == ["notes.txt", "sub/report.pdf"]
    assert found.root == tmp_path
    assert set(IMAGE_SUFFIXES) == {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def test_discover_images_empty_folder(tmp_path):
    found = discover_images(tmp_path)
    assert (found.images, found.ignored) == ([], [])


def test_discover_images_missing_root(tmp_path):
    with pytest.raises(InputError, match="^images folder not found: .*nowhere$"):
        discover_images(tmp_path / "nowhere")


def test_discover_images_root_is_a_file(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(InputError) as caught:
        discover_images(tmp_path / "a.jpg")
    assert str(caught.value) == f"images path is not a folder: {tmp_path / 'a.jpg'}"


# -- colour conversions -----------------------------------------------------------------------

def test_grayscale_png_becomes_rgb():
    gray = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30).astype(np.uint8)
    out = decode_image(encode(".png", gray), MIN)
    assert out.rgb.shape == (20, 30, 3) and out.rgb.dtype == np.uint8
    assert out.rgb.flags.c_contiguous
    for channel in range(3):
        np.testing.assert_array_equal(out.rgb[:, :, channel], gray)
    assert (out.original_size, out.reduced, out.format) == ((20, 30), 1, "PNG")


def test_bgr_png_comes_out_rgb():
    out = decode_image(encode(".png", marked_bgr(20, 20)), MIN)
    assert out.rgb[0, 0].tolist() == [250, 0, 0]
    assert out.rgb[-1, -1].tolist() == [90, 90, 90]


def test_rgba_png_is_composited_onto_black():
    bgra = np.zeros((20, 20, 4), np.uint8)
    bgra[:, :, :3] = (40, 80, 200)
    bgra[:, :10, 3] = 255
    bgra[:, 10:15, 3] = 128
    bgra[:, 15:, 3] = 0
    out = decode_image(encode(".png", bgra), MIN).rgb
    assert out[0, 0].tolist() == [200, 80, 40]
    assert out[0, 12].tolist() == [100, 40, 20]
    assert out[0, 19].tolist() == [0, 0, 0]


def test_gray_alpha_png_is_composited():
    rows = [bytes([200, 255, 200, 0])] * 2  # two pixels: opaque 200, transparent 200
    out = decode_image(hand_png(2, 2, 4, 8, rows), (1, 1)).rgb
    assert out[0, 0].tolist() == [200, 200, 200]
    assert out[0, 1].tolist() == [0, 0, 0]


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_is_scaled_not_truncated(ext):
    values = np.array([[0, 257 * 10, 65535, 32896, 300, 65280]], np.uint16)
    out = decode_image(encode(ext, np.repeat(values, 3, axis=0)), (1, 1)).rgb
    assert out[0, :, 0].tolist() == [0, 10, 255, 128, 1, 254]


def test_16_bit_rgba_png():
    bgra = np.zeros((4, 4, 4), np.uint16)
    bgra[...] = (0, 0, 65535, 65535)
    bgra[:, 2:, 3] = 0
    out = decode_image(encode(".png", bgra), (1, 1)).rgb
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 3].tolist() == [0, 0, 0]


def test_palette_png_uses_the_palette_colours():
    palette = png_chunk(b"PLTE", bytes([255, 0, 0, 0, 0, 255, 10, 20, 30]))
    out = decode_image(hand_png(3, 2, 3, 8, [bytes([0, 1, 2])] * 2, palette), (1, 1)).rgb
    assert out[1].tolist() == [[255, 0, 0], [0, 0, 255], [10, 20, 30]]


def test_one_bit_png_is_black_and_white():
    out = decode_image(hand_png(2, 2, 0, 1, [bytes([0b10000000])] * 2), (1, 1)).rgb
    assert out[0].tolist() == [[255, 255, 255], [0, 0, 0]]


def test_bmp_24_bit_and_8_bit():
    colour = decode_image(encode(".bmp", marked_bgr(20, 24)), MIN)
    assert colour.format == "BMP" and colour.rgb[0, 0].tolist() == [250, 0, 0]
    gray = np.tile(np.arange(24, dtype=np.uint8) * 10, (20, 1))
    out = decode_image(encode(".bmp", gray), MIN).rgb  # OpenCV writes 8-bit palette BMPs
    assert out[5, :, 1].tolist() == gray[5].tolist()


def test_tiff_rgb():
    out = decode_image(encode(".tif", marked_bgr(20, 24)), MIN)
    assert out.format == "TIFF" and out.rgb.shape == (20, 24, 3)
    assert out.rgb[0, 0].tolist() == [250, 0, 0]


def test_content_not_suffix_decides_format(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(encode(".png", marked_bgr(20, 20)))
    assert load_image(tmp_path / "photo.jpg", MIN).format == "PNG"


# -- orientation ------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation,corner", [(6, (0, -1)), (8, (-1, 0)), (3, (-1, -1))])
def test_exif_rotated_jpeg_comes_out_upright(orientation, corner):
    jpeg = with_exif(encode(".jpg", marked_bgr(40, 64), cv2.IMWRITE_JPEG_QUALITY, 100), orientation)
    out = decode_image(jpeg, FULL)
    expected_shape = (40, 64, 3) if orientation == 3 else (64, 40, 3)
    assert out.rgb.shape == expected_shape
    assert out.original_size == expected_shape[:2]
    red = out.rgb[corner]
    assert red[0] > 200 and red[1] < 40 and red[2] < 40  # the marked corner moved here
    assert out.rgb[0, 0].tolist() != red.tolist() or corner == (0, 0)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("little_endian", [True, False])
def test_exif_orientation_matches_opencv_for_every_value(orientation, little_endian):
    jpeg = with_exif(encode(".jpg", marked_bgr(24, 40)), orientation, little_endian)
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
                            cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decode_image(jpeg, FULL).rgb, expected)


def test_png_exif_orientation_is_applied():
    png = encode(".png", marked_bgr(20, 30))
    exif = png_chunk(b"eXIf", exif_block(6))
    out = decode_image(png[:33] + exif + png[33:], MIN).rgb  # after the 8+25-byte IHDR
    assert out.shape == (30, 20, 3) and out[0, -1].tolist() == [250, 0, 0]


# What each EXIF/TIFF orientation means, written independently of the code under test.
UPRIGHT = {1: lambda a: a, 2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud,
           5: lambda a: a.T, 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a.T, 2),
           8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_orientation_tag_is_applied_once(orientation, dtype):
    pixels = np.zeros((20, 30), np.uint8)
    pixels[0, 0], pixels[0, 1], pixels[1, 0] = 255, 128, 64
    stored = pixels.astype(dtype) * (257 if dtype == np.uint16 else 1)
    out = decode_image(gray_tiff(stored, orientation), MIN)
    np.testing.assert_array_equal(out.rgb[:, :, 0], UPRIGHT[orientation](pixels))
    assert out.original_size == out.rgb.shape[:2]


def test_alpha_and_16_bit_png_keep_orientation():
    bgra = np.zeros((20, 30, 4), np.uint16)
    bgra[..., 3] = 65535
    bgra[:5, :5, 2] = 65535
    png = encode(".png", bgra)
    out = decode_image(png[:33] + png_chunk(b"eXIf", exif_block(6)) + png[33:], MIN).rgb
    assert out.shape == (30, 20, 3) and out[0, -1].tolist() == [255, 0, 0]


# -- reduced JPEG decode ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    y, x = np.mgrid[0:384, 0:512]
    pixels = np.dstack([x % 256, y % 256, (x + y) % 256]).astype(np.uint8)
    return encode(".jpg", pixels)


@pytest.mark.parametrize("min_size,factor,shape", [
    ((40, 40), 8, (48, 64)),
    ((48, 64), 8, (48, 64)),
    ((49, 64), 4, (96, 128)),
    ((100, 100), 2, (192, 256)),
    ((300, 10), 1, (384, 512)),
    ((1000, 1000), 1, (384, 512)),
])
def test_reduced_decode_picks_largest_factor_above_min_size(big_jpeg, min_size, factor, shape):
    out = decode_image(big_jpeg, min_size)
    assert (out.reduced, out.rgb.shape[:2], out.original_size) == (factor, shape, (384, 512))


def test_reduced_decode_accounts_for_exif_rotation():
    jpeg = with_exif(encode(".jpg", np.full((128, 512, 3), 100, np.uint8)), 6)
    out = decode_image(jpeg, (200, 60))  # upright it is 512 high and 128 wide
    assert (out.reduced, out.rgb.shape[:2], out.original_size) == (2, (256, 64), (512, 128))


def test_reduced_decode_matches_full_decode_downscaled(big_jpeg):
    small = decode_image(big_jpeg, (40, 40)).rgb.astype(int)
    full = decode_image(big_jpeg, FULL).rgb
    area = cv2.resize(full, (64, 48), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(small - area).mean() < 6


def test_reduced_decode_keeps_the_picture_where_the_size_is_not_a_multiple_of_the_factor():
    # A dark field-of-view disc on a 1003x757 frame: 1003 / 4 leaves a partial last column that
    # libjpeg still emits; resized as a whole column it would shift the disc's edge.
    y, x = np.mgrid[0:757, 0:1003]
    disc = ((x - 501) ** 2 + (y - 378) ** 2 < 370 ** 2).astype(np.uint8)
    pixels = np.dstack([disc * 200 + 20] * 3)
    jpeg = encode(".jpg", pixels)
    reduced = decode_image(jpeg, (150, 150))
    assert (reduced.reduced, reduced.rgb.shape[:2]) == (4, (757 // 4, 1003 // 4))
    full = decode_image(jpeg, FULL).rgb
    from_full = cv2.resize(full[:756, :1000], (160, 160), interpolation=cv2.INTER_AREA).astype(int)
    from_reduced = cv2.resize(reduced.rgb, (160, 160), interpolation=cv2.INTER_AREA).astype(int)
    # A sharp 180-level edge still differs where the two downscaling filters meet it (40 here);
    # with the partial column kept it differed by 165, and on average 4x more.
    assert np.abs(from_reduced - from_full).max() <= 60
    assert np.abs(from_reduced - from_full).mean() < 0.5


# -- bad input: each gives its own reason -----------------------------------------------------

def test_empty_file():
    assert reason(b"") == "empty file (0 bytes)"


def test_unrecognised_bytes():
    assert reason(b"hello, this is not an image") == \
        "not a readable image (unrecognised file format)"


def test_png_bomb_refused_from_header_alone():
    header_only = hand_png(50000, 50000, 2, 8, [], end=False)[:33]
    assert reason(header_only) == "image is 50000x50000 pixels, above the 100 megapixel limit"


def test_jpeg_bomb_refused_from_start_of_frame():
    jpeg = bytearray(encode(".jpg", marked_bgr(16, 16)))
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 30000, 40000)
    assert reason(bytes(jpeg)) == "image is 40000x30000 pixels, above the 100 megapixel limit"


def test_max_pixels_is_configurable():
    assert reason(encode(".bmp", marked_bgr(20, 30)), max_pixels=500) == \
        "image is 30x20 pixels, above the 0.0005 megapixel limit"


@pytest.mark.parametrize("progressive", [0, 1])
@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_jpeg(big_jpeg, progressive, keep):
    jpeg = encode(".jpg", decode_image(big_jpeg, FULL).rgb,
                  cv2.IMWRITE_JPEG_PROGRESSIVE, progressive)
    assert reason(jpeg[: int(len(jpeg) * keep)]) == "truncated image file"


def test_jpeg_without_end_marker_is_truncated():
    jpeg = encode(".jpg", marked_bgr(40, 40))
    assert reason(jpeg[:-2]) == "truncated image file"
    assert reason(jpeg[:40]) == "truncated image file"  # cut inside the headers


def test_jpeg_with_trailing_bytes_is_fine():
    jpeg = encode(".jpg", marked_bgr(40, 40))
    assert decode_image(jpeg + b"\x00" * 16, FULL).rgb.shape == (40, 40, 3)


def test_jpeg_with_corrupt_scan_data():
    jpeg = bytearray(encode(".jpg", marked_bgr(40, 40)))
    dht = jpeg.find(b"\xff\xc4")
    jpeg[dht + 5:dht + 21] = b"\xff" * 16  # impossible Huffman code counts
    assert reason(bytes(jpeg)) == "not a readable image (corrupt JPEG data)"


def test_truncated_png():
    png = encode(".png", marked_bgr(40, 40))
    assert reason(png[:-12]) == "truncated image file"  # IEND missing
    assert reason(png[: len(png) // 2]) == "truncated image file"


def test_truncated_bmp():
    bmp = encode(".bmp", marked_bgr(40, 40))
    assert reason(bmp[: len(bmp) - 10]) == "truncated image file"


def test_truncated_tiff():
    tiff = gray_tiff(np.zeros((20, 20), np.uint8))
    assert reason(tiff[:-1]) == "truncated image file"  # strip runs past the end
    assert reason(encode(".tif", marked_bgr(20, 20))[:100]) == "truncated image file"  # IFD lost


def test_tiff_with_corrupt_strip():
    assert reason(corrupt_tiff()) == "not a readable image (corrupt TIFF data)"


def test_zero_size_header():
    assert reason(hand_png(0, 5, 0, 8, [])) == "not a readable image (PNG header says 0x5 pixels)"


@pytest.mark.skipif("OPENCV_LOG_LEVEL" in os.environ, reason="OPENCV_LOG_LEVEL is set explicitly")
def test_opencv_stays_quiet_on_bad_files(capfd):
    jpeg = bytearray(encode(".jpg", marked_bgr(40, 40)))
    dht = jpeg.find(b"\xff\xc4")
    jpeg[dht + 5:dht + 21] = b"\xff" * 16
    with pytest.raises(ImageDecodeError):
        decode_image(bytes(jpeg), MIN)
    with pytest.raises(ImageDecodeError):
        decode_image(corrupt_tiff(), MIN)
    assert capfd.readouterr().err == ""


# -- load_image -------------------------------------------------------------------------------

def test_load_image_reads_and_decodes(tmp_path):
    (tmp_path / "a.png").write_bytes(encode(".png", marked_bgr(20, 24)))
    out = load_image(tmp_path / "a.png", MIN)
    assert out.rgb.shape == (20, 24, 3) and out.rgb[0, 0].tolist() == [250, 0, 0]


def test_load_image_refuses_large_file(tmp_path):
    (tmp_path / "big.jpg").write_bytes(b"\xff" * (3 * 2**20))
    with pytest.raises(ImageDecodeError) as caught:
        load_image(tmp_path / "big.jpg", MIN, max_file_bytes=2**20)
    assert caught.value.reason == "file is 3.0 MiB, above the 1 MiB limit"


def test_load_image_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError) as caught:
        load_image(tmp_path / "gone.jpg", MIN)
    assert caught.value.reason == "cannot read file (No such file or directory)"


def test_load_image_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"^empty file \(0 bytes\)$"):
        load_image(tmp_path / "empty.png", MIN)


# -- real camera-size JPEGs -------------------------------------------------------------------

@pytest.mark.data
@pytest.mark.skipif(not (DATA / "isic_fullres").is_dir(), reason="../shared/data is absent")
def test_full_resolution_isic_jpegs_decode_reduced():
    folder = DATA / "isic_fullres"
    with open(folder / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for row in rows:
        out = load_image(folder / row["file"], (224, 224))
        height, width = int(row["height"]), int(row["width"])
        assert out.original_size == (height, width)
        assert min(out.rgb.shape[:2]) >= 224
        # Whole reduced pixels only: libjpeg's partial last row/column is dropped.
        assert out.rgb.shape[:2] == (height // out.reduced, width // out.reduced)
        assert (height // (out.reduced * 2) < 224 or width // (out.reduced * 2) < 224
                or out.reduced == 8)
