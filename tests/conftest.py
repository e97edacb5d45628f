"""Fixtures shared by the whole suite: a tiny bundle trained and exported by the real training code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "sample_data"
SHARED_DATA = REPO.parent / "shared" / "data"

# Keep torch to the machine's cores and never reach for a hub from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_overrides(out_dir: Path) -> list[str]:
    """A config small enough to train on sample_data in seconds: tiny random-init backbones at 64 px."""
    return [
        f"out_dir={out_dir}",
        f"data.index={out_dir / 'index.csv'}",
        f"data.classes={REPO / 'configs' / 'classes' / 'sample4.yaml'}",
        "data.input_size=64",
        "data.workers=0",
        "segmenter.model.encoder=tu-test_efficientnet",
        "segmenter.model.weights=null",
        "segmenter.model.decoder_channels=[16,16,16,16,16]",
        "segmenter.model.bce_weight=0.5",
        "segmenter.optim.epochs=12",
        "segmenter.optim.batch_size=16",
        "segmenter.optim.lr=0.01",
        "classifier.model.image_backbone=test_efficientnet",
        "classifier.model.image_weights=null",
        "classifier.model.mask_backbone=test_efficientnet",
        "classifier.model.d_model=32",
        "classifier.model.heads=4",
        "classifier.model.dropout=0.0",
        "classifier.optim.epochs=25",
        "classifier.optim.batch_size=16",
        "classifier.optim.lr=0.003",
        "classifier.meta_dropout=0.0",
        "export.name=tiny",
        "export.version=0.0.1",
        f"export.out_dir={out_dir / 'bundle'}",
        "export.parity_images=8",
    ]


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """Prepare -> segmenter -> classifier -> evaluate -> export on sample_data; returns the config."""
    from training.config import load_config
    from training.data.prepare import main as prepare_main
    from training.evaluate import evaluate
    from training.export import export_bundle
    from training.train_classifier import train as train_classifier
    from training.train_segmenter import train as train_segmenter

    out = tmp_path_factory.mktemp("tiny_run")
    assert prepare_main(["--source", str(SAMPLE_DATA / "labels.csv"),
                         "--classes", str(REPO / "configs" / "classes" / "sample4.yaml"),
                         "--out", str(out / "index.csv")]) == 0
    config = load_config(None, tiny_overrides(out))
    train_segmenter(config)
    train_classifier(config)
    evaluate(config)
    export_bundle(config)
    return config


# -- `make test-gpu`: a GPU check must not pass by skipping ------------------------------------------

_skipped: list[str] = []  # "node id: reason" of every skipped test of this session


def pytest_addoption(parser):
    parser.addoption("--fail-on-skip", action="store_true",
                     help="fail the run when any selected test is skipped (make test-gpu)")


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if session.config.getoption("--fail-on-skip") and _skipped and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.getoption("--fail-on-skip") and _skipped:
        terminalreporter.write_line(f"FAILED (--fail-on-skip): {len(_skipped)} test(s) skipped", red=True)
        for line in _skipped:
            terminalreporter.write_line(f"  {line}")
