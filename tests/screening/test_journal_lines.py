"""Journal lines are checked against the bundle before reuse: a line that does not fit is dropped."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from screening.journal_lines import BadLine, Damage, damaged_lines_note, header_line, outcome_lines, read_outcome
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
