"""Operating points: threshold fitting at a fixed sensitivity, refusals, the flag and manifest checks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from screening.errors import InputError
from screening.operating_points import (TooFewCases, default_point_name, find_point, fit_operating_points,
                                        flag, malignant_needed, point_name, problems, RISK_MARGIN)


def test_threshold_is_the_largest_that_reaches_the_sensitivity():
    # 20 malignant cases at risks 0.05, 0.10, ... 1.00; 90 % means 18 flagged -> threshold 0.15.
    malignant = np.arange(1, 21) / 20
    benign = np.array([0.01, 0.12, 0.14, 0.16, 0.5])
    risk = np.concatenate([malignant, benign])
    truth = np.array([True] * 20 + [False] * 5)
    (point,) = fit_operating_points(risk, truth, sensitivities=[0.9], fitted_on="test cases")
    assert point == {"name": "sens90", "target_sensitivity": 0.9, "threshold": pytest.approx(0.15 - RISK_MARGIN),
                     "sensitivity": 0.9, "specificity": 0.6, "n_malignant": 20, "n_benign": 5,
                     "fitted_on": "test cases"}


def test_names_and_cases_needed():
    assert point_name(0.9) == "sens90" and point_name(0.95) == "sens95" and point_name(0.975) == "sens97.5"
    assert malignant_needed(0.9) == 20 and malignant_needed(0.95) == 40
    for target in (1.0, 0.0, 1.5):
        with pytest.raises(InputError, match="strictly between 0 and 1"):
            malignant_needed(target)


def test_too_few_malignant_cases_are_refused_with_how_many_are_needed():
    risk = np.linspace(0, 1, 60)
    truth = np.arange(60) < 39
    with pytest.raises(TooFewCases, match=r"95% sensitivity from 39 malignant cases: at least 40 are needed"):
        fit_operating_points(risk, truth, sensitivities=[0.95])
    assert TooFewCases.exit_code == 2
    # 90 % only needs 20.
    assert fit_operating_points(risk, truth, sensitivities=[0.9])[0]["n_malignant"] == 39


def test_no_benign_case_is_refused():
    with pytest.raises(TooFewCases, match="no benign cases"):
        fit_operating_points(np.linspace(0, 1, 30), np.ones(30, bool), sensitivities=[0.9])


@pytest.mark.parametrize("risk, truth, match", [
    ([0.1, float("nan")], [True, False], "finite"),
    ([0.1, 0.2], [True], "same length"),
])
def test_bad_input(risk, truth, match):
    with pytest.raises(InputError, match=match):
        fit_operating_points(risk, truth)


def test_flag_refers_at_and_above_the_threshold():
    assert flag(0.3, 0.3) == "refer" and flag(0.31, 0.3) == "refer" and flag(0.29, 0.3) == "routine"


def test_find_point_lists_valid_names():
    points = fit_operating_points(np.linspace(0, 1, 100), np.arange(100) % 2 == 0)
    assert default_point_name(points) == "sens95"
    assert find_point(points, "sens90")["target_sensitivity"] == 0.9
    with pytest.raises(InputError, match=r"unknown operating point 'sens99'; this bundle has: sens90, sens95"):
        find_point(points, "sens99")
    with pytest.raises(InputError, match="this bundle has no operating points"):
        find_point([], "sens95")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=200),
       st.sampled_from([0.8, 0.9, 0.95]))
def test_fitted_threshold_reaches_the_target_and_no_larger_one_does(cases, target):
    risk = np.array([r for r, _ in cases])
    truth = np.array([m for _, m in cases])
    try:
        (point,) = fit_operating_points(risk, truth, sensitivities=[target])
    except TooFewCases:
        assert truth.sum() < malignant_needed(target) or (~truth).sum() == 0
        return
    flagged = risk >= point["threshold"]
    assert flagged[truth].mean() == point["sensitivity"] >= target
    assert (~flagged[~truth]).mean() == point["specificity"]
    # Only the rounding margin below the defining case: anything above that case misses the target.
    higher = point["threshold"] + 2 * RISK_MARGIN
    assert (risk[truth] >= higher).mean() < target
    assert problems([point], point["name"]) == []


def test_manifest_problems_are_all_listed():
    good = fit_operating_points(np.linspace(0, 1, 100), np.arange(100) % 2 == 0)
    assert problems(None, None) == [] and problems(good, "sens95") == []
    assert problems(None, "sens95") == ["default_operating_point is set but there are no operating_points"]
    assert problems("x", None) == ["operating_points must be a list, got str"]
    bad = [dict(good[0], threshold=1.5), {"name": "x"}, dict(good[1], n_benign=-1), dict(good[1])]
    assert problems(bad, "nope") == [
        "operating_points[0].threshold 1.5 must lie between 0 and 1",
        "operating_points[1] lacks target_sensitivity, threshold, sensitivity, specificity, n_malignant, "
        "n_benign, fitted_on",
        "operating_points[2].n_benign must be a whole number >= 0, got -1",
        "operating point names repeat: sens95",
        "default_operating_point 'nope' is not one of the operating points (sens90, sens95, sens95)",
    ]


def test_the_case_that_defines_a_threshold_is_still_referred_when_screening_rounds_its_risk():
    """Screening sums probabilities rounded to 6 decimals: the defining case may come out 1e-6 lower."""
    rng = np.random.default_rng(3)
    risk = rng.uniform(0, 1, 400)
    truth = rng.uniform(0, 1, 400) < 0.3
    for point in fit_operating_points(risk, truth):
        screened = risk - 1.5e-6  # the worst of 7 roundings, all down
        assert (screened[truth] >= point["threshold"]).mean() >= point["target_sensitivity"]


def test_thresholds_swapped_between_two_points_of_one_fit_are_a_manifest_problem():
    """A fit on one set of cases gives a higher target sensitivity a lower (or equal) threshold.
    With sens90's and sens95's thresholds swapped by a hand edit, the bundle loaded, and its default
    point (the highest target, sens95) flagged fewer lesions than sens90 while promising more."""
    points = fit_operating_points(np.linspace(0, 1, 200), np.arange(200) % 2 == 0)
    sens90, sens95 = points
    assert sens95["threshold"] < sens90["threshold"]
    swapped = [dict(sens90, threshold=sens95["threshold"]), dict(sens95, threshold=sens90["threshold"])]
    assert problems(swapped, "sens95") == [
        f"operating_points[1] (sens95) targets a higher sensitivity than operating_points[0] (sens90), fitted "
        f"on the same cases, with a higher threshold ({sens90['threshold']:.6g} > {sens95['threshold']:.6g}): "
        f"it would refer fewer lesions, not more (thresholds swapped or edited?)"]


def test_two_points_with_one_target_and_two_thresholds_are_a_manifest_problem():
    """The default point is the one with the highest target: with two such points it was whichever
    came first, at a threshold nothing said was the right one."""
    (sens95,) = fit_operating_points(np.linspace(0, 1, 200), np.arange(200) % 2 == 0, sensitivities=[0.95])
    twins = [dict(sens95, name="a", threshold=0.9), dict(sens95, name="b")]
    assert problems(twins, None) == [
        f"operating_points[0] (a) and operating_points[1] (b) both target 95 % sensitivity on the same "
        f"cases, with different thresholds (0.9 and {sens95['threshold']:.6g})"]
    assert problems([dict(sens95, name="a"), dict(sens95, name="b")], None) == []  # the same point twice


@pytest.mark.parametrize("name", ["sens\n95", "sens95\t", "\x1b[31msens95"])
def test_an_operating_point_name_with_a_line_break_or_control_character_is_a_manifest_problem(name):
    """A point's name is printed in one-line messages, the summary and the log: 'sens\\n95' loaded and
    split every line that named it (`unknown operating point ...; this bundle has: sens` / `95`)."""
    (point,) = fit_operating_points(np.linspace(0, 1, 200), np.arange(200) % 2 == 0, sensitivities=[0.95])
    assert problems([dict(point, name=name)], None) == [
        f"operating_points[0].name {name!r} must be one line of text without control characters"]
