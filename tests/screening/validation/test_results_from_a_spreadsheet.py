"""Results read back for `screen evaluate` / `screen calibrate` after a spreadsheet, a cut-off copy or a
later run had them: every probability is the one screening wrote, or the file is refused in one line."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from screening.errors import InputError
from screening.results import neutralise, original_text
from screening.validation.scores import CSV_ZERO, read_scores


def _rows(data) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.results.read_text(encoding="utf-8-sig"))))


def _write(data, rows: list[list[str]], delimiter: str = ",") -> None:
    with open(data.results, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)


def _csv_only(data):
    """The results CSV alone: its journal removed, as when only the CSV was copied off the machine."""
    data.results.with_name("results.csv.journal").unlink(missing_ok=True)
    return data


def _expected(data, image: str) -> np.ndarray:
    return np.maximum(data.probabilities[data.images.index(image)], CSV_ZERO)


def test_a_journal_a_later_run_rewrote_does_not_replace_the_csv_the_clinic_saw(synthetic):
    """`--resume` on a folder where one picture was replaced, killed before its CSV: the journal's
    newer line for that image is not the result in this CSV, and must not be evaluated as it."""
    data = synthetic(n=40)
    journal = data.results.with_name("results.csv.journal")
    line = json.loads(journal.read_text().splitlines()[1])
    line.update(fingerprint="the new picture", probabilities=[0.0, 0.0, 0.0, 1.0], risk=1.0)
    with open(journal, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
    scores = read_scores(data.results, data.manifest)
    image = line["image"]
    np.testing.assert_array_equal(scores.probabilities[scores.images.index(image)], _expected(data, image))
    assert scores.precision == "CSV (6 decimals)"


def test_an_excel_csv_with_semicolons_and_decimal_commas_reads_the_same_numbers(synthetic):
    data = _csv_only(synthetic(n=40))
    before = read_scores(data.results, data.manifest)
    rows = _rows(data)
    numeric = [i for i, name in enumerate(rows[0]) if name.startswith("p_") or name in ("risk", "confidence")]
    _write(data, [rows[0]] + [[c.replace(".", ",") if i in numeric else c for i, c in enumerate(r)]
                              for r in rows[1:]], delimiter=";")
    after = read_scores(data.results, data.manifest)
    assert after.images == before.images
    np.testing.assert_array_equal(after.probabilities, before.probabilities)


@pytest.mark.parametrize("cell, why", [
    ("nan", "is not a probability"), ("-3", "is not a probability"), ("55", "is not a probability"),
    ("0.5", "sum to"),  # one cell retyped: the row no longer sums to 1
    ("", "is not a number"), ("12%", "is not a number"), ("'=0.5", "is not a number"),
])
def test_a_probability_that_is_not_the_one_screening_wrote_is_refused_naming_the_line(synthetic, cell, why):
    data = _csv_only(synthetic(n=40))
    rows = _rows(data)
    column = rows[0].index("p_mel")
    rows[3][column] = cell
    _write(data, rows)
    with pytest.raises(InputError) as error:
        read_scores(data.results, data.manifest)
    message = str(error.value)
    assert "\n" not in message and f"{data.results} line 4" in message and "p_mel" in message and why in message


def test_an_image_listed_twice_is_refused(synthetic):
    """Two results pasted together: the later row must not silently replace the earlier."""
    data = _csv_only(synthetic(n=40))
    rows = _rows(data)
    _write(data, rows + [rows[2]])
    with pytest.raises(InputError, match=rf"lists {rows[2][1]} twice \(lines 3, 42\)"):
        read_scores(data.results, data.manifest)


def test_a_results_csv_cut_short_mid_row_is_refused(synthetic):
    """A copy taken while the disk filled up: the last row's status and numbers are missing; it must
    not be counted as a screening error."""
    data = _csv_only(synthetic(n=40))
    text = data.results.read_text(encoding="utf-8-sig")
    data.results.write_text(text[:text.rfind(",ok,") - 10], encoding="utf-8")
    with pytest.raises(InputError, match=r"line 41 has \d+ cells, its header 18: the file is cut short"):
        read_scores(data.results, data.manifest)


_CELLS = st.one_of(st.text(max_size=8), st.sampled_from(["nan", "inf", "-0", "1e-06", "0,5", " 0.1", "'-1"]),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))


@pytest.fixture
def written(synthetic):
    """One run's results CSV (no journal) and its text, made once for all the examples."""
    data = _csv_only(synthetic(n=40))
    return data, data.results.read_text(encoding="utf-8-sig")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(1, 40), column=st.sampled_from(["p_nv", "p_bkl", "p_mel", "p_bcc"]), cell=_CELLS)
@example(row=2, column="p_nv", cell="1E-6")  # 0.000004 retyped in a row written summing to 1.000001
def test_any_retyped_probability_reads_as_written_or_is_refused_in_one_line(written, row, column, cell):
    data, text = written
    rows = list(csv.reader(io.StringIO(text)))
    image = rows[row][1]
    rows[row][rows[0].index(column)] = cell
    _write(data, rows)
    try:
        scores = read_scores(data.results, data.manifest)
    except InputError as error:
        assert "\n" not in str(error) and str(data.results) in str(error)
        return
    # Read: within the CSV's rounding of what screening wrote (a cell retyped as an equal number). The
    # sum check cannot see less than the row's own rounding slack either way: a row written summing to
    # 1.000001 may have one cell retyped from 0.000004 to 0.000001 (hypothesis found it) and still sum
    # to 1 within 4 half-steps, so a cell can move by up to 2 x 4 half-steps unseen.
    got = scores.probabilities[scores.images.index(image)]
    np.testing.assert_allclose(got, _expected(data, image), rtol=0, atol=4e-6 + 1e-9)


def test_a_semicolon_csv_whose_extra_column_name_holds_a_comma_is_still_read(synthetic):
    """Columns copied from the patients CSV may hold a comma in their header ('notes, free text')."""
    data = _csv_only(synthetic(n=20))
    before = read_scores(data.results, data.manifest)
    rows = _rows(data)
    rows = [row + [cell] for row, cell in zip(rows, ["notes, free text"] + [""] * (len(rows) - 1))]
    _write(data, [[c.replace(".", ",") if r and c[:2] in ("0.", "1.") else c for c in r] for r in rows],
           delimiter=";")
    np.testing.assert_array_equal(read_scores(data.results, data.manifest).probabilities, before.probabilities)


def test_a_damaged_journal_line_is_left_out_like_a_torn_one_never_read_as_scores(synthetic):
    """A journal alone (a run killed before its CSV) with a line damaged by hand or disk: a
    probability that is NaN, or three probabilities for four classes. Read unchecked, the first
    became a NaN in every figure and the second a crash; each such line is left out, as screening
    leaves it out (its image is screened again by --resume)."""
    data = synthetic(n=40)
    journal = data.results.with_name("results.csv.journal")
    lines = journal.read_text().splitlines()
    nan, short = json.loads(lines[1]), json.loads(lines[2])
    nan["probabilities"][0] = float("nan")
    short["probabilities"] = short["probabilities"][:3]
    journal.write_text("\n".join([lines[0], json.dumps(nan), json.dumps(short), *lines[3:]]) + "\n")
    data.results.unlink()
    scores = read_scores(journal, data.manifest)
    assert len(scores.images) == 38 and nan["image"] not in scores.images and short["image"] not in scores.images
    assert np.isfinite(scores.probabilities).all()


def test_a_journal_risk_changed_by_hand_is_left_out_not_scored(synthetic):
    """A risk still between 0 and 1 but no longer the sum of the malignant probabilities the
    header names: scored, it would move the malignant AUC with a number screening never wrote."""
    data = synthetic(n=40)
    journal = data.results.with_name("results.csv.journal")
    lines = journal.read_text().splitlines()
    assert json.loads(lines[0]).get("malignant")  # the run recorded them
    changed = json.loads(lines[1])
    changed["risk"] = round(changed["risk"] / 4, 6)
    journal.write_text("\n".join([lines[0], json.dumps(changed), *lines[2:]]) + "\n")
    data.results.unlink()
    scores = read_scores(journal, data.manifest)
    assert len(scores.images) == 39 and changed["image"] not in scores.images


def _lower_a_benign_probability(line: dict, malignant: list[int]) -> None:
    """A benign probability that is not the most likely one, halved: the risk, prediction and
    confidence still agree with the probabilities, so only the line's checksum can tell."""
    probabilities = line["probabilities"]
    top = probabilities.index(max(probabilities))
    at = next(i for i, p in enumerate(probabilities) if i not in malignant and i != top and p > 0)
    probabilities[at] = round(probabilities[at] / 2, 6)


def test_a_journal_line_changed_into_other_valid_numbers_is_left_out_naming_its_line(synthetic):
    """A network share flipping a digit of a benign probability: the line is still JSON and its
    risk still the sum of its malignant probabilities, but it is not what screening wrote; scored,
    it would move the per-class AUCs. It is left out, with the line named, as a damaged line is."""
    data = synthetic(n=40)
    journal = data.results.with_name("results.csv.journal")
    lines = journal.read_text().splitlines()
    changed = json.loads(lines[1])
    _lower_a_benign_probability(changed, json.loads(lines[0])["malignant"])
    journal.write_text("\n".join([lines[0], json.dumps(changed), *lines[2:]]) + "\n")
    data.results.unlink()
    scores = read_scores(journal, data.manifest)
    assert len(scores.images) == 39 and changed["image"] not in scores.images
    assert [w for w in scores.warnings if "line 2" in w] == [
        f"{journal} line 2 ({changed['image']}) is damaged (checksum {changed['checksum']!r} does not match the "
        f"line (changed since it was written)): {changed['image']} is left out, not scored on an earlier line"]


def test_a_journal_line_whose_image_name_was_changed_lends_its_scores_to_no_other_image(synthetic):
    """The last line's image renamed to the first line's (a flipped byte in a name): as the later
    line, it would have become the first image's scores. It is damaged, so the first image is
    left out with a warning naming the line, never scored with another picture's probabilities."""
    data = synthetic(n=20)
    journal = data.results.with_name("results.csv.journal")
    lines = journal.read_text().splitlines()
    first, last = json.loads(lines[1]), json.loads(lines[-1])
    last["image"] = first["image"]
    journal.write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    data.results.unlink()
    scores = read_scores(journal, data.manifest)
    assert first["image"] not in scores.images and len(scores.images) == 18
    assert any(f"line {len(lines)} ({first['image']}) is damaged (checksum" in w for w in scores.warnings)


def test_a_journal_line_whose_checksum_was_cut_off_is_left_out(synthetic):
    """The header says every line has a checksum: a line without one was cut or edited since."""
    data = synthetic(n=20)
    journal = data.results.with_name("results.csv.journal")
    lines = journal.read_text().splitlines()
    stripped = {k: v for k, v in json.loads(lines[1]).items() if k != "checksum"}
    journal.write_text("\n".join([lines[0], json.dumps(stripped), *lines[2:]]) + "\n")
    data.results.unlink()
    scores = read_scores(journal, data.manifest)
    assert len(scores.images) == 19 and stripped["image"] not in scores.images
    assert any("line 2" in w and "no checksum, though its journal's header says every line has one" in w
               for w in scores.warnings)


def test_a_journal_of_a_version_without_line_checksums_still_reads(synthetic):
    data = synthetic(n=20)
    journal = data.results.with_name("results.csv.journal")
    header, *lines = journal.read_text().splitlines()
    older = {k: v for k, v in json.loads(header).items() if k != "line_checksum"}
    unsummed = [json.dumps({k: v for k, v in json.loads(line).items() if k != "checksum"}) for line in lines]
    journal.write_text("\n".join([json.dumps(older), *unsummed]) + "\n")
    data.results.unlink()
    scores = read_scores(journal, data.manifest)
    assert len(scores.images) == 20 and not scores.warnings


@given(text=st.one_of(st.text(max_size=8), st.sampled_from(["-5", "'-5", "=1+1", "'=1+1", "@x", "+44 20", "-0.5"])))
def test_a_text_cell_reads_back_as_the_clinic_typed_it(text):
    """Image names and patient ids go through the CSV's formula neutralising and back unchanged;
    an apostrophe the clinic typed ('-5) is kept, as the report keeps it."""
    if text.startswith("'") and neutralise(text[1:]) == text:
        return  # neutralised text itself ('=1+1): the CSV cannot tell it from =1+1
    assert original_text(neutralise(text)) == text


def test_a_journal_of_another_version_is_not_read_as_this_one(synthetic):
    """The header is checked as screening checks it (JournalHeader.from_json): a journal written by a
    later screen, whose lines may mean something else, is refused rather than read as version 1."""
    data = synthetic(n=20)
    journal = data.results.with_name("results.csv.journal")
    lines = journal.read_text().splitlines()
    header = json.loads(lines[0])
    header["version"] = 2
    journal.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    data.results.unlink()
    with pytest.raises(InputError, match="is not a screening journal"):
        read_scores(journal, data.manifest)


def _rescreened_then_damaged(data, damage) -> tuple[str, int]:
    """A --resume that screened a replaced picture again and was killed: the image's new line is
    appended after its old one, then damaged (``damage`` edits the line). Returns the image and line."""
    journal = data.results.with_name("results.csv.journal")
    lines = journal.read_text().splitlines()
    newer = json.loads(lines[1])
    newer.update(fingerprint="the new picture", probabilities=[0.0, 0.0, 0.0, 1.0], risk=1.0, prediction="bcc")
    journal.write_text("\n".join([*lines, damage(json.dumps(newer))]) + "\n")
    return newer["image"], len(lines) + 1


@pytest.mark.parametrize("damage", [lambda line: line.replace('"risk": 1.0', '"risk": 1.7'),
                                    lambda line: line[:60]], ids=["risk out of range", "torn"])
def test_an_images_damaged_later_line_leaves_it_out_not_scored_on_its_older_line(synthetic, damage):
    """A journal alone: the image's latest line (of the file as it is now) is damaged. Its earlier
    line is the result of the file before it was replaced: scoring that against today's label
    would be wrong, so the image counts as unusable and a warning names the journal line."""
    data = synthetic(n=40)
    image, number = _rescreened_then_damaged(data, damage)
    data.results.unlink()
    journal = data.results.with_name("results.csv.journal")
    scores = read_scores(journal, data.manifest)
    assert image not in scores.images and scores.unusable == [image] and len(scores.images) == 39
    assert len(scores.warnings) == 1
    assert scores.warnings[0].startswith(f"{journal} line {number} ({image}) is damaged (")
    assert scores.warnings[0].endswith(f"): {image} is left out, not scored on an earlier line")


def test_a_torn_last_line_is_warned_of_as_torn_and_a_damaged_one_in_the_middle_as_damaged(synthetic):
    """A run stopped mid-write leaves its last line cut short, without a newline: the warning says
    so and what to do (--resume); a finished line damaged since keeps the word damaged."""
    data = synthetic(n=40)
    image, number = _rescreened_then_damaged(data, lambda line: line[:60])
    journal = data.results.with_name("results.csv.journal")
    lines = journal.read_text().splitlines()
    lines[3] = lines[3].replace('"image"', '"picture"')  # a middle line no longer fits
    journal.write_text("\n".join(lines))  # and the last one, cut, has no newline
    data.results.unlink()
    scores = read_scores(journal, data.manifest)
    assert image not in scores.images and scores.unusable == [image]
    assert scores.warnings == [
        f"{journal} line {number} ({image}) is torn (the run stopped while writing it; rerun with --resume): "
        f"{image} is left out, not scored on an earlier line",
        f"{journal} line 4 is damaged (unknown field 'picture'): it names no image: an image whose newer "
        f"result was on it is scored on its older line"]


def test_a_damaged_later_line_beside_the_csv_reads_the_csv_and_says_why(synthetic):
    """With its CSV, a journal whose latest line of an image is damaged no longer says what the CSV
    says (as with any newer line): the CSV's numbers are read, and the warning names the line."""
    data = synthetic(n=40)
    image, number = _rescreened_then_damaged(data, lambda line: line.replace('"risk": 1.0', '"risk": 1.7'))
    scores = read_scores(data.results, data.manifest)
    assert scores.precision == "CSV (6 decimals)" and scores.unusable == []
    np.testing.assert_array_equal(scores.probabilities[scores.images.index(image)], _expected(data, image))
    journal = data.results.with_name("results.csv.journal")
    assert scores.warnings == [f"{journal} line {number} ({image}) is damaged (risk 1.7 is not a number between "
                               f"0 and 1): scores read from the CSV, not the journal"]


def test_damaged_lines_that_name_no_image_are_warned_of(synthetic):
    """A line too damaged to say which image it was for cannot leave that image out: the user is
    told, with the line, that an image may be scored on an older line."""
    data = synthetic(n=40)
    journal = data.results.with_name("results.csv.journal")
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join([*lines[:3], "\x00\x00\x00", *lines[3:], '{"ima']) + "\n")
    data.results.unlink()
    scores = read_scores(journal, data.manifest)
    assert len(scores.images) == 40 and scores.unusable == []
    assert scores.warnings == [f"{journal} has 2 damaged lines (line 4 is damaged (not JSON (JSONDecodeError)); "
                               f"line 43 is damaged (not JSON (JSONDecodeError))): they name no image: an image "
                               f"whose newer result was on one is scored on its older line"]


def test_a_results_csv_saved_as_unicode_text_says_how_to_save_it(synthetic):
    """Saved as a spreadsheet's "Unicode text" (UTF-16), the message was the codec's ('utf-8' codec
    can't decode byte 0xff in position 0)."""
    data = _csv_only(synthetic(n=20))
    data.results.write_bytes(data.results.read_text(encoding="utf-8-sig").replace(",", "\t").encode("utf-16"))
    with pytest.raises(InputError) as raised:
        read_scores(data.results, data.manifest)
    assert "UTF-16" in str(raised.value) and "CSV UTF-8" in str(raised.value)
