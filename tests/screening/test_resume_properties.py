"""`screen folder --resume` after files change and journal lines are damaged: every image in the
folder ends as exactly one row, and each row is the result of the file as it is now.

The journal keeps, for each image, its LAST line that reads: a later line that is torn or
damaged is dropped, and resume falls back to that image's EARLIER line, which may be the
result of a file replaced since. Such a line must never reach the CSV: its fingerprint (the
content hash) no longer matches the file, so the image is screened again
(``screening.pipeline.split_finished``). The tests here pin that, first on the one scenario a
reviewer worried about, then over random nights of screening, replacing, deleting and adding
files, interrupting runs and damaging the journal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bundle_factory import build_bundle, lesion_rgb, patient_row, write_image, write_patients
from csv_compare import rows_without
from folder_runner import folder_args, rows_by_image, screen
from screening import session
from screening.fingerprint import content_digest
from screening.interrupt import Interrupted
from screening.journal import Journal, journal_path
from screening.journal_lines import Damage, outcome_line, outcome_lines, read_outcome
from screening.manifest import Manifest, load_manifest
from screening.metadata import MetaCodes
from screening.pipeline import ImageJob, postprocess, split_finished
from screening.results import Outcome

# Columns that say when a row was screened and whether it is news to the reader: a resumed run
# and a fresh one differ there, and nowhere else.
NOT_RESULTS = ("screened_at", "new")
NAMES = ("a.png", "b.jpg", "c.png")  # the images a folder may hold (PNG lossless, JPEG lossy)
CORRUPT = -1  # a "content" that is a JPEG cut short: an error row, journaled like any result
CONTENTS = (1, 2, 7, CORRUPT)


@pytest.fixture(scope="module")
def bundle() -> Iterator[Path]:
    """The tiny bundle, built once for this module (the property test cannot take function fixtures)."""
    with tempfile.TemporaryDirectory() as folder:
        build_bundle(Path(folder) / "tiny")
        yield Path(folder) / "tiny"


@pytest.fixture(scope="module")
def tiny_manifest(bundle: Path) -> Manifest:
    return load_manifest(bundle)


def put(images: Path, name: str, content: int) -> None:
    """Write (or replace) ``name`` with picture ``content``, keeping the old file's times: a copy
    with ``cp -p`` looks unchanged to anything but the content hash."""
    path = images / name
    path.parent.mkdir(parents=True, exist_ok=True)
    before = path.stat() if path.exists() else None
    if content == CORRUPT:
        path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64)))
    else:
        write_image(path, lesion_rgb(content))
    if before is not None:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def patients_csv(folder: Path) -> Path:
    """A row for every name a test may use: metadata is part of the fingerprint, and fixed here."""
    return write_patients(folder / "patients.csv", [patient_row(index, name) for index, name in enumerate(NAMES)])


def night(images: Path, meta: Path, out: Path, bundle: Path, *extra: object):
    """One `screen folder --resume` (batch size 1: every image is its own batch, so a stop
    after k journal writes stops after k images, and a rescreened image meets the models
    exactly as in a fresh run)."""
    return screen(*folder_args(images, meta, out, bundle, "--resume", "--allow-empty", "--quiet", *extra,
                               batch_size=1), SCREEN_BUNDLE=str(out.parent / "no-such-bundle"))


@contextmanager
def stopped_after(writes: int, torn: bool = False) -> Iterator[None]:
    """The run is stopped (SIGTERM, as systemd's TimeoutStartSec stops a night) when it is about
    to make journal write number ``writes + 1``, or, if it makes no more, to write the CSV;
    ``torn``: half of that journal write reaches the disk first, as a kill in the middle leaves."""
    done = 0
    append = Journal.append

    def stopping_append(journal: Journal, outcomes) -> None:
        nonlocal done
        outcomes = list(outcomes)
        if done == writes:
            if torn and outcomes:
                text = outcome_line(outcomes[0]).encode()
                journal._handle.write(text[: len(text) // 2])
                journal._handle.flush()
            raise Interrupted(signal.SIGTERM)
        done += 1
        append(journal, outcomes)

    def stopping_before_the_csv(*args, **kwargs) -> None:
        raise Interrupted(signal.SIGTERM)

    with mock.patch.object(Journal, "append", stopping_append), \
            mock.patch.object(session, "write_results_csv", stopping_before_the_csv):
        yield


def journal_outcomes(out: Path, classes: tuple[str, ...]) -> list[Outcome | Damage]:
    return [line for _, line in outcome_lines(journal_path(out).read_bytes(), classes)]


# Fresh CSVs by (bundle, each file's name and content hash): a folder state the property test
# reaches again is not screened afresh again.
_FRESH: dict[tuple, list[list[str]]] = {}


def fresh_rows(images: Path, meta: Path, bundle: Path, scratch: Path) -> list[list[str]]:
    """The CSV (less NOT_RESULTS) of a run with no journal: what every resumed CSV must equal."""
    state = (bundle, meta.read_bytes(), tuple(sorted((path.name, content_digest(path)) for path in images.iterdir())))
    if state not in _FRESH:
        scratch.mkdir(parents=True, exist_ok=True)
        out = scratch / f"fresh_{len(list(scratch.glob('fresh_*.csv')))}.csv"
        result = screen(*folder_args(images, meta, out, bundle, "--allow-empty", "--quiet", batch_size=1),
                        SCREEN_BUNDLE=str(scratch / "no-such-bundle"))
        assert result.exit_code == 0, result.output
        _FRESH[state] = rows_without(out, NOT_RESULTS)
    return _FRESH[state]


def assert_every_image_once_as_it_is_now(images: Path, meta: Path, out: Path, bundle: Path,
                                         scratch: Path) -> None:
    present = sorted(path.name for path in images.iterdir())
    rows = rows_without(out, NOT_RESULTS)
    image_column = rows[0].index("image")
    assert sorted(row[image_column] for row in rows[1:]) == present  # one row each, none for a deleted file
    assert rows == fresh_rows(images, meta, bundle, scratch)  # each row the result of the file as it is now
    # and the journal the next night starts from holds exactly those, keyed on today's content,
    # every line one that the next night reuses (it passes the checks a resume makes)
    manifest = load_manifest(bundle)
    classes = tuple(manifest.class_names)
    kept = journal_outcomes(out, classes)
    assert all(isinstance(line, Outcome) for line in kept), kept
    for line in journal_path(out).read_bytes().splitlines()[1:]:
        read_outcome(line, classes, manifest.malignant_indices, checksummed=True)
    assert sorted(line.image for line in kept) == present
    for line in kept:
        assert line.fingerprint.startswith(f"{content_digest(images / line.image)}:"), line


# -- the scenario the review left open -------------------------------------------------------------

def tear(line: bytes) -> bytes:
    """What a kill in the middle of writing ``line`` leaves: its first half, no newline."""
    return line[: len(line) // 2]


def garble(line: bytes) -> bytes:
    """A finished line damaged since (a disk error, an editor): no longer JSON, newline kept."""
    return line[:20] + b"\x00\x00garbled\x00\x00" + line[30:]


@pytest.mark.parametrize("damage", [tear, garble], ids=["torn", "garbled"])
def test_a_replaced_image_whose_new_line_is_damaged_is_screened_again_not_given_its_old_result(
        tmp_path: Path, bundle: Path, damage) -> None:
    """a.png screened; then replaced by another picture, screened again by a night that was
    stopped before it finished, and that night's line for a.png torn (or damaged later). The
    journal's readable line for a.png is now the OLD picture's: the next night must not use it."""
    images, meta, out = tmp_path / "images", patients_csv(tmp_path), tmp_path / "results.csv"
    put(images, "a.png", 1)
    put(images, "b.jpg", 2)
    assert night(images, meta, out, bundle).exit_code == 0
    old_risk = rows_by_image(out)["a.png"]["risk"]

    put(images, "a.png", 7)  # same name, same times, another lesion
    with stopped_after(writes=1):
        stopped = night(images, meta, out, bundle)
    assert stopped.exit_code == 143, stopped.output
    header, *lines = journal_path(out).read_bytes().splitlines(keepends=True)
    assert [line.split(b'"')[3] for line in lines] == [b"a.png", b"b.jpg", b"a.png"]  # old a, b, new a
    journal_path(out).write_bytes(header + b"".join(lines[:-1]) + damage(lines[-1]))
    classes = tuple(load_manifest(bundle).class_names)
    with Journal.open(out, load_manifest(bundle), resume=True) as journal:
        assert journal.finished["a.png"] == journal_outcomes(out, classes)[0]  # the fallback: the old picture's

    resumed = night(images, meta, out, bundle)
    assert resumed.exit_code == 0, resumed.output
    assert rows_by_image(out)["a.png"]["risk"] != old_risk
    assert_every_image_once_as_it_is_now(images, meta, out, bundle, tmp_path / "fresh")
    summary = json.loads(out.with_name("results.summary.json").read_text())
    assert (summary["screened"], summary["reused"]) == (1, 1)  # a.png again, b.jpg from the journal


def test_a_journaled_result_is_reused_only_for_the_content_it_was_screened_from(tmp_path: Path) -> None:
    """The guarantee itself, where it lives: whichever line the journal falls back to, a result
    whose fingerprint is not the file's content now goes back to be screened."""
    images = tmp_path / "images"
    put(images, "a.png", 1)
    then = content_digest(images / "a.png")
    put(images, "a.png", 7)  # replaced, its times kept
    job = ImageJob("a.png", MetaCodes(2, 0, 1))

    def screened_from(digest: str) -> Outcome:
        return Outcome(image="a.png", fingerprint=f"{digest}:2,0,1", status="ok",
                       probabilities=(0.25, 0.25, 0.25, 0.25), risk=0.5, prediction="nv", confidence=0.25,
                       lesion_area=0.1)

    reused, todo = split_finished([job], {"a.png": screened_from(then)}, root=images)
    assert reused == {} and [j.image for j in todo] == ["a.png"]
    now = screened_from(content_digest(images / "a.png"))
    reused, todo = split_finished([job], {"a.png": now}, root=images)
    assert reused == {"a.png": now} and todo == []


def flip_risk(line: dict) -> None:
    line["risk"] = round(1 - line["risk"], 6)  # e.g. 0.775739 -> 0.224261: ranked far lower


def flip_a_malignant_probability(line: dict) -> None:
    line["probabilities"][2] = round(line["probabilities"][2] / 10, 6)


def flip_the_prediction(line: dict) -> None:
    line["prediction"] = "nv" if line["prediction"] != "nv" else "mel"


def flip_the_confidence(line: dict) -> None:
    line["confidence"] = round(line["confidence"] / 2, 6)


def change_the_lesion_area(line: dict) -> None:
    line["lesion_area"] = round(1 - line["lesion_area"], 6)


def add_a_warning(line: dict) -> None:
    line["warnings"] = [*line["warnings"], "image is blurred"]


def lower_a_benign_probability(line: dict) -> None:
    """nv or bkl (the tiny bundle's benign classes), whichever is not the most likely: the risk,
    prediction and confidence still agree with the probabilities."""
    probabilities = line["probabilities"]
    at = 0 if probabilities[0] < max(probabilities) else 1
    probabilities[at] = round(probabilities[at] / 2, 6)


@pytest.mark.parametrize("flip", [flip_risk, flip_a_malignant_probability, flip_the_prediction,
                                  flip_the_confidence, change_the_lesion_area, add_a_warning,
                                  lower_a_benign_probability])
def test_a_line_damaged_into_other_valid_json_is_screened_again_not_copied(tmp_path: Path, bundle: Path,
                                                                           flip) -> None:
    """A journal line changed since it was written (a disk error, an edit by hand) that still
    reads as JSON, its fingerprint intact: its risk must still be the sum of its malignant
    probabilities, its prediction and confidence its most likely class, and its checksum its
    content, or a wrong risk, lesion area or warning would reach the worklist without a word."""
    images, meta, out = tmp_path / "images", patients_csv(tmp_path), tmp_path / "results.csv"
    put(images, "a.png", 1)
    put(images, "b.jpg", 2)
    assert night(images, meta, out, bundle).exit_code == 0
    header, *lines = journal_path(out).read_text(encoding="utf-8").splitlines()
    line = json.loads(lines[0])
    assert line["image"] == "a.png" and line["status"] == "ok"
    flip(line)
    lines[0] = json.dumps(line, separators=(",", ":"))
    journal_path(out).write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")

    resumed = night(images, meta, out, bundle)
    assert resumed.exit_code == 0, resumed.output
    assert f"ignored 1 unreadable line of {journal_path(out)} (line 2: " in resumed.stderr
    summary = json.loads(out.with_name("results.summary.json").read_text())
    assert (summary["screened"], summary["reused"]) == (1, 1)  # a.png again; b.jpg's line, as written, reused
    assert_every_image_once_as_it_is_now(images, meta, out, bundle, tmp_path / "fresh")


@settings(max_examples=200, deadline=None, database=None)
# Equal logits (ties for the most likely class) and saturated ones (probabilities rounding to 0 and 1).
@given(logits=st.lists(st.sampled_from([-30.0, -1.5, 0.0, 2.25, 30.0]) | st.floats(-40, 40), min_size=4, max_size=4),
       temperature=st.sampled_from([0.5, 1.0, 1.7]))
def test_every_result_screening_computes_passes_the_checks_a_resume_makes(tiny_manifest: Manifest, logits,
                                                                          temperature) -> None:
    """The agreement check must never drop a line screening wrote, ties and rounding included:
    that image would be screened again, with a warning, every night."""
    manifest = dataclasses.replace(tiny_manifest, temperature=temperature)
    mask = np.zeros((1, 32, 32), np.float32)
    outcome = postprocess(ImageJob("a.png", MetaCodes(0, 0, 0), digest="b2:00"), mask,
                          np.asarray(logits, np.float32), manifest)
    line = outcome_line(outcome).encode()
    assert read_outcome(line, tuple(manifest.class_names), manifest.malignant_indices, checksummed=True) == outcome


def test_a_corrupt_jpeg_as_the_nights_only_new_image_is_a_row_not_a_failed_night(tmp_path: Path,
                                                                                 bundle: Path) -> None:
    """Exit 3 is for a bundle that fails in the models on every image a night screens; a file
    that does not decode is the image's problem, not the bundle's: an error row, exit 0, on the
    night it comes and on every night after (where its row is reused)."""
    images, meta, out = tmp_path / "images", patients_csv(tmp_path), tmp_path / "results.csv"
    put(images, "a.png", 1)
    assert night(images, meta, out, bundle).exit_code == 0
    put(images, "c.png", CORRUPT)
    for _ in range(2):
        result = night(images, meta, out, bundle)
        assert result.exit_code == 0, result.output
        row = rows_by_image(out)["c.png"]
        assert (row["status"], row["rank"]) == ("error", "") and row["error"]
    assert_every_image_once_as_it_is_now(images, meta, out, bundle, tmp_path / "fresh")


# -- any night, any damage -------------------------------------------------------------------------

def damage_journal(out: Path, kind: str, pick: int, where: float) -> None:
    """Damage the journal as a disk, an editor, a copy tool or a kill could: ``pick`` chooses the
    line (the header included), ``where`` the place in it (0..1)."""
    path = journal_path(out)
    if not path.exists():
        return
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    if not lines:
        return
    index = pick % len(lines)
    line = lines[index]
    cut = int(where * len(line))
    if kind == "tear":  # the last line cut short, as a kill mid-write leaves it
        lines[-1] = lines[-1].rstrip(b"\n")[: int(where * len(lines[-1].rstrip(b"\n")))]
    elif kind == "garble":  # a NUL is never valid JSON: the line no longer reads
        lines[index] = line[:cut] + b"\x00" + line[cut + 1:]
    elif kind == "alter":  # still JSON, its numbers still agreeing: only its checksum can tell
        lines[index] = altered(line, where)
    elif kind == "duplicate":  # an older line copied after the newer ones
        lines.append(line)
    elif kind == "drop":
        del lines[index]
    elif kind == "truncate":  # the file cut anywhere, the header included
        path.write_bytes(data[: int(where * len(data))])
        return
    path.write_bytes(b"".join(lines))


def altered(line: bytes, where: float) -> bytes:
    """``line`` changed as a flipped byte or a half-finished edit can change it and stay JSON: an ok
    line's lesion area or warnings, an error line's reason. The header, or a line that no longer
    reads, is left as it is."""
    try:
        data = json.loads(line)
    except ValueError:
        return line
    if not isinstance(data, dict) or data.get("status") not in ("ok", "error"):
        return line
    if data["status"] == "error":
        data["error"] = f"{data.get('error')} (edited)"
    elif where < 0.5:
        data["lesion_area"] = round(1 - data["lesion_area"], 6)
    else:
        data["warnings"] = [*data["warnings"], "image is blurred"]
    return json.dumps(data, ensure_ascii=False).encode() + b"\n" * line.endswith(b"\n")


NOT_A_JOURNAL = "is not a screening journal: delete it or choose another --out"

events = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(NAMES), st.sampled_from(CONTENTS)),
    st.tuples(st.just("delete"), st.sampled_from(NAMES)),
    # a night: finishing, or stopped after that many journal writes (torn or not)
    st.tuples(st.just("night"), st.none() | st.integers(0, 3), st.booleans()),
    st.tuples(st.just("damage"), st.sampled_from(["tear", "garble", "alter", "duplicate", "drop", "truncate"]),
              st.integers(0, 20), st.floats(0.0, 1.0)),
)


@settings(max_examples=20, deadline=None, database=None)
@given(st.lists(events, min_size=1, max_size=7))
# The review's scenario: screened, replaced, the rescreen stopped and its line torn.
@example([("put", "a.png", 1), ("put", "b.jpg", 2), ("night", None, False), ("put", "a.png", 7),
          ("night", 1, False), ("damage", "tear", 0, 0.5)])
# The same, its line damaged later instead, and the replaced file then put back as it was.
@example([("put", "a.png", 1), ("night", None, False), ("put", "a.png", 7), ("night", 0, True),
          ("night", 1, False), ("damage", "garble", 2, 0.3), ("put", "a.png", 1)])
# A lesion area changed on disk, then a corrupt file's reason: both lines still JSON.
@example([("put", "a.png", 1), ("put", "c.png", CORRUPT), ("night", None, False), ("damage", "alter", 1, 0.2),
          ("damage", "alter", 2, 0.2)])
# A file that fails to decode, replaced by a good one whose line is lost, then deleted.
@example([("put", "c.png", CORRUPT), ("night", None, False), ("put", "c.png", 2), ("night", 1, False),
          ("damage", "drop", 2, 0.0), ("delete", "c.png")])
def test_any_night_after_any_changes_and_damage_gives_one_current_row_per_image(bundle: Path, steps) -> None:
    """Whatever happened before (files put, replaced or deleted; nights stopped midway; journal
    lines torn, garbled, changed into other valid JSON, copied, dropped or cut off), a night that
    finishes writes exactly one row per image in the folder, equal to a fresh run's; a journal
    whose header is gone stops the night with one line and nothing else ever does."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        images, meta, out = folder / "images", patients_csv(folder), folder / "results.csv"
        images.mkdir()  # a folder that starts empty (--allow-empty) and may end so
        for step in [*steps, ("night", None, False)]:  # the last night always finishes
            if step[0] == "put":
                put(images, step[1], step[2])
            elif step[0] == "delete":
                (images / step[1]).unlink(missing_ok=True)
            elif step[0] == "damage":
                damage_journal(out, *step[1:])
            else:
                writes, torn = step[1:]
                with stopped_after(writes, torn) if writes is not None else nullcontext():
                    result = night(images, meta, out, bundle)
                if result.exit_code == 2 and NOT_A_JOURNAL in result.stderr:
                    # Only a journal whose first line is not a header is refused; the user deletes it.
                    assert result.stderr.splitlines() == [f"Error: {journal_path(out)} {NOT_A_JOURNAL}"]
                    journal_path(out).unlink()
                    with stopped_after(writes, torn) if writes is not None else nullcontext():
                        result = night(images, meta, out, bundle)
                if writes is not None and result.exit_code == 143:
                    continue  # stopped, as asked: the next night resumes
                assert result.exit_code == 0, (result.output, result.exception)
                assert_every_image_once_as_it_is_now(images, meta, out, bundle, folder / "fresh")
