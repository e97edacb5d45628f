"""ONNX Runtime session settings to compare with the runtime's own, by name.

``runtime`` is ``screening.backends.onnxrt.OnnxRuntimeRunner`` unchanged; every other variant
changes a few session options on top of it. ``model_throughput.py`` measures them on the models
alone, ``pipeline_efficiency.py`` inside ``screen folder`` (through ``screen_with.py``).
"""

from __future__ import annotations

from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "runtime": {},
    # Intra-op threads sleep instead of spinning between parallel sections: the cycles go to
    # the decoder threads instead, at the price of a wake-up per operator.
    "no-spin": {"config": {"session.intra_op.allow_spinning": "0"}},
    # Spin within a run, stop at its end: no spinning while Python pre- and postprocesses.
    "spin-stop": {"config": {"session.force_spinning_stop": "1"}},
    "extended": {"opt_level": "extended"},  # no layout (NCHWc) transformations
    "basic": {"opt_level": "basic"},
    "1-thread": {"threads": 1},
    "fused": {"fused": True},  # pair only: both models merged into one ONNX graph
    # pair only: one graph, and ONNX Runtime may run the classifier's image branch beside the
    # segmenter (parallel executor, two inter-op threads).
    "fused-parallel": {"fused": True, "parallel": True},
}
# Variants that are session settings only, so that screen folder can run them as they are.
SESSION_VARIANTS = tuple(name for name, tweaks in VARIANTS.items() if not tweaks.get("fused"))


def tune(options: Any, tweaks: dict[str, Any]) -> Any:
    """Apply a variant's settings to an ``onnxruntime.SessionOptions``; returns it."""
    import onnxruntime as ort

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if "opt_level" in tweaks:
        options.graph_optimization_level = levels[tweaks["opt_level"]]
    if "threads" in tweaks:
        options.intra_op_num_threads = tweaks["threads"]
    if tweaks.get("parallel"):
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        options.inter_op_num_threads = 2
    for key, value in tweaks.get("config", {}).items():
        options.add_session_config_entry(key, value)
    return options


def install(name: str) -> None:
    """Make every OnnxRuntimeRunner of this process use variant ``name`` (bench processes only)."""
    from screening.backends.onnxrt import OnnxRuntimeRunner

    tweaks = VARIANTS[name]
    if not tweaks:
        return
    runtime_options = OnnxRuntimeRunner.session_options

    def session_options(self: OnnxRuntimeRunner):
        return tune(runtime_options(self), tweaks)

    OnnxRuntimeRunner.session_options = session_options
