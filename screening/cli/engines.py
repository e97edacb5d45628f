"""`screen engines build|list|verify`: compile, inspect and check the FP16 TensorRT engines of a bundle."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import BackendUnavailable, FidelityError, InputError
from ..interrupt import Interrupted, interruptible
from .folder import BUNDLE_ENV, DEFAULT_BATCH_SIZE, resolve_bundle
from .paths import NonEmptyPath

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding screening/, engines/, sample_data/


def default_samples() -> tuple[Path, Path]:
    """The sample images folder and its patients CSV shipped with the project."""
    return PACKAGE_ROOT / "sample_data" / "images", PACKAGE_ROOT / "sample_data" / "patients.csv"


bundle_option = click.option(
    "--bundle", type=NonEmptyPath(path_type=Path, file_okay=False), default=None,
    help=f"Model bundle folder. [default: engines/starter, or ${BUNDLE_ENV}]")


@click.group()
def engines() -> None:
    """Build, list and verify the FP16 TensorRT engines of a bundle for this GPU.

    Engines are compiled per GPU model and TensorRT version into
    BUNDLE/trt/<gpu>-sm<cc>-trt<version>-fp16/ and are rebuilt when the GPU, TensorRT or the
    bundle's ONNX files change. Building and verifying need an NVIDIA GPU and the GPU extra
    (pip install '.[gpu]'); listing works anywhere.
    """


@engines.command()
@bundle_option
@click.option("--max-batch", type=int, default=None,
              help="Largest batch the engines accept; larger batches are split. [default: 32]")
@click.option("--opt-batch", type=int, default=None,
              help=f"Batch size TensorRT tunes its kernels for. [default: screen folder's --batch-size, "
                   f"{DEFAULT_BATCH_SIZE}, at most --max-batch]")
@click.option("--workspace", type=float, default=None, help="Builder workspace memory limit in GB. [default: 2]")
@click.option("--detailed-layers", is_flag=True,
              help="Keep each layer's precision and tactic in the engines, for TensorRT's engine inspector "
                   "(bench/trt_inspect.py).")
def build(bundle: Path | None, max_batch: int | None, opt_batch: int | None, workspace: float | None,
          detailed_layers: bool) -> None:
    """Compile the bundle's two models into FP16 engines for this machine's GPU (takes minutes).

    Ctrl-C stops the build at TensorRT's next step (exit code 130); an interrupted build never
    looks finished, and the next build starts over.

    \b
    Example:
      screen engines build --bundle engines/starter --max-batch 64 --opt-batch 32
    """
    from ..engines.build import DEFAULT_WORKSPACE_GB, build_engines, workspace_bytes
    from ..engines.environment import detect_environment
    from ..engines.profile import DEFAULT_MAX_BATCH, check_batches
    from ..manifest import load_manifest

    bundle = resolve_bundle(bundle)
    manifest = load_manifest(bundle)
    max_batch = DEFAULT_MAX_BATCH if max_batch is None else max_batch
    opt_batch = min(DEFAULT_BATCH_SIZE, max_batch) if opt_batch is None else opt_batch
    workspace = DEFAULT_WORKSPACE_GB if workspace is None else workspace
    check_batches(opt_batch, max_batch)
    workspace_bytes(workspace)
    env = detect_environment()
    if env.problem:
        raise BackendUnavailable(env.problem)
    with interruptible():
        try:
            folder, record = build_engines(bundle, manifest, env, opt_batch, max_batch, workspace, echo=click.echo,
                                           detailed_layers=detailed_layers)
        except Interrupted as stop:
            click.echo(f"Interrupted ({stop}): the engine build was stopped and nothing was recorded; "
                       f"run the same command again to build", err=True)
            raise click.exceptions.Exit(stop.exit_code) from None
    click.echo(f"Built {folder} in {record.build_seconds:.0f} s with {len(record.warnings)} builder warnings "
               f"(listed in its build.json). Check it with: screen engines verify --bundle {bundle}")


@engines.command("list")
@bundle_option
def list_command(bundle: Path | None) -> None:
    """Show the bundle's engines and which one fits this machine (needs no TensorRT)."""
    from .. import engines as engines_pkg
    from ..engines.environment import detect_environment
    from ..engines.naming import engine_key, trt_root
    from ..engines.staleness import list_engines
    from ..manifest import load_manifest

    bundle = resolve_bundle(bundle)
    manifest = load_manifest(bundle)
    env = detect_environment()
    entries = list_engines(bundle, manifest, env.gpu, env.tensorrt_version)
    click.echo(f"Engines of {manifest.tag} in {trt_root(bundle)}:")
    if not entries:
        click.echo(f"  none built yet; on the GPU machine run: {engines_pkg.rebuild_command(bundle)}")
    for entry in entries:
        click.echo(f"  {entry.key}: {entry.status}")
        if entry.record is not None:
            r = entry.record
            click.echo(f"      {r.gpu.describe()}, TensorRT {r.tensorrt_version}, batch 1..{r.max_batch} "
                       f"(tuned for {r.opt_batch}), built {r.built_at}, {len(r.warnings)} builder warnings")
    if env.gpu is None:
        click.echo(f"Cannot tell which engine fits this machine: {env.gpu_error}.")
    elif env.tensorrt_error:
        click.echo(f"This machine: {env.gpu.describe()}; {env.tensorrt_error}.")
    else:
        fits = any(entry.fits for entry in entries)
        notes = ([] if fits else [f"build it with: {engines_pkg.rebuild_command(bundle)}"])
        notes += [env.pycuda_error] if env.pycuda_error else []
        click.echo(f"This machine: {env.gpu.describe()}, TensorRT {env.tensorrt_version}: needs "
                   f"{engine_key(env.gpu, env.tensorrt_version)}" + "".join(f"; {note}" for note in notes))


@engines.command()
@bundle_option
@click.option("--images", type=NonEmptyPath(path_type=Path, file_okay=False), default=None,
              help="Folder of images to compare on. [default: sample_data/images]")
@click.option("--meta", type=NonEmptyPath(path_type=Path, dir_okay=False), default=None,
              help="Patients CSV for those images. [default: sample_data/patients.csv with the sample images; "
                   "otherwise unknown metadata]")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Compare on at most this many images.")
def verify(bundle: Path | None, images: Path | None, meta: Path | None, limit: int | None) -> None:
    """Compare the FP16 engines with ONNX Runtime FP32 on the same images.

    Reports top-1 agreement and max |delta p| over all class probabilities, and fails (exit
    code 1) when agreement is below 99% or max |delta p| is above 0.02.

    \b
    Example:
      screen engines verify --bundle engines/starter --images clinic/2024-05 --meta clinic/patients.csv
    """
    from ..backends.onnxrt import OnnxRuntimeBackend
    from ..backends.tensorrt import TensorRTBackend, probe_tensorrt
    from ..engines.fidelity import compare_backends
    from ..engines.samples import iter_batches
    from ..manifest import load_manifest

    bundle = resolve_bundle(bundle)
    manifest = load_manifest(bundle)
    probe = probe_tensorrt(bundle, manifest)
    if not probe.usable:
        raise BackendUnavailable(probe.reason)
    if images is None:
        images, sample_meta = default_samples()
        meta = meta or (sample_meta if sample_meta.is_file() else None)
        if not images.is_dir():
            raise InputError(f"no sample images at {images}: pass --images DIR")
    skipped: list[str] = []
    fp16 = TensorRTBackend(bundle, manifest, batch_size=DEFAULT_BATCH_SIZE, engine_dir=probe.engine_dir,
                           record=probe.record)  # the record the probe checked: read once
    with fp16, OnnxRuntimeBackend(bundle, manifest) as fp32:
        batches = iter_batches(images, manifest, DEFAULT_BATCH_SIZE, meta, limit, skipped)
        report = compare_backends(manifest, fp32, fp16, batches)
    click.echo(f"FP16 {probe.engine_dir.name} vs ONNX Runtime FP32 on {report.images} images from {images}"
               + (f" ({len(skipped)} unreadable files skipped)" if skipped else "") + ":")
    for line in report.lines():
        click.echo(line)
    if not report.passed:
        raise FidelityError(f"FP16 engines fail verification: {'; '.join(report.failures)}")
    click.echo("FP16 engines pass verification.")
