"""Tests for screening.patients: reading the metadata CSV and matching rows to images."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from screening.errors import MetadataError
from screening.metadata import DEFAULT_VOCABULARY
from screening.patients import Match, read_patients

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"


def write(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "patients.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(MetadataError) as caught:
        read_patients(path)
    return str(caught.value)


# -- reading the file -------------------------------------------------------------------------

def test_plain_csv_fields_and_extra_columns(tmp_path):
    path = write(tmp_path, "image,patient_id,age,sex,site,clinic,note\n"
                           "ISIC_001,P1,45,female,back,North,first visit\n"
                           "ISIC_002,P2,,male,face,South,\n")
    table = read_patients(path)

    row = table.match("ISIC_001.jpg").row
    assert (row.key, row.patient_id, row.age, row.sex, row.site) == \
        ("ISIC_001", "P1", "45", "female", "back")
    assert row.extra == {"clinic": "North", "note": "first visit"}
    assert list(row.extra) == ["clinic", "note"]
    assert table.match("ISIC_002.jpg").row.age is None  # empty cell -> None
    assert table.columns_found == {"key": "image", "patient_id": "patient_id", "age": "age",
                                   "sex": "sex", "site": "site"}
    assert table.extra_columns == ["clinic", "note"]
    assert len(table) == 2 and table.warnings == []


def test_raw_values_feed_the_metadata_encoder(tmp_path):
    table = read_patients(write(tmp_path, "image,age,sex,site\nA,47,F,Lower Extremity\n"))
    row = table.match("A.png").row
    vector, warnings = DEFAULT_VOCABULARY.encode(row.age, row.sex, row.site)
    assert warnings == [] and vector.sum() == 3


def test_utf8_bom_and_upper_case_headers_with_spaces(tmp_path):
    path = write(tmp_path, "\ufeff Image ID ;  AGE_APPROX; Sex ;Anatom_Site_General\n"
                           "ISIC_001;50;male;head/neck\n")
    table = read_patients(path)
    row = table.match("ISIC_001.jpg").row
    assert (row.age, row.sex, row.site) == ("50", "male", "head/neck")
    assert table.columns_found == {"key": "Image ID", "age": "AGE_APPROX", "sex": "Sex",
                                   "site": "Anatom_Site_General"}


def test_semicolon_delimiter_with_decimal_commas(tmp_path):
    table = read_patients(write(tmp_path, "image;age;weight\nA;45;70,5\n"))
    row = table.match("A.jpg").row
    assert (row.age, row.extra) == ("45", {"weight": "70,5"})


def test_tab_delimiter(tmp_path):
    table = read_patients(write(tmp_path, "isic_id\tsex\nA\tmale\n"))
    assert table.match("A.jpg").row.sex == "male"


def test_ids_keep_leading_zeros_and_stay_text(tmp_path):
    table = read_patients(write(tmp_path, "image,patient_id,age\n0012,007,45.0\n1e5,00,NA\n"))
    row = table.match("0012.jpg").row
    assert (row.key, row.patient_id, row.age) == ("0012", "007", "45.0")
    other = table.match("1e5.png").row
    assert (other.key, other.patient_id, other.age) == ("1e5", "00", "NA")
    assert table.match("12.jpg").row is None


@pytest.mark.parametrize("header,field", [
    ("image_name", "key"), ("isic_id", "key"), ("age_approx", "age"),
    ("anatom_site_general_challenge", "site"), ("localization", "site"),
])
def test_alias_columns(tmp_path, header, field):
    text = f"{header}\nA\n" if field == "key" else f"image,{header}\nA,x\n"
    table = read_patients(write(tmp_path, text))
    assert table.columns_found[field] == header
    assert table.extra_columns == []


def test_first_alias_in_priority_order_wins_and_others_are_extra(tmp_path):
    path = write(tmp_path, "isic_id,image_id,age_approx,age,localization,site\n"
                           "I1,IMG1,40,45,face,back\n")
    table = read_patients(path)
    assert table.columns_found == {"key": "image_id", "age": "age", "site": "site"}
    row = table.match("IMG1.jpg").row
    assert (row.age, row.site) == ("45", "back")
    assert row.extra == {"isic_id": "I1", "age_approx": "40", "localization": "face"}


def test_excel_separator_hint_line(tmp_path):
    table = read_patients(write(tmp_path, "sep=;\r\nimage;age\r\nA;45\r\n"))
    assert table.columns_found == {"key": "image", "age": "age"}
    assert table.match("A.jpg").row.age == "45"


def test_quoted_cells_with_delimiters(tmp_path):
    table = read_patients(write(tmp_path, 'image,note\nA,"back, left side"\n'))
    assert table.match("A.jpg").row.extra == {"note": "back, left side"}


def test_latin1_file_is_read_with_a_warning(tmp_path):
    path = write(tmp_path, "image,site,médecin\nA,épaule,Dr Müller\n", encoding="cp1252")
    table = read_patients(path)
    assert table.match("A.jpg").row.extra == {"médecin": "Dr Müller"}
    assert table.warnings == [f"metadata CSV {path} is not UTF-8 (lines 1, 2 are not UTF-8); read it "
                              f"as Windows-1252"]


def test_one_stray_byte_keeps_a_utf8_file_utf8_and_names_its_line(tmp_path):
    # An ANSI-typed name pasted into a UTF-8 sheet: the other accented keys must survive.
    text = "image,age\nÉlodie_1,40\nJosé_2,50\nZoë_3,60\n".encode("utf-8") + "Müller_4,70\n".encode("cp1252")
    path = tmp_path / "patients.csv"
    path.write_bytes(text)
    table = read_patients(path, images=["Élodie_1.jpg", "José_2.jpg", "Zoë_3.jpg", "Müller_4.jpg"])
    assert [table.match(name).row.age for name in ("Élodie_1.jpg", "José_2.jpg", "Zoë_3.jpg", "Müller_4.jpg")] \
        == ["40", "50", "60", "70"]
    assert table.warnings == [f"metadata CSV {path} is UTF-8 but line 5 is not: read it as Windows-1252 "
                              f"(check the names there)"]


def test_ansi_file_with_more_failing_lines_than_utf8_ones_is_read_as_ansi(tmp_path):
    text = "image,site\nA,épaule\nB,genou\nC,tête\n".encode("cp1252")
    table = read_patients(write_bytes(tmp_path, text))
    assert [table.match(k + ".jpg").row.site for k in "ABC"] == ["épaule", "genou", "tête"]
    assert "is not UTF-8 (lines 2, 4 are not UTF-8); read it as Windows-1252" in table.warnings[0]


def test_a_bom_on_a_file_read_as_ansi_does_not_hide_the_header(tmp_path):
    """A UTF-8 BOM, then lines an ANSI program added: still the image column, not "ï»¿image"."""
    text = b"\xef\xbb\xbf" + "image,site\nA,épaule\nB,genou\nC,tête\n".encode("cp1252")
    table = read_patients(write_bytes(tmp_path, text))
    assert [table.match(k + ".jpg").row.site for k in "ABC"] == ["épaule", "genou", "tête"]


def write_bytes(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "patients.csv"
    path.write_bytes(data)
    return path


def test_utf16_file_from_excel(tmp_path):
    table = read_patients(write(tmp_path, "image\tage\nA\t33\n", encoding="utf-16"))
    assert table.match("A.jpg").row.age == "33"


@pytest.mark.parametrize("encoding", ["utf-32", "utf-32-be"])
def test_utf32_file_is_read_not_taken_for_utf16(tmp_path, encoding):
    """UTF-32's byte order mark begins like UTF-16's: read as UTF-16 every header held NULs
    ("no image column ...: \x00i\x00m...")."""
    text = "image,age\nA,33\n"
    data = text.encode(encoding) if encoding == "utf-32" else b"\x00\x00\xfe\xff" + text.encode(encoding)
    table = read_patients(write_bytes(tmp_path, data))
    assert table.match("A.jpg").row.age == "33"


def test_blank_lines_short_rows_and_trailing_empty_cells(tmp_path):
    path = write(tmp_path, "\n\nimage,age,sex\nA,40\n\n,,\nB,50,male,,\n")
    table = read_patients(path)
    assert table.match("A.jpg").row.sex is None
    assert table.match("B.jpg").row.sex == "male"
    assert [row.line for row in table.rows] == [4, 7]


def test_a_file_cut_short_mid_row_says_so_on_that_row(tmp_path):
    """An export still being written when the night reads it ends mid-row: 'B,4' of 'B,45,male,back'.
    Its age 4 was used as the patient's (bin 0-9) with only 'sex unknown; site unknown' to show for
    it. The row is still used, as a short last row may be typed so, but it and the run say why."""
    table = read_patients(write(tmp_path, "image,age,sex,site\nA,45,female,back\nB,4"), images=["A.jpg", "B.jpg"])
    assert table.match("B.jpg").row.age == "4"
    assert table.match("B.jpg").warnings == [
        "its metadata row (line 3) has 2 of 4 cells and the file ends there without a line break: was the "
        "file copied while it was written? Check this row's values"]
    assert table.match("A.jpg").warnings == []
    assert table.warnings == [f"metadata CSV {tmp_path / 'patients.csv'} ends mid-row (line 3 has 2 of 4 cells "
                              f"and no line break): was it copied while it was written?"]
    ended = read_patients(write(tmp_path, "image,age,sex,site\nA,45,female,back\nB,4\n"), images=["B.jpg"])
    assert ended.match("B.jpg").warnings == [] and ended.warnings == []  # a short row, as typed


def test_rows_without_key_are_skipped_with_a_warning(tmp_path):
    table = read_patients(write(tmp_path, "image,age\n,40\n  ,50\nA,60\n"))
    assert len(table) == 1
    assert table.warnings == ["2 metadata rows with an empty image cell skipped"]


def test_column_without_header_is_ignored_with_a_warning(tmp_path):
    path = write(tmp_path, ",image,age\n0,A,40\n")
    table = read_patients(path)
    assert table.extra_columns == [] and table.match("A.jpg").row.age == "40"
    assert table.warnings == [f"column 1 of metadata CSV {path} has no header and was ignored"]


# -- errors that stop the run -----------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    assert error_of(path) == f"metadata file not found: {path}"


def test_empty_file(tmp_path):
    path = write(tmp_path, "")
    assert error_of(path) == f"cannot read metadata CSV {path}: the file is empty"
    for blank in (" \n\n", ",,\n,,,\n"):
        assert error_of(write(tmp_path, blank)) == \
            f"cannot read metadata CSV {path}: the file is empty"


def test_folder_instead_of_file(tmp_path):
    assert error_of(tmp_path) == f"cannot read metadata CSV {tmp_path}: it is a folder"


def test_binary_file(tmp_path):
    path = tmp_path / "patients.xlsx"
    path.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00")
    assert error_of(path) == (f"cannot read metadata CSV {path}: it contains binary data, not "
                              "text (save the sheet as CSV)")


def test_a_file_far_larger_than_any_patients_csv_is_refused_before_it_fills_memory(tmp_path, monkeypatch):
    """--meta pointed at a disk image, a video or /dev/zero was read whole into memory (with no
    end for a device): the night was killed for memory with no line saying why."""
    import screening.patients as patients

    monkeypatch.setattr(patients, "MAX_METADATA_BYTES", 64 * 1024, raising=False)
    path = write(tmp_path, "image,age\n" + "".join(f"img_{i:06d}.jpg,40\n" for i in range(8000)))
    assert path.stat().st_size > 64 * 1024
    assert error_of(path) == (f"cannot read metadata CSV {path}: it is larger than 64 KiB, which no "
                              "patients CSV is (is it the right file?)")


@pytest.mark.parametrize("columns, message", [
    ({"age": "Alter", "sex": "Alter"}, "--column sex=Alter: column 'Alter' is already the age column"),
    ({"age": "Bild"}, "--column age=Bild: column 'Bild' is already the image column"),
    ({"sex": "age"}, "--column sex=age: column 'age' is already the age column"),
    ({"key": "age"}, "--column image=age: column 'age' is already the age column"),
])
def test_one_column_named_for_two_fields_is_refused(tmp_path, columns, message):
    """The second field was dropped without a word: --column sex=Alter beside age=Alter left every
    patient's sex unknown; --column sex=age gave sex the ages and age nothing."""
    path = write(tmp_path, "Bild,Alter,age\na.jpg,40,50\n")
    with pytest.raises(MetadataError) as caught:
        read_patients(path, columns={"key": "Bild"} | columns)
    assert str(caught.value).startswith(message)


def test_no_key_column(tmp_path):
    path = write(tmp_path, "Patient,Age ,sex\nP1,40,male\n")
    assert error_of(path) == (f"metadata CSV {path} has no image column: expected one of image, "
                              "image_id, image_name, isic_id; found: Patient, Age, sex")


def test_row_with_too_many_cells(tmp_path):
    path = write(tmp_path, "image,age\nA,40\nB,4,5\n")
    assert error_of(path) == (f"cannot read metadata CSV {path}: line 3 has 3 cells but the "
                              "header has 2")


def test_duplicate_column(tmp_path):
    path = write(tmp_path, "image,Age,age\nA,1,2\n")
    assert error_of(path) == f"cannot read metadata CSV {path}: column 'age' appears twice"


def test_unterminated_quote(tmp_path):
    path = write(tmp_path, 'image,note\nA,"open\n')
    assert error_of(path) == f"cannot read metadata CSV {path}: line 2: unexpected end of data"


# -- matching keys to images ------------------------------------------------------------------

KEYS = ("image\nISIC_001\nISIC_002.jpg\nsub/ISIC_003\nsub\\ISIC_004.PNG\n./top/deep/ISIC_005.jpg\n"
        "isic_006\n")


@pytest.mark.parametrize("image,key", [
    ("ISIC_001.jpg", "ISIC_001"),  # key is the stem
    ("ISIC_002.jpg", "ISIC_002.jpg"),  # key is the file name
    ("sub/ISIC_003.jpeg", "sub/ISIC_003"),  # key is the path without extension
    ("sub/ISIC_004.png", "sub\\ISIC_004.PNG"),  # Windows slashes, other case
    ("top/deep/ISIC_005.jpg", "./top/deep/ISIC_005.jpg"),
    ("other/ISIC_001.tif", "ISIC_001"),  # a stem key reaches into sub-folders
    ("ISIC_006.JPG", "isic_006"),  # case-insensitive
])
def test_key_spellings_match(tmp_path, image, key):
    match = read_patients(write(tmp_path, KEYS)).match(image)
    assert match.row.key == key and match.warnings == []


@pytest.mark.parametrize("image", ["ISIC_002.png", "other/ISIC_003.jpg", "ISIC_0011.jpg"])
def test_keys_do_not_match_other_files(tmp_path, image):
    match = read_patients(write(tmp_path, KEYS)).match(image)
    assert match.row is None and match.warnings == ["no metadata row"]


def test_most_specific_key_wins(tmp_path):
    path = write(tmp_path, "image,age\nA,1\nsub/A,2\nsub/A.jpg,3\nA.jpg,4\n")
    images = ["A.jpg", "sub/A.jpg", "x/A.jpg"]
    table = read_patients(path, images=images)
    assert [table.match(image).row.age for image in images[:2]] == ["4", "3"]
    # 'A' is the stem of A.jpg (taken by 'A.jpg') but at top level it is A.jpg's path
    # without extension, so it never reaches down into x/.
    assert table.match("x/A.jpg").row is None


def test_stem_matching_two_subfolders_is_ambiguous(tmp_path):
    path = write(tmp_path, "image,age\nISIC_7,50\nb/ISIC_8,60\nISIC_8,70\n")
    images = ["a/ISIC_7.jpg", "b/ISIC_7.jpg", "a/ISIC_8.jpg", "b/ISIC_8.jpg"]
    table = read_patients(path, images=images)

    for image in images[:2]:
        match = table.match(image)
        assert match.row is None
        assert match.warnings == ["no metadata row: key 'ISIC_7' is ambiguous, it matches 2 "
                                  "images (a/ISIC_7.jpg, b/ISIC_7.jpg)"]
    assert table.match("b/ISIC_8.jpg").row.age == "60"  # its own, more specific key
    assert table.match("a/ISIC_8.jpg").row is None  # 'ISIC_8' still fits both: no guess
    assert table.unmatched_keys(["b/ISIC_8"]) == ["ISIC_7", "ISIC_8"]


def test_ambiguous_listing_is_shortened(tmp_path):
    images = [f"{folder}/X.jpg" for folder in "abcde"]
    table = read_patients(write(tmp_path, "image\nX\n"), images=images)
    assert table.match("c/X.jpg").warnings == [
        "no metadata row: key 'X' is ambiguous, it matches 5 images "
        "(a/X.jpg, b/X.jpg, c/X.jpg and 2 more)"]


def test_same_stem_different_extension_is_ambiguous(tmp_path):
    table = read_patients(write(tmp_path, "image\nL1\n"), images=["L1.jpg", "L1.png"])
    assert table.match("L1.png").row is None


def test_duplicate_keys_first_row_wins(tmp_path):
    path = write(tmp_path, "image,age\nISIC_001,40\nISIC_002,41\nISIC_001,99\n ISIC_001 ,98\nisic_001,97\n")
    table = read_patients(path)
    match = table.match("ISIC_001.jpg")
    assert match.row.age == "40"
    assert match.warnings == ["3 metadata rows for key 'ISIC_001', used the first",
                              "metadata key 'isic_001' also fits this image, used the more specific 'ISIC_001'"]
    # another letter case is another key, not a duplicate: it may be another file's row
    assert table.duplicate_keys == {"ISIC_001": 3}
    assert table.match("ISIC_002.jpg").warnings == []
    assert [row.key for row in table.rows] == ["ISIC_001", "ISIC_002", "isic_001"]


def test_two_spellings_of_one_image_use_the_more_specific(tmp_path):
    table = read_patients(write(tmp_path, "image,age\nISIC_001,40\nISIC_001.jpg,41\n"))
    match = table.match("ISIC_001.jpg")
    assert match.row.age == "41"
    assert match.warnings == ["metadata key 'ISIC_001' also fits this image, used the more "
                              "specific 'ISIC_001.jpg'"]
    assert table.unmatched_keys([match.row.key]) == ["ISIC_001"]


def test_unmatched_keys_in_file_order(tmp_path):
    table = read_patients(write(tmp_path, "image\nC\nA\nB\nsub/D.jpg\n"))
    used = [table.match(image).row.key for image in ["A.jpg", "sub/D.jpg"]]
    assert table.unmatched_keys(used) == ["C", "B"]
    assert table.unmatched_keys(["sub\\D.jpg"]) == ["C", "A", "B"]


def test_match_of_an_image_not_in_the_list(tmp_path):
    table = read_patients(write(tmp_path, "image,age\nX,5\nX.png,6\n"), images=["a/X.jpg"])
    match = table.match("zz/X.png")
    assert match.row.age == "6"
    assert match.warnings == ["metadata key 'X' also fits this image, used the more specific "
                              "'X.png'"]


def test_without_image_list_each_image_matches_on_its_own(tmp_path):
    table = read_patients(write(tmp_path, "image,age\nX,5\n"))
    assert [table.match(image).row.age for image in ("a/X.jpg", "b/X.jpg")] == ["5", "5"]


def test_exact_key_beats_a_case_folded_one_and_case_twins_get_their_own_rows(tmp_path):
    table = read_patients(write(tmp_path, "image,age\nA.jpg,1\na.jpg,2\nB.JPG,3\n"),
                          images=["A.jpg", "a.jpg", "b.jpg"])
    assert [table.match(name).row.age for name in ("A.jpg", "a.jpg", "b.jpg")] == ["1", "2", "3"]
    assert table.match("A.jpg").warnings == [] and table.match("a.jpg").warnings == []


def test_exact_stem_beats_a_case_folded_file_name(tmp_path):
    table = read_patients(write(tmp_path, "image,age\nX,1\nx.JPG,2\n"), images=["X.jpg"])
    match = table.match("X.jpg")
    assert match.row.age == "1"
    assert match.warnings == ["metadata key 'x.JPG' also fits this image, used the more specific 'X'"]


def test_two_keys_equally_close_in_any_case_are_not_guessed(tmp_path):
    table = read_patients(write(tmp_path, "image,age\nB.jpg,1\nb.JPG,2\n"), images=["b.jpg"])
    assert table.match("b.jpg") == Match(None, ["no metadata row: keys 'B.jpg' and 'b.JPG' fit this "
                                                "image equally well (path, any case)"])


def test_unicode_normalisation_does_not_separate_a_key_from_its_file(tmp_path):
    nfd = unicodedata.normalize("NFD", "Café_Ødegård.jpg")  # as macOS names the file
    table = read_patients(write(tmp_path, "image,age\n" + unicodedata.normalize("NFC", "Café_Ødegård") + ",44\n"),
                          images=[nfd])
    assert table.match(nfd).row.age == "44"


# Names differing in case, accents and their normal form: the hostile cases of one family.
_LETTERS = st.sampled_from(list("aAbBeEéÉiIßẞﬁ_-.0") + ["e\u0301", "E\u0301"])
_NAMES = st.lists(st.lists(_LETTERS, min_size=1, max_size=6).map("".join), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stems=_NAMES, nfd_csv=st.booleans())
def test_every_file_finds_its_own_exact_row(tmp_path_factory, stems, nfd_csv):
    """Whatever the names, a file whose exact name is a key gets that key's row."""
    names = {}
    for stem in stems:
        name = unicodedata.normalize("NFC", stem.strip(".")) + ".jpg"
        names.setdefault(name, len(names))
    form = "NFD" if nfd_csv else "NFC"
    lines = ["image,age"] + [f"{unicodedata.normalize(form, name)},{age}" for name, age in names.items()]
    path = tmp_path_factory.mktemp("p") / "patients.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    images = [unicodedata.normalize("NFD", name) for name in names]  # files named as macOS does
    table = read_patients(path, images=images)
    for image, age in zip(images, names.values()):
        assert table.match(image).row is not None and table.match(image).row.age == str(age)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.text(st.sampled_from(list("abcéøü漢字_")), min_size=1, max_size=5),
                     min_size=2, max_size=10, unique=True),
       stray=st.integers(0, 255).filter(lambda b: b >= 0x80), where=st.integers(0, 100))
def test_one_stray_byte_never_loses_the_other_non_ascii_keys(tmp_path_factory, keys, stray, where):
    lines = [b"image,age"] + [f"{key},{n}".encode("utf-8") for n, key in enumerate(keys)]
    bad = 1 + where % len(keys)
    if not any(not k.isascii() for i, k in enumerate(keys) if i + 1 != bad):
        return  # no other non-ASCII key to lose
    lines[bad] = f"x{where}".encode() + bytes([stray]) + b",99"
    path = tmp_path_factory.mktemp("p") / "patients.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    try:
        path.read_bytes().decode("utf-8")
        return  # the byte happened to complete valid UTF-8: nothing to test
    except UnicodeDecodeError:
        pass
    table = read_patients(path)
    for n, key in enumerate(keys):
        if n + 1 != bad:
            assert table.match(key + ".png").row.age == str(n)
    assert f"line {bad + 1} is not" in table.warnings[0]


# -- real metadata tables ---------------------------------------------------------------------

@pytest.mark.data
@pytest.mark.skipif(not (DATA / "ham10000_dev").is_dir(), reason="../shared/data is absent")
def test_ham10000_labels_match_their_image_files():
    folder = DATA / "ham10000_dev"
    images = sorted(p.relative_to(folder).as_posix() for p in (folder / "images").glob("*.jpg"))
    table = read_patients(folder / "labels.csv", images=images)
    assert table.columns_found["key"] == "image_id"
    assert table.columns_found["site"] == "site"
    assert "diagnosis" in table.extra_columns
    matched = [table.match(image) for image in images]
    assert all(m.row is not None and m.warnings == [] for m in matched)
    assert table.unmatched_keys(m.row.key for m in matched) == []


@pytest.mark.data
@pytest.mark.skipif(not (DATA / "isic_metadata").is_dir(), reason="../shared/data is absent")
def test_isic_2020_ground_truth_uses_its_own_column_names():
    table = read_patients(DATA / "isic_metadata" / "ISIC_2020_Training_GroundTruth.csv")
    assert table.columns_found["age"] == "age_approx"
    assert table.columns_found["site"] == "anatom_site_general_challenge"
    assert len(table) > 30000 and table.duplicate_keys == {}


@settings(max_examples=200, deadline=None)
@given(header=st.sampled_from([b"image,age,sex,site\n", b"\xef\xbb\xbfimage;age;sex;site\r\n", b"sep=;\n", b""]),
       data=st.binary(max_size=300))
@example(header=b"", data=b'"im\nage",age\na.jpg,1\n')  # a line break inside a quoted header
@example(header=b"", data=b'image,"x\ny","x\ny"\na.jpg,1,2\n')
def test_any_bytes_as_a_patients_csv_give_a_table_or_one_line_naming_the_file(tmp_path_factory, header, data):
    """A truncated, binary or half-edited file: the reader's contract is a table, or a
    MetadataError in one line that names the file, never another exception."""
    path = tmp_path_factory.mktemp("fuzz") / "patients.csv"
    path.write_bytes(header + data)
    try:
        table = read_patients(path, images=["a.jpg", "sub/b.jpg"])
    except MetadataError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return
    for image in ("a.jpg", "sub/b.jpg"):
        match = table.match(image)
        assert match.row is None or isinstance(match.row.key, str)
        assert all("\n" not in warning for warning in match.warnings)
