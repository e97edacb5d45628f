"""GPU 0's CUDA primary context, retained once per process and made current only around GPU work.

The primary context is the one TensorRT (through the CUDA runtime) uses anyway, so engines,
buffers and streams all live in it. pycuda's ``Context.detach()`` on a primary context pushes
it, releases it and never pops it (its "pop is implicit in detach" holds only for contexts
pycuda created), so retaining and detaching per backend would leave one entry on the thread's
CUDA context stack each time. Instead the context is retained on first use, kept for the life
of the process (CUDA releases it at exit), and pushed and popped around each use.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

_lock = threading.Lock()
_primary: Any = None


def primary_context(cuda: Any) -> Any:
    """GPU 0's primary context (a ``pycuda.driver.Context``), retained on the first call only.

    Args:
        cuda: the ``pycuda.driver`` module.

    Raises:
        pycuda.driver.Error: no driver or no GPU (the caller turns it into one line).
    """
    global _primary
    with _lock:
        if _primary is None:
            cuda.init()
            _primary = cuda.Device(0).retain_primary_context()
        return _primary


@contextmanager
def current(context: Any) -> Iterator[Any]:
    """Make ``context`` current on this thread inside the block; the stack is as before afterwards."""
    context.push()
    try:
        yield context
    finally:
        context.pop()
