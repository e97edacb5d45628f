"""``screen folder --check``: read everything a run would read, write nothing, say what it found.

For setting up a nightly job: before the first night, a clinic sees how many images there
are, how many metadata rows match them, which columns are used or ignored, how many values
of each field would be unknown, and whether the bundle is valid, without a lock, journal,
CSV or summary being written.

It fails where the night would, with the night's exit code: ``screen folder`` builds the very
request it would run, and the check runs the run's own option and ``--out`` checks
(``screening.session.check_request`` and ``discover``), its backend choice (a probe, nothing
opened: exit 4 where the backend asked for cannot run here), operating point, output lock (exit 5
while another run holds it; probed, not taken) and journal rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from . import backends
from .errors import BackendUnavailable, BundleError, InputError
from .images import discover_images, no_images
from .journal import Journal, OutputLock
from .manifest import Manifest, load_manifest
from .metadata import DEFAULT_VOCABULARY, MetadataVocabulary
from .patients import read_patients
from .session import FolderRequest, check_request, discover
from .stalled_reads import DEFAULT_STALL_S, stalled_line, while_progressing

_SHOWN = 5  # keys listed by name; the rest are counted


@dataclass
class CheckReport:
    """What ``--check`` found."""

    images: int
    ignored_files: int
    metadata_rows: int
    images_with_row: int
    images_without_row: int
    rows_without_image: list[str]
    columns_used: dict[str, str]  # field -> header
    columns_ignored: list[str]
    unknown: dict[str, int]  # field -> images whose value would be unknown
    metadata_warnings: list[str]
    bundle: str  # identity, or "" when invalid
    bundle_error: str = ""  # why the bundle is not usable; "" when valid
    notes: list[str] = field(default_factory=list)
    backend: str = ""  # the backend the run would open, one line; "" when not probed

    @property
    def ok(self) -> bool:
        return not self.bundle_error

    def lines(self) -> list[str]:
        rows = self.rows_without_image
        shown = ", ".join(rows[:_SHOWN]) + (f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else "")
        used = ", ".join(f"{name}={header}" for name, header in self.columns_used.items())
        return [
            f"images: {self.images} found ({self.ignored_files} other files ignored)",
            f"metadata: {self.metadata_rows} rows; {self.images_with_row} images matched, "
            f"{self.images_without_row} without a row; {len(rows)} rows without an image"
            + (f" ({shown})" if rows else ""),
            f"columns used: {used}",
            f"columns ignored: {', '.join(self.columns_ignored) or 'none'} (copied only with --keep-columns)",
            "unknown values: " + ", ".join(f"{name} {count}" for name, count in self.unknown.items()),
            *(f"metadata warning: {message}" for message in self.metadata_warnings),
            *([self.backend] if self.backend else []),
            f"bundle: {self.bundle} valid" if self.ok else f"bundle: NOT usable: {self.bundle_error}",
            *self.notes,
            "nothing was written" if self.ok else "nothing was written; fix the bundle before the first run",
        ]


@dataclass(frozen=True)
class PlannedRun:
    """The run's own options that --check resolves as the run would: a night that would stop on
    them must not pass the check."""

    output: Path | None = None
    resume: bool = False
    on_bundle_change: str = "rescreen"
    operating_point: str | None = None
    tta: str | None = None
    # The night's whole request, as `screen folder` builds it for the run: with it, --check also
    # runs the run's option checks (screening.session.check_request), the --out checks against
    # the images found, and the backend's availability probe.
    request: FolderRequest | None = None

    @classmethod
    def of(cls, request: FolderRequest) -> "PlannedRun":
        return cls(output=request.output, resume=request.resume, on_bundle_change=request.on_bundle_change,
                   operating_point=request.operating_point, tta=request.tta, request=request)


def check_folder(images_dir: Path, meta_csv: Path, bundle_dir: Path,
                 columns: dict[str, str] | None = None, allow_empty: bool = False,
                 run: PlannedRun = PlannedRun()) -> CheckReport:
    """Read the folder, the metadata CSV and the bundle as ``screen folder`` would; write nothing.

    Raises:
        InputError, MetadataError: the options, ``--out``, the folder, the CSV, the operating
            point or the journal cannot be used (as for a run).
        BackendUnavailable: the backend asked for cannot run here (as for a run).
        OutputLocked: another run is writing ``--out`` (as for a run).
    """
    request = run.request
    if request is not None:
        check_request(request)  # options, --out, --save-masks, --report: as the run, before anything
        discovery = discover(request)  # as the run: its output folders left out, --out checked again
    else:
        discovery = discover_images(images_dir)
    if not discovery.images and not allow_empty:
        raise no_images(discovery)  # as the run would: --check must not pass a night that fails
    stall_s = request.decode_timeout_s if request is not None else DEFAULT_STALL_S
    table = read_patients(meta_csv, images=discovery.images, columns=columns, stall_s=stall_s)
    bundle, error, backend, backend_name = "", "", "", ""
    vocab: MetadataVocabulary = DEFAULT_VOCABULARY
    notes: list[str] = []
    try:
        manifest = load_manifest(bundle_dir, stall_s=stall_s)
        if run.tta is not None and run.tta != manifest.tta:
            manifest = replace(manifest, tta=run.tta)  # as the run does: part of the bundle's identity
        point = manifest.operating_point(run.operating_point)  # an unknown name: InputError, as the run
        if request is not None:  # the run opens its backend before its journal
            backend_name, backend = probe_backend(request, manifest)
    except BundleError as exc:
        error = str(exc)
    else:
        bundle, vocab = manifest.identity, manifest.metadata
        notes.append(f"flag: {point['name']} (refer at risk >= {point['threshold']:.6f})" if point
                     else "flag: none (the bundle has no operating points)")
        if run.output is not None:
            notes.append(_look_at_output(run, manifest, backend_name, stall_s))
    unknown = {"age": 0, "sex": 0, "site": 0}
    used_keys, with_row = [], 0
    for image in discovery.images:
        row = table.match(image).row
        if row is None:
            for name in unknown:
                unknown[name] += 1
            continue
        with_row += 1
        used_keys.append(row.key)
        codes = vocab.codes(row.age, row.sex, row.site)[0]
        unknown_codes = vocab.unknown_codes()
        unknown["age"] += codes.age == unknown_codes.age
        unknown["sex"] += codes.sex == unknown_codes.sex
        unknown["site"] += codes.site == unknown_codes.site
    return CheckReport(
        images=len(discovery.images), ignored_files=len(discovery.ignored), metadata_rows=len(table),
        images_with_row=with_row, images_without_row=len(discovery.images) - with_row,
        rows_without_image=table.unmatched_keys(used_keys), columns_used=dict(table.columns_found),
        columns_ignored=list(table.extra_columns), unknown=unknown, metadata_warnings=list(table.warnings),
        bundle=bundle, bundle_error=error, notes=notes, backend=backend)


def _look_at_output(run: PlannedRun, manifest: Manifest, backend_name: str, stall_s: float) -> str:
    """The run's lock probed and its journal previewed, as the run would find them: a line.

    Both read the output folder, which may sit on a share that stopped answering: --check stops
    with one line once it has not answered for ``stall_s`` seconds (reads, so a watched thread).
    """
    def look(beat) -> str:
        OutputLock(run.output).probe()  # the run locks its output before it opens the journal: exit 5
        return Journal.preview(run.output, manifest, resume=run.resume, on_bundle_change=run.on_bundle_change,
                               backend=backend_name)

    return while_progressing(look, stall_s, lambda: InputError(stalled_line(
        f"the output folder {Path(run.output).parent}", "its lock and journal were being read", stall_s)))


def probe_backend(request: FolderRequest, manifest: Manifest) -> tuple[str, str]:
    """The backend the run would open: its name (what the journal records; "" with ``--ray``,
    whose workers decide) and one line, decided as the run decides it
    (``screening.backends.open_backend``) but without opening it: nothing is loaded or written.

    With ``--ray`` the driver only needs Ray: the cluster's workers open the bundle when the
    run starts, and --check does not start or contact a cluster.

    Raises:
        BundleError: the manifest's model inputs do not have its input size (as the run).
        BackendUnavailable: ``--backend tensorrt`` cannot run here, or ``--ray`` without Ray
            installed (as the run: exit 4).
        InputError: the bundle's engine folder stopped answering (as the run: exit 2).
    """
    backends.check_input_size(manifest)
    if request.ray is not None:
        from .distributed.cluster import import_ray

        import_ray()
        return "", (f"backend: --ray {request.ray.address} (--backend {request.backend} on the cluster's "
                    f"workers; --check does not contact the cluster)")
    if request.backend == "onnxruntime":
        return "onnxruntime", "backend: onnxruntime (onnxruntime requested)"
    probe = backends.probe_tensorrt(request.bundle_dir, manifest, request.decode_timeout_s)  # the run's own probe
    if probe.usable:
        return "tensorrt", f"backend: tensorrt ({request.backend}: {probe.reason})"
    if request.backend == "tensorrt":
        raise BackendUnavailable(probe.reason)
    return "onnxruntime", f"backend: onnxruntime (auto picked onnxruntime: {probe.reason})"
