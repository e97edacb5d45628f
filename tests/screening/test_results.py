"""Tests for screening.results: ranking, CSV cells, formula neutralisation, atomic writes, summary."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from screening.manifest import load_manifest
from screening.atomic import atomic_write
from screening.results import (Outcome, ResultRow, Summary, columns, error_outcome,
                               format_summary, neutralise, rank_rows, render_csv, summary_path,
                               top_risks, write_results_csv, write_summary_json)


def ok(image: str, risk: float, probabilities=(0.1, 0.2, 0.3, 0.4)) -> Outcome:
    return Outcome(image=image, fingerprint="1:2:0,0,0", status="ok", probabilities=tuple(probabilities),
                   risk=risk, prediction="bcc", confidence=max(probabilities), lesion_area=0.25)


@pytest.fixture(scope="module")
def manifest(tiny_bundle: Path):
    return load_manifest(tiny_bundle)


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("text, expected", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+1+1", "'+1+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tcmd", "'\tcmd"),
    ("\rcmd", "'\rcmd"),
    ("-0.5", "-0.5"),
    ("+12", "+12"),
    ("-3e-4", "-3e-4"),
    ("P-001", "P-001"),
    ("", ""),
])
def test_neutralise_only_formula_like_text(text: str, expected: str) -> None:
    assert neutralise(text) == expected


def test_rank_by_risk_then_path_with_errors_last() -> None:
    rows = [ResultRow(o) for o in (
        ok("b.png", 0.30), error_outcome("a.png", "f", "truncated image file"), ok("c.png", 0.9),
        ok("a2.png", 0.30), ok("z.png", 0.3000001), error_outcome("0.png", "f", "empty file (0 bytes)"))]
    ranked = [(rank, row.outcome.image) for rank, row in rank_rows(rows)]
    # 0.3000001 prints as 0.300000, so it ties with 0.3 and is ordered by its path.
    assert ranked == [(1, "c.png"), (2, "a2.png"), (3, "b.png"), (4, "z.png"), (None, "0.png"), (None, "a.png")]


def test_csv_columns_and_cells(manifest) -> None:
    rows = [ResultRow(ok("x/a.jpg", 0.7, (0.1, 0.2, 0.3, 0.4)), "P001", ("age unknown", "no metadata row")),
            ResultRow(error_outcome("b.png", "f", "truncated image file"), "P002")]
    text = render_csv(rank_rows(rows), manifest)
    lines = text.splitlines()
    assert lines[0] == ("rank,image,patient_id,risk,flag,prediction,confidence,p_nv,p_bkl,p_mel,p_bcc,"
                        "lesion_area,status,error,warnings,bundle,screened_at,new")
    assert lines[1] == ("1,x/a.jpg,P001,0.700000,,bcc,0.400000,0.100000,0.200000,0.300000,0.400000,"
                        f"0.250000,ok,,age unknown; no metadata row,{manifest.identity},,no")
    assert lines[2] == f",b.png,P002,,,,,,,,,,error,truncated image file,,{manifest.identity},,no"
    assert len(lines) == 3
    flagged = render_csv(rank_rows(rows), manifest, threshold=0.7).splitlines()
    assert flagged[1].startswith("1,x/a.jpg,P001,0.700000,refer,bcc,")
    assert flagged[2].startswith(",b.png,P002,,,")  # no risk, no flag
    assert render_csv(rank_rows(rows), manifest, threshold=0.71).splitlines()[1].split(",")[4] == "routine"


def test_text_cells_are_neutralised_but_numbers_are_not(manifest) -> None:
    row = ResultRow(ok("=cmd|' /C calc'!A0.png", 0.5), "+44 20 7946", ("@warning",),
                    {"note": "=1+1", "score": "-0.5", "risk": "-2+3"})
    text = render_csv(rank_rows([row]), manifest, ["note", "score", "risk"])
    record = parse(text)[0]
    assert record["image"] == "'=cmd|' /C calc'!A0.png"
    assert record["patient_id"] == "'+44 20 7946"
    assert record["warnings"] == "'@warning"
    assert record["note"] == "'=1+1"
    assert record["score"] == "-0.5"
    # an extra column named like an output column is renamed rather than shadowing it
    assert record["csv_risk"] == "'-2+3" and record["risk"] == "0.500000"


def test_extra_columns_come_last(manifest) -> None:
    names = columns(manifest, ["clinic", "status"])
    assert names[-5:] == ["bundle", "screened_at", "new", "clinic", "csv_status"]


def test_outcome_json_round_trip_is_exact() -> None:
    outcome = ok("a.png", 0.1 + 0.2, (1 / 3, 2 / 3, 1e-17, 0.0))
    assert Outcome.from_json(outcome.to_json()) == outcome
    with pytest.raises(ValueError):
        Outcome.from_json('{"image": "a.png"}')
    with pytest.raises(ValueError):
        Outcome.from_json('{"image": "a.png", "fingerpri')


def test_written_csv_opens_in_excel_and_pandas(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    write_results_csv(out, rank_rows([ResultRow(ok("é/ß.png", 0.5), "Zoë")]), manifest)
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # Excel needs the BOM to read UTF-8
    import pandas as pd

    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert frame.columns[0] == "rank"
    assert frame.loc[0, "image"] == "é/ß.png" and frame.loc[0, "patient_id"] == "Zoë"


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "results.csv"
    target.write_text("old")
    atomic_write(target, b"new")
    assert target.read_text() == "new"
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # fails mid-write
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def _summary(tmp_path: Path, ranked) -> Summary:
    return Summary(
        output=str(tmp_path / "results.csv"), bundle="tiny@1.0", backend="onnxruntime (CPU, 2 threads)",
        backend_note="onnxruntime requested", images=3, status={"ok": 2, "error": 1}, screened=3,
        reused=0, ignored_files=["notes.txt"], metadata_rows_without_image=["ghost"],
        duplicate_keys={"a": 2}, metadata_warnings=[], images_without_metadata=1,
        rows_with_warnings=1, top_risks=top_risks(ranked), elapsed_s=2.0, images_per_s=1.5,
        statement="Not for diagnosis.")


def test_summary_json_and_printout(tmp_path: Path) -> None:
    ranked = rank_rows([ResultRow(ok("a.png", 0.9), "P1"), ResultRow(ok("b.png", 0.2)),
                        ResultRow(error_outcome("c.png", "f", "truncated image file"))])
    summary = _summary(tmp_path, ranked)
    assert summary.top_risks == [
        {"rank": 1, "image": "a.png", "patient_id": "P1", "risk": 0.9, "prediction": "bcc"},
        {"rank": 2, "image": "b.png", "patient_id": "", "risk": 0.2, "prediction": "bcc"}]
    path = summary_path(tmp_path / "results.csv")
    assert path.name == "results.summary.json"
    write_summary_json(summary, path)
    assert json.loads(path.read_text())["status"] == {"ok": 2, "error": 1}
    text = format_summary(summary)
    assert text.splitlines()[0] == "Screened 3 images (ok 2, error 1) in 2.0 s, 1.5 images/s"
    assert ("  1 non-image files ignored; 1 images without a metadata row; "
            "1 metadata rows without an image; 1 duplicate metadata keys; 1 rows with warnings") in text
    assert "    1  0.900  bcc      a.png (patient P1)" in text
    assert text.splitlines()[-1] == "Not for diagnosis."
