"""The build record: what an engine folder was built from, with what, for which GPU.

``build.json`` is written last, after both plans, so a folder without it is an interrupted
build. Staleness is decided by comparing it with the bundle's manifest and this machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import BundleError
from . import PRECISION
from ..atomic import atomic_write_text
from ..stalled_reads import read_pieces
from .naming import GpuInfo
from .profile import InputProfile

RECORD_NAME = "build.json"
RECORD_SCHEMA = 1
ROLES = ("segmenter", "classifier")


@dataclass(frozen=True)
class ModelBuild:
    """One engine of the folder."""

    onnx_sha256: str  # of the bundle's FP32 ONNX: equals the manifest's sha256 while fresh
    fp16_onnx_sha256: str  # of the mixed-precision ONNX that TensorRT parsed
    plan: str  # plan file name inside the engine folder
    plan_sha256: str  # checked before the plan is deserialised
    profile: dict[str, InputProfile]  # input name -> min/opt/max shapes

    def to_dict(self) -> dict[str, Any]:
        return {"onnx_sha256": self.onnx_sha256, "fp16_onnx_sha256": self.fp16_onnx_sha256,
                "plan": self.plan, "plan_sha256": self.plan_sha256,
                "profile": {name: p.to_dict() for name, p in self.profile.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelBuild":
        return cls(onnx_sha256=str(data["onnx_sha256"]), fp16_onnx_sha256=str(data["fp16_onnx_sha256"]),
                   plan=str(data["plan"]), plan_sha256=str(data["plan_sha256"]),
                   profile={str(k): InputProfile.from_dict(v) for k, v in data["profile"].items()})


@dataclass(frozen=True)
class BuildRecord:
    """Everything about one engine folder's build."""

    bundle: str  # name@version of the bundle the engines were built from
    tensorrt_version: str
    gpu: GpuInfo
    models: dict[str, ModelBuild]  # "segmenter" and "classifier"
    built_at: str  # ISO 8601 UTC
    build_seconds: float
    workspace_bytes: int  # builder workspace memory pool limit
    fp32_ops: list[str]  # op types the FP16 conversion kept in FP32
    warnings: list[str] = field(default_factory=list)  # the builder's log warnings, deduplicated
    precision: str = PRECISION
    schema_version: int = RECORD_SCHEMA

    @property
    def max_batch(self) -> int:
        """The largest batch both engines accept."""
        return min(p.max[0] for m in self.models.values() for p in m.profile.values())

    @property
    def opt_batch(self) -> int:
        return min(p.opt[0] for m in self.models.values() for p in m.profile.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version, "bundle": self.bundle, "precision": self.precision,
            "tensorrt_version": self.tensorrt_version,
            "gpu": {"name": self.gpu.name, "compute_capability": list(self.gpu.compute_capability)},
            "built_at": self.built_at, "build_seconds": round(self.build_seconds, 1),
            "workspace_bytes": self.workspace_bytes, "fp32_ops": list(self.fp32_ops),
            "models": {role: m.to_dict() for role, m in self.models.items()},
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BuildRecord":
        if data.get("schema_version") != RECORD_SCHEMA:
            raise ValueError(f"schema version {data.get('schema_version')!r} is not {RECORD_SCHEMA}")
        major, minor = data["gpu"]["compute_capability"]
        models = {role: ModelBuild.from_dict(data["models"][role]) for role in ROLES}
        return cls(bundle=str(data["bundle"]), tensorrt_version=str(data["tensorrt_version"]),
                   gpu=GpuInfo(str(data["gpu"]["name"]), (int(major), int(minor))), models=models,
                   built_at=str(data["built_at"]), build_seconds=float(data["build_seconds"]),
                   workspace_bytes=int(data["workspace_bytes"]), fp32_ops=[str(o) for o in data["fp32_ops"]],
                   warnings=[str(w) for w in data.get("warnings", [])],
                   precision=str(data["precision"]), schema_version=RECORD_SCHEMA)


def save_record(record: BuildRecord, folder: Path) -> Path:
    """Write ``build.json`` atomically into an engine folder."""
    return atomic_write_text(Path(folder) / RECORD_NAME, json.dumps(record.to_dict(), indent=2) + "\n")


def load_record(folder: Path, beat: Callable[[], None] = lambda: None) -> BuildRecord:
    """Read an engine folder's build record; BundleError when it is missing or malformed.

    ``beat()`` is called as the read moves on: the work of
    :func:`screening.stalled_reads.while_progressing`, for an engine folder on a network share.
    """
    path = Path(folder) / RECORD_NAME
    if not path.is_file():
        raise BundleError(f"{path} not found: the engine build in {folder} did not finish")
    beat()
    try:
        return BuildRecord.from_dict(json.loads(read_pieces(path, beat).decode("utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError,
            RecursionError) as exc:  # RecursionError: nested thousands deep
        raise BundleError(f"{path} is malformed ({exc.__class__.__name__}: {exc}): "
                          f"delete the folder and build the engines again") from exc
