"""The broken-night guard and an image that fails in the models every night.

One image whose model output is always NaN must not stop every quiet night (exit 3, never in
the CSV, its journal line appended again each night), while a bundle that fails on every image
still stops the night, and the night after, and keeps the last good results.
"""

from __future__ import annotations

import csv
import io
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from bundle_factory import build_bundle, lesion_rgb, patient_row, segmenter_model, write_image, write_patients
from folder_runner import run_folder
from screening import pipeline
from screening.journal import journal_path
from screening.pipeline import NOT_A_NUMBER
from screening.results import Outcome
from screening.session import _RunResult, journaled_as, refuse_a_broken_night

POISON = "poison.png"  # the one image whose model output is always NaN


pytestmark = pytest.mark.usefixtures("no_default_bundle")


@pytest.fixture
def poison_gives_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The models give NaN logits for POISON, and their own results for every other image."""
    models = pipeline._run_models

    def run_models(ready, backend, tta="none"):
        results = models(ready, backend, tta)
        for index, (item, result) in enumerate(zip(ready, results)):
            if item.job.image == POISON and not isinstance(result, str):
                mask, logits, attention = result
                results[index] = (mask, np.full_like(logits, np.nan), attention)
        return results

    monkeypatch.setattr(pipeline, "_run_models", run_models)


run = partial(run_folder, batch_size=3, workers=2)


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def journal_lines(out: Path) -> list[str]:
    return journal_path(out).read_text(encoding="utf-8").splitlines()


def add_poison(images: Path, meta: Path) -> None:
    write_image(images / POISON, lesion_rgb(99))
    row = patient_row(99, POISON)
    with meta.open("a", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow([row[key] for key in ("image", "patient_id", "age", "sex", "site")])


def test_an_image_that_always_gives_nan_reaches_the_csv_on_the_next_quiet_night(
        tmp_path: Path, make_folder, tiny_bundle: Path, poison_gives_nan) -> None:
    images, meta = make_folder(4)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle, "--quiet").exit_code == 0
    last_night = out.read_bytes()

    add_poison(images, meta)
    # The night it comes, the only image screened fails in the models: the guard cannot tell it
    # from a broken bundle, and stops (the last results kept).
    first = run(images, meta, out, tiny_bundle, "--resume", "--quiet")
    assert first.exit_code == 3 and "every one of the 1 images screened failed in the models" in first.stderr
    assert out.read_bytes() == last_night
    refused = journal_lines(out)

    # The nights after: the same image failing the same way is no news about the bundle.
    for night in range(3):
        result = run(images, meta, out, tiny_bundle, "--resume", "--quiet")
        assert result.exit_code == 0, result.output
        rows = read_csv(out)
        assert sorted(row["image"] for row in rows) == sorted(p.name for p in images.iterdir())  # one row each
        poison = next(row for row in rows if row["image"] == POISON)
        assert poison["status"] == "error" and "not a number" in poison["error"]
        assert rows[-1]["image"] == POISON and poison["rank"] == ""
        # New to the reader the first time it is shown, not after.
        assert poison["new"] == ("yes" if night == 0 else "no"), night
        assert {row["new"] for row in rows if row["image"] != POISON} == {"no"}
        lines = journal_lines(out)
        assert len(lines) == 1 + 5  # header and one line an image: no growth night after night
        assert json.loads(lines[0])["settled"] == 5
        assert len(lines) <= len(refused)
        summary = json.loads((tmp_path / "results.summary.json").read_text())
        assert summary["status"] == {"ok": 4, "error": 1} and summary["screened"] == 1


def test_a_broken_bundle_still_stops_every_night_and_its_journal_does_not_grow(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    from onnx import numpy_helper

    images, meta = make_folder(4)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle, "--quiet").exit_code == 0
    last_night = {path: path.read_bytes() for path in (out, tmp_path / "results.summary.json")}

    segmenter = segmenter_model()
    segmenter.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array([np.nan], np.float32), "b"))
    broken = tmp_path / "engines" / "broken"
    build_bundle(broken, version="2.0", segmenter=segmenter)
    sizes = []
    for night in range(3):  # each image fails again as the journal (never the results) says
        result = run(images, meta, out, broken, "--resume", "--quiet")
        assert result.exit_code == 3, result.output
        assert "every one of the 4 images screened failed in the models" in result.stderr
        assert {path: path.read_bytes() for path in last_night} == last_night
        sizes.append(len(journal_lines(out)))
    assert sizes == [1 + 4] * 3

    # A new image on such a night changes nothing: still broken, still stopped.
    make_folder(5, start=4)
    result = run(images, meta, out, broken, "--resume", "--quiet")
    assert result.exit_code == 3 and "every one of the 5 images screened" in result.stderr
    assert {path: path.read_bytes() for path in last_night} == last_night

    # Mended, --resume screens the failed images again.
    assert run(images, meta, out, tiny_bundle, "--resume", "--quiet").exit_code == 0
    rows = read_csv(out)
    assert len(rows) == 5 and {row["status"] for row in rows} == {"ok"}


def test_a_folder_of_one_image_that_always_fails_keeps_failing_without_growing_the_journal(
        tmp_path: Path, tiny_bundle: Path, poison_gives_nan) -> None:
    """Nothing in the results says the bundle works: one image failing is a broken bundle as far
    as the guard can tell; it keeps saying so, but the journal stays one line an image."""
    images = tmp_path / "images"
    write_image(images / POISON, lesion_rgb(99))
    meta = write_patients(tmp_path / "patients.csv", [patient_row(99, POISON)])
    out = tmp_path / "results.csv"
    for night in range(3):
        result = run(images, meta, out, tiny_bundle, "--resume", "--quiet")
        assert result.exit_code == 3, result.output
        assert len(journal_lines(out)) == 2
    assert not out.exists()


def night(outcomes: list[Outcome], *, reused: tuple[Outcome, ...] = (), repeats: tuple[str, ...] = (),
          unshown: tuple[str, ...] = ()) -> _RunResult:
    return _RunResult({o.image: o for o in (*reused, *outcomes)}, screened=len(outcomes), reused=len(reused),
                      screened_now=frozenset(o.image for o in outcomes), repeats=frozenset(repeats),
                      unshown_repeats=frozenset(unshown))


def test_the_guard_excuses_a_failure_the_journal_already_holds_only_where_the_bundle_works() -> None:
    nan = [Outcome(f"img_{i}.png", "f", "error", error=NOT_A_NUMBER, retry=True) for i in range(3)]
    ok = Outcome("fine.png", "f", "ok", probabilities=(0.5, 0.5), risk=0.5)
    out = Path("results.csv")
    # Journaled by a refused night, never shown; other results of this bundle are ok: no news.
    refuse_a_broken_night(night(nan[:1], reused=(ok,), unshown=("img_0.png",)), out)
    # The same, but nothing says the bundle works on any image: still broken.
    with pytest.raises(Exception, match="every one of the 3 images screened failed in the models"):
        refuse_a_broken_night(night(nan, unshown=tuple(o.image for o in nan)), out)
    # One image new to the journal among them is news, with ok rows or not.
    with pytest.raises(Exception, match="every one of the 3 images screened failed in the models"):
        refuse_a_broken_night(night(nan, reused=(ok,), unshown=("img_0.png", "img_1.png")), out)
    # Shown by the last results: no news, as before.
    refuse_a_broken_night(night(nan[:1], repeats=("img_0.png",)), out)


def test_journaled_as_is_the_same_error_row_but_for_its_time() -> None:
    before = Outcome("a.png", "f1", "error", error=NOT_A_NUMBER, retry=True, screened_at="2025-01-01T02:00:00+00:00")
    again = Outcome("a.png", "f1", "error", error=NOT_A_NUMBER, retry=True, screened_at="2025-01-02T02:00:00+00:00")
    assert journaled_as(before, again)
    assert not journaled_as(None, again)
    assert not journaled_as(before, Outcome("a.png", "f2", "error", error=NOT_A_NUMBER, retry=True))  # changed file
    assert not journaled_as(before, Outcome("a.png", "f1", "error", error="inference failed (X)", retry=True))
    ok = Outcome("a.png", "f1", "ok", probabilities=(1.0,), risk=0.0, screened_at=before.screened_at)
    assert not journaled_as(ok, ok)  # ok rows are always written
