"""Does a bundle have an engine that fits this machine, and is it still fresh?

An engine is stale when the bundle's ONNX changed since the build (sha256), when TensorRT was
upgraded, or when the GPU is another model or architecture. Each finding is one line that ends
with the command to rebuild, because the person reading it is about to type that command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import BundleError
from ..manifest import Manifest
from . import rebuild_command
from .naming import GpuInfo, engine_dir, engine_key, trt_root
from .profile import profile_shapes
from .record import RECORD_NAME, ROLES, BuildRecord, load_record


def stale_reasons(record: BuildRecord, manifest: Manifest, gpu: GpuInfo, tensorrt_version: str) -> list[str]:
    """Every way the build record disagrees with the bundle and this machine; [] when fresh."""
    reasons = []
    for role in ROLES:
        spec = getattr(manifest, role)
        built = record.models[role]
        if built.onnx_sha256 != spec.sha256:
            reasons.append(f"{spec.file} changed since the build "
                           f"(sha256 {built.onnx_sha256[:12]} then, {spec.sha256[:12]} now)")
        elif built.profile != profile_shapes(spec, role, record.opt_batch, record.max_batch):
            reasons.append(f"the manifest's {role} input shapes changed since the build")
    if record.tensorrt_version != tensorrt_version:
        reasons.append(f"built with TensorRT {record.tensorrt_version}, this machine has TensorRT {tensorrt_version}")
    if record.gpu != gpu:
        reasons.append(f"built for {record.gpu.describe()}, this machine has {gpu.describe()}")
    return reasons


@dataclass(frozen=True)
class EngineMatch:
    """The engine folder for this machine, or the one-line reason there is none usable."""

    engine_dir: Path | None  # set only when the engines can be used as they are
    reason: str  # '' when usable; otherwise ends with the rebuild command
    record: BuildRecord | None = None


def _incomplete(folder: Path, record: BuildRecord, beat: Callable[[], None] = lambda: None) -> str:
    missing = []
    for role in ROLES:
        if not (folder / record.models[role].plan).is_file():
            missing.append(record.models[role].plan)
        beat()
    return f"{', '.join(missing)} missing" if missing else ""


def find_engine(bundle_dir: Path, manifest: Manifest, gpu: GpuInfo, tensorrt_version: str,
                beat: Callable[[], None] = lambda: None) -> EngineMatch:
    """Find the fresh engine folder of a bundle for this GPU and TensorRT version.

    Args:
        bundle_dir: the bundle folder, as the user named it (it appears in the rebuild command).
        manifest: the bundle's manifest, already loaded and checked.
        gpu: this machine's GPU.
        tensorrt_version: the installed TensorRT version.
        beat: called after each look at the engine folder (the work of
            :func:`screening.stalled_reads.while_progressing`, for a bundle on a network share).
    """
    folder = engine_dir(bundle_dir, gpu, tensorrt_version)
    rebuild = rebuild_command(bundle_dir)
    found = folder.is_dir()
    beat()
    if not found:
        machine = f"{gpu.describe()}, TensorRT {tensorrt_version}"
        root = trt_root(bundle_dir)
        others = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        beat()
        if others:
            return EngineMatch(None, f"no TensorRT engine for this machine ({machine}); the bundle has engines "
                                     f"for {', '.join(others)} only; build one with: {rebuild}")
        return EngineMatch(None, f"no TensorRT engines built for this bundle yet ({machine}); "
                                 f"build them with: {rebuild}")
    if not (folder / RECORD_NAME).is_file():
        return EngineMatch(None, f"TensorRT engine {folder.name} has no {RECORD_NAME} (an interrupted build); "
                                 f"rebuild with: {rebuild}")
    try:
        record = load_record(folder, beat)
    except BundleError:
        return EngineMatch(None, f"TensorRT engine {folder.name} has an unreadable {RECORD_NAME}; "
                                 f"rebuild with: {rebuild}")
    reasons = stale_reasons(record, manifest, gpu, tensorrt_version)
    if reasons:
        return EngineMatch(None, f"TensorRT engine {folder.name} is stale ({'; '.join(reasons)}); "
                                 f"rebuild with: {rebuild}", record)
    missing = _incomplete(folder, record, beat)
    if missing:
        return EngineMatch(None, f"TensorRT engine {folder.name} is incomplete ({missing}); rebuild with: {rebuild}",
                           record)
    return EngineMatch(folder, "", record)


@dataclass(frozen=True)
class EngineEntry:
    """One engine folder of a bundle, as ``screen engines list`` shows it."""

    key: str  # folder name
    record: BuildRecord | None  # None when the build record is missing or unreadable
    status: str  # e.g. "fits this machine", "stale: ...", "for another GPU or TensorRT version"
    fits: bool  # usable on this machine as it is


def list_engines(bundle_dir: Path, manifest: Manifest, gpu: GpuInfo | None,
                 tensorrt_version: str | None) -> list[EngineEntry]:
    """Every engine folder of a bundle with its status for this machine, sorted by name.

    Args:
        gpu: this machine's GPU, or None when it cannot be known.
        tensorrt_version: the installed TensorRT version, or None when TensorRT is absent.
    """
    root = trt_root(bundle_dir)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    mine = engine_key(gpu, tensorrt_version) if gpu is not None and tensorrt_version else None
    entries = []
    for folder in folders:
        try:
            record = load_record(folder)
        except BundleError:
            entries.append(EngineEntry(folder.name, None, f"incomplete: no readable {RECORD_NAME}", False))
            continue
        entries.append(_entry(folder, record, manifest, gpu, tensorrt_version, mine))
    return entries


def _entry(folder: Path, record: BuildRecord, manifest: Manifest, gpu: GpuInfo | None,
           tensorrt_version: str | None, mine: str | None) -> EngineEntry:
    if mine is not None and folder.name == mine:
        reasons = stale_reasons(record, manifest, gpu, tensorrt_version)
        if reasons:
            return EngineEntry(folder.name, record, f"stale: {'; '.join(reasons)}", False)
        missing = _incomplete(folder, record)
        if missing:
            return EngineEntry(folder.name, record, f"incomplete: {missing}", False)
        return EngineEntry(folder.name, record, "fits this machine", True)
    if mine is not None:
        return EngineEntry(folder.name, record, "for another GPU or TensorRT version", False)
    if gpu is not None and record.gpu == gpu:
        return EngineEntry(folder.name, record, "built for this GPU; TensorRT is not installed here", False)
    if gpu is not None:
        return EngineEntry(folder.name, record, "for another GPU", False)
    return EngineEntry(folder.name, record, "unknown: this machine's GPU cannot be determined", False)
