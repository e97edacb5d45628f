"""`screen calibrate`: a miscalibrated set is corrected, the derived bundle is whole, refusals say why."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from screening.cli import cli
from screening.manifest import load_manifest, sha256_file
from screening.validation import metrics
from screening.validation.calibrate import derived_version
from screening.validation.temperature import fit_temperature, rescale


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_temperature_undoes_a_known_overconfidence():
    # Truth drawn from calibrated probabilities, scores made 2.5 times sharper: T should be ~2.5.
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 4))
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(4, p=p) for p in calibrated])
    sharp = rescale(calibrated, 1.0, 1 / 2.5)
    t = fit_temperature(sharp, truth, t_from=1.0)
    assert t == pytest.approx(2.5, rel=0.08)
    ones = np.ones((1, len(truth)))
    before, after = metrics.ece(sharp, truth, ones)[0], metrics.ece(rescale(sharp, 1.0, t), truth, ones)[0]
    assert before > 0.1 and after < 0.03


def test_rescale_is_exact_from_probabilities():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (50, 5))

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    np.testing.assert_allclose(rescale(softmax(logits / 0.8), 0.8, 1.7), softmax(logits / 1.7), atol=1e-12)


def test_derived_version():
    assert derived_version("1.1.0", "Clinic A") == "1.1.0+local.clinic.a"
    assert derived_version("1.1.0+local.old", "new") == "1.1.0+local.new"


def test_cli_writes_a_derived_bundle_with_the_same_models(synthetic, tmp_path):
    data = synthetic(n=400, sharpness=4.0)
    out = tmp_path / "engines" / "tiny-clinic"
    result = run("calibrate", "--bundle", data.manifest_dir, "--results", data.results, "--labels", data.labels,
                 "--out", out, "--name", "clinic-a", "--bootstrap", 50)
    assert result.exit_code == 0, result.output
    child, parent = load_manifest(out), data.manifest  # load_manifest checks the ONNX sha256s
    assert child.tag == "tiny@1.0+local.clinic.a"
    assert child.classifier.sha256 == parent.classifier.sha256 == sha256_file(out / child.classifier.file)
    assert child.temperature > 1.5 * parent.temperature  # the scores were over-confident
    assert [p["name"] for p in child.operating_points] == ["sens90", "sens95"]
    assert child.default_operating_point == "sens95"
    derived = child.derived
    assert derived["from"] == "tiny@1.0" and derived["cases"] == 400
    assert derived["scores_precision"] == "journal (6 decimals)"
    assert derived["after"]["ece"]["value"] < derived["before"]["ece"]["value"]
    assert derived["after"]["sensitivity@sens95"]["value"] >= 0.95
    assert f"Wrote tiny@1.0+local.clinic.a to {out}" in result.output
    # The original results can be evaluated as the derived bundle's, without screening again.
    ev = run("evaluate", data.results, "--labels", data.labels, "--bundle", out, "--out", tmp_path / "ev",
             "--bootstrap", 20)
    assert ev.exit_code == 0, ev.output
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert report["overall"]["figures"]["ece"]["value"] == pytest.approx(derived["after"]["ece"]["value"])


def test_existing_output_is_never_replaced_without_force(synthetic, tmp_path):
    data = synthetic(n=200)
    out = tmp_path / "derived"
    args = ["calibrate", "--bundle", data.manifest_dir, "--results", data.results, "--labels", data.labels,
            "--out", out, "--bootstrap", 0, "--sensitivity", "0.9"]
    assert run(*args).exit_code == 0
    first = (out / "manifest.json").read_bytes()
    again = run(*args)
    assert again.exit_code == 2
    assert again.output.strip() == f"Error: {out} already exists: choose another folder, or pass --force to replace it"
    assert (out / "manifest.json").read_bytes() == first
    assert run(*args, "--force").exit_code == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["derived", "run"]  # no temp folders left


def test_too_few_malignant_cases_are_refused_with_how_many_are_needed(synthetic, tmp_path):
    # About 5 % of 200 cases are malignant: 95 % sensitivity needs 40.
    data = synthetic(n=200, class_share=(0.6, 0.35, 0.03, 0.02), seed=2)
    n_malignant = int(np.isin(data.truth, [2, 3]).sum())
    result = run("calibrate", "--bundle", data.manifest_dir, "--results", data.results, "--labels", data.labels,
                 "--out", tmp_path / "x", "--sensitivity", "0.95")
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: only {n_malignant} of the 200 labelled cases are malignant: at least "
                                     f"40 are needed to fit a threshold at 95% sensitivity")
    assert not (tmp_path / "x").exists()


def test_too_few_cases_are_refused(synthetic, tmp_path):
    data = synthetic(n=30)
    result = run("calibrate", "--bundle", data.manifest_dir, "--results", data.results, "--labels", data.labels,
                 "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert "only 30 screened images have a usable label: at least 50 are needed" in result.output


def test_results_of_another_bundle_are_refused(synthetic, tmp_path):
    data = synthetic(n=100)
    text = data.results.read_text(encoding="utf-8-sig").replace(",tiny@1.0", ",other@2.0")
    data.results.write_text(text, encoding="utf-8-sig")
    (data.results.parent / "results.csv.journal").unlink()
    result = run("calibrate", "--bundle", data.manifest_dir, "--results", data.results, "--labels", data.labels,
                 "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert "the results were screened with other@2.0" in result.output
    assert "not with tiny@1.0: calibrate the bundle that made them" in result.output


def test_results_screened_with_another_tta_calibrate_a_bundle_that_screens_with_it(synthetic, tmp_path):
    """A clinic that screens with --tta flip every night can fit its own thresholds: on its flip scores,
    for a derived bundle that screens with flip (and that older runtimes refuse rather than run without it)."""
    from dataclasses import replace

    data = synthetic(n=200)
    flipped = replace(data.manifest, tta="flip").identity  # what `screen folder --tta flip` writes
    text = data.results.read_text(encoding="utf-8-sig").replace(data.manifest.identity, flipped)
    data.results.write_text(text, encoding="utf-8-sig")
    (data.results.parent / "results.csv.journal").unlink()
    out = tmp_path / "clinic"
    result = run("calibrate", "--bundle", data.manifest_dir, "--results", data.results, "--labels", data.labels,
                 "--out", out)
    assert result.exit_code == 0, result.output
    derived = load_manifest(out)
    assert derived.tta == "flip" and derived.requires == ["tta"]
    evaluated = run("evaluate", data.results, "--labels", data.labels, "--bundle", data.manifest_dir,
                    "--out", tmp_path / "ev")
    assert evaluated.exit_code == 0, evaluated.output  # measured as the bundle's, with its TTA
    as_derived = run("evaluate", data.results, "--labels", data.labels, "--bundle", out, "--out", tmp_path / "ev2")
    assert as_derived.exit_code == 0, as_derived.output  # rescaled to the derived temperature, as without TTA


def test_results_that_do_not_name_their_bundle_or_name_two_are_refused(synthetic, tmp_path):
    import csv
    import io

    data = synthetic(n=100)
    (data.results.parent / "results.csv.journal").unlink()
    rows = list(csv.DictReader(io.StringIO(data.results.read_text(encoding="utf-8-sig"))))
    fields = list(rows[0])

    def write(table, columns):
        with open(data.results, "w", newline="", encoding="utf-8-sig") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(table)
        return run("calibrate", "--bundle", data.manifest_dir, "--results", data.results, "--labels", data.labels,
                   "--out", tmp_path / "x")

    result = write(rows, [f for f in fields if f != "bundle"])  # e.g. a spreadsheet's export of some columns
    assert result.exit_code == 2 and "does not say which bundle screened it" in result.output
    assert not (tmp_path / "x").exists()
    mixed = [dict(row, bundle="other@2.0") if i % 2 else row for i, row in enumerate(rows)]
    result = write(mixed, fields)
    assert result.exit_code == 2 and "holds rows of 2 bundles" in result.output
    evaluated = run("evaluate", data.results, "--labels", data.labels, "--bundle", data.manifest_dir)
    assert evaluated.exit_code == 2 and "holds rows of 2 bundles" in evaluated.output


def test_a_confidently_wrong_case_fits_the_same_temperature_from_the_journal_as_from_the_csv(synthetic, tmp_path):
    """Rounded to 6 decimals, a true class at 0.000000 has lost its logarithm in either file."""
    data = synthetic(n=400, sharpness=12.0)  # some true classes round to 0
    assert (data.probabilities[np.arange(400), data.truth] == 0).any()
    temperatures = []
    for source in ("journal", "csv"):
        if source == "csv":
            data.results.with_name("results.csv.journal").unlink()
        out = tmp_path / f"engines-{source}"
        result = run("calibrate", "--bundle", data.manifest_dir, "--results", data.results, "--labels", data.labels,
                     "--out", out, "--name", f"clinic-{source}", "--bootstrap", 20)
        assert result.exit_code == 0, result.output
        temperatures.append(load_manifest(out).temperature)
    assert temperatures[0] == pytest.approx(temperatures[1], rel=1e-6)


@pytest.mark.parametrize("ratio", [0.5, 1.3, 2.0, 3.0])
def test_a_threshold_fitted_on_stored_scores_refers_its_cases_when_the_derived_bundle_screens(ratio):
    """Stored probabilities are rounded; a higher temperature magnifies that rounding, and a
    threshold on a case's nominal risk could lie above what screening then computes for it."""
    from screening.operating_points import RISK_MARGIN, fit_operating_points
    from screening.validation.temperature import lowest_risk

    rng = np.random.default_rng(7)
    malignant = [0, 1, 2]
    logits = rng.normal(0, 6, (3000, 7))
    t_old, t_new = 1.0, ratio

    def screened(t):  # what screening stores: softmax at the bundle's temperature, 6 decimals
        z = logits / t - (logits / t).max(axis=1, keepdims=True)
        return np.round(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True), 6)

    stored = screened(t_old)
    nominal = rescale(np.maximum(stored, 2.5e-7), t_old, t_new)[:, malignant].sum(axis=1)
    floor = np.minimum(lowest_risk(stored, malignant, t_old, t_new), nominal)
    actual = screened(t_new)[:, malignant].sum(axis=1)  # the derived bundle, screening the same images
    assert np.all(floor - RISK_MARGIN <= actual)
    truth = rng.uniform(size=3000) < 0.3
    for point in fit_operating_points(np.where(truth, floor, nominal), truth):
        assert (actual[truth] >= point["threshold"]).mean() >= point["target_sensitivity"]


def test_the_bundle_being_calibrated_is_never_its_own_out_even_with_force(synthetic, tmp_path):
    """`--out engines/starter --force` for `--bundle engines/starter`: the parent, which the derived
    bundle names as its origin and whose results it rescales, would be replaced by its own child."""
    import shutil

    data = synthetic(n=200)
    bundle = tmp_path / "engines" / "tiny"
    shutil.copytree(data.manifest_dir, bundle)
    before = (bundle / "manifest.json").read_bytes()
    result = run("calibrate", "--bundle", bundle, "--results", data.results, "--labels", data.labels,
                 "--out", tmp_path / "engines" / "." / "tiny", "--force", "--bootstrap", 0, "--sensitivity", "0.9")
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --out {tmp_path / 'engines' / '.' / 'tiny'} is the bundle being "
                                     f"calibrated: write the derived bundle beside it (e.g. {bundle}-local)")
    assert (bundle / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("given, error", [
    ("95", "95 is not a fraction: did you mean 0.95?"),
    ("97.5", "97.5 is not a fraction: did you mean 0.975?"),
    ("1", "1 must lie strictly between 0 and 1 (0.95 is 95 % sensitivity)"),
    ("0", "0 must lie strictly between 0 and 1 (0.95 is 95 % sensitivity)"),
    ("100", "100 must lie strictly between 0 and 1 (0.95 is 95 % sensitivity)"),
])
def test_a_sensitivity_given_as_a_percentage_is_refused_with_the_fraction_meant(synthetic, tmp_path, given, error):
    """`--sensitivity 95` is refused before any file is read, saying what to type instead."""
    data = synthetic(n=60)
    result = run("calibrate", "--bundle", data.manifest_dir, "--results", data.results, "--labels", data.labels,
                 "--out", tmp_path / "x", "--sensitivity", "0.9", "--sensitivity", given)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == f"Error: Invalid value for '--sensitivity': {error}"
    assert not (tmp_path / "x").exists()


def test_calibrate_prints_the_warnings_of_its_readers(synthetic, tmp_path):
    """As `screen evaluate` does: a labels CSV read as Windows-1252 is said on stderr, even with --quiet."""
    data = synthetic(n=200)
    data.labels.write_bytes(data.labels.read_text(encoding="utf-8").replace("clinic0", "clinique-é").encode("cp1252"))
    result = run("calibrate", "--bundle", data.manifest_dir, "--results", data.results, "--labels", data.labels,
                 "--out", tmp_path / "x", "--bootstrap", 0, "--sensitivity", "0.9", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"Warning: --labels: metadata CSV {data.labels} is not UTF-8 (")
    assert result.stdout == ""
