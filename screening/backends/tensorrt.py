"""TensorRT FP16 engines behind the BundleBackend interface, and the probe that decides whether to use them.

``probe_tensorrt`` says in one line whether TensorRT can run a bundle here (TensorRT and pycuda
importable, a GPU, a fresh engine folder for this GPU and TensorRT version); ``open_backend``
(``screening.backends``) turns that into the backend ``--backend auto|tensorrt|onnxruntime``
runs. ``TensorRTBackend`` runs both engines on one CUDA stream; the segmenter's mask stays on
the GPU and is the classifier's mask input. TensorRT and pycuda are imported only inside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..attention import ATTENTION_OUTPUT
from ..engines import rebuild_command
from ..engines.buffers import BufferPlan, buffer_plan
from ..engines.environment import Environment, detect_environment, import_problem, one_line
from ..engines.profile import batch_slices
from ..engines.record import ROLES, BuildRecord, load_record
from ..engines.staleness import find_engine
from ..engines.trt_logger import tensorrt_logger
from ..errors import BackendUnavailable, BundleError, ScreeningError
from ..manifest import Manifest
from .bundle import BatchOutputs, BundleBackend
from .cuda_context import current, primary_context


@dataclass(frozen=True)
class TensorRTProbe:
    """Whether TensorRT can run a bundle on this machine."""

    usable: bool
    reason: str  # one line: why not (ending with what to do), or which engine will run
    engine_dir: Path | None = None  # the fresh engine folder when usable


def probe_from_environment(bundle_dir: Path, manifest: Manifest, env: Environment) -> TensorRTProbe:
    """The probe's decision from gathered facts (no imports, no GPU access)."""
    if env.problem:
        return TensorRTProbe(False, env.problem)
    match = find_engine(bundle_dir, manifest, env.gpu, env.tensorrt_version)
    if match.engine_dir is None:
        return TensorRTProbe(False, match.reason)
    return TensorRTProbe(True, f"TensorRT FP16 engine {match.engine_dir.name}", match.engine_dir)


def probe_tensorrt(bundle_dir: Path, manifest: Manifest) -> TensorRTProbe:
    """Check TensorRT, pycuda, the GPU and the bundle's engine folder for this machine.

    Every problem found becomes the probe's one-line reason; nothing is raised for them.

    Args:
        bundle_dir: the bundle folder as the user named it (it appears in the rebuild command).
        manifest: the bundle's loaded manifest.
    """
    return probe_from_environment(bundle_dir, manifest, detect_environment())


def _import_gpu_modules() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except Exception as exc:
        raise BackendUnavailable(import_problem("tensorrt", exc)) from exc
    try:
        import pycuda.driver as cuda
    except Exception as exc:
        raise BackendUnavailable(import_problem("pycuda", exc)) from exc
    return trt, cuda


class TensorRTBackend(BundleBackend):
    """A bundle's two FP16 engines on the first visible GPU, one CUDA stream, mask kept on the device."""

    name = "tensorrt"

    def __init__(self, bundle_dir: Path, manifest: Manifest, batch_size: int, engine_dir: Path | None = None) -> None:
        """Args:
            bundle_dir: the bundle folder.
            manifest: its loaded manifest.
            batch_size: the batch size the pipeline feeds; batches above the engines' max are split.
            engine_dir: the engine folder to use; None means the probe finds it (and checks freshness).
        """
        super().__init__(manifest)
        self.bundle_dir = Path(bundle_dir)
        self.batch_size = batch_size
        self.engine_dir = engine_dir
        self.record: BuildRecord | None = None
        self.plan: BufferPlan | None = None
        self._cuda: Any = None  # the pycuda.driver module, once imported
        self._cuda_context: Any = None
        self._runtime: Any = None
        self._engines: dict[str, Any] = {}
        self._contexts: dict[str, Any] = {}
        self._device: dict[str, Any] = {}
        self._host: dict[str, np.ndarray] = {}
        self._stream: Any = None

    # -- life cycle -----------------------------------------------------------------------------

    def __enter__(self) -> "TensorRTBackend":
        if self.engine_dir is None:
            probe = probe_tensorrt(self.bundle_dir, self.manifest)
            if not probe.usable:
                raise BackendUnavailable(probe.reason)
            self.engine_dir = probe.engine_dir
        self.record = load_record(self.engine_dir)
        trt, cuda = _import_gpu_modules()
        self._cuda = cuda
        try:
            context = primary_context(cuda)
        except Exception as exc:
            raise BackendUnavailable(f"cannot open the GPU: {one_line(exc)}") from exc
        with current(context):
            try:
                self._load_engines(trt)
                self._allocate(cuda)
            except BaseException:
                self._release()
                raise
        self._cuda_context = context
        return self

    def __exit__(self, *exc_info) -> None:
        if self._cuda_context is None:
            return
        # The primary context itself stays retained for the next backend (see cuda_context).
        with current(self._cuda_context):
            self._release()
        self._cuda_context = None

    def _load_engines(self, trt: Any) -> None:
        self._runtime = trt.Runtime(tensorrt_logger(trt))
        rebuild = rebuild_command(self.bundle_dir)
        for role in ROLES:
            build = self.record.models[role]
            path = self.engine_dir / build.plan
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != build.plan_sha256:
                raise BundleError(f"{path} does not match its build record; rebuild with: {rebuild}")
            engine = self._runtime.deserialize_cuda_engine(data)
            if engine is None:
                raise BundleError(f"TensorRT cannot load {path}; rebuild with: {rebuild}")
            self._check_io(trt, engine, role, path)
            self._engines[role] = engine
            self._contexts[role] = engine.create_execution_context()

    def _check_io(self, trt: Any, engine: Any, role: str, path: Path) -> None:
        spec = getattr(self.manifest, role)
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        expected = {*spec.inputs, *spec.outputs}
        if names != expected:
            raise BundleError(f"{path} has tensors {sorted(names)} but the manifest lists {sorted(expected)}")
        for name in names:
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise BundleError(f"{path}: tensor {name!r} is {engine.get_tensor_dtype(name)}, expected float32 I/O")

    def _allocate(self, cuda: Any) -> None:
        self.plan = buffer_plan(self.manifest, self.record.max_batch)
        self._stream = cuda.Stream()
        self._device = {key: cuda.mem_alloc(spec.nbytes) for key, spec in self.plan.device.items()}
        for key in {*self.plan.host_inputs.values(), *self.plan.host_outputs.values()}:
            spec = self.plan.device[key]
            self._host[key] = cuda.pagelocked_empty(spec.shape, spec.dtype)
        # Addresses never change, so they are set once; only shapes change per batch.
        for role, tensors in self.plan.bindings.items():
            for tensor, key in tensors.items():
                if not self._contexts[role].set_tensor_address(tensor, int(self._device[key])):
                    raise ScreeningError(f"TensorRT refused the device buffer of {role} tensor {tensor!r} "
                                         f"({self.plan.device[key].nbytes} bytes)")

    def _release(self) -> None:
        # Contexts before engines before the runtime: each holds the next.
        self._contexts.clear()
        self._engines.clear()
        self._runtime = None
        for allocation in self._device.values():
            allocation.free()
        self._device.clear()
        self._host.clear()
        self._stream = None
        self.plan = None  # run_batch refuses to run from here on

    # -- inference ------------------------------------------------------------------------------

    def run_batch(self, seg_image: np.ndarray, cls_image: np.ndarray, meta: np.ndarray) -> BatchOutputs:
        if self.plan is None:
            raise RuntimeError("TensorRTBackend is not active: use it inside a with-block")
        count = len(seg_image)
        if len(cls_image) != count or len(meta) != count:
            raise ValueError(f"batch sizes differ: {len(seg_image)} segmenter images, "
                             f"{len(cls_image)} classifier images, {len(meta)} metadata rows")
        plan = self.plan
        feeds = {"seg_image": seg_image, "cls_image": cls_image, "meta": meta}
        outputs = {field: np.empty(plan.device[key].batch_shape(count), dtype=plan.device[key].dtype)
                   for field, key in plan.host_outputs.items()}
        with current(self._cuda_context):
            for part in batch_slices(count, plan.max_batch):
                self._run_part(feeds, outputs, part)
        return BatchOutputs(mask=outputs["mask"], logits=outputs["logits"], attention=outputs.get(ATTENTION_OUTPUT))

    def _run_part(self, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray], part: slice) -> None:
        cuda, plan, stream, size = self._cuda, self.plan, self._stream, part.stop - part.start
        for argument, key in plan.host_inputs.items():
            host = self._host[key][:size]
            np.copyto(host, feeds[argument][part])
            cuda.memcpy_htod_async(self._device[key], host, stream)
        for role in ROLES:
            context = self._contexts[role]
            self._set_shapes(role, context, size)
            if not context.execute_async_v3(stream.handle):
                raise ScreeningError(f"TensorRT failed to run the {role} engine on a batch of {size}")
        for field, key in plan.host_outputs.items():
            cuda.memcpy_dtoh_async(self._host[key][:size], self._device[key], stream)
        stream.synchronize()
        for field, key in plan.host_outputs.items():
            outputs[field][part] = self._host[key][:size]

    def _set_shapes(self, role: str, context: Any, size: int) -> None:
        """Set this batch's input shapes and check that TensorRT's output shapes fit our buffers."""
        plan, spec = self.plan, getattr(self.manifest, role)
        for tensor in spec.inputs:
            shape = plan.device[plan.bindings[role][tensor]].batch_shape(size)
            if not context.set_input_shape(tensor, shape):
                raise ScreeningError(f"TensorRT refused the shape {list(shape)} for {role} input {tensor!r} "
                                     f"(the engine takes batches of 1..{plan.max_batch})")
        for tensor in spec.outputs:
            planned = plan.device[plan.bindings[role][tensor]].batch_shape(size)
            actual = tuple(int(d) for d in context.get_tensor_shape(tensor))
            if actual != planned:
                raise ScreeningError(f"TensorRT's {role} output {tensor!r} has shape {list(actual)} for a batch "
                                     f"of {size}, but its buffer is planned for {list(planned)}; "
                                     f"rebuild with: {rebuild_command(self.bundle_dir)}")

    @property
    def description(self) -> str:
        record = self.record
        if record is None:
            return "tensorrt (FP16)"
        split = f", batches of {self.batch_size} split" if self.batch_size > record.max_batch else ""
        return (f"tensorrt (FP16, {record.gpu.describe()}, TensorRT {record.tensorrt_version}, "
                f"max batch {record.max_batch}{split})")
