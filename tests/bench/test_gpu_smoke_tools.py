"""The CPU-side helpers of bench/gpu_smoke.sh: the image subset, the backend comparison, and the script's usage."""

import csv
import subprocess
from pathlib import Path

import compare_results
import smoke_subset

REPO = Path(__file__).resolve().parents[2]
FIELDS = ["rank", "image", "risk", "prediction", "p_nv", "p_mel", "status"]


def write_results(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8-sig") as handle:  # as screen writes it: with a BOM
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def row(image: str, p_mel: float, status: str = "ok") -> dict:
    return {"rank": "", "image": image, "risk": p_mel, "prediction": "mel" if p_mel > 0.5 else "nv",
            "p_nv": round(1 - p_mel, 4), "p_mel": p_mel, "status": status}


def test_subset_copies_images_and_their_metadata_rows_under_new_names(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("b.jpg", "a.jpg", "c.png", "notes.txt"):
        (images / name).write_bytes(name.encode())
    meta = tmp_path / "labels.csv"
    meta.write_text("image_id,age,sex\na,40,male\nb,50,female\nc,,\n", encoding="utf-8")
    count, rows = smoke_subset.make_subset(images, meta, count=2, copies=3, out=tmp_path / "out")
    assert (count, rows) == (6, 6)
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == [
        "a.jpg", "b.jpg", "r1_a.jpg", "r1_b.jpg", "r2_a.jpg", "r2_b.jpg"]
    with open(tmp_path / "out" / "patients.csv", newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert [r["image_id"] for r in written] == ["a", "b", "r1_a", "r1_b", "r2_a", "r2_b"]
    assert written[3] == {"image_id": "r1_b", "age": "50", "sex": "female"}


def test_compare_reports_agreement_largest_changes_and_the_verdict(tmp_path, capsys):
    ort = write_results(tmp_path / "onnxruntime.csv", [row("x.jpg", 0.9), row("y.jpg", 0.49), row("z.jpg", 0.2),
                                                       row("bad.jpg", 0.0, status="error")])
    trt = write_results(tmp_path / "tensorrt.csv", [row("x.jpg", 0.895), row("y.jpg", 0.51), row("z.jpg", 0.2)])
    code = compare_results.main([str(ort), str(trt), "--out", str(tmp_path / "c.json")])
    printed = capsys.readouterr().out
    assert code == 1  # one of three top classes changed: 66.67% < 99%
    assert printed.startswith("tensorrt.csv vs onnxruntime.csv on 3 images: top-1 agreement 66.67%, "
                              "max |dp| 0.0200, max |drisk| 0.0200 -> FAIL")
    result = compare_results.compare(compare_results.read_rows(ort), compare_results.read_rows(trt))
    assert result["top1_changed"] == ["y.jpg"] and result["only_in_reference"] == 0


def test_smoke_script_needs_its_images_and_says_how():
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_smoke.sh")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: bench/gpu_smoke.sh --images DIR --meta CSV")
