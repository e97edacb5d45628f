"""docs/nightly.md: its unit files parse, and every command line in it is valid for `screen`."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import click
import pytest

from screening.cli import cli
from screening.cli.folder import folder

DOC = Path(__file__).resolve().parents[2] / "docs" / "nightly.md"
CONFIG_PATH = "/etc/screening/nightly.toml"


def blocks(language: str) -> dict[str, str]:
    """Fenced blocks of ``language`` by the file named in their first line (``# /path``)."""
    found = {}
    for text in re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        first = text.splitlines()[0]
        found[first.lstrip("# ").strip() if first.startswith("# /") else str(len(found))] = text
    return found


def unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


def check_screen_command(argv: list[str], config: Path) -> None:
    """The command parses as `screen folder ...` with the documented config (nothing runs)."""
    assert Path(argv[0]).name == "screen" and argv[1] == "folder", argv
    args = [str(config) if a == CONFIG_PATH else a for a in argv[2:]]
    with folder.make_context("screen folder", args) as ctx:  # parses, converts, reads the config
        assert ctx.params["resume"] is True and ctx.params["images_dir"] == Path("/srv/clinic/images")
        assert ctx.params["on_bundle_change"] == "rescreen"
    assert cli.get_command(click.Context(cli), "folder") is folder


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (text,) = blocks("toml").values()
    assert tomllib.loads(text)  # valid TOML
    path = tmp_path / "nightly.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_service_runs_screen_once_and_alerts_on_failure(config: Path) -> None:
    units = blocks("ini")
    service = unit(units["/etc/systemd/system/screen-nightly.service"])
    assert service["Service"]["Type"] == "oneshot"
    assert service["Unit"]["OnFailure"] in {Path(name).name for name in units}
    assert service["Service"]["UMask"] == "0027" and service["Service"]["User"] != "root"
    check_screen_command(shlex.split(service["Service"]["ExecStart"]), config)
    alert = unit(units["/etc/systemd/system/screen-nightly-alert.service"])
    assert shlex.split(alert["Service"]["ExecStart"])[0] == "/usr/bin/logger"


def test_the_timer_fires_nightly_and_catches_up() -> None:
    timer = unit(blocks("ini")["/etc/systemd/system/screen-nightly.timer"])
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:00:00" and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    if shutil.which("systemd-analyze"):
        checked = subprocess.run(["systemd-analyze", "calendar", timer["Timer"]["OnCalendar"]],
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


def test_the_crontab_line(config: Path) -> None:
    (line,) = [l for l in blocks("crontab")["0"].splitlines() if l.strip()]
    fields = line.split(None, 5)
    assert fields[:5] == ["0", "2", "*", "*", "*"] and "%" not in line  # cron treats % as newline
    command = fields[5].split("||")[0]
    check_screen_command(shlex.split(command), config)
