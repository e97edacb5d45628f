"""ONNX Runtime on the CPU: the backend every machine has."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..errors import BundleError
from ..manifest import Manifest, ModelSpec, within_bundle_stall
from ..stalled_reads import DEFAULT_STALL_S, read_pieces
from .base import Runner, TensorSpec
from .bundle import RunnerPairBackend

# ONNX type strings as reported by InferenceSession.get_inputs().
_ONNX_DTYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(bool)": np.dtype(np.bool_),
}


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads of one core count once).

    Extra hyper-threads slow ONNX Runtime's spinning intra-op pool down rather than up, and a
    container's CPU affinity can be far smaller than the host's core count.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return max(1, len(cores))


def _spec(node: Any) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, int) else None for dim in node.shape)
    dtype = _ONNX_DTYPES.get(node.type)
    if dtype is None:
        raise BundleError(f"tensor {node.name!r} has unsupported type {node.type}")
    return TensorSpec(node.name, dtype, shape)


class OnnxRuntimeRunner(Runner):
    """One ONNX model in an ONNX Runtime CPU session.

    The session is created on ``__enter__``. When ``expected_inputs`` / ``expected_outputs``
    (the manifest's ``{name: shape}`` with ``"N"`` for the batch axis) are given, entering
    checks the model against them and raises BundleError on a mismatch, so a bundle whose
    manifest lies fails before the first image rather than on every batch.
    """

    backend = "onnxruntime"

    def __init__(self, model_path: Path, *, threads: int | None = None, name: str | None = None,
                 expected_inputs: dict[str, list[Any]] | None = None,
                 expected_outputs: dict[str, list[Any]] | None = None,
                 expected_sha256: str | None = None, stall_s: float = DEFAULT_STALL_S) -> None:
        super().__init__(name or Path(model_path).name)
        self.model_path = Path(model_path)
        self.expected_sha256 = expected_sha256
        self.stall_s = stall_s  # seconds to wait for a bundle on a drive that stopped answering
        self.threads = threads or physical_cores()
        self.expected_inputs = expected_inputs
        self.expected_outputs = expected_outputs
        self.session: ort.InferenceSession | None = None

    def session_options(self) -> ort.SessionOptions:
        """Options for a batch job on a CPU: one intra-op thread per physical core.

        Sequential execution because these graphs are chains with no parallel branches worth
        a second thread pool; inter-op threads would only compete with the intra-op pool.
        """
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: warnings would flood nightly logs
        # No spin-waiting: a bundle holds two sessions, and each one's idle threads spinning
        # on a 2-core machine steal the cores the other session (and the decoder threads)
        # need. Measured with bench/pipeline_efficiency.py on full-resolution JPEGs: 37 ->
        # 51 images/s end to end, 43 -> 67 images/s for the two models alone.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def _model_bytes(self) -> bytes:
        """The model file's bytes, checked against the manifest's sha256 when one is given.

        The session is made from these very bytes: the manifest's check read the file earlier, and
        a bundle replaced in between (``export --force`` swaps whole folders) would otherwise run
        the new models under the old manifest's temperature, thresholds and name. Read in a
        watched thread, as the manifest's check read it: a share that stops answering in between
        ends the run with one line (InputError) after ``stall_s`` seconds without a piece read.
        """
        try:
            data = within_bundle_stall(self.model_path.parent, self.stall_s,
                                       lambda beat: read_pieces(self.model_path, beat))
        except OSError as exc:
            raise BundleError(f"cannot read {self.model_path}: {exc.strerror or exc}") from None
        if self.expected_sha256 and hashlib.sha256(data).hexdigest() != self.expected_sha256:
            raise BundleError(f"{self.model_path} changed after its manifest was read (was the bundle replaced "
                              f"while screening started?): nothing was screened; run again")
        return data

    def _activate(self) -> None:
        data = self._model_bytes()
        try:
            self.session = ort.InferenceSession(data, sess_options=self.session_options(),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for unreadable models
            raise BundleError(f"ONNX Runtime cannot load {self.model_path}: {exc}") from exc
        try:
            self._check_against_manifest()
        except BundleError:
            self.session = None
            raise

    def _deactivate(self) -> None:
        self.session = None

    def input_specs(self) -> dict[str, TensorSpec]:
        return {node.name: _spec(node) for node in self._session().get_inputs()}

    def output_specs(self) -> dict[str, TensorSpec]:
        return {node.name: _spec(node) for node in self._session().get_outputs()}

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._session()
        names = [node.name for node in session.get_outputs()]
        return dict(zip(names, session.run(names, feed)))

    def _session(self) -> ort.InferenceSession:
        if self.session is None:
            raise RuntimeError(f"runner {self.name} is not active: use it inside a with-block")
        return self.session

    def _check_against_manifest(self) -> None:
        for kind, expected, actual in (("input", self.expected_inputs, self.input_specs()),
                                       ("output", self.expected_outputs, self.output_specs())):
            if expected is None:
                continue
            if set(expected) != set(actual):
                raise BundleError(f"{self.model_path.name} has {kind}s {sorted(actual)} "
                                  f"but the manifest says {sorted(expected)}")
            for name, shape in expected.items():
                problem = _shape_problem(actual[name], shape)
                if problem:
                    raise BundleError(f"{self.model_path.name} {kind} {name!r} {problem}")


def _shape_problem(spec: TensorSpec, expected: list[Any]) -> str | None:
    """Why a model tensor does not fit the manifest's shape, or None when it does."""
    if spec.dtype != np.float32:
        return f"is {spec.dtype}, the screening runtime feeds float32"
    if len(spec.shape) != len(expected):
        return f"has shape {_show(spec.shape)} but the manifest says {list(expected)}"
    for got, want in zip(spec.shape, expected):
        # A named manifest axis ("N") must be dynamic in the model: the last batch is short.
        dynamic_wanted = not isinstance(want, int)
        if (dynamic_wanted and got is not None) or (not dynamic_wanted and got is not None and got != want):
            return f"has shape {_show(spec.shape)} but the manifest says {list(expected)}"
    return None


def _show(shape: tuple[int | None, ...]) -> list[Any]:
    return ["?" if dim is None else dim for dim in shape]


class OnnxRuntimeBackend(RunnerPairBackend):
    """A bundle's segmenter and classifier in two ONNX Runtime CPU sessions."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, *, threads: int | None = None,
                 stall_s: float = DEFAULT_STALL_S) -> None:
        def runner(role: str, spec: ModelSpec) -> OnnxRuntimeRunner:
            return OnnxRuntimeRunner(Path(bundle_dir) / spec.file, threads=threads, name=role,
                                     expected_inputs=spec.inputs, expected_outputs=spec.outputs,
                                     expected_sha256=spec.sha256, stall_s=stall_s)

        super().__init__(manifest, runner("segmenter", manifest.segmenter),
                         runner("classifier", manifest.classifier))

    @property
    def description(self) -> str:
        threads = self.segmenter.threads
        return f"onnxruntime {ort.__version__} (CPU, {threads} thread{'s' if threads != 1 else ''})"
