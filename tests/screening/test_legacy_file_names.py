"""File names that are not UTF-8 (Latin-1 / Windows-1252 bytes from an old camera, a Windows share
or a zip) match the metadata CSV key holding the same text: the OS gives Python ``caf\\udce9.jpg``
for the bytes ``caf\\xe9.jpg``, a Windows-1252 CSV gives ``café.jpg`` for the same bytes."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bundle_factory import lesion_rgb, write_image
from screening.cli import cli
from screening.images import discover_images
from screening.metadata import DEFAULT_VOCABULARY
from screening.patients import read_patients
from screening.pipeline import plan_jobs


def as_os_names(name: bytes) -> str:
    """A file name as Python gets it from a Linux file system (UTF-8, other bytes as surrogates)."""
    return name.decode("utf-8", "surrogateescape")


def csv_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "patients.csv"
    path.write_bytes(data)
    return path


LATIN = as_os_names(b"caf\xe9.jpg")


@pytest.mark.parametrize("key", [b"caf\xe9.jpg", b"caf\xe9", b"CAF\xc9.JPG", b"CAF\xc9"])
def test_a_latin1_name_matches_its_windows1252_key_in_every_spelling(tmp_path, key):
    table = read_patients(csv_file(tmp_path, b"image,age\n" + key + b",44\n"), images=[LATIN])
    assert table.match(LATIN).row.age == "44" and table.match(LATIN).warnings == []
    # And on its own, for an image the table was not told about.
    assert read_patients(csv_file(tmp_path, b"image,age\n" + key + b",44\n")).match(LATIN).row.age == "44"


def test_a_latin1_name_matches_the_same_text_in_a_utf8_csv(tmp_path):
    table = read_patients(csv_file(tmp_path, "image,age\ncafé.jpg,44\nÜber.jpg,1\n".encode("utf-8")), images=[LATIN])
    assert table.match(LATIN).row.age == "44"


def test_a_byte_windows1252_and_latin1_read_differently_matches_either_reading(tmp_path):
    euro = as_os_names(b"\x80uro.jpg")  # '€uro.jpg' in Windows-1252, '\x80uro.jpg' in Latin-1
    assert read_patients(csv_file(tmp_path, b"image,age\n\x80uro.jpg,1\n"), images=[euro]).match(euro).row.age == "1"
    # \x81 is undefined in Windows-1252: the whole CSV is read as Latin-1.
    table = read_patients(csv_file(tmp_path, b"image,age\n\x80uro.jpg,1\n\x81x.jpg,2\n"), images=[euro])
    assert "read it as Latin-1" in table.warnings[0] and table.match(euro).row.age == "1"
    # And a name holding that byte itself.
    odd = as_os_names(b"\x81x.jpg")
    assert read_patients(csv_file(tmp_path, b"image,age\n\x80uro.jpg,1\n\x81x.jpg,2\n"),
                         images=[odd]).match(odd).row.age == "2"


def test_only_the_parts_of_a_path_that_are_not_utf8_are_read_again(tmp_path):
    image = "Ünïcödé/" + LATIN  # a UTF-8 folder holding a Latin-1 file
    table = read_patients(csv_file(tmp_path, "image,age\nÜnïcödé/café.jpg,7\n".encode("cp1252")), images=[image])
    assert table.match(image).row.age == "7"
    # In a UTF-8 CSV, with the file's line the one that is not UTF-8 (read as Windows-1252).
    data = "image,age\nÄrzte.jpg,1\nÜnïcödé/café.jpg,7\n".encode("utf-8").replace("é.jpg,7".encode(), b"\xe9.jpg,7")
    data = data.replace("Ünïcödé/".encode(), b"Unicode/")
    table = read_patients(csv_file(tmp_path, data), images=["Unicode/" + LATIN])
    assert "is UTF-8 but line 3 is not" in table.warnings[0]
    assert table.match("Unicode/" + LATIN).row.age == "7"


def test_a_key_fitting_a_utf8_and_a_latin1_file_of_the_same_text_is_ambiguous(tmp_path):
    """Two files whose names read alike, one UTF-8 and one not: the key could be either's, so
    neither gets it (as for a stem in two folders); the warning shows the names as the CSV does."""
    table = read_patients(csv_file(tmp_path, b"image,age\ncaf\xe9.jpg,44\n"), images=["café.jpg", LATIN])
    for image in ("café.jpg", LATIN):
        match = table.match(image)
        assert match.row is None
        assert match.warnings == ["no metadata row: key 'café.jpg' is ambiguous, it matches 2 images "
                                  "(café.jpg, caf\\xe9.jpg)"]


def test_an_exact_reading_beats_a_case_folded_one(tmp_path):
    """Rule of the module: an exact key beats one in another letter case, across readings too."""
    upper = as_os_names(b"CAF\xc9.jpg")
    table = read_patients(csv_file(tmp_path, b"image,age\ncaf\xe9.jpg,1\nCAF\xc9.jpg,2\n"), images=[LATIN, upper])
    assert (table.match(LATIN).row.age, table.match(upper).row.age) == ("1", "2")


def test_a_name_in_another_legacy_encoding_is_no_match_for_unrelated_keys(tmp_path):
    """Shift-JIS bytes read as Windows-1252 are mojibake: they match no key but their own."""
    image = as_os_names("診断.jpg".encode("shift_jis"))
    table = read_patients(csv_file(tmp_path, "image,age\n診断.jpg,1\nx.jpg,2\n".encode("utf-8")), images=[image])
    assert table.match(image).row is None


def test_screening_plan_attaches_the_row_to_a_latin1_file(tmp_path):
    images = tmp_path / "images"
    write_image(images / "x.png", lesion_rgb(0))
    os.rename(images / "x.png", images / os.fsdecode(b"caf\xe9.png"))
    meta = csv_file(tmp_path, b"image,patient_id,age,sex,site\ncaf\xe9.png,P7,45,female,back\n")
    discovery = discover_images(images)
    (job,) = plan_jobs(discovery.images, read_patients(meta, images=discovery.images), DEFAULT_VOCABULARY)
    assert (job.patient_id, job.row_key, job.warnings) == ("P7", "café.png", ())


def test_a_run_gives_a_latin1_file_its_metadata_row(tmp_path, tiny_bundle, monkeypatch):
    monkeypatch.setenv("SCREEN_BUNDLE", str(tmp_path / "no-such-bundle"))
    images = tmp_path / "images"
    write_image(images / "x.jpg", lesion_rgb(0, size=64))
    os.rename(images / "x.jpg", images / os.fsdecode(b"caf\xe9.jpg"))
    meta = csv_file(tmp_path, b"image,patient_id,age,sex,site\ncaf\xe9.jpg,P7,45,female,back\n")
    out = tmp_path / "results.csv"
    result = CliRunner().invoke(cli, ["folder", str(images), "--meta", str(meta), "--out", str(out), "--bundle",
                                      str(tiny_bundle), "--backend", "onnxruntime", "--quiet"])
    assert result.exit_code == 0, result.output
    line = out.read_text(encoding="utf-8-sig").splitlines()[1]
    assert line.startswith("1,caf\\xe9.jpg,P7,") and "no metadata row" not in line
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert (summary["images_without_metadata"], summary["metadata_rows_without_image"]) == (0, [])


# -- whatever the names and encodings --------------------------------------------------------------

# Letters Windows-1252 holds (one of them, €, where Latin-1 has a control character), in both cases.
_LETTERS = st.sampled_from(list("aAeEéÉüÜøØßñÑ€ç_-0"))
_FILES = st.lists(st.tuples(st.lists(_LETTERS, min_size=1, max_size=6).map("".join), st.booleans()),
                  min_size=1, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=_FILES, csv_encoding=st.sampled_from(["utf-8", "cp1252"]))
def test_every_file_finds_its_own_row_whatever_encoding_its_name_and_the_csv_are_in(tmp_path_factory, files,
                                                                                     csv_encoding):
    """Each file is named in UTF-8 or in Windows-1252 bytes; the CSV, in either, names each file
    once. Every file gets its own row, but a key that fits two files (their names read alike)
    goes to neither: no file ever gets another file's row."""
    names: dict[str, tuple[int, bool]] = {}  # text -> (age, named in legacy bytes)
    for stem, legacy in files:
        names.setdefault(stem + ".jpg", (len(names), legacy))
    images = {}
    for name, (age, legacy) in names.items():
        raw = name.encode("cp1252" if legacy else "utf-8")
        if legacy and not name.isascii():
            try:
                raw.decode("utf-8")
                assume(False)  # these bytes happen to be UTF-8: the OS reads another name, nothing to test
            except UnicodeDecodeError:
                pass
        images[as_os_names(raw)] = age
    lines = ["image,age"] + [f"{name},{age}" for name, (age, _) in names.items()]
    path = tmp_path_factory.mktemp("p") / "patients.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode(csv_encoding))
    table = read_patients(path, images=list(images))
    for image, age in images.items():
        assert table.match(image).row is not None and table.match(image).row.age == str(age), (image, table.warnings)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stem=st.lists(_LETTERS, min_size=1, max_size=6).map("".join).filter(lambda s: not s.isascii()))
def test_the_same_text_in_two_encodings_is_ambiguous_never_guessed(tmp_path_factory, stem):
    name = stem + ".jpg"
    legacy = as_os_names(name.encode("cp1252"))
    assume(any("\udc80" <= c <= "\udcff" for c in legacy))  # not bytes that happen to be UTF-8 (É€ is ɀ)
    path = tmp_path_factory.mktemp("p") / "patients.csv"
    path.write_bytes(f"image,age\n{name},1\n".encode("cp1252"))
    nfd = unicodedata.normalize("NFD", name)  # the UTF-8 one as macOS names it: still the same text
    table = read_patients(path, images=[nfd, legacy])
    assert table.match(nfd).row is None and table.match(legacy).row is None
    assert "is ambiguous, it matches 2 images" in table.match(legacy).warnings[0]
