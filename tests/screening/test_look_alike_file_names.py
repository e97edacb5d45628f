"""Two image files whose names look the same: 'café.png' with é as one character (NFC, as Windows
and Linux programs write it) and as e plus a combining accent (NFD, as macOS writes it). A Linux
share holds both. Each is its own result, and its row says that its name has a look-alike."""

from __future__ import annotations

import csv
import io
import unicodedata
from pathlib import Path

import pytest

from bundle_factory import lesion_rgb, write_image
from folder_runner import run_folder

pytestmark = pytest.mark.usefixtures("no_default_bundle")

NFC = unicodedata.normalize("NFC", "café.png")
NFD = unicodedata.normalize("NFD", "café.png")
LOOK_ALIKE = "1 other file name looks the same as this one"


def rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))


def test_two_files_whose_names_look_the_same_each_get_their_own_row_saying_so(tmp_path: Path,
                                                                             tiny_bundle: Path) -> None:
    """Before, both rows read 'café.png' with different risks and only 'no metadata row': a
    reviewer opening 'café.png' for the higher risk could open the other lesion's picture."""
    images = tmp_path / "images"
    write_image(images / NFC, lesion_rgb(1))
    write_image(images / NFD, lesion_rgb(5))
    write_image(images / "plain.png", lesion_rgb(2))
    if len(list(images.iterdir())) != 3:
        pytest.skip("this file system folds Unicode normalisation: it cannot hold both names")
    meta = tmp_path / "patients.csv"
    meta.write_text("image,age\nplain.png,40\n", encoding="utf-8")
    out = tmp_path / "results.csv"
    assert run_folder(images, meta, out, tiny_bundle).exit_code == 0
    found = {row["image"]: row for row in rows(out)}
    assert set(found) == {NFC, NFD, "plain.png"}  # two rows, one per file
    assert found[NFC]["risk"] != found[NFD]["risk"]
    for name in (NFC, NFD):
        assert LOOK_ALIKE in found[name]["warnings"], found[name]["warnings"]
    assert "looks the same" not in found["plain.png"]["warnings"]
    resumed = run_folder(images, meta, out, tiny_bundle, "--resume")
    assert resumed.exit_code == 0
    again = {row["image"]: row for row in rows(out)}
    assert set(again) == set(found) and all(row["new"] == "no" for row in again.values())
    assert all(LOOK_ALIKE in again[name]["warnings"] for name in (NFC, NFD))


def test_a_name_with_invisible_direction_or_zero_width_characters_says_so(tmp_path: Path, tiny_bundle: Path) -> None:
    """U+202E (right-to-left override) prints '\u202egnp.exe.png' as 'png.exe.png' in a spreadsheet or the
    report; U+200B (zero width space) makes 'a\u200b.png' print as 'a.png', the next file's name.
    Their rows said nothing; now each names the characters and shows where they are."""
    images = tmp_path / "images"
    for index, name in enumerate(["\u202egnp.exe.png", "a\u200b.png", "a.png"]):
        write_image(images / name, lesion_rgb(index))
    meta = tmp_path / "patients.csv"
    meta.write_text("image,age\na.png,40\n", encoding="utf-8")
    out = tmp_path / "results.csv"
    assert run_folder(images, meta, out, tiny_bundle).exit_code == 0
    found = {row["image"]: row["warnings"] for row in rows(out)}
    assert ("its name holds invisible characters (U+202E) that can make it print as another name: "
            "\\u202egnp.exe.png") in found["\u202egnp.exe.png"]
    assert "(U+200B)" in found["a\u200b.png"] and "a\\u200b.png" in found["a\u200b.png"]
    assert "invisible" not in found["a.png"]
