"""Build a bundle's FP16 TensorRT engines for this machine's GPU (the only TensorRT build code).

Per model: FP32 ONNX -> mixed-precision ONNX (``fp16``) -> a strongly typed network -> one
optimisation profile over the batch axis -> a serialized plan, written atomically. One timing
cache per GPU and TensorRT version is loaded before and merged back after (``timing_cache``).
The build record is written last, and the old one is removed first, so an interrupted build
never looks finished. TensorRT builds on a worker thread: the main thread stays free to take
Ctrl-C, which cancels the build through the progress monitor at TensorRT's next step.
TensorRT is imported here, inside the functions, never at package import.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..backends import check_input_size
from ..errors import BackendUnavailable, BundleError, InputError, ScreeningError
from ..manifest import Manifest, sha256_file
from .environment import Environment, one_line
from ..atomic import atomic_write
from .trt_logger import routed_to, tensorrt_logger
from .timing_cache import TimingCache
from .fp16 import convert_file, fp32_ops
from .naming import engine_dir, timing_cache_path
from .profile import InputProfile, check_batches, profile_shapes
from .progress import BuildLog, BuildProgress, Echo
from .record import RECORD_NAME, ROLES, BuildRecord, ModelBuild, save_record

GIB = 1 << 30
DEFAULT_WORKSPACE_GB = 2.0


def workspace_bytes(gigabytes: float) -> int:
    """The builder workspace limit in bytes; InputError unless positive."""
    if not gigabytes > 0:
        raise InputError(f"--workspace must be a positive number of GB, got {gigabytes}")
    return int(gigabytes * GIB)


def network_flags(trt: Any) -> int:
    """STRONGLY_TYPED: TensorRT takes each tensor's type from the mixed-precision ONNX.

    Required on 10.12+ for FP16 from a mixed-precision graph; accepted (and implied) on 11.x.
    """
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _monitor(trt: Any, progress: BuildProgress) -> Any | None:
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:  # older TensorRT: the stage lines printed by build_engines must do
        return None

    class _Monitor(base):
        def __init__(self) -> None:
            base.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return progress.step_complete(phase_name, step)

        def phase_finish(self, phase_name: str) -> None:
            progress.phase_finish(phase_name)

    return _Monitor()


def _run_build(builder: Any, network: Any, config: Any, progress: BuildProgress, echo: Echo) -> Any:
    """``build_serialized_network`` on a worker thread, cancelled when the main thread is interrupted.

    The binding releases the GIL while TensorRT builds, but Python runs signal handlers only on
    the main thread, and only between bytecodes: a build on the main thread would ignore Ctrl-C
    for minutes. Here the main thread waits in short joins, and on Ctrl-C (KeyboardInterrupt, or
    ``screening.interrupt.Interrupted`` under the CLI) asks the progress monitor to stop,
    waits for TensorRT to return, and re-raises.
    """
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["plan"] = builder.build_serialized_network(network, config)
        except BaseException as exc:  # handed to the main thread
            result["error"] = exc

    thread = threading.Thread(target=work, name="tensorrt-build", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except BaseException:
        progress.cancelled = True
        echo("  stopping the TensorRT build at its next step ...")
        thread.join()
        raise
    if "error" in result:
        raise result["error"]
    return result["plan"]


def _build_plan(trt: Any, builder: Any, logger: Any, onnx_path: Path, profile: dict[str, InputProfile],
                workspace: int, cache: TimingCache, monitor: Any | None, progress: BuildProgress,
                log: BuildLog, detailed_layers: bool = False) -> Any:
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [one_line(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BundleError(f"TensorRT cannot parse {onnx_path.name}: {errors[0] if errors else 'no reason given'}")
    inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    if inputs != set(profile):
        raise BundleError(f"{onnx_path.name} has inputs {sorted(inputs)} but the manifest lists {sorted(profile)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if monitor is not None:
        config.progress_monitor = monitor
    if detailed_layers:  # each layer's precision, formats and tactic, for the engine inspector
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    cache.attach(config)
    optimisation = builder.create_optimization_profile()
    for name, shapes in profile.items():
        optimisation.set_shape(name, shapes.min, shapes.opt, shapes.max)
    config.add_optimization_profile(optimisation)
    plan = _run_build(builder, network, config, progress, log.echo)
    if plan is None:
        raise ScreeningError(f"TensorRT could not build an engine from {onnx_path.name}: "
                             f"{log.errors[-1] if log.errors else 'see the TensorRT messages above'}")
    return plan


def _build_models(trt: Any, builder: Any, logger: Any, bundle_dir: Path, manifest: Manifest, folder: Path,
                  opt_batch: int, max_batch: int, workspace: int, cache: TimingCache, monitor: Any | None,
                  progress: BuildProgress, log: BuildLog, detailed_layers: bool) -> dict[str, ModelBuild]:
    """Convert and build each model of the bundle into ``folder``; returns what each build made."""
    echo = log.echo
    models = {}
    for role in ROLES:
        spec = getattr(manifest, role)
        fp16_path = folder / f"{role}.fp16.onnx"
        echo(f"{role}: converting {spec.file} to mixed-precision FP16")
        for note in convert_file(Path(bundle_dir) / spec.file, fp16_path):
            log.log("warning", note)
        profile = profile_shapes(spec, role, opt_batch, max_batch)
        echo(f"{role}: building the engine (batch 1..{max_batch}, tuned for {opt_batch}); this takes minutes")
        plan = _build_plan(trt, builder, logger, fp16_path, profile, workspace, cache, monitor, progress,
                           log, detailed_layers)
        plan_path = atomic_write(folder / f"{role}.plan", memoryview(plan))
        models[role] = ModelBuild(onnx_sha256=spec.sha256, fp16_onnx_sha256=sha256_file(fp16_path),
                                  plan=plan_path.name, plan_sha256=sha256_file(plan_path), profile=profile)
        echo(f"{role}: wrote {plan_path} ({plan_path.stat().st_size / 1e6:.1f} MB)")
    return models


def build_engines(bundle_dir: Path, manifest: Manifest, env: Environment, opt_batch: int, max_batch: int,
                  workspace_gb: float = DEFAULT_WORKSPACE_GB, echo: Echo = print,
                  cache_dir: Path | None = None, detailed_layers: bool = False) -> tuple[Path, BuildRecord]:
    """Build both engines of a bundle for this machine and write their folder.

    Args:
        bundle_dir: the bundle folder (its manifest and ONNX files already verified).
        manifest: the bundle's manifest.
        env: this machine's TensorRT/pycuda/GPU facts; must have no ``problem``.
        opt_batch: batch size TensorRT tunes for.
        max_batch: largest batch the engines accept.
        workspace_gb: builder workspace memory pool limit, in GiB.
        echo: prints one progress line.
        cache_dir: folder of timing caches (default: ``naming.default_cache_dir()``).
        detailed_layers: keep each layer's precision and tactic in the plans for TensorRT's
            engine inspector (``bench/trt_inspect.py``); adds NVTX detail to every run.

    Returns:
        (the engine folder, its build record).

    Raises:
        BackendUnavailable: TensorRT, pycuda or a GPU is missing.
        InputError: bad batch sizes or workspace; the timing cache's drive stopped answering
            (``timing_cache``: within the default 30 s, as the build has no --decode-timeout).
        BundleError: the manifest's shapes do not use its input size; a model cannot be
            converted or parsed.
        ScreeningError: TensorRT could not build an engine.
        KeyboardInterrupt, screening.interrupt.Interrupted: Ctrl-C; TensorRT stops at its next
            step, no plan of the interrupted model and no build record are written.
    """
    check_batches(opt_batch, max_batch)
    workspace = workspace_bytes(workspace_gb)
    check_input_size(manifest)
    if env.problem:
        raise BackendUnavailable(env.problem)
    import tensorrt as trt

    folder = engine_dir(bundle_dir, env.gpu, env.tensorrt_version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD_NAME).unlink(missing_ok=True)
    echo(f"Building FP16 TensorRT engines of {manifest.tag} for {env.gpu.describe()} "
         f"with TensorRT {env.tensorrt_version} into {folder}")
    log, progress = BuildLog(echo), BuildProgress(echo)
    logger = tensorrt_logger(trt)
    monitor = _monitor(trt, progress)  # kept referenced: TensorRT calls it during the builds
    cache = TimingCache(timing_cache_path(env.gpu, env.tensorrt_version, cache_dir), echo)
    started = time.monotonic()
    with routed_to(log.log):
        builder = trt.Builder(logger)
        models = _build_models(trt, builder, logger, bundle_dir, manifest, folder, opt_batch, max_batch, workspace,
                               cache, monitor, progress, log, detailed_layers)
    if not cache.save():
        echo("  timing cache not saved (see above)")
    record = BuildRecord(
        bundle=manifest.tag, tensorrt_version=env.tensorrt_version, gpu=env.gpu, models=models,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=time.monotonic() - started, workspace_bytes=workspace, fp32_ops=fp32_ops(),
        warnings=list(log.warnings),
    )
    save_record(record, folder)
    return folder, record
