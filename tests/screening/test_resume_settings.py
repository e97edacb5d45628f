"""`screen folder --resume` with other settings than the run it resumes: the CSV never mixes rows
computed two ways without saying so.

What decides a row's numbers is the bundle (with its TTA) and the backend; the flag is the risk
compared with the operating point's threshold when the CSV is written. A resume that changes
the numbers screens everything again (or stops, with --on-bundle-change fail); one that changes
only the operating point re-flags every row, reused or not.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from folder_runner import error_line, folder_args, screen
from screening import backends, session
from screening.backends.bundle import BatchOutputs
from screening.backends.onnxrt import OnnxRuntimeBackend
from test_cli_operating_point import with_points

pytestmark = pytest.mark.usefixtures("no_default_bundle")


class OtherNumbersBackend(OnnxRuntimeBackend):
    """Stands in for TensorRT on a CPU-only machine: another backend whose numbers differ in the
    last digits from ONNX Runtime's, as FP16 engines' do."""

    def __init__(self, bundle_dir: Path, manifest) -> None:
        super().__init__(bundle_dir, manifest)
        self.name = "tensorrt"

    @property
    def description(self) -> str:
        return "tensorrt (FP16, a stand-in for the tests)"

    def run_batch(self, seg_image: np.ndarray, cls_image: np.ndarray, meta: np.ndarray) -> BatchOutputs:
        outputs = super().run_batch(seg_image, cls_image, meta)
        return BatchOutputs(outputs.mask, outputs.logits + np.float32(0.01), outputs.attention)


@pytest.fixture
def tensorrt_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--backend tensorrt`` (or ``auto`` where a test makes TensorRT usable) opens
    :class:`OtherNumbersBackend`; otherwise the real backend."""
    real = session.open_backend

    def open_backend(choice, bundle_dir, manifest, *, batch_size, **options):
        if choice == "tensorrt" or (choice == "auto" and backends.probe_tensorrt(bundle_dir, manifest).usable):
            return OtherNumbersBackend(Path(bundle_dir), manifest), "tensorrt requested"
        return real(choice, bundle_dir, manifest, batch_size=batch_size, **options)

    monkeypatch.setattr(session, "open_backend", open_backend)


def run(images: Path, meta: Path, out: Path, bundle: Path, *extra: object):
    # A later --backend wins over folder_args' onnxruntime.
    return screen(*folder_args(images, meta, out, bundle, "--batch-size", 3, *extra))


def rows(path: Path) -> dict[str, dict[str, str]]:
    return {r["image"]: r for r in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))}


def summary(out: Path) -> dict:
    return json.loads(out.with_name(f"{out.stem}.summary.json").read_text())


def risks(path: Path) -> dict[str, str]:
    return {image: row["risk"] for image, row in rows(path).items()}


def test_resume_on_another_backend_screens_every_image_again(tmp_path, make_folder, tiny_bundle,
                                                             tensorrt_stand_in):
    """Three images screened on ONNX Runtime, two more added, the night resumed on TensorRT: the
    CSV must not hold three rows of one backend and two of the other under one summary line."""
    images, meta = make_folder(3)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    images, meta = make_folder(5)
    resumed = run(images, meta, out, tiny_bundle, "--resume", "--backend", "tensorrt")
    assert resumed.exit_code == 0, resumed.output
    alone = tmp_path / "alone.csv"
    assert run(images, meta, alone, tiny_bundle, "--backend", "tensorrt").exit_code == 0
    assert risks(out) == risks(alone)  # every row from the backend the summary names
    assert (summary(out)["screened"], summary(out)["reused"]) == (5, 0)
    assert (f"{out}.journal holds results screened on onnxruntime, this run uses tensorrt: screening every "
            f"image again on tensorrt (--backend onnxruntime reuses them; --on-bundle-change fail stops "
            f"instead)") in resumed.output


def test_resume_on_another_backend_with_on_bundle_change_fail_stops_in_one_line(tmp_path, make_folder,
                                                                                 tiny_bundle, tensorrt_stand_in):
    images, meta = make_folder(3)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    before = out.read_bytes()
    result = run(images, meta, out, tiny_bundle, "--resume", "--backend", "tensorrt", "--on-bundle-change", "fail")
    assert error_line(result) == (
        f"Error: {out}.journal holds results screened on onnxruntime but this run uses tensorrt: pass "
        f"--backend onnxruntime to reuse them, or --on-bundle-change rescreen to screen everything on tensorrt")
    assert out.read_bytes() == before  # last night's results are left as they were


def test_resume_on_the_same_backend_reuses_every_row(tmp_path, make_folder, tiny_bundle, tensorrt_stand_in):
    images, meta = make_folder(4)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle, "--backend", "tensorrt").exit_code == 0
    first = risks(out)
    again = run(images, meta, out, tiny_bundle, "--resume", "--backend", "tensorrt")
    assert again.exit_code == 0, again.output
    assert (summary(out)["screened"], summary(out)["reused"]) == (0, 4) and risks(out) == first


def test_resume_with_another_tta_screens_every_image_again(tmp_path, make_folder, tiny_bundle):
    images, meta = make_folder(3)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    images, meta = make_folder(5)
    resumed = run(images, meta, out, tiny_bundle, "--resume", "--tta", "flip")
    assert resumed.exit_code == 0, resumed.output
    assert (summary(out)["screened"], summary(out)["reused"]) == (5, 0)
    assert len({row["bundle"] for row in rows(out).values()}) == 1  # one TTA, named on every row


def test_resume_at_another_operating_point_flags_every_row_at_it(tmp_path, make_folder, tiny_bundle):
    """Reused rows keep their risk, not their flag: the flag is recomputed at this run's point."""
    bundle = with_points(tiny_bundle, tmp_path / "bundle", {"sens90": 1.0, "sens95": 0.0})
    images, meta = make_folder(3)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, bundle, "--operating-point", "sens90").exit_code == 0
    assert {row["flag"] for row in rows(out).values()} == {"routine"}
    images, meta = make_folder(5)
    resumed = run(images, meta, out, bundle, "--resume", "--operating-point", "sens95")
    assert resumed.exit_code == 0, resumed.output
    assert summary(out)["reused"] == 3
    assert {row["flag"] for row in rows(out).values()} == {"refer"}
    assert summary(out)["operating_point"]["name"] == "sens95" and summary(out)["referrals"] == 5


def test_resume_with_a_bundle_whose_operating_points_differ_screens_every_image_again(tmp_path, make_folder,
                                                                                      tiny_bundle):
    """Recalibrated points are another manifest, so another bundle: nothing of the old one is reused."""
    images, meta = make_folder(3)
    out = tmp_path / "results.csv"
    first = with_points(tiny_bundle, tmp_path / "first", {"sens95": 0.5})
    assert run(images, meta, out, first).exit_code == 0
    refitted = with_points(tiny_bundle, tmp_path / "refitted", {"sens95": 0.25})
    resumed = run(images, meta, out, refitted, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert (summary(out)["screened"], summary(out)["reused"]) == (3, 0)
    assert "screening every image again with the new bundle" in resumed.output


def test_check_says_a_resume_on_another_backend_screens_everything_again(tmp_path, make_folder, tiny_bundle,
                                                                         tensorrt_stand_in, monkeypatch):
    """--check predicts the night: a note by default, the night's own refusal with --on-bundle-change fail."""
    monkeypatch.setattr(backends, "probe_tensorrt",
                        lambda bundle_dir, manifest, stall_s=None: backends.Probe(True, "a GPU (test)"))
    images, meta = make_folder(3)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    check = run(images, meta, out, tiny_bundle, "--resume", "--backend", "auto", "--check")
    assert check.exit_code == 0, check.output
    assert (f"journal: {out}.journal holds results screened on onnxruntime, this run uses tensorrt: every image "
            f"will be screened again") in check.stdout
    refused = run(images, meta, out, tiny_bundle, "--resume", "--backend", "auto", "--on-bundle-change", "fail",
                  "--check")
    night = run(images, meta, out, tiny_bundle, "--resume", "--backend", "auto", "--on-bundle-change", "fail")
    assert error_line(refused) == error_line(night)
    assert "pass --backend onnxruntime to reuse them" in error_line(night)
