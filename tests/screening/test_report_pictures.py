"""The report's pictures belong to one screening: the night's file, screened by the night's bundle.

A reviewer reads a risk beside a picture and trusts that the picture is what was scored. These
tests replace a lesion between two nights, kill a night before its CSV, and upgrade the bundle,
and check that no page ever shows another screening's picture, outline or attention map.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from bundle_factory import blue_picture, write_image
from folder_runner import screen
from report_factory import header_fact, page_data, screen_with_report, screened_folder
from screening import session
from screening.journal import journal_path
from screening.report.build import NOT_IN_JOURNAL
from screening.report.views import THUMBS, VIEWS_FILE

REPLACED = "img_001.png"
# Holds a results CSV's output lock, as a `screen folder` run does while it screens.
HOLD_THE_LOCK = ("import sys, time; from pathlib import Path; from screening.journal import OutputLock; "
                 "lock = OutputLock(Path(sys.argv[1])); lock.acquire(); print('locked', flush=True); time.sleep(120)")


pytestmark = pytest.mark.usefixtures("no_default_bundle")


def rows_of(report: Path) -> dict[str, dict]:
    return {row["i"]: row for row in page_data(report)["rows"]}


def is_blue(report: Path, row: dict) -> bool:
    """Whether the row's thumbnail is the blue square that replaced the lesion."""
    picture = cv2.imread(str(report.parent / row["t"]))  # BGR
    return picture[..., 0].mean() > 150 > picture[..., 2].mean()


def replace_the_lesion(paths: dict[str, Path]) -> None:
    write_image(paths["images"] / REPLACED, blue_picture())


def killed_before_its_csv(monkeypatch: pytest.MonkeyPatch, paths: dict[str, Path], journal_lines: int = 2) -> None:
    """Night 2 screens the replaced file (with --report) and dies before writing its CSV.

    ``journal_lines``: of the replaced file then in the journal (1 where night 2 started a new one).
    """
    def killed(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(session, "write_results_csv", killed)
    result = screen_with_report(paths, "--resume")
    assert result.exit_code != 0
    monkeypatch.undo()
    lines = journal_path(paths["out"]).read_text(encoding="utf-8").splitlines()
    assert sum(f'"image":"{REPLACED}"' in line for line in lines) == journal_lines  # night 1's and night 2's


def screen_report(paths: dict[str, Path], results: Path, *extra: str) -> str:
    result = screen("report", results, "--images", paths["images"], "--out", paths["report"],
                    "--bundle", paths["bundle"], *extra)
    assert result.exit_code == 0, result.output
    return result.output


def test_last_nights_page_keeps_its_pictures_while_tonight_screens_a_replaced_file(tmp_path, monkeypatch):
    paths = screened_folder(tmp_path, n=3)
    assert screen_with_report(paths).exit_code == 0
    night1 = rows_of(paths["report"])
    replace_the_lesion(paths)
    killed_before_its_csv(monkeypatch, paths)
    page = rows_of(paths["report"])  # still night 1's page, open in a browser
    assert page == night1
    assert (paths["report"].parent / page[REPLACED]["t"]).is_file()
    assert not is_blue(paths["report"], page[REPLACED])  # night 1's lesion beside night 1's risk


def test_a_report_of_last_nights_csv_shows_last_nights_pictures_and_says_the_journal_is_newer(
        tmp_path, monkeypatch):
    paths = screened_folder(tmp_path, n=3)
    assert screen_with_report(paths).exit_code == 0
    night1 = rows_of(paths["report"])
    replace_the_lesion(paths)
    killed_before_its_csv(monkeypatch, paths)

    screen_report(paths, paths["out"])
    row = rows_of(paths["report"])[REPLACED]
    assert row["k"] == night1[REPLACED]["k"]  # the CSV's (night 1's) risk ...
    assert not is_blue(paths["report"], row) and row["o"] == night1[REPLACED]["o"]  # ... with its pictures
    page = paths["report"].read_text(encoding="utf-8")
    assert "holds 1 result that this CSV does not" in page and "results.csv.journal" in page

    # The killed night's own pictures were kept for it: its journal's report shows them.
    screen_report(paths, journal_path(paths["out"]))
    row = rows_of(paths["report"])[REPLACED]
    assert is_blue(paths["report"], row) and row["o"] != night1[REPLACED]["o"]
    assert "holds 1 result" not in paths["report"].read_text(encoding="utf-8")


def test_pictures_no_page_shows_are_removed_night_after_night(tmp_path):
    paths = screened_folder(tmp_path, n=3)
    assert screen_with_report(paths).exit_code == 0
    for blue in (230, 220):  # another file each night, screened again by the nightly --resume
        write_image(paths["images"] / REPLACED, blue_picture(blue))
        assert screen_with_report(paths, "--resume").exit_code == 0
    rows = rows_of(paths["report"])
    folder = paths["report"].with_name("report_files")
    assert sorted(p.name for p in (folder / THUMBS).iterdir()) == sorted(Path(r["t"]).name for r in rows.values())
    lines = (folder / VIEWS_FILE).read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["image"] for line in lines) == sorted(rows)  # one line per row
    assert is_blue(paths["report"], rows[REPLACED])


def test_a_report_rebuilt_while_a_run_writes_the_results_leaves_the_pictures_folder_alone(tmp_path):
    """The running night is adding pictures and views.jsonl lines: tidying under it would lose them."""
    paths = screened_folder(tmp_path, n=3)
    assert screen_with_report(paths).exit_code == 0
    tonights = paths["report"].with_name("report_files") / THUMBS / ("0" * 20 + ".jpg")
    tonights.write_bytes(b"a picture the running night just made")
    run = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(paths["out"])], stdout=subprocess.PIPE,
                           text=True)
    try:
        assert run.stdout.readline().strip() == "locked"
        screen_report(paths, paths["out"])
        assert tonights.exists()
    finally:
        run.kill()
        run.wait()
    screen_report(paths, paths["out"])  # the run is over: now it goes
    assert not tonights.exists()


def upgraded(bundle: Path, to: Path) -> Path:
    """The same models under a new version: another bundle identity."""
    shutil.copytree(bundle, to)
    manifest = json.loads((to / "manifest.json").read_text())
    manifest["version"] = "2.0.0"
    (to / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return to


def test_a_new_bundles_results_never_borrow_the_old_bundles_outlines_or_maps(tmp_path):
    paths = screened_folder(tmp_path, n=3)
    assert screen_with_report(paths).exit_code == 0  # bundle 1, with pictures
    paths["bundle"] = upgraded(paths["bundle"], tmp_path / "engines" / "maps2")
    night = ["folder", paths["images"], "--meta", paths["meta"], "--out", paths["out"], "--bundle", paths["bundle"],
             "--backend", "onnxruntime", "--quiet", "--resume"]  # the upgrade night: no --report, default workers
    assert screen(*night).exit_code == 0

    output = screen_report(paths, paths["out"])
    assert "(4 rows, 3 thumbnails made)" in output  # made again from the unchanged files
    rows = rows_of(paths["report"])
    assert len(rows) == 3 and all("t" in row and "o" not in row and "h" not in row for row in rows.values())
    assert header_fact(paths["report"], "Bundle").startswith("tiny@2.0.0+")


def test_rows_the_journal_no_longer_holds_are_shown_without_pictures_saying_why(tmp_path, monkeypatch):
    """An upgrade night started a new journal and was killed: which file each of last night's rows
    screened can no longer be told, so no picture is vouched for."""
    paths = screened_folder(tmp_path, n=3)
    assert screen_with_report(paths).exit_code == 0
    night1 = dict(paths)
    paths["bundle"] = upgraded(paths["bundle"], tmp_path / "engines" / "maps2")
    replace_the_lesion(paths)
    killed_before_its_csv(monkeypatch, paths, journal_lines=1)  # the new bundle's journal

    screen_report(night1, night1["out"])
    rows = rows_of(paths["report"])
    assert len(rows) == 3 and all("t" not in row and "o" not in row for row in rows.values())
    assert {row["x"] for row in rows.values()} == {NOT_IN_JOURNAL}
    assert "3 rows of this CSV are no longer in its journal" in paths["report"].read_text(encoding="utf-8")
