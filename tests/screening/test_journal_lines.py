"""Journal lines are checked against the bundle before reuse: a line that does not fit is dropped."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from screening.journal import JournalHeader
from screening.journal_lines import (LINE_CHECKSUM, BadLine, Damage, content_checksum, damaged_lines_note, header_line,
                                     outcome_line, outcome_lines, read_outcome)
from screening.results import Outcome, error_outcome

CLASSES = ("nv", "bkl", "mel", "bcc")


def ok_line(**changes) -> bytes:
    data = {"image": "a.png", "fingerprint": "b2:00:1,1,1", "status": "ok",
            "probabilities": [0.1, 0.2, 0.3, 0.4], "risk": 0.7, "prediction": "bcc", "confidence": 0.4,
            "lesion_area": 0.25, "error": "", "warnings": []}
    data.update(changes)
    return json.dumps(data).encode()


def test_a_good_line_round_trips():
    outcome = Outcome(image="sub/é.png", fingerprint="b2:aa:1,0,2", status="ok", probabilities=(0.1, 0.2, 0.3, 0.4),
                      risk=0.7, prediction="bcc", confidence=0.4, lesion_area=0.25, warnings=("age unknown",))
    assert read_outcome(outcome.to_json().encode(), CLASSES) == outcome
    error = error_outcome("b.png", "b2:bb:0,0,0", "truncated image file")
    assert read_outcome(error.to_json().encode(), CLASSES) == error


@pytest.mark.parametrize("line, reason", [
    (ok_line(probabilities=[0.5, 0.5]), "2 probabilities for the bundle's 4 classes"),
    (ok_line(probabilities=[0.1, 0.2, 0.3, "0.4"]), "probability '0.4' is not a number between 0 and 1"),
    (ok_line(probabilities=[0.1, 0.2, 0.3, float("nan")]), "probability nan is not a number"),
    (ok_line(risk=1.5), "risk 1.5 is not a number between 0 and 1"),
    (ok_line(risk=None), "risk None is not a number"),
    (ok_line(confidence=True), "confidence True is not a number"),
    (ok_line(prediction="akiec"), "prediction 'akiec' is not one of the bundle's classes"),
    (ok_line(status="maybe"), "status 'maybe' is neither 'ok' nor 'error'"),
    (ok_line(image=""), "image is not a non-empty text"),
    (ok_line(image=7), "image is not a non-empty text"),
    (ok_line(warnings="x"), "warnings is not a list of texts"),
    (ok_line(extra_column=1), "unknown field 'extra_column'"),
    (ok_line(error="boom"), "an ok row has an error"),
    (ok_line(status="error", error="x"), "an error row has a probabilities"),
    (b"[1, 2]", "not a JSON object"),
    (b"\xff\xfe", "not JSON"),
    (b'{"image": "a.png"', "not JSON"),
])
def test_lines_that_do_not_fit_the_bundle_are_refused_with_a_reason(line, reason):
    with pytest.raises(BadLine) as caught:
        read_outcome(line, CLASSES)
    assert reason in str(caught.value)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                     max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["image", "fingerprint", "status", "probabilities", "risk", "prediction", "confidence",
                            "lesion_area", "error", "warnings", "screened_at"]), value=_JSON)
def test_any_mangled_field_gives_a_valid_outcome_or_badline(key, value):
    line = json.loads(ok_line())
    line[key] = value
    try:
        outcome = read_outcome(json.dumps(line).encode(), CLASSES)
    except BadLine:
        return
    # Reused only when it fits: as many probabilities as classes, a known prediction, numbers in range.
    assert len(outcome.probabilities) == len(CLASSES) and outcome.prediction in CLASSES
    assert all(0 <= p <= 1.00001 for p in outcome.probabilities)
    assert isinstance(outcome.image, str) and outcome.image


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=60))
def test_random_bytes_never_crash(data):
    try:
        read_outcome(data, CLASSES)
    except BadLine:
        pass


HEADER = b'{"format":"screening-journal","version":1}'


def test_a_journal_reads_as_numbered_outcomes_and_damage_naming_its_image():
    """Numbers as an editor shows them (the header is line 1), so a warning can name the line."""
    good, nan = ok_line(image="a.png"), ok_line(image="b.png", risk=float("nan"))
    torn = ok_line(image="c.png")[:40]
    data = b"\n".join([HEADER, good, nan, b"", b"[1]", torn])
    assert header_line(data) == HEADER
    read = list(outcome_lines(data, CLASSES))
    assert [number for number, _ in read] == [2, 3, 4, 5, 6]
    assert read[0][1] == read_outcome(good, CLASSES)
    assert read[1][1] == Damage("risk nan is not a number between 0 and 1", "b.png")
    assert read[2][1] == Damage("not JSON (JSONDecodeError)", None)  # a blank line names no image
    assert read[3][1] == Damage("not a JSON object", None)
    assert read[4][1] == Damage("not JSON (JSONDecodeError)", "c.png", torn=True)  # torn after its image


def test_only_a_last_line_cut_short_of_its_newline_is_torn():
    """A run stopped mid-write leaves its last line without a newline: torn, which --resume mends.
    The same bytes anywhere else (or ended by a newline) were a finished line, damaged since."""
    cut = ok_line(image="c.png")[:40]
    at_the_end = list(outcome_lines(b"\n".join([HEADER, ok_line(), cut]), CLASSES))
    in_the_middle = list(outcome_lines(b"\n".join([HEADER, cut, ok_line()]), CLASSES))
    ended = list(outcome_lines(b"\n".join([HEADER, ok_line(), cut]) + b"\n", CLASSES))
    assert at_the_end[1] == (3, Damage("not JSON (JSONDecodeError)", "c.png", torn=True))
    assert in_the_middle[0] == (2, Damage("not JSON (JSONDecodeError)", "c.png"))
    assert ended[1] == (3, Damage("not JSON (JSONDecodeError)", "c.png"))
    # A last line that reads whole is a result, newline or not.
    assert list(outcome_lines(HEADER + b"\n" + ok_line(), CLASSES)) == [(2, read_outcome(ok_line(), CLASSES))]


def test_a_torn_line_is_named_torn_and_a_damaged_one_damaged():
    torn = Damage("not JSON (JSONDecodeError)", "c.png", torn=True)
    damaged = Damage("risk 1.7 is not a number", "b.png")
    assert damaged_lines_note("r.csv.journal", [(9, "c.png", torn)], "c.png is left out") == \
        ("r.csv.journal line 9 (c.png) is torn (the run stopped while writing it; rerun with --resume): "
         "c.png is left out")
    assert damaged_lines_note("r.csv.journal", [(4, "b.png", damaged)], "b.png is left out") == \
        "r.csv.journal line 4 (b.png) is damaged (risk 1.7 is not a number): b.png is left out"
    assert damaged_lines_note("r.csv.journal", [(4, "b.png", damaged), (9, None, torn)], "they are left out") == \
        ("r.csv.journal has 2 damaged or torn lines (line 4 (b.png) is damaged (risk 1.7 is not a number); "
         "line 9 is torn (the run stopped while writing it; rerun with --resume)): they are left out")


def test_the_newline_ending_a_journal_starts_no_line():
    data = HEADER + b"\n" + ok_line() + b"\n"
    assert [number for number, _ in outcome_lines(data, CLASSES)] == [2]
    assert list(outcome_lines(HEADER + b"\n", CLASSES)) == list(outcome_lines(HEADER, CLASSES)) == []


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_journal_bytes_give_one_item_per_line(data):
    read = list(outcome_lines(data, CLASSES))
    assert len(read) == max(0, len(data.split(b"\n")) - 1 - data.endswith(b"\n"))
    assert all(isinstance(item, (Outcome, Damage)) for _, item in read)


# -- checksums -------------------------------------------------------------------------------------

OUTCOME = Outcome(image="sub/\udce9t\u00e9.png", fingerprint="b2:aa:1,0,2", status="ok",
                  probabilities=(0.1, 0.2, 0.3, 0.4), risk=0.7, prediction="bcc", confidence=0.4, lesion_area=0.25,
                  warnings=("age unknown",), screened_at="2026-12-01T02:00:00Z")


def written(outcome: Outcome) -> bytes:
    """The line as Journal writes it (a name that is not UTF-8 on disk kept as a \\udcXX escape)."""
    return outcome_line(outcome).encode("utf-8", "backslashreplace")


def test_a_written_line_carries_its_checksum_last_and_reads_back():
    line = written(OUTCOME)
    data = json.loads(line)
    assert list(data)[0] == "image" and list(data)[-1] == "checksum"  # the image first, for a torn line
    assert data["checksum"] == content_checksum({k: v for k, v in data.items() if k != "checksum"})
    assert len(data["checksum"]) == 16 and LINE_CHECKSUM == "sha256-16"
    assert read_outcome(line, CLASSES, [2, 3], checksummed=True) == OUTCOME
    error = error_outcome("b.png", "b2:bb:0,0,0", "truncated image file", retry=True)
    assert read_outcome(written(error), CLASSES, checksummed=True) == error


def test_the_checksum_is_of_the_content_not_of_its_spacing_or_key_order():
    data = json.loads(written(OUTCOME))
    reordered = json.dumps(dict(reversed(list(data.items()))), indent=1).encode()
    assert read_outcome(reordered, CLASSES, checksummed=True) == OUTCOME


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["image", "fingerprint", "probabilities", "risk", "prediction", "confidence",
                            "lesion_area", "error", "warnings", "screened_at", "retry"]), value=_JSON)
def test_any_field_changed_on_a_written_line_is_refused(key, value):
    """Whatever a disk or an editor changes a field to, the line is refused: what the agreement
    checks cannot see (a lesion area, a warning, a name) included."""
    data = json.loads(written(OUTCOME))
    if json.dumps(data[key]) == json.dumps(value):
        return  # not a change
    data[key] = value
    with pytest.raises(BadLine):
        read_outcome(json.dumps(data).encode(), CLASSES, [2, 3], checksummed=True)


@pytest.mark.parametrize("change, reason", [
    (lambda d: d.update(lesion_area=0.75), "does not match the line (changed since it was written)"),
    (lambda d: d.update(warnings=["age unknown", "x"]), "does not match the line (changed since it was written)"),
    (lambda d: d.update(probabilities=[0.2, 0.1, 0.3, 0.4]), "does not match the line (changed since it was written)"),
    (lambda d: d.update(checksum="0" * 16), "checksum '0000000000000000' does not match the line"),
    (lambda d: d.update(checksum=7), "checksum 7 does not match the line"),
    (lambda d: d.pop("checksum"), "no checksum, though its journal's header says every line has one"),
])
def test_a_line_changed_since_it_was_written_says_why_it_is_refused(change, reason):
    data = json.loads(written(OUTCOME))
    change(data)
    with pytest.raises(BadLine) as caught:
        read_outcome(json.dumps(data).encode(), CLASSES, [2, 3], checksummed=True)
    assert reason in str(caught.value)


def test_a_line_of_an_earlier_version_reads_as_before_where_its_header_promises_no_checksum():
    line = OUTCOME.to_json().encode("utf-8", "backslashreplace")
    assert "checksum" not in json.loads(line)
    assert read_outcome(line, CLASSES, [2, 3]) == OUTCOME
    with pytest.raises(BadLine, match="no checksum"):
        read_outcome(line, CLASSES, [2, 3], checksummed=True)


def test_a_changed_line_that_also_disagrees_says_what_disagrees():
    """The checksum is checked last: a changed risk is named as a risk that is not the sum."""
    data = json.loads(written(OUTCOME))
    data["risk"] = 0.1
    with pytest.raises(BadLine, match="risk 0.1 is not the sum of the malignant probabilities"):
        read_outcome(json.dumps(data).encode(), CLASSES, [2, 3], checksummed=True)


def test_a_torn_last_line_is_still_torn_in_a_journal_of_checksummed_lines():
    good, cut = written(OUTCOME), written(OUTCOME)[:-30]  # the checksum itself cut short
    read = list(outcome_lines(b"\n".join([HEADER, good, cut]), CLASSES, checksummed=True))
    assert read[0] == (2, OUTCOME)
    assert read[1] == (3, Damage("not JSON (JSONDecodeError)", OUTCOME.image, torn=True))
    assert read[1][1].said() == "is torn (the run stopped while writing it; rerun with --resume)"


def test_the_header_says_its_lines_carry_checksums_and_an_older_one_does_not():
    header = JournalHeader("tiny@1", "s", "c", CLASSES, "m", malignant=(2, 3), line_checksum=LINE_CHECKSUM)
    assert JournalHeader.from_json(header.to_json()).line_checksum == LINE_CHECKSUM
    older = {k: v for k, v in json.loads(header.to_json()).items() if k != "line_checksum"}
    assert JournalHeader.from_json(json.dumps(older)).line_checksum == ""
    assert JournalHeader.from_json(json.dumps(older)) == header  # the same bundle's results either way
    garbled = {**older, "line_checksum": 5}  # a damaged value still promises them
    assert JournalHeader.from_json(json.dumps(garbled)).line_checksum
