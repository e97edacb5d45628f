"""The nightly job's last guards, each as a clinic would meet it:

- --check reports an output lock held by a running screen as the night does (exit 5, naming the
  holder), without taking the lock or leaving a lock file behind;
- a --report name whose temp name would not fit its folder is refused before any image is
  screened (as --out's is), not after the night's work;
- --save-masks may not hold the images folder: the masks keep the images' relative paths, so some
  would land among the images and be screened the next night;
- `screen folder` takes a folder, not a single image: a link to a mask PNG is refused as any file is;
  in the images folder, a linked image file that leads into the run's masks or report pictures is
  left out with a warning, as a linked folder there is.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
from pathlib import Path

import pytest

from bundle_factory import lesion_rgb, patient_row, write_image, write_patients
from folder_runner import error_line, run_folder as run, screen
from screening.atomic import temp_name_bytes
from screening.journal import OutputLock, lock_path
from screening.report.render import asset_folder


@pytest.fixture(autouse=True)
def no_default_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCREEN_BUNDLE", str(tmp_path / "no-such-bundle"))


def images_in(out: Path) -> list[str]:
    return sorted(row["image"] for row in csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- 1. --check and a run under way --------------------------------------------------------------

def test_check_reports_the_output_lock_of_a_running_screen_as_the_night_does(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    out = tmp_path / "results.csv"
    holder = f"pid {os.getpid()} on {socket.gethostname()}"
    expected = f"Error: {out} is being written by another screen run ({holder}): wait for it to finish"
    with OutputLock(out):  # another screen writing results.csv right now
        held = lock_path(out).read_bytes()
        before = files_under(tmp_path)
        check = run(images, meta, out, tiny_bundle, "--check")
        night = run(images, meta, out, tiny_bundle)
        assert night.exit_code == 5 and night.stderr.splitlines() == [expected], night.output
        assert error_line(check, 5) == expected
        assert "nothing was written" not in check.stdout  # no report of a night that would not run
        # The holder's lock is as it was: --check tested it, it neither took nor rewrote it.
        assert lock_path(out).read_bytes() == held and files_under(tmp_path) == before
    # Once the run has finished (its lock file removed), --check passes and creates no lock file.
    check = run(images, meta, out, tiny_bundle, "--check")
    assert check.exit_code == 0, check.output
    assert not lock_path(out).exists() and "results.csv.lock" not in files_under(tmp_path)


def test_check_passes_a_lock_file_left_by_a_killed_run_and_leaves_it_as_it_was(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    """kill -9 leaves the lock file, unlocked: the night takes it, so --check must pass."""
    images, meta = make_folder(1)
    out = tmp_path / "results.csv"
    left = json.dumps({"pid": 999999, "host": "gone"}).encode() + b"\n"
    lock_path(out).write_bytes(left)
    check = run(images, meta, out, tiny_bundle, "--check")
    assert check.exit_code == 0, check.output
    assert lock_path(out).read_bytes() == left
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    assert not lock_path(out).exists()


def test_check_refuses_a_link_planted_at_the_lock_file_as_the_night_does(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    out = tmp_path / "results.csv"
    victim = tmp_path / "victim.txt"
    lock_path(out).symlink_to(victim)
    # Refused alike; --check only opens the lock file, the night creates it.
    expected = f"cannot %s the lock file {lock_path(out)}: it is a symbolic link"
    assert error_line(run(images, meta, out, tiny_bundle, "--check")) == "Error: " + expected % "open"
    assert error_line(run(images, meta, out, tiny_bundle)) == "Error: " + expected % "create"
    assert not victim.exists() and lock_path(out).is_symlink()


# -- 2. a --report name too long for its temp name ------------------------------------------------

def test_a_report_name_whose_temp_name_would_not_fit_is_refused_before_screening(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    out = tmp_path / "results.csv"
    # 243 bytes fit a folder (255); the page is written through a temp name of 261 bytes.
    report = tmp_path / ("r" * 238 + ".html")
    assert temp_name_bytes(report) == 261
    expected = (f"Error: the report {report} is too long a file name for its folder ({report.name} is written "
                f"through a temp name 18 bytes longer, 261 bytes, the limit is 255): choose a name at least 6 "
                f"bytes shorter")
    assert error_line(run(images, meta, out, tiny_bundle, "--report", report, "--check")) == expected
    assert error_line(run(images, meta, out, tiny_bundle, "--report", report)) == expected
    # Refused before anything: no results, no journal, no pictures folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "images_patients.csv"]
    # The longest name that fits: the night runs to the end and writes the page and its pictures.
    fits = tmp_path / ("r" * 232 + ".html")
    assert temp_name_bytes(fits) == 255
    result = run(images, meta, out, tiny_bundle, "--report", fits)
    assert result.exit_code == 0, result.output
    assert fits.is_file() and asset_folder(fits).is_dir()
    # `screen report` names it the same way, before reading anything.
    later = screen("report", out, "--images", images, "--out", report, "--bundle", tiny_bundle)
    assert error_line(later) == expected


# -- 3. --save-masks on a folder that holds the images folder ---------------------------------------

def test_save_masks_holding_the_images_folder_is_refused_before_anything_is_written(
        tmp_path: Path, tiny_bundle: Path) -> None:
    """The reported case: --save-masks /data for /data/images. An image in a sub-folder named like
    the images folder (images/images/b.png) would get its mask at /data/images/b.png.mask.png, and
    the next night would screen it (and its overlay) as lesions."""
    data = tmp_path / "data"
    images = data / "images"
    write_image(images / "a.png", lesion_rgb(1))
    write_image(images / "images" / "b.png", lesion_rgb(2))
    meta = write_patients(tmp_path / "patients.csv", [patient_row(1, "a.png"), patient_row(2, "images/b.png")])
    out = tmp_path / "results.csv"
    before = files_under(tmp_path)
    for masks in (data, tmp_path):
        expected = (f"Error: --save-masks {masks} holds the images folder {images}: mask PNGs would be written "
                    f"among the images and screened by the next run; give a masks folder beside the images "
                    f"folder, not above it")
        assert error_line(run(images, meta, out, tiny_bundle, "--save-masks", masks, "--check")) == expected
        assert error_line(run(images, meta, out, tiny_bundle, "--save-masks", masks)) == expected
        assert files_under(tmp_path) == before
    # The images folder itself, or a folder inside it, was refused already.
    for masks in (images, images / "masks"):
        assert error_line(run(images, meta, out, tiny_bundle, "--save-masks", masks)) == (
            f"Error: --save-masks {masks} is inside the images folder: the mask PNGs would be screened "
            f"as images by the next run")
    assert files_under(tmp_path) == before
    # A masks folder beside the images: night after night, the same two images.
    for night in range(2):
        result = run(images, meta, out, tiny_bundle, "--save-masks", data / "masks", "--resume")
        assert result.exit_code == 0, result.output
        assert images_in(out) == ["a.png", "images/b.png"]
    assert (data / "masks" / "images" / "b.png.mask.png").is_file()
    assert not any(name.endswith(".mask.png") for name in files_under(images))


# -- 4. a single image path --------------------------------------------------------------------------

def test_a_single_image_path_is_refused_even_a_link_to_a_mask_png(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    """`screen folder` screens folders only: a path to one file, here a link to a mask the run
    wrote, is refused (exit 2) before anything is read or written, by the night and by --check."""
    images, meta = make_folder(1)
    out = tmp_path / "results.csv"
    masks = tmp_path / "masks"
    assert run(images, meta, out, tiny_bundle, "--save-masks", masks).exit_code == 0
    link = tmp_path / "single.png"
    link.symlink_to(masks / "img_000.jpg.mask.png")
    before = files_under(tmp_path)
    for target in (link, images / "img_000.jpg"):
        expected = f"Error: images path is not a folder: {target}"
        assert error_line(run(target, meta, out, tiny_bundle, "--save-masks", masks, "--resume")) == expected
        assert error_line(run(target, meta, out, tiny_bundle, "--save-masks", masks, "--check")) == expected
        plain = screen(target, "--meta", meta, "--out", out, "--bundle", tiny_bundle, "--save-masks", masks)
        assert error_line(plain) == expected  # `screen PATH` is `screen folder PATH`
    assert files_under(tmp_path) == before


def test_a_linked_image_file_that_leads_to_the_runs_own_pictures_is_not_screened(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    """images/m.png -> masks/img_000.jpg.mask.png (a link script that also caught the masks): the
    next night screens the two images, not the mask, and says why in one line."""
    images, meta = make_folder(2)
    out = tmp_path / "results.csv"
    masks, report = tmp_path / "masks", tmp_path / "report.html"
    args = (images, meta, out, tiny_bundle, "--save-masks", masks, "--report", report, "--resume")
    assert run(*args).exit_code == 0
    (images / "m.png").symlink_to(masks / "img_000.jpg.mask.png")
    (images / "t.jpg").symlink_to(next((asset_folder(report) / "thumbs").glob("*.jpg")))
    (images / "ok.png").symlink_to(images / "img_001.png")  # a link to an image is still screened
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert images_in(out) == ["img_000.jpg", "img_001.png", "ok.png"]
    assert [line for line in result.stderr.splitlines() if "not screened" in line] == [
        f"Warning: linked file m.png not screened: it is inside the --save-masks folder {masks}, which this run "
        f"writes to; a run never screens its own outputs (masks, report pictures, results)",
        f"Warning: linked file t.jpg not screened: it is inside the report's pictures folder "
        f"{asset_folder(report)}, which this run writes to; a run never screens its own outputs (masks, report "
        f"pictures, results)"]
