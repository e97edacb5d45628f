"""Inference backends: a factory for single-model runners and the choice of a bundle backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable, BundleError, InputError
from ..manifest import Manifest
from .base import Runner
from .bundle import BundleBackend
from ..stalled_reads import DEFAULT_STALL_S

BACKEND_CHOICES = ("auto", "onnxruntime", "tensorrt")
TENSORRT_NOT_INSTALLED = "TensorRT backend not installed: pip install '.[gpu]'"


def _onnxruntime_runner(model_path: Path, **opts: Any) -> Runner:
    from .onnxrt import OnnxRuntimeRunner

    return OnnxRuntimeRunner(model_path, **opts)


# Single-model runners by name. TensorRT is not here: it runs a whole bundle at once so the
# mask can stay on the GPU (see open_backend).
_RUNNERS = {"onnxruntime": _onnxruntime_runner}


def runner_names() -> list[str]:
    """Names ``create_runner`` accepts."""
    return sorted(_RUNNERS)


def create_runner(backend: str, model_path: Path, **opts: Any) -> Runner:
    """Create a runner for one ONNX model.

    Args:
        backend: runner name, one of ``runner_names()``.
        model_path: the ONNX file.
        **opts: passed to the runner, e.g. ``threads=2`` for ONNX Runtime.

    Raises:
        InputError: the name is unknown; the message lists the valid names.
    """
    try:
        factory = _RUNNERS[backend]
    except KeyError:
        raise InputError(f"unknown runner {backend!r}: choose one of {', '.join(runner_names())}") from None
    return factory(Path(model_path), **opts)


@dataclass(frozen=True)
class Probe:
    """Whether a backend can run here, with a one-line reason."""

    usable: bool
    reason: str


def probe_tensorrt(bundle_dir: Path, manifest: Manifest, stall_s: float = DEFAULT_STALL_S) -> Probe:
    """Ask the TensorRT backend (extra ``[gpu]``) whether it can run this bundle on this machine.

    Raises:
        InputError: the bundle's engine folder is on a drive that stopped answering for ``stall_s``
            seconds (the bundle's one line, as ONNX Runtime's reads of the bundle end).
    """
    try:
        from .tensorrt import probe_tensorrt as probe
    except ImportError:
        return Probe(False, TENSORRT_NOT_INSTALLED)
    try:
        result = probe(Path(bundle_dir), manifest, stall_s)
    except InputError:
        # Not a broken GPU stack: the bundle's drive is silent, and ONNX Runtime would wait for
        # its models on the same drive. The run stops with the line, as on ONNX Runtime.
        raise
    except Exception as exc:  # a broken GPU stack must not stop a CPU run
        return Probe(False, f"TensorRT probe failed: {exc.__class__.__name__}: {exc}")
    return Probe(bool(result.usable), str(result.reason))


def open_backend(choice: str, bundle_dir: Path, manifest: Manifest, *,
                 batch_size: int, stall_s: float = DEFAULT_STALL_S) -> tuple[BundleBackend, str]:
    """Pick and construct the backend that runs a bundle (not yet entered).

    Args:
        choice: "auto" (TensorRT when usable, else ONNX Runtime), "onnxruntime" or "tensorrt".
        bundle_dir: the bundle folder (manifest already loaded and verified).
        manifest: the bundle's manifest.
        batch_size: images per batch (TensorRT engines are built for a batch range).
        stall_s: seconds the probe, and either backend when it is entered, wait for the bundle's
            files (models, TensorRT engines) on a drive that stopped answering (``--decode-timeout``).

    Returns:
        The backend and a one-line note of why it was picked.

    Raises:
        InputError: unknown choice.
        BundleError: the manifest's model shapes do not use its input size.
        BackendUnavailable: "tensorrt" was asked for and cannot run here (the reason says why).
        InputError: the bundle's engine folder stopped answering while the probe looked at it.
    """
    if choice not in BACKEND_CHOICES:
        raise InputError(f"unknown backend {choice!r}: choose one of {', '.join(BACKEND_CHOICES)}")
    check_input_size(manifest)
    if choice == "onnxruntime":
        return _onnxruntime(bundle_dir, manifest, stall_s), "onnxruntime requested"
    probe = probe_tensorrt(bundle_dir, manifest, stall_s)
    if probe.usable:
        from .tensorrt import TensorRTBackend

        # Entering probes again (the engine folder may change before the run starts) and uses the
        # record it checked there.
        return (TensorRTBackend(Path(bundle_dir), manifest, batch_size, stall_s=stall_s),
                f"{choice}: {probe.reason}")
    if choice == "tensorrt":
        raise BackendUnavailable(probe.reason)
    return _onnxruntime(bundle_dir, manifest, stall_s), f"auto picked onnxruntime: {probe.reason}"


def _onnxruntime(bundle_dir: Path, manifest: Manifest, stall_s: float) -> BundleBackend:
    from .onnxrt import OnnxRuntimeBackend

    return OnnxRuntimeBackend(Path(bundle_dir), manifest, stall_s=stall_s)


def check_input_size(manifest: Manifest) -> None:
    """The manifest's image and mask inputs must have the spatial size the pipeline feeds.

    Raises:
        BundleError: naming the first input whose shape disagrees with ``input_size``.
    """
    height, width = manifest.input_size
    for role, spec, names in (("segmenter", manifest.segmenter, ("image",)),
                              ("classifier", manifest.classifier, ("image", "mask"))):
        for name in names:
            shape = list(spec.inputs[name])
            if len(shape) != 4 or shape[2:] != [height, width]:
                raise BundleError(f"{role} input {name!r} has shape {shape} in the manifest "
                                  f"but input_size is {height}x{width}")
