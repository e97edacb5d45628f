"""The driver of a ``--ray`` run: the cluster does decode and inference, the driver keeps the books.

Used by ``screening.session`` in place of a local backend: the same up-front checks, lock,
journal, ranking, CSV and summary run on the driver, which alone writes files; the workers
only return outcomes. Exactly once: every grid batch is one Ray Data row, Ray retries the
tasks and restarts the actors of dead workers and nodes, and the driver drops any outcome it
has already journaled and refuses to finish while an image has none.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Container, Iterator

from .. import errors
from ..decode_pool import DecodeLimits
from ..errors import BackendUnavailable, InputError, ScreeningError
from ..manifest import Manifest
from ..pipeline import ImageJob, PipelineOptions
from ..results import Outcome
from ..stalled_reads import DEFAULT_STALL_S
from .cluster import LOCAL, ClusterInfo, connect, import_ray


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide a ``--ray`` run goes."""

    address: str = LOCAL  # "local" (start one here), "auto" or a cluster address
    actors: int | None = None  # bundle-holding actors; None = one per GPU, else one per 2 CPUs
    actor_cpus: float = 1.0  # CPUs reserved per CPU actor (a GPU actor reserves 1 GPU instead)
    decode_cpus: float = 1.0  # CPUs reserved per decode task
    batches_per_read: int = 4  # grid batches per listing task: the unit a dead worker redoes
    local_cpus: int | None = None  # "local" only: CPUs of the started instance (None = all)
    local_object_store: int | None = None  # "local" only: object store bytes (None = Ray's default)

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise InputError(f"--ray-actors must be at least 1, got {self.actors}")
        if not self.address:
            raise InputError("--ray: give a cluster address, auto, or nothing for a local Ray")


class RayScreening:
    """A bundle screened on a Ray cluster; a context manager like a local backend.

    Entering connects to the cluster and opens the bundle once on a worker, so that a bundle
    or backend problem there stops the run before any image, with its usual exit code.
    """

    name = "ray"

    def __init__(self, settings: RaySettings, bundle_dir: Path, manifest: Manifest, backend: str,
                 batch_size: int, stall_s: float = DEFAULT_STALL_S) -> None:
        self.settings = settings
        self.bundle_dir = Path(bundle_dir).resolve()
        self.manifest = manifest
        self.backend = backend
        self.batch_size = batch_size
        self.stall_s = stall_s  # --decode-timeout: how long a worker waits for its copy of the bundle
        self.cluster: ClusterInfo | None = None
        self.note = ""
        self.worker_backends: set[str] = set()  # descriptions reported by the actors that ran
        # The backend of the worker probed at the start, as the journal records it. (With
        # --backend auto on a cluster of GPU and CPU nodes the actors may differ: see
        # worker_backends in the summary.)
        self.results_backend = ""
        self.nodes_used: set[str] = set()  # Ray node ids whose actors returned outcomes
        self.duplicates = 0  # outcomes the cluster delivered twice (dropped)
        self._connection = None

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> "RayScreening":
        self._connection = connect(self.settings.address, num_cpus=self.settings.local_cpus,
                                   object_store_memory=self.settings.local_object_store)
        self.cluster = self._connection.__enter__()
        try:
            self._probe()
        except BaseException:
            self._connection.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self._connection is not None:
            self._connection.__exit__(*exc_info)
            self._connection = None

    def _probe(self) -> None:
        from .stages import probe_bundle

        ray = import_ray()
        probe = ray.remote(probe_bundle).options(**self._actor_resources())
        try:
            status, first, second, name = ray.get(probe.remote(str(self.bundle_dir), self.manifest, self.backend,
                                                               self.batch_size, self.stall_s))
        except ray.exceptions.RayError as exc:
            raise BackendUnavailable(f"--ray: cannot open the bundle on a worker ({_first_line(exc)})") from None
        if status == "error":
            raise getattr(errors, first, ScreeningError)(second)
        self.worker_backends.add(first)
        self.note = second
        self.results_backend = name

    # -- resources ------------------------------------------------------------------------------

    def _uses_gpus(self) -> bool:
        return self.cluster is not None and self.cluster.gpus >= 1 and self.backend != "onnxruntime"

    def _actor_resources(self) -> dict[str, Any]:
        # SPREAD: actors on as many nodes as possible, so a node's death takes few of them.
        if self._uses_gpus():
            return {"num_cpus": 0, "num_gpus": 1, "scheduling_strategy": "SPREAD"}
        return {"num_cpus": self.settings.actor_cpus, "scheduling_strategy": "SPREAD"}

    def actor_count(self) -> int:
        """The actor pool size: as asked, else one per GPU, else one per two CPUs."""
        if self.settings.actors is not None:
            return self.settings.actors
        if self._uses_gpus():
            return int(self.cluster.gpus)
        per_actor = self.settings.actor_cpus + self.settings.decode_cpus
        return max(1, int(self.cluster.cpus // per_actor)) if self.cluster else 1

    @property
    def description(self) -> str:
        """One line for the summary: the cluster and the backends its actors ran."""
        nodes = self.cluster.nodes if self.cluster else 0
        backends = ", ".join(sorted(self.worker_backends)) or "no actor ran"
        actors = self.actor_count()
        return (f"ray {self._ray_version()} ({nodes} node{'s' if nodes != 1 else ''}, {actors} "
                f"actor{'s' if actors != 1 else ''}, results from {len(self.nodes_used)} "
                f"node{'s' if len(self.nodes_used) != 1 else ''}): {backends}")

    @staticmethod
    def _ray_version() -> str:
        return import_ray().__version__

    # -- the stream -----------------------------------------------------------------------------

    def screen_jobs(self, jobs: list[ImageJob], root: Path, options: PipelineOptions,
                    done: Container[str] = frozenset()) -> Iterator[list[Outcome]]:
        """Outcomes of the jobs not in ``done``, one grid batch at a time, as the cluster finishes
        them (any order); each image exactly once.

        ``options.save_masks`` is not used: the workers write no files, and a ``--ray`` request
        with ``--save-masks`` is refused by ``screening.session.check_request`` before anything
        is written.

        Raises:
            ScreeningError: the cluster failed, or ended without screening every image; the
                batches already yielded are journaled, so ``--resume`` continues.
        """
        ray = import_ray()
        expected = sum(1 for job in jobs if job.image not in done)
        seen: set[str] = set()
        try:
            for row in self._dataset(jobs, root, done, getattr(options, "tta", None),
                                     options.limits).iter_rows():
                batch = self._fresh(row, seen)
                if batch:
                    yield batch
        except ray.exceptions.RayError as exc:
            raise ScreeningError(f"the Ray run failed ({_first_line(exc)}); finished batches are "
                                 f"journaled: rerun with --resume") from None
        if len(seen) != expected:
            raise ScreeningError(f"the Ray run returned {len(seen)} of {expected} images; finished "
                                 f"batches are journaled: rerun with --resume")

    def _fresh(self, row: dict, seen: set[str]) -> list[Outcome]:
        from .stages import outcomes_of

        self.worker_backends.add(row["backend"])
        self.nodes_used.add(row["node"])
        batch = []
        for outcome in outcomes_of(row):
            if outcome.image in seen:
                self.duplicates += 1
                continue
            seen.add(outcome.image)
            batch.append(outcome)
        return batch

    def _dataset(self, jobs: list[ImageJob], root: Path, done: Container[str], tta: str | None,
                 limits: DecodeLimits | None):
        from .stages import GridListing, ScreeningActor, decode_row, no_extra_remote_args

        ray = import_ray()
        context = ray.data.DataContext.get_current()
        # The run reports its own progress; Ray Data's bars and plans would flood a cron log.
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        listing = GridListing(jobs, self.batch_size, done, self.settings.batches_per_read)
        # Ray 2.60 warns that remote-args functions and free remote args (here the actors'
        # SPREAD) go away in 2.64; the extra pins 2.60, and a user's log should not carry it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = ray.data.read_datasource(listing, num_cpus=self.settings.decode_cpus).map(
                decode_row, fn_kwargs={"root": str(Path(root).resolve()),
                                       "input_size": tuple(self.manifest.input_size), "limits": limits},
                num_cpus=self.settings.decode_cpus,
                # A remote-args function keeps Ray Data from fusing decoding into the actors:
                # the decode tasks then run on any node's free CPUs, beside the inference actors.
                ray_remote_args_fn=no_extra_remote_args)
            return decoded.map(
                ScreeningActor, fn_constructor_kwargs={"bundle_dir": str(self.bundle_dir),
                                                       "manifest": self.manifest, "backend": self.backend,
                                                       "batch_size": self.batch_size,
                                                       "stall_s": self.stall_s},
                fn_kwargs={"tta": tta}, compute=ray.data.ActorPoolStrategy(size=self.actor_count()),
                **self._actor_resources())


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else exc.__class__.__name__)[:300]

