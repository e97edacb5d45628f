"""Tests for screening.atomic: whole files or nothing, normal permissions, never through a link."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from screening.atomic import atomic_file, atomic_write, create_exclusive, file_mode, umask


@pytest.fixture
def mask_027():
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def test_umask_is_read_without_changing_it(mask_027) -> None:
    assert umask() == 0o027
    assert umask() == 0o027


def test_new_files_get_the_umask_permissions_not_0600(tmp_path: Path, mask_027) -> None:
    path = atomic_write(tmp_path / "results.csv", b"rank,image\n")
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)  # group can read what the service wrote
    fd = create_exclusive(tmp_path / "journal")
    os.close(fd)
    assert oct((tmp_path / "journal").stat().st_mode & 0o777) == oct(0o640)


def test_a_replaced_file_keeps_its_mode(tmp_path: Path, mask_027) -> None:
    path = tmp_path / "results.csv"
    path.write_bytes(b"old")
    path.chmod(0o664)
    atomic_write(path, b"new")
    assert (path.read_bytes(), oct(path.stat().st_mode & 0o777)) == (b"new", oct(0o664))
    assert file_mode(path) == 0o664


def test_a_planted_link_is_replaced_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    link = tmp_path / "results.csv"
    link.symlink_to(target)
    atomic_write(link, b"results")
    assert not link.is_symlink() and link.read_bytes() == b"results"
    assert target.read_bytes() == b"precious"
    dangling = tmp_path / "journal"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        create_exclusive(dangling)
    assert not (tmp_path / "nowhere").exists()


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(path) as fh:
            fh.write(b"half of the new")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]
    assert path.read_bytes() == b"old"


KILLED_MID_WRITE = """
import os, sys
from screening.atomic import atomic_file
with atomic_file(sys.argv[1]) as fh:
    fh.write(b"patient P1, melanoma risk 0.9\\n" * 1000)
    fh.flush()
    print("writing", flush=True)
    sys.stdin.read()  # wait to be killed
"""


def test_kill_9_mid_write_leaves_no_temp_file_with_patient_data(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert list(tmp_path.iterdir()) == []  # the unwritten file had no name to leave behind
