"""Stand-ins for ``tensorrt`` and ``pycuda.driver`` with the shape of what TensorRTBackend uses, so the
backend can be entered on a machine without a GPU: its file reads (build record, plans) are real.

A fake plan is JSON naming the engine's tensors; the fake runtime "deserialises" it into an
engine with those float32 tensors and keeps every plan it was given (``FakeRuntime.loaded``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import H100, TRT, make_record
from screening.engines.naming import engine_dir
from screening.engines.record import ROLES, BuildRecord, save_record
from screening.manifest import Manifest

FLOAT = "float32"


class FakeEngine:
    def __init__(self, tensors: list[str]) -> None:
        self.tensors = tensors
        self.num_io_tensors = len(tensors)

    def get_tensor_name(self, index: int) -> str:
        return self.tensors[index]

    def get_tensor_dtype(self, name: str) -> str:
        return FLOAT

    def create_execution_context(self) -> "FakeContext":
        return FakeContext()


class FakeContext:
    def set_tensor_address(self, name: str, address: int) -> bool:
        return True


class FakeRuntime:
    loaded: list[bytes] = []  # every plan deserialised, in order (reset by the fixture)

    def __init__(self, logger: object) -> None:
        pass

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine:
        FakeRuntime.loaded.append(bytes(data))
        return FakeEngine(json.loads(data)["tensors"])


class FakeAllocation:
    def __int__(self) -> int:
        return 0

    def free(self) -> None:
        pass


class FakeCudaContext:
    def push(self) -> None:
        pass

    def pop(self) -> None:
        pass


FAKE_TRT = types.SimpleNamespace(Runtime=FakeRuntime, DataType=types.SimpleNamespace(FLOAT=FLOAT))
FAKE_CUDA = types.SimpleNamespace(Stream=lambda: types.SimpleNamespace(handle=0),
                                  mem_alloc=lambda nbytes: FakeAllocation(),
                                  pagelocked_empty=lambda shape, dtype: np.empty(shape, dtype))


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> type[FakeRuntime]:
    """TensorRTBackend on stand-in GPU modules on a machine with an H100 and TensorRT ``TRT`` (as the
    engine helpers name them); returns the runtime class, whose ``loaded`` lists the plans deserialised."""
    import screening.backends.tensorrt as trt_backend
    from screening.engines.environment import Environment

    monkeypatch.setattr(FakeRuntime, "loaded", [])
    monkeypatch.setattr(trt_backend, "detect_environment", lambda: Environment(TRT, gpu=H100))
    monkeypatch.setattr(trt_backend, "_import_gpu_modules", lambda: (FAKE_TRT, FAKE_CUDA))
    monkeypatch.setattr(trt_backend, "primary_context", lambda cuda: FakeCudaContext())
    # Not the process's real logger: a fake one cached there would meet a real TensorRT later.
    monkeypatch.setattr(trt_backend, "tensorrt_logger", lambda trt: None)
    return FakeRuntime


def fake_plan(manifest: Manifest, role: str, build: str = "") -> bytes:
    """A plan the fake runtime loads: the role's tensors as the manifest names them, and which build made it."""
    spec = getattr(manifest, role)
    return json.dumps({"tensors": [*spec.inputs, *spec.outputs], "build": build}).encode()


def write_fake_engines(bundle: Path, manifest: Manifest, build: str = "") -> tuple[Path, BuildRecord]:
    """An engine folder for ``manifest`` on the H100 with fake plans and a record that matches them."""
    record = make_record(manifest)
    folder = engine_dir(bundle, H100, TRT)
    folder.mkdir(parents=True, exist_ok=True)
    models = {}
    for role in ROLES:
        plan = fake_plan(manifest, role, build)
        (folder / record.models[role].plan).write_bytes(plan)
        models[role] = dataclasses.replace(record.models[role], plan_sha256=hashlib.sha256(plan).hexdigest())
    record = dataclasses.replace(record, models=models)
    save_record(record, folder)
    return folder, record
