"""Ctrl-C during a TensorRT build: the build is cancelled at TensorRT's next step and the interrupt re-raised.

``SteppingBuilder`` behaves as TensorRT's builder does for this purpose: it works in steps with
the GIL released and asks the progress monitor after each one whether to go on.
"""

import _thread
import signal
import threading
import time

import pytest

from screening.engines.build import _run_build
from screening.engines.progress import BuildProgress


class SteppingBuilder:
    def __init__(self, progress: BuildProgress, steps: int = 20_000) -> None:  # 40 s or more in all
        self.progress, self.steps, self.done = progress, steps, 0

    def build_serialized_network(self, network, config):
        self.progress.phase_start("Building", None, self.steps)
        for step in range(self.steps):
            time.sleep(0.002)
            self.done = step + 1
            if not self.progress.step_complete("Building", step):
                return None  # TensorRT returns no plan when the monitor cancels
        self.progress.phase_finish("Building")
        return b"plan"


def test_a_finished_build_returns_its_plan():
    progress = BuildProgress(lambda line: None)
    assert _run_build(SteppingBuilder(progress, steps=5), None, None, progress, print) == b"plan"


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler for the test: interrupt_main does nothing while SIGINT is ignored,
    and an earlier test in the same process (CI ran one) may have left it ignored."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_cancels_the_build_and_is_re_raised(ctrl_c_raises):
    lines: list[str] = []
    progress = BuildProgress(lines.append)
    builder = SteppingBuilder(progress)
    timer = threading.Timer(0.3, _thread.interrupt_main)  # what Ctrl-C does to the main thread
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        _run_build(builder, None, None, progress, lines.append)
    timer.join()
    assert progress.cancelled
    assert 0 < builder.done < builder.steps  # stopped at a step, long before the end
    assert "  stopping the TensorRT build at its next step ..." in lines


def test_a_build_error_reaches_the_caller():
    class Broken:
        def build_serialized_network(self, network, config):
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        _run_build(Broken(), None, None, BuildProgress(print), print)
