"""`screen evaluate`: figures agree with scikit-learn, small groups say so, mismatches are listed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from screening.cli import cli
from screening.errors import InputError
from screening.journal_lines import outcome_line
from screening.metadata import DEFAULT_VOCABULARY
from screening.results import error_outcome
from screening.cli.validation import DEFAULT_RESAMPLES as CLI_RESAMPLES
from screening.validation import metrics
from screening.validation.bootstrap import DEFAULT_RESAMPLES, group_index, intervals
from screening.validation.labels import read_labels
from screening.validation.report import age_band, evaluate
from screening.validation.scores import read_scores


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_figures_agree_with_scikit_learn(synthetic):
    data = synthetic(n=300)
    m = data.manifest
    report, _ = evaluate(read_scores(data.results, m), read_labels(data.labels, data.images, m), m, resamples=0)
    figures = report["overall"]["figures"]
    # The report orders images by path; so do we here.
    order = np.argsort(data.images)
    truth, probs = data.truth[order], data.probabilities[order]
    malignant = np.isin(truth, m.malignant_indices)
    risk = probs[:, m.malignant_indices].sum(axis=1)
    assert figures["malignant_auc"]["value"] == pytest.approx(roc_auc_score(malignant, risk), abs=1e-12)
    for i, name in enumerate(m.class_names):
        assert figures[f"auc_{name}"]["value"] == pytest.approx(roc_auc_score(truth == i, probs[:, i]), abs=1e-12)
    assert figures["macro_auc"]["value"] == pytest.approx(roc_auc_score(truth, probs, multi_class="ovr"), abs=1e-12)
    predicted = probs.argmax(axis=1)
    assert figures["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    assert figures["accuracy"]["value"] == pytest.approx(accuracy_score(truth, predicted))
    assert report["scores"]["precision"] == "journal (6 decimals)"


def test_auc_with_ties_agrees_with_scikit_learn():
    rng = np.random.default_rng(3)
    score = rng.integers(0, 5, 200) / 4  # many ties
    positive = rng.random(200) < 0.3
    ones = np.ones((1, 200))
    assert metrics.auc(positive, score, ones)[0] == pytest.approx(roc_auc_score(positive, score), abs=1e-12)
    # A weight of 2 counts a case twice, as a bootstrap draw does.
    twice = np.concatenate([np.arange(200), np.arange(50)])
    weights = np.bincount(twice, minlength=200)[None, :].astype(float)
    assert metrics.auc(positive, score, weights)[0] == pytest.approx(
        roc_auc_score(positive[twice], score[twice]), abs=1e-12)


def test_ece_matches_the_training_definition():
    calibration = pytest.importorskip("training.calibration")  # training needs only numpy for this
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4) * 0.5, 500)
    truth = rng.integers(0, 4, 500)
    assert metrics.ece(probs, truth, np.ones((1, 500)))[0] == pytest.approx(
        calibration.expected_calibration_error(probs, truth))


def test_small_classes_give_n_too_small_not_a_number(synthetic):
    # bcc is about 1 % of 300 cases: fewer than 5, so its AUC is not reported.
    data = synthetic(n=300, class_share=(0.6, 0.2, 0.19, 0.01), seed=4)
    assert (data.truth == 3).sum() < metrics.MIN_CASES
    m = data.manifest
    report, _ = evaluate(read_scores(data.results, m), read_labels(data.labels, data.images, m), m, resamples=50)
    assert report["overall"]["figures"]["auc_bcc"] == {"value": None, "ci95": None, "note": "n too small"}
    assert report["overall"]["figures"]["auc_mel"]["value"] is not None


def test_diagnosis_synonyms_map_and_unknown_ones_are_reported(synthetic):
    data = synthetic(n=120, diagnoses={0: "Naevus", 1: "seborrheic_keratosis", 2: "MELANOMA", 3: "benign"},
                     extra_label_rows=2)
    labels = read_labels(data.labels, data.images, data.manifest)
    assert set(labels.truth.values()) == {0, 1, 2}
    assert labels.unmapped == {"benign": int((data.truth == 3).sum())}
    assert labels.rows_without_image == ["ghost_0", "ghost_1"]


def test_missing_label_rows_and_screening_errors_are_counted_and_listed(synthetic, tmp_path):
    data = synthetic(n=60)
    text = data.labels.read_text().splitlines()
    data.labels.write_text("\n".join(text[:-5]) + "\n")  # the last 5 images lose their label
    result = run("evaluate", data.results, "--labels", data.labels, "--bundle", _bundle(data),
                 "--out", tmp_path / "eval", "--bootstrap", 20)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["cases"]["matched"] == 55
    missing = report["cases"]["screened_without_label_row"]
    assert missing["count"] == 5 and set(missing["first"]) == set(data.images[-5:])
    assert "left out: 5 screened images without a label row" in result.output


def _bundle(data) -> Path:
    return data.manifest_dir


def test_cli_writes_json_pngs_and_a_summary(synthetic, tmp_path):
    data = synthetic(n=200)
    out = tmp_path / "eval"
    result = run("evaluate", data.results, "--labels", data.labels, "--bundle", _bundle(data), "--out", out,
                 "--bootstrap", 100)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "evaluation.json").read_text())
    assert report["intervals"]["resampled_unit"] == "patient" and report["overall"]["n_patients"] == 100
    low, high = report["overall"]["figures"]["malignant_auc"]["ci95"]
    assert low < report["overall"]["figures"]["malignant_auc"]["value"] < high
    assert set(report["breakdowns"]) == {"site", "sex", "age_band", "source"}
    assert set(report["breakdowns"]["sex"]) == {"male", "female"}
    assert report["breakdowns"]["site"]["unknown"]["n"] == sum(1 for i in range(200) if i % 3 == 2)
    for name in ("roc.png", "reliability.png", "confusion.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 200
    assert result.output.startswith(f"Evaluated tiny@1.0 on 200 labelled images")
    assert "malignant_auc" in result.output and "Not a medical device" in result.output


def test_patient_bootstrap_is_wider_than_image_bootstrap_on_repeated_images():
    # Each patient's 5 images are copies: only 40 independent cases, not 200.
    rng = np.random.default_rng(0)
    positive = np.repeat(rng.random(40) < 0.5, 5)
    score = np.repeat(rng.random(40), 5) + positive * 0.3
    patients = [f"p{i // 5}" for i in range(200)]

    def width(groups):
        (low, high), = intervals(lambda w: {"auc": metrics.auc(positive, score, w)}, groups, 300).values()
        return high - low

    assert group_index(patients).max() + 1 == 40
    assert width(group_index(patients)) > 1.5 * width(group_index([""] * 200))


def test_age_bands_and_defaults():
    assert [age_band(a) for a in ("5", "30", "47.0", "85", "", "unknown")] == \
        ["<30", "30-39", "40-49", "80+", "unknown", "unknown"]
    assert CLI_RESAMPLES == DEFAULT_RESAMPLES


def test_labels_without_a_diagnosis_column_are_refused(synthetic, tmp_path):
    data = synthetic(n=20)
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,notes\nimg_0000,x\n")
    result = run("evaluate", data.results, "--labels", bad, "--bundle", _bundle(data), "--out", tmp_path / "e")
    assert result.exit_code == 2
    assert "has no diagnosis column (one of diagnosis, dx, label, class, diagnosis_1)" in result.output


def test_one_image_given_two_diagnoses_is_refused_and_repeated_agreeing_rows_are_not(synthetic, tmp_path):
    """A histology row appended under a clinical one: the melanoma must not hide behind a nevus row."""
    data = synthetic(n=60)
    first = data.labels.read_text().splitlines()[1].split(",")
    repeat = ",".join([first[0], "melanoma" if first[1] not in ("mel", "melanoma") else "nevus", *first[2:]])
    with open(data.labels, "a") as fh:
        fh.write(repeat + "\n")
    result = run("evaluate", data.results, "--labels", data.labels, "--bundle", _bundle(data),
                 "--out", tmp_path / "eval", "--bootstrap", 20)
    assert result.exit_code == 2
    assert f"gives one image more than one diagnosis: {first[0]} (lines 2, 62: " in result.output
    # The same diagnosis written again (another spelling of it): one case, accepted.
    text = data.labels.read_text().splitlines()
    data.labels.write_text("\n".join(text[:-1] + [",".join([first[0], first[1].upper(), *first[2:]])]) + "\n")
    labels = read_labels(data.labels, data.images, data.manifest)
    assert len(labels.truth) == 60


def test_a_journal_alone_with_an_error_row_is_read(synthetic):
    """A run killed before its CSV, one image failed: the journal's ok rows are the scores."""
    data = synthetic(n=60)
    journal = data.results.with_name("results.csv.journal")
    with open(journal, "a", encoding="utf-8") as fh:
        fh.write(outcome_line(error_outcome("broken.jpg", "f", "truncated image file")) + "\n")  # as screening writes it
    data.results.unlink()
    scores = read_scores(journal, data.manifest)
    assert len(scores.images) == 60 and scores.error_rows == ["broken.jpg"]
    assert scores.precision == "journal (6 decimals)"


def test_two_keys_fitting_one_image_with_two_diagnoses_are_refused(synthetic, tmp_path):
    """'ISIC_1.jpg' and 'ISIC_1' both fit ISIC_1.jpg: the more specific one must not silently win."""
    data = synthetic(n=60)
    first = data.labels.read_text().splitlines()[1].split(",")
    other = "melanoma" if first[1] not in ("mel", "melanoma") else "nevus"
    with open(data.labels, "a") as fh:
        fh.write(",".join([first[0] + ".jpg", other, *first[2:]]) + "\n")
    with pytest.raises(InputError, match=rf"one image more than one diagnosis: {first[0]}.jpg \(lines 2, 62: "):
        read_labels(data.labels, data.images, data.manifest)


_BANDS = {"<30", "30-39", "40-49", "50-59", "60-69", "70-79", "80+", "unknown"}


@settings(max_examples=300, deadline=None)
@given(age=st.one_of(st.text(max_size=10), st.floats().map(str), st.integers(-300, 300).map(str),
                     st.sampled_from(["NaN", "nan", "inf", "-5", "200", "1e3", "45 years", "45,5", " 47 ", "4_5"])))
@example(age="4_5")  # Python's float() reads 45; screening reads '4 5', not a number: counted under 40-49 here
def test_every_age_cell_gets_a_band_and_the_one_screening_would_use(age):
    """A labels CSV exported with 'NaN' for a missing age crashed `screen evaluate`; '-5' and '200'
    were counted under 30 and over 80. An age screening takes as unknown is an unknown band here."""
    band = age_band(age)
    assert band in _BANDS
    code, _ = DEFAULT_VOCABULARY.age_code(age)
    assert (band == "unknown") == (code == len(DEFAULT_VOCABULARY.age_edges) + 1)


def test_an_unreadable_labels_file_is_named_as_the_labels_not_as_patient_metadata(synthetic, tmp_path):
    """`screen evaluate` has no --meta here: a message about a 'metadata file' alone sends the admin
    looking for the wrong file."""
    data = synthetic(n=20)
    missing = tmp_path / "labels-typo.csv"
    result = run("evaluate", data.results, "--labels", missing, "--bundle", _bundle(data), "--out", tmp_path / "e")
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: --labels: metadata file not found: {missing}"


def test_one_sex_or_site_spelled_several_ways_is_one_breakdown_group(synthetic):
    """'F', 'female' and 'W' are one sex, as screening reads them; 'Lower_Extremity' and 'lower
    extremity' one site; 'NaN' is unknown. Split by spelling, each group's figures left the others'
    cases out, silently."""
    data = synthetic(n=120)
    rows = list(csv.reader(io.StringIO(data.labels.read_text())))
    sex, site = rows[0].index("sex"), rows[0].index("site")
    for i, row in enumerate(rows[1:]):
        row[sex] = ("F", "female", "Female ", "W", "m", "MALE")[i % 6]
        row[site] = ("Lower_Extremity", "lower extremity", "NaN")[i % 3]
    with open(data.labels, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    m = data.manifest
    report, _ = evaluate(read_scores(data.results, m), read_labels(data.labels, data.images, m), m, resamples=0)
    assert {k: g["n"] for k, g in report["breakdowns"]["sex"].items()} == {"female": 80, "male": 40}
    assert {k: g["n"] for k, g in report["breakdowns"]["site"].items()} == {"lower extremity": 80, "unknown": 40}


def test_an_image_whose_latest_journal_line_is_damaged_is_accounted_for_and_warned_of(synthetic, tmp_path):
    """A journal alone whose line for one image was damaged after it was screened again: the image
    is listed as left out (not as a label row without an image) and stderr names the line."""
    data = synthetic(n=60)
    journal = data.results.with_name("results.csv.journal")
    lines = journal.read_text().splitlines()
    newer = json.loads(lines[1])
    newer["risk"] = 1.7
    journal.write_text("\n".join([*lines, json.dumps(newer)]) + "\n")
    data.results.unlink()
    result = run("evaluate", journal, "--labels", data.labels, "--bundle", _bundle(data),
                 "--out", tmp_path / "eval", "--bootstrap", 0, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"Warning: {journal} line 62 ({newer['image']}) is damaged (risk 1.7 is not a number "
                             f"between 0 and 1): {newer['image']} is left out, not scored on an earlier line\n")
    cases = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["cases"]
    assert cases["matched"] == 59 and cases["damaged_journal_lines"] == {"count": 1, "first": [newer["image"]]}
    assert cases["label_rows_without_screened_image"]["count"] == 0


def test_a_labels_csv_saved_as_windows_1252_is_read_with_the_readers_warning(synthetic, tmp_path):
    """Excel on Windows saves "CSV" in the ANSI code page: the reader falls back to Windows-1252 and
    says so, as it does for the patients CSV; the warning reaches the user, naming the labels."""
    data = synthetic(n=60)
    text = data.labels.read_text(encoding="utf-8").replace("clinic0", "clinique-é")
    data.labels.write_bytes(text.encode("cp1252"))
    labels = read_labels(data.labels, data.images, data.manifest)
    assert len(labels.truth) == 60
    assert labels.warnings == [f"--labels: metadata CSV {data.labels} is not UTF-8 (lines 2, 4, 6, 8, 10 and 25 "
                               f"more are not UTF-8); read it as Windows-1252"]
    result = run("evaluate", data.results, "--labels", data.labels, "--bundle", _bundle(data),
                 "--out", tmp_path / "eval", "--bootstrap", 0, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == f"Warning: {labels.warnings[0]}\n"


def test_a_diagnosis_left_empty_on_a_repeated_row_is_named_in_the_refusal(synthetic, tmp_path):
    """The message read '(lines 2, 62:  / mel)': an empty cell said nothing the admin could look for."""
    data = synthetic(n=60)
    first = data.labels.read_text().splitlines()[1].split(",")
    with open(data.labels, "a") as fh:
        fh.write(",".join([first[0], "", *first[2:]]) + "\n")
    with pytest.raises(InputError) as refused:
        read_labels(data.labels, data.images, data.manifest)
    assert f"{first[0]} (lines 2, 62: (empty) / {first[1]})" in str(refused.value)
