"""bench/fp16_fidelity.py: FP16 ONNX vs FP32 ONNX on the CPU, on synthetic and on real images."""

import importlib.util
from pathlib import Path

import pytest
from engine_helpers import read_json, write_images

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO / ".." / "shared" / "data" / "ham10000_dev"


def load_bench():
    spec = importlib.util.spec_from_file_location("fp16_fidelity", REPO / "bench" / "fp16_fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_reports_agreement_and_writes_json(torch_bundle, tmp_path, capsys):
    bundle, manifest = torch_bundle
    write_images(tmp_path / "images", 10, seed=3)
    out = tmp_path / "fidelity.json"
    code = load_bench().main(["--bundle", str(bundle), "--images", str(tmp_path / "images"), "--limit", "8",
                              "--batch-size", "4", "--threads", "1", "--out", str(out)])
    result = read_json(out)
    assert code == 0 and result["passed"] is True
    assert result["images"] == 8 and result["bundle"] == manifest.tag
    assert result["top1_agreement"] >= 0.99 and 0 < result["max_delta_p"] <= 0.02
    assert "Softmax" in result["fp32_ops"] and result["limits"] == {"min_top1_agreement": 0.99, "max_delta_p": 0.02}
    printed = capsys.readouterr().out
    assert printed.startswith(f"FP16 ONNX vs FP32 ONNX ({manifest.tag}, ONNX Runtime CPU) on 8 images")
    assert "top-1 agreement 100.00% (8/8 images)" in printed


def test_bench_without_a_bundle_says_so(tmp_path, capsys):
    code = load_bench().main(["--bundle", str(tmp_path / "none"), "--images", str(tmp_path),
                              "--out", str(tmp_path / "o.json")])
    assert code == 3
    assert capsys.readouterr().err == f"Error: bundle folder {tmp_path / 'none'} does not exist\n"


@pytest.mark.data
@pytest.mark.skipif(not SHARED.is_dir(), reason="real data not found in ../shared/data/ham10000_dev")
def test_bench_on_real_dermoscopy_images(torch_bundle, tmp_path):
    bundle, _ = torch_bundle
    out = tmp_path / "fidelity.json"
    load_bench().main(["--bundle", str(bundle), "--images", str(SHARED / "images"),
                       "--meta", str(SHARED / "labels.csv"), "--limit", "12", "--batch-size", "6",
                       "--threads", "1", "--out", str(out)])
    result = read_json(out)
    assert result["images"] == 12 and result["skipped"] == []
    assert result["meta"].endswith("labels.csv")
    assert 0 <= result["max_delta_p"] < 0.05  # an untrained tiny model: the number itself is the finding


@pytest.mark.skipif(not (REPO / "sample_data" / "patients.csv").is_file(), reason="sample_data/ not generated")
def test_bench_on_the_project_sample_data(torch_bundle, tmp_path):
    bundle, _ = torch_bundle
    out = tmp_path / "fidelity.json"
    code = load_bench().main(["--bundle", str(bundle), "--images", str(REPO / "sample_data" / "images"),
                              "--meta", str(REPO / "sample_data" / "patients.csv"), "--limit", "8",
                              "--threads", "1", "--out", str(out)])
    result = read_json(out)
    assert (code, result["images"], result["passed"]) == (0, 8, True)
