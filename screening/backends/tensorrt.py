"""TensorRT FP16 engines behind the BundleBackend interface, and the probe that decides whether to use them.

``probe_tensorrt`` says in one line whether TensorRT can run a bundle here (TensorRT and pycuda
importable, a GPU, a fresh engine folder for this GPU and TensorRT version); ``open_backend``
(``screening.backends``) turns that into the backend ``--backend auto|tensorrt|onnxruntime``
runs. ``TensorRTBackend`` runs both engines on one CUDA stream; the segmenter's mask stays on
the GPU and is the classifier's mask input. TensorRT and pycuda are imported only inside it.

The engine folder sits in the bundle, which may be on a network share: every look at it (the
probe's) and every read of it (build record, plans) runs in a watched thread that gives up once
nothing has come for ``stall_s`` seconds (``--decode-timeout``), with the bundle's one line
(``manifest.within_bundle_stall``), as ONNX Runtime's reads of the bundle do.
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
from ..manifest import Manifest, within_bundle_stall
from ..stalled_reads import DEFAULT_STALL_S, read_pieces
from .bundle import BatchOutputs, BundleBackend
from .cuda_context import current, primary_context


@dataclass(frozen=True)
class TensorRTProbe:
    """Whether TensorRT can run a bundle on this machine."""

    usable: bool
    reason: str  # one line: why not (ending with what to do), or which engine will run
    engine_dir: Path | None = None  # the fresh engine folder when usable
    # Its build record as the probe read and checked it: the backend loads the plans this record
    # names and vouches for, never a record read again (a folder rebuilt meanwhile, see __enter__).
    record: BuildRecord | None = None


def probe_from_environment(bundle_dir: Path, manifest: Manifest, env: Environment,
                           stall_s: float = DEFAULT_STALL_S) -> TensorRTProbe:
    """The probe's decision from gathered facts (no imports, no GPU access).

    Raises:
        InputError: the engine folder's drive stopped answering for ``stall_s`` seconds.
    """
    if env.problem:
        return TensorRTProbe(False, env.problem)
    match = within_bundle_stall(bundle_dir, stall_s,
                         lambda beat: find_engine(bundle_dir, manifest, env.gpu, env.tensorrt_version, beat))
    if match.engine_dir is None:
        return TensorRTProbe(False, match.reason)
    return TensorRTProbe(True, f"TensorRT FP16 engine {match.engine_dir.name}", match.engine_dir, match.record)


def probe_tensorrt(bundle_dir: Path, manifest: Manifest, stall_s: float = DEFAULT_STALL_S) -> TensorRTProbe:
    """Check TensorRT, pycuda, the GPU and the bundle's engine folder for this machine.

    Every problem found becomes the probe's one-line reason; nothing is raised for them but a
    drive that stopped answering.

    Args:
        bundle_dir: the bundle folder as the user named it (it appears in the rebuild command).
        manifest: the bundle's loaded manifest.
        stall_s: seconds to wait for the engine folder on a drive that stopped answering
            (``--decode-timeout``).

    Raises:
        InputError: the engine folder's drive stopped answering (the bundle's one line).
    """
    return probe_from_environment(bundle_dir, manifest, detect_environment(), stall_s)


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

    def __init__(self, bundle_dir: Path, manifest: Manifest, batch_size: int, engine_dir: Path | None = None, *,
                 record: BuildRecord | None = None, stall_s: float = DEFAULT_STALL_S) -> None:
        """Args:
            bundle_dir: the bundle folder.
            manifest: its loaded manifest.
            batch_size: the batch size the pipeline feeds; batches above the engines' max are split.
            engine_dir: the engine folder to use; None means the probe finds it (and checks freshness).
            record: ``engine_dir``'s build record as the caller's probe read and checked it
                (``TensorRTProbe.record``); None reads it once on entering.
            stall_s: seconds to wait for the engine folder on a drive that stopped answering
                (``--decode-timeout``); past them entering raises the bundle's one line (InputError).
        """
        super().__init__(manifest)
        self.bundle_dir = Path(bundle_dir)
        self.batch_size = batch_size
        self.engine_dir = engine_dir
        self.record: BuildRecord | None = record if engine_dir is not None else None
        self.stall_s = stall_s
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
        # The record is read once, by the probe when it finds the folder: the record checked
        # against the manifest is the record whose plan sha256s are checked below. Reading it
        # again here would let a folder rebuilt in between (for the bundle's next ONNX files)
        # vouch for its new plans under this run's older manifest.
        if self.engine_dir is None:
            probe = probe_tensorrt(self.bundle_dir, self.manifest, self.stall_s)
            if not probe.usable:
                raise BackendUnavailable(probe.reason)
            self.engine_dir, self.record = probe.engine_dir, probe.record
        elif self.record is None:
            self.record = within_bundle_stall(self.bundle_dir, self.stall_s, lambda beat: load_record(self.engine_dir, beat))
        # Read before the GPU is touched: a silent drive stops the start with nothing to release.
        plans = self._read_plans()
        trt, cuda = _import_gpu_modules()
        self._cuda = cuda
        try:
            context = primary_context(cuda)
        except Exception as exc:
            raise BackendUnavailable(f"cannot open the GPU: {one_line(exc)}") from exc
        with current(context):
            try:
                self._load_engines(trt, plans)
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

    def _read_plans(self) -> dict[str, bytes]:
        """Each engine's plan bytes, checked against the build record's sha256: the bytes checked are the
        bytes deserialised (a plan replaced after its check cannot slip in)."""
        rebuild = rebuild_command(self.bundle_dir)
        plans = {}
        for role in ROLES:
            build = self.record.models[role]
            path = self.engine_dir / build.plan
            try:
                data = within_bundle_stall(self.bundle_dir, self.stall_s, lambda beat: read_pieces(path, beat))
            except OSError as exc:
                raise BundleError(f"cannot read {path} ({exc.strerror or exc}); rebuild with: {rebuild}") from None
            if hashlib.sha256(data).hexdigest() != build.plan_sha256:
                raise BundleError(f"{path} does not match its build record; rebuild with: {rebuild}")
            plans[role] = data
        return plans

    def _load_engines(self, trt: Any, plans: dict[str, bytes]) -> None:
        self._runtime = trt.Runtime(tensorrt_logger(trt))
        rebuild = rebuild_command(self.bundle_dir)
        for role in ROLES:
            path = self.engine_dir / self.record.models[role].plan
            engine = self._runtime.deserialize_cuda_engine(plans[role])
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
