"""A network share that stops answering, as the stalled-drive tests simulate it: chosen ``os`` calls
(or opening a file) block until the test lets the drive answer, and at most ``STALL_CAP_S``, so
code that waits for the drive is slow, then passes its own checks, and each test bounds how
long a step took (:func:`within`) rather than hanging.
"""

from __future__ import annotations

import builtins
import io
import os
import threading
from pathlib import Path
from typing import Callable

import pytest

import folder_runner

STALL_CAP_S = 30.0  # how long a stalled call blocks at most: the drive answers in the end
BUDGET_S = 0.5  # the --decode-timeout the tests screen with: a stall is found in half a second


class Share:
    """Makes chosen ``os`` calls block for chosen files or folders until :meth:`answer`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: set[str] = set()
        self.inodes: set[tuple[int, int]] = set()
        self.answered = threading.Event()
        self.blocked: list[str] = []  # the calls that blocked, by name
        self.monkeypatch = monkeypatch

    def stall(self, path: Path, *calls: str) -> Path:
        """Calls ``calls`` (os function names) on ``path`` block; ``fstat`` matches its inode."""
        info = os.stat(path)  # before the path is stalled: this call may be patched already
        self.paths.add(os.fspath(path))
        self.inodes.add((info.st_dev, info.st_ino))
        for name in calls:
            self._patch(name)
        return path

    def _patch(self, name: str) -> None:
        real: Callable = getattr(os, name)
        if getattr(real, "stalls", False):
            return

        def stalled(*args, **kwargs):
            target = args[0] if args else kwargs.get("path", ".")
            if name == "fstat":
                info = real(*args, **kwargs)
                if (info.st_dev, info.st_ino) in self.inodes:
                    self._block(name)
                return info
            if isinstance(target, (str, os.PathLike)) and os.fspath(target) in self.paths:
                self._block(name)
            return real(*args, **kwargs)

        stalled.stalls = True
        self.monkeypatch.setattr(os, name, stalled)

    def stall_open(self, path: Path) -> Path:
        """Opening ``path`` blocks (``open``, ``io.open``: ``Path.read_bytes`` too), as opening a file
        on a share that stopped answering does."""
        self.paths.add(os.fspath(path))
        for module in (builtins, io):
            real: Callable = module.open

            def stalled(file, *args, real=real, **kwargs):
                if isinstance(file, (str, os.PathLike)) and os.fspath(file) in self.paths:
                    self._block("open")
                return real(file, *args, **kwargs)

            self.monkeypatch.setattr(module, "open", stalled)
        return path

    def _block(self, name: str) -> None:
        self.blocked.append(name)
        self.answered.wait(STALL_CAP_S)

    def answer(self) -> None:
        self.paths.clear()
        self.inodes.clear()
        self.answered.set()


def within(seconds: float, work: Callable[[], object]) -> object:
    """``work()``'s result, failing the test (instead of hanging it) when it takes over ``seconds``."""
    result: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as error:  # handed to the test
            errors.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still waiting for the drive after {seconds} s"
    if errors:
        raise errors[0]
    return result[0]


def screen_on_share(images: Path, meta: Path, out: Path, bundle: Path, *extra: object):
    """`screen folder` as the stalled-drive tests run it: quiet, within ``BUDGET_S`` per stall."""
    return folder_runner.run_folder(images, meta, out, bundle, "--quiet", "--decode-timeout", BUDGET_S, *extra,
                                    batch_size=2, workers=2)
