"""Text fields refuse what YAML reads as a number or a boolean, instead of keeping a changed text."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, load_config

from ..conftest import REPO


def test_a_version_that_yaml_reads_as_a_float_is_refused_with_the_quoted_form():
    with pytest.raises(ConfigError, match=r"^config.export.version: expected text, but YAML reads 2.10 as the "
                                          r"number 2.1; quote it: '2.10' \(on the command line: --set "
                                          r"\"export.version='2.10'\"\)$"):
        load_config(None, ["export.version=2.10"])
    assert load_config(None, ["export.version='2.10'"]).export.version == "2.10"


def test_in_a_config_file_too_also_through_a_base_and_for_optional_text_fields(tmp_path: Path):
    base = tmp_path / "base.yaml"
    base.write_text("export:\n  version: 2.10\n")
    with pytest.raises(ConfigError, match=r"YAML reads 2.10 as the number 2.1; quote it: '2.10'"):
        load_config(base)
    stage = tmp_path / "stage.yaml"
    stage.write_text("base: base.yaml\nexport:\n  version: '2.10'\n")
    assert load_config(stage).export.version == "2.10"  # the later layer's text wins
    stage.write_text("base: base.yaml\nexport:\n  name: x\n")
    with pytest.raises(ConfigError, match="config.export.version: expected text"):
        load_config(stage)
    with pytest.raises(ConfigError, match=r"^config.classifier.init_from: expected text, but YAML reads 1.5 as"):
        load_config(None, ["classifier.init_from=1.5"])  # str | None


@pytest.mark.parametrize("written, read", [("yes", True), ("off", False)])
def test_booleans_are_refused(written, read):
    with pytest.raises(ConfigError, match=f"YAML reads {written} as a boolean {read}; quote it: '{written}'"):
        load_config(None, [f"export.name={written}"])


def test_a_plain_integer_is_its_text_one_that_yaml_rewrites_is_refused():
    assert load_config(None, ["export.version=3"]).export.version == "3"
    assert load_config(None, ["classifier.stage_dir=2"]).classifier.stage_dir == "2"
    for written, read in (("010", 8), ("1_000", 1000), ("0x10", 16)):
        with pytest.raises(ConfigError, match=f"YAML reads {written} as the number {read}; quote it: '{written}'"):
            load_config(None, [f"export.version={written}"])


def test_every_shipped_config_still_loads():
    for path in sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "classes"):
        config = load_config(path)
        assert isinstance(config.export.version, str) and isinstance(config.export.name, str), path
