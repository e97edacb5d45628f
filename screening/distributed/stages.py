"""The screening stages as Ray Data operators: listing, decode tasks, a bundle-holding actor pool.

    listing (read tasks, each a few grid batches) -> decode (CPU tasks, screening.pipeline's
    decode_one) -> segmenter + classifier + postprocess (an actor pool; each actor opens the
    bundle once, screening.pipeline's infer_batch) -> outcomes, streamed to the driver

A row is one batch of the single-process run's fixed grid (screening.pipeline.plan_batches), so
every image is inferred in exactly the batch it would be in on one machine and the results
are the same to the last bit. Rows carry pickled stage objects: Ray ships them, never looks in.
"""

from __future__ import annotations

import pickle
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any, Container, Iterator

import pyarrow as pa
import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from ..backends import open_backend
from ..decode_pool import DecodeLimits, DecodePool
from ..errors import BundleError, ScreeningError
from ..images import load_image
from ..manifest import Manifest, sha256_file, within_bundle_stall
from ..pipeline import Decoded, Failed, ImageJob, decode_one, infer_batch, plan_batches
from ..results import Outcome
from ..stalled_reads import DEFAULT_STALL_S

_PICKLE = pickle.HIGHEST_PROTOCOL


def _dump(value: Any) -> bytes:
    return pickle.dumps(value, protocol=_PICKLE)


def _load(data: bytes) -> Any:
    return pickle.loads(data)


# -- listing ------------------------------------------------------------------------------------

class _GridChunk:
    """Reads one chunk of the grid: whole grid batches, minus images already done.

    Pickled into its read task when Ray launches it, so one chunk's jobs travel at a time, and
    without the patients.csv fields the workers have no use for.
    """

    def __init__(self, jobs: list[ImageJob], batch_size: int, done: frozenset[str]) -> None:
        self.jobs = jobs
        self.batch_size = batch_size
        self.done = done

    def __getstate__(self) -> dict[str, Any]:
        # Patient identifiers and free-text columns stay on the driver: the workers need the
        # file, its encoded metadata and nothing else.
        slim = [replace(job, extra={}, warnings=(), patient_id="", row_key=None) for job in self.jobs]
        return {"jobs": slim, "batch_size": self.batch_size, "done": self.done}

    def __call__(self) -> Iterator[pa.Table]:
        for batch in plan_batches(self.jobs, self.batch_size, self.done):
            yield pa.table({"jobs": pa.array([_dump(batch)], pa.binary())})


class GridListing(Datasource):
    """The jobs of a run as Ray Data rows of one grid batch each, in read tasks of a few batches.

    Chunks start on multiples of the batch size, so ``plan_batches`` inside a chunk makes the
    same batches as over the whole run.
    """

    def __init__(self, jobs: list[ImageJob], batch_size: int, done: Container[str],
                 batches_per_read: int) -> None:
        super().__init__()
        self.jobs = jobs
        self.batch_size = batch_size
        self.done = done
        self.chunk = batch_size * batches_per_read

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        tasks = []
        for start in range(0, len(self.jobs), self.chunk):
            jobs = self.jobs[start:start + self.chunk]
            done = frozenset(job.image for job in jobs if job.image in self.done)
            if len(done) == len(jobs):
                continue
            rows = -(-len(jobs) // self.batch_size)
            tasks.append(ReadTask(_GridChunk(jobs, self.batch_size, done),
                                  BlockMetadata(num_rows=rows, size_bytes=None, exec_stats=None,
                                                input_files=None)))
        return tasks


# -- decode (CPU tasks) -------------------------------------------------------------------------

# One decoder child per Ray worker process, kept across the tasks that process runs: a child
# costs an interpreter start, and Ray reuses its workers.
_DECODERS: dict[DecodeLimits, DecodePool] = {}


def _decoder(limits: DecodeLimits | None) -> dict[str, Any]:
    """``decode_one``'s reader and hasher: the pool's, which read within the time budget (a
    stalled network drive gives an error row, not a task that never returns), else plain ones."""
    if limits is None:
        return {"load": load_image}
    if limits not in _DECODERS:
        _DECODERS[limits] = DecodePool(1, limits)
    return {"load": _DECODERS[limits].load, "digest": _DECODERS[limits].digest}


def decode_row(row: dict[str, Any], root: str, input_size: tuple[int, int],
               limits: DecodeLimits | None) -> dict[str, Any]:
    """Decode one grid batch under the run's time and memory budget per image (in a decoder
    child, as on one machine); a bad image becomes a Failed exactly as it would there."""
    batch: list[ImageJob] = _load(row["jobs"])
    readers = _decoder(limits)
    decoded: list[Decoded | Failed] = [decode_one(job, Path(root), tuple(input_size), False, **readers)
                                       for job in batch]
    return {"decoded": _dump(decoded)}


def no_extra_remote_args() -> dict[str, Any]:
    """Adds nothing to the decode tasks' Ray options (see RayScreening._dataset for why it exists)."""
    return {}


# -- segment, classify, postprocess (an actor pool) ---------------------------------------------

def open_bundle(bundle_dir: str, manifest: Manifest, backend: str, batch_size: int,
                stall_s: float = DEFAULT_STALL_S):
    """Open the driver's bundle on this worker: its model files must have the driver's sha256s.

    The driver's manifest travels with the task, so every worker applies exactly the
    preprocessing, classes and options the driver checked; a worker whose copy of the models
    differs (another version on its disk, a partial copy) fails here rather than mixing
    results of two bundles into one output. A worker's copy on a drive that stops answering
    gives up after ``stall_s`` seconds (``--decode-timeout``) with the bundle's one line, as one
    machine does, instead of holding the actor and the night.
    """
    within_bundle_stall(Path(bundle_dir), stall_s, lambda beat: _check_copy(Path(bundle_dir), manifest, beat))
    return open_backend(backend, Path(bundle_dir), manifest, batch_size=batch_size, stall_s=stall_s)


def _check_copy(bundle_dir: Path, manifest: Manifest, beat) -> None:
    for spec in (manifest.segmenter, manifest.classifier):
        model_path = bundle_dir / spec.file
        if not model_path.is_file():
            raise BundleError(f"{model_path} is missing on worker {socket.gethostname()}")
        beat()
        try:
            actual = sha256_file(model_path, beat)
        except OSError as exc:
            raise BundleError(f"cannot read {model_path} on worker {socket.gethostname()}: "
                              f"{exc.strerror or exc}") from None
        if actual != spec.sha256:
            raise BundleError(f"{model_path} on worker {socket.gethostname()} is not the driver's "
                              f"{spec.file} (sha256 differs): give every node the same bundle")


class ScreeningActor:
    """Holds one opened bundle for the life of the actor and screens decoded grid batches."""

    def __init__(self, bundle_dir: str, manifest: Manifest, backend: str, batch_size: int,
                 stall_s: float = DEFAULT_STALL_S) -> None:
        self.backend, self.note = open_bundle(bundle_dir, manifest, backend, batch_size, stall_s)
        self.backend.__enter__()
        self.description = self.backend.description
        self.node = ray.get_runtime_context().get_node_id()  # reported, so a run says where it ran

    def __call__(self, row: dict[str, Any], tta: str | None = None) -> dict[str, Any]:
        batch: list[Decoded | Failed] = _load(row["decoded"])
        # tta only when the run names one: None means the bundle's default either way.
        outcomes: list[Outcome] = infer_batch(batch, self.backend, **({"tta": tta} if tta else {}))
        return {"outcomes": _dump(outcomes), "backend": self.description, "node": self.node}


def probe_bundle(bundle_dir: str, manifest: Manifest, backend: str, batch_size: int,
                 stall_s: float = DEFAULT_STALL_S) -> tuple[str, str, str, str]:
    """Open and close the bundle on one worker: ("ok", description, note, backend name), or the
    domain error as ("error", class name, message, "") so that the driver can raise it with its
    exit code."""
    try:
        opened, note = open_bundle(bundle_dir, manifest, backend, batch_size, stall_s)
        with opened:
            return "ok", opened.description, note, opened.results_backend
    except ScreeningError as exc:
        return "error", type(exc).__name__, str(exc), ""


def outcomes_of(row: dict[str, Any]) -> list[Outcome]:
    return _load(row["outcomes"])

