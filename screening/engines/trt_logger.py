"""The process's one TensorRT logger, shared by the builder and the runtime.

TensorRT keeps a single global logger: the first Builder or Runtime sets it, and a later one
created with a different logger only earns a warning while messages keep going to the first.
So there is one ``ILogger`` per process, created on first use, and what it does with a message
is swapped per task: a build routes messages into its ``BuildLog`` (``routed_to``); otherwise
warnings and errors go to stderr. TensorRT may log from its own threads, hence the lock.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

Sink = Callable[[str, str], None]  # (severity name, message); see progress.SEVERITIES

_lock = threading.Lock()
_logger: Any = None
_sink: Sink | None = None


def _stderr(severity: str, message: str) -> None:
    if severity in ("internal_error", "error", "warning"):
        print(f"TensorRT {severity.replace('_', ' ')}: {' '.join(message.split())}", file=sys.stderr)


def tensorrt_logger(trt: Any) -> Any:
    """The process's ``trt.ILogger``, created on first use; pass it to every Builder, Runtime and parser."""
    global _logger
    with _lock:
        if _logger is None:
            severity = trt.ILogger.Severity
            names = {severity.INTERNAL_ERROR: "internal_error", severity.ERROR: "error",
                     severity.WARNING: "warning", severity.INFO: "info", severity.VERBOSE: "verbose"}

            class _Logger(trt.ILogger):
                def __init__(self) -> None:
                    trt.ILogger.__init__(self)

                def log(self, level: Any, msg: str) -> None:
                    with _lock:
                        sink = _sink or _stderr
                    sink(names.get(level, "info"), msg)

            _logger = _Logger()
        return _logger


@contextmanager
def routed_to(sink: Sink) -> Iterator[None]:
    """Send TensorRT's messages to ``sink`` inside the block (e.g. a build's ``BuildLog.log``)."""
    global _sink
    with _lock:
        previous, _sink = _sink, sink
    try:
        yield
    finally:
        with _lock:
            _sink = previous
