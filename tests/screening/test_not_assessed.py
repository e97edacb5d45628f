"""Pictures the models run on but cannot have assessed: blank, mostly transparent, far too small,
or without a lesion the segmenter can find. Each is one error row saying why, with no risk, no
refer/routine flag and no rank, never a lesion's result among the others."""

from __future__ import annotations

import csv
import io
import json
import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundle_factory import INPUT_SIZE, lesion_rgb, patient_row, write_image, write_patients
from folder_runner import run_folder
from hostile_files import png_chunk
from report_factory import bundle_with_maps, page_data
from screening.images import decode_image
from screening.manifest import load_manifest
from screening.pipeline import (MIN_OPACITY, MIN_PIXEL_SPREAD, MIN_SIDE_OF_INPUT, NOT_ASSESSED, Decoded, ImageJob,
                                no_lesion_warning,
                                assessment_problems, failed_in_the_models, not_assessed, pixel_spread)
from screening.preprocess import resize_rgb

SKIN = (224, 172, 150)


pytestmark = pytest.mark.usefixtures("no_default_bundle")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle (32x32 input, dark pixels are lesion) with an operating point (risk 0.5)."""
    return bundle_with_maps(tmp_path_factory.mktemp("engines") / "maps")


def encode(suffix: str, pixels: np.ndarray) -> bytes:
    """RGB(A) pixels as a file's bytes (cv2 wants BGR(A))."""
    code = cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, data = cv2.imencode(suffix, cv2.cvtColor(pixels, code))
    assert ok
    return data.tobytes()


def with_alpha(rgb: np.ndarray, alpha: np.ndarray | int) -> np.ndarray:
    return np.dstack([rgb, np.broadcast_to(np.asarray(alpha, np.uint8), rgb.shape[:2])])


def decoded(rgb: np.ndarray, original_size: tuple[int, int] | None = None, opacity: float = 1.0) -> Decoded:
    job = ImageJob("x.png", None)  # type: ignore[arg-type]  # metadata plays no part
    return Decoded(job, resize_rgb(rgb, INPUT_SIZE), original_size or rgb.shape[:2], None, opacity=opacity)


def lesion_mask(value: float = 0.9) -> np.ndarray:
    mask = np.zeros(INPUT_SIZE, np.float32)
    mask[10:20, 12:22] = value
    return mask


# -- the checks, one by one ----------------------------------------------------------------------

def test_a_lesion_picture_has_no_problem(bundle: Path) -> None:
    assert assessment_problems(decoded(lesion_rgb(3)), load_manifest(bundle)) == []


def test_each_problem_is_named_alone(bundle: Path) -> None:
    manifest = load_manifest(bundle)
    lesion = lesion_rgb(3)
    uniform = np.full((64, 64, 3), SKIN, np.uint8)
    (transparent,) = assessment_problems(decoded(lesion, opacity=0.2), manifest)
    assert transparent.startswith("the picture is mostly transparent (mean opacity 20%)")
    (flat,) = assessment_problems(decoded(uniform), manifest)
    assert flat == "the picture is nearly uniform, blank or one colour throughout (pixel spread 0.0 grey levels, under 2)"
    (small,) = assessment_problems(decoded(lesion_rgb(3, size=12)[:9]), manifest)
    assert small == "the picture is 12x9 pixels, far below the models' 32x32 input (shorter side under 16 px)"
    assert no_lesion_warning(np.full(INPUT_SIZE, 0.2, np.float32), manifest) == (
        "the segmenter found no lesion (no pixel above the mask threshold 0.5): the risk rests on the picture "
        "without a lesion outline; check the picture")
    assert no_lesion_warning(lesion_mask(), manifest) is None
    everything = assessment_problems(decoded(uniform[:4, :3], opacity=0.0), manifest)
    assert [p.split(" (")[0] for p in everything] == [
        "the picture is mostly transparent", "the picture is nearly uniform, blank or one colour throughout",
        "the picture is 3x4 pixels, far below the models' 32x32 input"]
    assert not_assessed(everything).startswith(f"{NOT_ASSESSED}: the picture is mostly transparent")
    assert "; the picture is nearly uniform" in not_assessed(everything)


def test_the_limits_are_where_the_constants_say(bundle: Path) -> None:
    manifest = load_manifest(bundle)
    lesion, mask = lesion_rgb(5), lesion_mask()
    assert assessment_problems(decoded(lesion, opacity=MIN_OPACITY), manifest) == []
    assert assessment_problems(decoded(lesion, opacity=MIN_OPACITY - 0.01), manifest)
    least = int(MIN_SIDE_OF_INPUT * min(INPUT_SIZE))
    assert assessment_problems(decoded(lesion, original_size=(least, 400)), manifest) == []
    assert assessment_problems(decoded(lesion, original_size=(400, least - 1)), manifest)
    # A pixel exactly at the threshold is not lesion, as lesion_area counts it.
    assert no_lesion_warning(np.full(INPUT_SIZE, manifest.mask_threshold, np.float32), manifest)
    # The spread limit: half the pixels one grey level, half another, 2 * MIN_PIXEL_SPREAD apart.
    halves = np.full((32, 32, 3), 100, np.uint8)
    halves[16:] = 100 + 2 * MIN_PIXEL_SPREAD
    assert pixel_spread(halves) == MIN_PIXEL_SPREAD
    assert assessment_problems(decoded(halves), manifest) == []
    halves[16:] -= 1
    assert assessment_problems(decoded(halves), manifest)


def test_the_spread_is_the_most_varied_colour_channel() -> None:
    """A lesion told from the skin by its hue alone, not by brightness, is still a picture."""
    picture = np.full((32, 32, 3), 120, np.uint8)
    picture[8:24, 8:24, 0] = 160
    assert pixel_spread(picture) > 10 and pixel_spread(picture[..., 1:]) == 0


@settings(max_examples=60, deadline=None)
@given(colour=st.tuples(*[st.integers(0, 255)] * 3), quality=st.integers(20, 100),
       size=st.tuples(st.integers(16, 700), st.integers(16, 700)))
def test_any_one_colour_jpeg_is_nearly_uniform_whatever_its_compression(colour, quality, size) -> None:
    """JPEG's own noise on a plain picture stays far under the limit real pictures are far above."""
    data = cv2.imencode(".jpg", np.full((*size, 3), colour, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    picture = decode_image(data.tobytes(), (160, 160))
    assert pixel_spread(resize_rgb(picture.rgb, (160, 160))) < MIN_PIXEL_SPREAD / 2


# -- opacity, from decoding ----------------------------------------------------------------------

def test_decoding_reports_how_opaque_the_picture_is() -> None:
    lesion = lesion_rgb(2)
    assert decode_image(encode(".png", lesion), INPUT_SIZE).opacity == 1.0
    assert decode_image(encode(".png", with_alpha(lesion, 255)), INPUT_SIZE).opacity == 1.0
    assert decode_image(encode(".png", with_alpha(lesion, 0)), INPUT_SIZE).opacity == 0.0
    assert decode_image(encode(".tif", with_alpha(lesion, 0)), INPUT_SIZE).opacity == 0.0
    half = np.zeros(lesion.shape[:2], np.uint8)
    half[:, :32] = 255
    assert decode_image(encode(".png", with_alpha(lesion, half)), INPUT_SIZE).opacity == 0.5
    # 16-bit with alpha: measured on the 8-bit alpha that is composited.
    deep = (with_alpha(lesion, 128).astype(np.uint16) * 257)
    assert decode_image(encode(".png", deep), INPUT_SIZE).opacity == pytest.approx(128 / 255)
    # Grey + alpha (PNG colour type 4, which cv2 does not write).
    grey = np.dstack([lesion[..., 0], np.full(lesion.shape[:2], 51, np.uint8)])
    assert decode_image(grey_alpha_png(grey), INPUT_SIZE).opacity == pytest.approx(0.2)


def grey_alpha_png(pixels: np.ndarray) -> bytes:
    height, width = pixels.shape[:2]
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 4, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


# -- a whole run ---------------------------------------------------------------------------------

def screen(images: Path, meta: Path, out: Path, bundle: Path, *extra: object):
    return run_folder(images, meta, out, bundle, "--quiet", *extra, batch_size=3, workers=2)


def rows_of(out: Path) -> dict[str, dict[str, str]]:
    return {row["image"]: row for row in csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig")))}


def unassessable_folder(tmp_path: Path) -> tuple[Path, Path]:
    """Lesions, and the pictures of the review: blank JPEGs, a tiny PNG, transparent PNGs."""
    images = tmp_path / "images"
    names = []
    for index in range(4):
        names.append(f"lesion_{index}.jpg")
        write_image(images / names[-1], lesion_rgb(index, size=96))
    blank = {"black.jpg": (0, 0, 0), "white.jpg": (255, 255, 255), "skin.jpg": SKIN}
    for name, colour in blank.items():
        write_image(images / name, np.full((450, 600, 3), colour, np.uint8))
    write_image(images / "tiny.png", lesion_rgb(1, size=12))  # a lesion, but 12x12 for a 32x32 input
    lesion = lesion_rgb(2, size=96)
    (images / "transparent.png").write_bytes(encode(".png", with_alpha(lesion, 0)))
    (images / "faint.png").write_bytes(encode(".png", with_alpha(lesion, 60)))  # 24 % opaque
    round_view = np.zeros((96, 96), np.uint8)
    cv2.circle(round_view, (48, 48), 48, 255, -1)  # a dermoscope's field of view, the rest transparent
    (images / "round.png").write_bytes(encode(".png", with_alpha(lesion, round_view)))
    write_image(images / "bright.png", np.clip(lesion_rgb(3, size=96).astype(int) + 120, 0, 255).astype(np.uint8))
    names += [*blank, "tiny.png", "transparent.png", "faint.png", "round.png", "bright.png"]
    meta = write_patients(tmp_path / "patients.csv", [patient_row(i, name) for i, name in enumerate(names)])
    return images, meta


def test_a_run_gives_unassessable_pictures_error_rows_without_risk_flag_or_rank(tmp_path: Path, bundle: Path) -> None:
    images, meta = unassessable_folder(tmp_path)
    out = tmp_path / "results.csv"
    report = tmp_path / "report.html"
    result = screen(images, meta, out, bundle, "--report", report)
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    assert len(rows) == 12  # every file one row
    assessed = {"lesion_0.jpg", "lesion_1.jpg", "lesion_2.jpg", "lesion_3.jpg", "round.png"}
    assessed.add("bright.png")  # a real picture: the segmenter's miss is a warning, the risk is kept
    assert {name for name, row in rows.items() if row["status"] == "ok"} == assessed
    assert all(rows[name]["flag"] in ("refer", "routine") and rows[name]["rank"] for name in assessed)
    for name, row in rows.items():
        if name in assessed:
            continue
        assert row["status"] == "error" and row["error"].startswith(f"{NOT_ASSESSED}: "), (name, row)
        assert (row["rank"], row["risk"], row["flag"], row["prediction"], row["lesion_area"]) == ("", "", "", "", "")
        assert row["error"].endswith("No risk or flag: check the picture (take or export it again), or assess "
                                     "the lesion without screening")
        assert row["warnings"] == ""  # each has its metadata row: the reason is the error, not a warning
    assert "nearly uniform" in rows["black.jpg"]["error"] and "nearly uniform" in rows["white.jpg"]["error"]
    assert "nearly uniform" in rows["skin.jpg"]["error"]
    assert "the picture is 12x12 pixels, far below" in rows["tiny.png"]["error"]
    assert "mostly transparent (mean opacity 0%)" in rows["transparent.png"]["error"]
    assert "mostly transparent (mean opacity 24%)" in rows["faint.png"]["error"]
    assert "nearly uniform" not in rows["faint.png"]["error"]  # a dim picture, but a picture
    assert rows["bright.png"]["warnings"].startswith("the segmenter found no lesion (") and rows["bright.png"]["risk"]
    # Ranked rows come first, the rows without a result after them, as for files that do not decode.
    order = list(rows)
    assert all(order.index(a) < order.index(b) for a in assessed for b in set(rows) - assessed)

    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert summary["status"] == {"ok": 6, "error": 6}
    assert summary["referrals"] == sum(rows[name]["flag"] == "refer" for name in assessed)
    assert {item["image"] for item in summary["top_risks"]} == assessed

    page = page_data(report)
    assert {row["i"] for row in page["rows"]} == assessed
    assert {row["i"]: row["e"] for row in page["errors"]} == {name: rows[name]["error"]
                                                                for name in set(rows) - assessed}


def test_not_assessed_rows_are_reused_by_resume_and_are_no_news(tmp_path: Path, bundle: Path) -> None:
    """The same bytes give the same picture: --resume keeps the row and the next night does not
    call it new; they are the picture's doing, not the models', so they never fail a night."""
    images, meta = unassessable_folder(tmp_path)
    out = tmp_path / "results.csv"
    assert screen(images, meta, out, bundle).exit_code == 0
    first = rows_of(out)
    result = screen(images, meta, out, bundle, "--resume")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert (summary["screened"], summary["reused"]) == (0, 12)
    again = rows_of(out)
    assert all(again[name]["error"] == first[name]["error"] for name in first)
    assert all(row["new"] == "no" for row in again.values())
    # Replaced by a lesion picture, the file is screened and assessed.
    write_image(images / "black.jpg", lesion_rgb(7, size=96))
    assert screen(images, meta, out, bundle, "--resume").exit_code == 0
    assert rows_of(out)["black.jpg"]["status"] == "ok" and rows_of(out)["black.jpg"]["new"] == "yes"


def test_a_night_of_blank_pictures_is_not_taken_for_a_broken_bundle(tmp_path: Path, bundle: Path) -> None:
    images = tmp_path / "images"
    for name, colour in {"a.jpg": (0, 0, 0), "b.jpg": (255, 255, 255)}.items():
        write_image(images / name, np.full((64, 64, 3), colour, np.uint8))
    meta = write_patients(tmp_path / "patients.csv", [patient_row(0, "a.jpg"), patient_row(1, "b.jpg")])
    out = tmp_path / "results.csv"
    result = screen(images, meta, out, bundle)
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    assert all(row["error"].startswith(NOT_ASSESSED) for row in rows.values())


def test_not_assessed_is_the_pictures_failure_not_the_models() -> None:
    from screening.results import error_outcome

    assert not failed_in_the_models(error_outcome("x.jpg", "f", not_assessed(["the segmenter found no lesion (x)"])))


def test_masks_are_not_written_for_a_picture_not_assessed(tmp_path: Path, bundle: Path) -> None:
    images = tmp_path / "images"
    write_image(images / "lesion.png", lesion_rgb(1, size=64))
    write_image(images / "blank.png", np.full((64, 64, 3), 255, np.uint8))
    meta = write_patients(tmp_path / "patients.csv", [patient_row(0, "lesion.png"), patient_row(1, "blank.png")])
    masks = tmp_path / "masks"
    out = tmp_path / "results.csv"
    assert screen(images, meta, out, bundle, "--save-masks", masks).exit_code == 0
    assert sorted(p.name for p in masks.iterdir()) == ["lesion.png.mask.png", "lesion.png.overlay.png"]
    # --resume reuses the error row without asking for its (absent) mask files.
    assert screen(images, meta, out, bundle, "--save-masks", masks, "--resume").exit_code == 0
    assert json.loads((tmp_path / "results.summary.json").read_text())["screened"] == 0


def test_opacity_crosses_the_decoder_process_and_a_pickled_batch(tmp_path: Path, bundle: Path) -> None:
    """Decoded in a decoder process (the time budget) and pickled, as a Ray decode task's batch
    is (screening.distributed.stages), the picture keeps its opacity: a mostly transparent one
    is not assessed on a cluster either."""
    from screening.decode_pool import DecodeLimits, DecodePool
    from screening.pipeline import decode_one

    images = tmp_path / "images"
    images.mkdir()
    (images / "faint.png").write_bytes(encode(".png", with_alpha(lesion_rgb(2, size=96), 60)))
    manifest = load_manifest(bundle)
    job = ImageJob("faint.png", manifest.metadata.unknown_codes())
    with DecodePool(1, DecodeLimits(30.0, 2**28)) as pool:
        item = pickle.loads(pickle.dumps(decode_one(job, images, manifest.input_size, False, load=pool.load)))
    assert item.opacity == pytest.approx(60 / 255)
    (problem,) = assessment_problems(item, manifest)
    assert problem.startswith("the picture is mostly transparent (mean opacity 24%)")
