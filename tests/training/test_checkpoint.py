"""Checkpoints are written so that a crash or a power cut never leaves a torn or missing one."""

from __future__ import annotations

import os

import pytest
import torch

import screening.atomic as atomic
import training.common as common
from training.common import load_checkpoint, save_checkpoint


def test_a_checkpoint_round_trips_and_leaves_no_temp_file(tmp_path):
    state = {"epoch": 3, "model": {"w": torch.arange(6.0).reshape(2, 3)}}
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append("fsync file"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace",
                        lambda a, b, **kw: (events.append("rename"), real_replace(a, b, **kw))[1])
    monkeypatch.setattr(atomic, "fsync_dir", lambda folder: events.append(f"fsync {folder.name}/"))
    save_checkpoint(tmp_path / "ckpt" / "best.pt", {"epoch": 1})
    assert events == ["fsync file", "rename", "fsync ckpt/"]


def test_overwriting_keeps_the_old_checkpoint_until_the_new_one_is_complete(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # the run is stopped mid-write

    monkeypatch.setattr(common.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind
