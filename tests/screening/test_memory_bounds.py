"""Memory that grows with the number of images: the per-image state of a run, and the final writes.

The performance goal (docs/performance.md) is a peak RSS for 10,000 images within 10 % of the
one for 1,000: with a ~260 MB process that leaves under 3 KB per image for everything a run
keeps per image (job, metadata row, outcome, ranked row) plus allocator overhead.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from bundle_factory import lesion_rgb, patient_row, write_image, write_patients
from screening.images import DEFAULT_MAX_FILE_BYTES, load_image
from screening.journal import Journal, journal_path
from screening.manifest import load_manifest
from screening.patients import read_patients
from screening.pipeline import plan_jobs
from screening.results import Outcome, ResultRow, rank_rows, render_csv, write_results_csv

ROWS = 20_000
# Bytes the line-by-line writers may hold at their peak whatever the row count: a few lines
# plus the file buffer (~150 KB measured). Building the whole text first peaked at 7 MB (CSV)
# and 17 MB (journal) for ROWS rows.
WRITE_PEAK_LIMIT = 256 * 1024
# Per-image bytes of the state a run holds until its CSV is written (see the module docstring);
# 1.87 KB on CPython 3.11 with slotted records and shared extra-column dicts, 2.28 KB before.
# The content digest (BLAKE2b hex), the matched patients.csv key and the journal's validation
# added about 0.85 KB (2.73 KB measured): 27 MB per 10,000 images, still flat per batch.
PER_IMAGE_LIMIT = 3_000


@pytest.fixture(scope="module")
def manifest(tiny_bundle: Path):
    return load_manifest(tiny_bundle)


def outcome(index: int) -> Outcome:
    risk = (index * 7919 % 1000) / 1000
    return Outcome(image=f"clinic/day{index % 30:02d}/img_{index:06d}.jpg",
                   fingerprint=f"{40000 + index}:1700000000:{index % 9},0,1", status="ok",
                   probabilities=(1 - risk, 0.0, risk / 2, risk / 2), risk=risk,
                   # as screening writes it: the most likely class (a resume checks that it is)
                   prediction="nv" if 1 - risk >= risk / 2 else "mel",
                   confidence=max(1 - risk, risk / 2), lesion_area=0.125)


def peak_bytes_of(action) -> int:
    """Peak traced allocation of ``action()`` above what was allocated before it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        action()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_results_csv_is_written_without_holding_its_text(tmp_path: Path, manifest) -> None:
    ranked = rank_rows(ResultRow(outcome(i), f"P{i:06d}", ("age unknown",) if i % 5 else ())
                       for i in range(ROWS))
    out = tmp_path / "results.csv"
    peak = peak_bytes_of(lambda: write_results_csv(out, ranked, manifest))
    size = out.stat().st_size
    assert size > 4 * WRITE_PEAK_LIMIT
    assert peak < WRITE_PEAK_LIMIT, f"writing a {size} byte CSV peaked at {peak} bytes"
    # Same bytes as rendering the whole text at once: BOM, header, rows in rank order.
    assert out.read_bytes() == render_csv(ranked, manifest).encode("utf-8-sig")


def test_journal_compaction_is_written_without_holding_its_text(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    outcomes = [outcome(i) for i in range(ROWS)]
    journal = Journal.open(out, manifest, resume=False)
    peak = peak_bytes_of(lambda: journal.compact(outcomes))
    size = journal_path(out).stat().st_size
    assert size > 4 * WRITE_PEAK_LIMIT
    # The journal keeps a list of the outcomes (8 bytes each) to write their count first: 160 KB
    # for ROWS, on top of the writer's own peak (428 KB measured in all, against 17 MB when the
    # whole text was built first).
    assert peak < WRITE_PEAK_LIMIT + 8 * ROWS + 64 * 1024, f"compacting a {size} byte journal peaked at {peak} bytes"
    with Journal.open(out, manifest, resume=True) as again:
        assert len(again.finished) == ROWS
        assert again.finished[outcomes[123].image] == outcomes[123]


def test_per_image_state_of_a_run_stays_small(tmp_path: Path, manifest) -> None:
    count = 3_000
    images = [f"clinic/day{i % 30:02d}/img_{i:06d}.jpg" for i in range(count)]
    rows = [{**patient_row(i, image), "note": f"visit {i}"} for i, image in enumerate(images)]
    csv_path = write_patients(tmp_path / "patients.csv", rows)
    kept = {}

    def run_state() -> None:
        # What screen_folder holds per image until the CSV is written.
        table = read_patients(csv_path, images=images)
        jobs = plan_jobs(images, table, manifest.metadata)
        outcomes = {job.image: outcome(i) for i, job in enumerate(jobs)}
        ranked = rank_rows(ResultRow(outcomes[j.image], j.patient_id, j.warnings, j.extra) for j in jobs)
        kept["state"] = (images, table, jobs, outcomes, ranked)

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run_state()
        per_image = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    assert len(kept["state"][4]) == count
    assert per_image < PER_IMAGE_LIMIT, f"{per_image:.0f} bytes of run state per image"


def test_reading_an_image_allocates_its_size_not_the_size_limit(tmp_path: Path) -> None:
    path = write_image(tmp_path / "lesion.png", lesion_rgb(3))
    decoded = {}
    peak = peak_bytes_of(lambda: decoded.setdefault("image", load_image(path, (32, 32))))
    assert decoded["image"].rgb.shape == (64, 64, 3)
    # Reading up to the limit allocated a DEFAULT_MAX_FILE_BYTES (200 MiB) buffer per image.
    assert peak < 1 * 2**20 < DEFAULT_MAX_FILE_BYTES
