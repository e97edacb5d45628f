"""Tests for bench/model_throughput.py on tiny models: workers run, figures and reasons land in the JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import model_throughput
from bundle_factory import reference_outputs
from harness import REPO
from screening.metadata import DEFAULT_VOCABULARY

SCRIPT = REPO / "bench" / "model_throughput.py"
QUICK = ["--repeats", "2", "--min-seconds", "0", "--warmup", "1"]


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_bundle_on_onnx_runtime_with_variants(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = run_script("--sets", "bundle", "--bundle", str(tiny_bundle), "--run-dir", str(tmp_path / "none"),
                      "--models", "segmenter", "pair", "--batch-sizes", "1", "4",
                      "--ort-variant", "runtime", "fused", *QUICK, "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [c.strip() for c in lines[1].split("|")[1:-1]] == [
        "models", "model", "batch", "pytorch", "onnxruntime runtime", "onnxruntime fused", "ORT/PyTorch"]
    assert f"report: {out}" in lines
    report = json.loads(out.read_text())
    assert report["threads"] >= 1 and report["machine"]["cpus_available"] >= 1
    results = {(r["model"], r["batch"]): r for r in report["results"]}
    assert sorted(results) == [("pair", 1), ("pair", 4), ("segmenter", 1), ("segmenter", 4)]
    for (model, _), result in results.items():
        runtime = result["images_per_s"]["onnxruntime/runtime"]
        assert runtime["runs"] == 2 and runtime["median"] > 0
        # The fused graph exists only for the pair of models.
        assert result["images_per_s"]["onnxruntime/fused"]["runs"] == (2 if model == "pair" else 0)
        # No checkpoints: PyTorch is reported as missing, with the reason, not as a failure.
        assert result["images_per_s"]["pytorch/eager"]["runs"] == 0
        assert result["errors"]["pytorch/eager"].startswith("no PyTorch models: missing ")
        assert result["ort_over_pytorch"] is None


def test_a_failing_worker_is_reported_and_sets_the_exit_code(tiny_bundle: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    for role in ("segmenter", "classifier"):
        (run_dir / role).mkdir(parents=True)
        (run_dir / role / "best.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "report.json"
    done = run_script("--sets", "bundle", "--bundle", str(tiny_bundle), "--run-dir", str(run_dir),
                      "--models", "classifier", "--batch-sizes", "2", *QUICK, "--out", str(out))
    assert done.returncode == 1
    assert "classifier batch 2 pytorch eager: worker exited with 1" in done.stderr
    result = json.loads(out.read_text())["results"][0]
    assert result["images_per_s"]["onnxruntime/runtime"]["runs"] == 2  # the other engine still ran
    assert result["errors"]["pytorch/eager"].startswith("worker exited with 1 for ")


def test_a_modified_bundle_is_a_one_line_error(tiny_bundle: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in tiny_bundle.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "classifier.onnx").write_bytes(b"not a model")
    done = run_script("--sets", "bundle", "--bundle", str(broken), "--out", str(tmp_path / "report.json"))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("error: ")
    assert "sha256" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "report.json").exists()


def test_fused_graph_computes_what_the_two_models_compute(tiny_bundle: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    fused = model_throughput.fuse_pair(str(tiny_bundle / "segmenter.onnx"), str(tiny_bundle / "classifier.onnx"),
                                       tmp_path / "pair.onnx")
    feeds = model_throughput.make_inputs(3, (32, 32), DEFAULT_VOCABULARY.dim)
    session = ort.InferenceSession(str(fused), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["seg_image", "cls_image", "cls_meta"]
    mask, logits = session.run(["seg_mask", "cls_logits"], {"seg_image": feeds["seg_image"],
                                                            "cls_image": feeds["cls_image"],
                                                            "cls_meta": feeds["meta"]})
    want_mask, want_logits = reference_outputs(feeds["seg_image"], feeds["cls_image"], feeds["meta"])
    np.testing.assert_allclose(mask, want_mask, atol=1e-5)
    np.testing.assert_allclose(logits, want_logits, atol=1e-4)


@pytest.mark.slow
def test_paper_set_exports_and_times_both_engines(tmp_path: Path) -> None:
    """The PyTorch worker and the export worker, on timm's tiny test models at 64 px."""
    out = tmp_path / "report.json"
    done = run_script("--sets", "paper", "--paper-image-backbone", "test_efficientnet",
                      "--paper-seg-encoder", "tu-test_efficientnet", "--paper-decoder-channels", "16", "16", "16",
                      "16", "16", "--paper-size", "64", "--paper-d-model", "16", "--models", "classifier",
                      "--batch-sizes", "2", *QUICK, "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["sets"]["paper"]["config"]["image_backbone"] == "test_efficientnet"
    assert report["sets"]["paper"]["parameters"]["classifier"] > 0
    result = report["results"][0]
    assert result["images_per_s"]["pytorch/eager"]["runs"] == 2
    assert result["images_per_s"]["onnxruntime/runtime"]["runs"] == 2
    assert result["ort_over_pytorch"] == pytest.approx(
        result["images_per_s"]["onnxruntime/runtime"]["median"] / result["images_per_s"]["pytorch/eager"]["median"])
