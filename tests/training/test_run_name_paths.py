"""--run-name moves the run's own paths with out_dir, and --resume needs a run to continue."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.common import config_argument_parser, config_from_args

from ..conftest import REPO

STAGE2 = str(REPO / "configs" / "starter_v2_stage2.yaml")
STAGE4 = str(REPO / "configs" / "starter_v2_stage4.yaml")


def parsed(*argv: str):
    parser = config_argument_parser("classifier", "test")
    parser.add_argument("--resume", action="store_true")  # as the training commands add it
    return config_from_args(parser.parse_args(list(argv)))


def test_a_later_stage_of_a_named_run_starts_from_that_runs_weights_and_exports_beside_it(capsys):
    config = parsed("--config", STAGE2, "--run-name", "trial1")
    assert config.out_dir == "runs/starter2/trial1"
    assert config.classifier.init_from == "runs/starter2/trial1/classifier/last.pt"
    assert config.export.out_dir == "runs/starter2/trial1/bundle-2.0.0-stage2"
    assert config.data.index == "runs/starter2/index.csv"  # one index serves every run
    out = capsys.readouterr().out
    assert ("classifier.init_from: runs/starter2/classifier/last.pt -> runs/starter2/trial1/classifier/last.pt "
            "(under out_dir: moved into the run folder)") in out
    assert "export.out_dir: runs/starter2/bundle-2.0.0-stage2 -> runs/starter2/trial1/bundle-2.0.0-stage2" in out


def test_paths_elsewhere_or_given_on_the_command_line_stay(capsys):
    config = parsed("--config", STAGE4, "--run-name", "trial1")
    assert config.export.out_dir == "engines/starter"  # not under out_dir
    assert config.classifier.init_from == "runs/starter2/trial1/classifier3/last.pt"
    chosen = parsed("--config", STAGE2, "--run-name", "trial2",
                    "--set", "classifier.init_from=runs/starter2/trial1/classifier/last.pt")
    assert chosen.classifier.init_from == "runs/starter2/trial1/classifier/last.pt"
    assert "(given with --set) kept" in capsys.readouterr().out
    assert parsed("--config", STAGE2).classifier.init_from == "runs/starter2/classifier/last.pt"  # no --run-name


def test_absolute_paths_move_too_and_a_run_folder_named_like_a_number_is_a_folder(tmp_path):
    config = parsed("--config", STAGE2, "--set", f"out_dir={tmp_path}",
                    "--set", "export.name=x", "--run-name", "2.10")
    assert config.out_dir == str(tmp_path / "2.10")
    assert config.classifier.init_from == "runs/starter2/classifier/last.pt"  # not under this out_dir
    inside = parsed("--set", f"out_dir={tmp_path}", "--set", f"export.out_dir={tmp_path / 'bundle'}",
                    "--run-name", "t")
    assert inside.export.out_dir == str(tmp_path / "bundle")  # given with --set: kept
    written = tmp_path / "absolute.yaml"  # absolute paths written in a config file move
    written.write_text(f"out_dir: {tmp_path}\nclassifier:\n  init_from: {tmp_path / 'classifier' / 'last.pt'}\n")
    moved = parsed("--config", str(written), "--run-name", "t")
    assert moved.classifier.init_from == str(tmp_path / "t" / "classifier" / "last.pt")


def test_resume_with_a_bare_run_name_is_refused_a_named_one_is_not():
    with pytest.raises(SystemExit, match=r"^error: --resume needs the name of the run to continue \(--run-name "
                                         r"NAME\): a bare --run-name starts a new, empty run folder, with nothing "
                                         r"to resume$"):
        parsed("--config", STAGE2, "--run-name", "--resume")
    assert parsed("--config", STAGE2, "--run-name", "trial1", "--resume").out == Path("runs/starter2/trial1")
