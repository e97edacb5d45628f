"""Tests for bench/harness.py: tables, medians, data replication, workers and screen runs."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

import harness
from harness import (BenchError, cell, format_table, ratio, read_dataset, replicate,
                     run_screen, run_worker, spread, time_calls)


def test_format_table_aligns_columns_under_a_markdown_rule() -> None:
    text = format_table(["name", "images/s"], [["a", cell(12.345)], ["longer", cell(None)]])
    assert text.splitlines() == [
        "|   name | images/s |",
        "|-------:|---------:|",
        "|      a |     12.3 |",
        "| longer |        - |",
    ]


def test_spread_and_ratio() -> None:
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0, "runs": 4}
    assert spread([]) == {"median": None, "min": None, "max": None, "runs": 0}
    assert ratio(9.0, 10.0) == 0.9
    assert ratio(None, 10.0) is None and ratio(1.0, 0.0) is None


def test_time_calls_gives_one_rate_per_repeat_after_the_warmup() -> None:
    calls = []
    rates = time_calls(lambda: calls.append(1), items=8, warmup=2, repeats=3, min_seconds=0.0)
    assert len(rates) == 3 and all(rate > 0 for rate in rates)
    assert len(calls) == 2 + 3  # min_seconds 0: exactly one timed call per repeat


def test_read_dataset_and_replicate_cycle_the_images_with_their_metadata(tiny_dataset: Path,
                                                                        tmp_path: Path) -> None:
    images = read_dataset(tiny_dataset)
    assert [i.path.name for i in images] == [f"L{i}.jpg" for i in range(5)]
    assert (images[1].age, images[1].sex, images[1].site) == ("35", "female", "back")
    folder, patients = replicate(images, 12, tmp_path / "work")
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 12 and files[0] == "000000_L0.jpg" and files[11] == "000011_L1.jpg"
    # Hard links: the same bytes, no extra disk space.
    assert os.path.samefile(folder / "000006_L1.jpg", tiny_dataset / "images" / "L1.jpg")
    with open(patients, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[6] == {"image": "000006_L1.jpg", "patient_id": "P000006", "age": "35", "sex": "female",
                       "site": "back"}
    assert len(rows) == 12


def test_replicate_zero_means_each_image_once(tiny_dataset: Path, tmp_path: Path) -> None:
    folder, _ = replicate(read_dataset(tiny_dataset), 0, tmp_path)
    assert len(list(folder.iterdir())) == 5


def test_missing_data_set_and_empty_replication_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"^no labels.csv in .*: is ../shared/data there\?$"):
        read_dataset(tmp_path)
    with pytest.raises(BenchError, match="^no source images to replicate$"):
        replicate([], 3, tmp_path)


def test_run_worker_returns_the_last_json_line_and_quotes_a_failure(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(
        "import json, sys\n"
        "spec = json.loads(sys.argv[2])\n"
        "if spec['fail']:\n"
        "    sys.exit('cannot load model.onnx')\n"
        "print('chatter')\n"
        "print(json.dumps({'echo': spec['value']}))\n")
    assert run_worker(script, {"fail": False, "value": 7}) == {"echo": 7}
    with pytest.raises(BenchError, match=r"(?s)^worker exited with 1 for .*\ncannot load model.onnx$"):
        run_worker(script, {"fail": True, "value": 0})


def test_run_screen_reads_the_summary_and_the_child_peak_rss(tiny_bundle: Path, tiny_dataset: Path,
                                                            tmp_path: Path) -> None:
    images, patients = replicate(read_dataset(tiny_dataset), 7, tmp_path / "set")
    run = run_screen(images, patients, tiny_bundle, tmp_path / "results.csv", batch_size=4)
    assert run.summary["images"] == 7 and run.summary["status"] == {"ok": 7, "error": 0}
    assert run.summary["backend"].startswith("onnxruntime")
    # A Python process with ONNX Runtime and OpenCV loaded is tens of MiB, never less.
    assert 30 < run.peak_rss_mib < 4096
    assert run.wall_s > run.summary["elapsed_s"]
    with pytest.raises(BenchError, match=r"(?s)^screen folder exited with 2:\n.*journal"):
        run_screen(images, patients, tiny_bundle, tmp_path / "results.csv", batch_size=4)


def test_machine_info_names_the_cpu_and_the_load() -> None:
    info = harness.machine_info()
    assert info["cpus_available"] >= 1 and len(info["load_average_1_5_15"]) == 3
    assert isinstance(info["busy"], bool) and "onnxruntime" in info["packages"]
    json.dumps(info)  # the report must be JSON
