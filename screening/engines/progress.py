"""What a TensorRT build prints while it runs (builds take minutes) and what it keeps of its log.

TensorRT calls these through thin adapters in ``build`` (an ``IProgressMonitor`` and an
``ILogger`` subclass); the decisions about what to show and what to record live here, free of
TensorRT. TensorRT may call from several threads, hence the lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

Echo = Callable[[str], None]
SEVERITIES = ("internal_error", "error", "warning", "info", "verbose")  # TensorRT's order


@dataclass
class _Phase:
    depth: int
    steps: int
    started: float
    next_percent: int


class BuildProgress:
    """Turns TensorRT's phase and step callbacks into a few readable, indented lines."""

    def __init__(self, echo: Echo, max_depth: int = 1, every_percent: int = 25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Args:
            echo: prints one line.
            max_depth: deepest phase nesting shown (0 = top-level phases only).
            every_percent: step lines are printed each time this share of a phase completes.
            clock: seconds, for phase durations.
        """
        self.echo = echo
        self.max_depth = max_depth
        self.every_percent = every_percent
        self.clock = clock
        self.cancelled = False  # set to ask TensorRT to stop at its next step
        self._phases: dict[str, _Phase] = {}
        self._lock = threading.Lock()

    def phase_start(self, phase: str, parent: str | None, steps: int) -> None:
        with self._lock:
            depth = self._phases[parent].depth + 1 if parent in self._phases else 0
            self._phases[phase] = _Phase(depth, steps, self.clock(), self.every_percent)
            if depth <= self.max_depth:
                suffix = f" ({steps} steps)" if steps > 1 else ""
                self.echo(f"{'  ' * (depth + 1)}{phase}{suffix}")

    def step_complete(self, phase: str, step: int) -> bool:
        """Record that step ``step`` (0-based) finished; returns False to cancel the build."""
        with self._lock:
            info = self._phases.get(phase)
            if info is not None and info.depth <= self.max_depth and info.steps > 1:
                percent = (step + 1) * 100 // info.steps
                if percent >= info.next_percent and step + 1 < info.steps:
                    self.echo(f"{'  ' * (info.depth + 2)}{step + 1}/{info.steps}")
                    while info.next_percent <= percent:
                        info.next_percent += self.every_percent
            return not self.cancelled

    def phase_finish(self, phase: str) -> None:
        with self._lock:
            info = self._phases.pop(phase, None)
            if info is not None and info.depth <= self.max_depth:
                self.echo(f"{'  ' * (info.depth + 1)}{phase} done in {self.clock() - info.started:.0f} s")


class BuildLog:
    """Keeps the builder's warnings and errors (deduplicated, in order) and echoes them."""

    def __init__(self, echo: Echo, verbose: bool = False) -> None:
        self.echo = echo
        self.verbose = verbose
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def log(self, severity: str, message: str) -> None:
        """Take one log message; ``severity`` is one of ``SEVERITIES``."""
        text = " ".join(message.split())
        with self._lock:
            if severity in ("internal_error", "error"):
                if text not in self.errors:
                    self.errors.append(text)
                    self.echo(f"  TensorRT error: {text}")
            elif severity == "warning":
                if text not in self.warnings:
                    self.warnings.append(text)
                    self.echo(f"  TensorRT warning: {text}")
            elif self.verbose:
                self.echo(f"  TensorRT {severity}: {text}")
