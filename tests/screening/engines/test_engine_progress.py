"""What a build prints while TensorRT works, and which of its log messages are kept."""

from screening.engines.progress import BuildLog, BuildProgress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_phases_and_quarter_steps_are_printed_indented():
    lines, clock = [], Clock()
    progress = BuildProgress(lines.append, max_depth=1, every_percent=25, clock=clock)
    progress.phase_start("Building engine", None, 1)
    progress.phase_start("Tactic selection", "Building engine", 8)
    for step in range(8):
        assert progress.step_complete("Tactic selection", step) is True
    progress.phase_start("Layer 17", "Tactic selection", 40)  # too deep: silent
    progress.step_complete("Layer 17", 3)
    progress.phase_finish("Layer 17")
    clock.now = 112.4
    progress.phase_finish("Tactic selection")
    progress.phase_finish("Building engine")
    assert lines == [
        "  Building engine",
        "    Tactic selection (8 steps)",
        "      2/8",
        "      4/8",
        "      6/8",
        "    Tactic selection done in 12 s",
        "  Building engine done in 12 s",
    ]


def test_a_phase_with_few_steps_prints_each_crossing_once():
    lines = []
    progress = BuildProgress(lines.append, every_percent=25, clock=Clock())
    progress.phase_start("Parse", None, 3)
    for step in range(3):
        progress.step_complete("Parse", step)
    assert lines == ["  Parse (3 steps)", "    1/3", "    2/3"]


def test_cancel_asks_tensorrt_to_stop():
    progress = BuildProgress(lambda line: None)
    progress.phase_start("Build", None, 10)
    progress.cancelled = True
    assert progress.step_complete("Build", 0) is False


def test_log_keeps_warnings_and_errors_once_and_drops_info():
    lines = []
    log = BuildLog(lines.append)
    log.log("warning", "Detected layernorm nodes in FP16.\n  Consider FP32.")
    log.log("warning", "Detected layernorm nodes in FP16. Consider FP32.")
    log.log("info", "Loaded engine size: 12 MiB")
    log.log("error", "Network validation failed.")
    assert log.warnings == ["Detected layernorm nodes in FP16. Consider FP32."]
    assert log.errors == ["Network validation failed."]
    assert lines == ["  TensorRT warning: Detected layernorm nodes in FP16. Consider FP32.",
                     "  TensorRT error: Network validation failed."]


def test_verbose_log_echoes_info():
    lines = []
    BuildLog(lines.append, verbose=True).log("info", "Loaded engine")
    assert lines == ["  TensorRT info: Loaded engine"]
